"""``bpc stats``: per-layer activation and gradient statistics at initialization.

The experiment of "Understanding Deep Learning" §7.5: with weights drawn too large,
activations and gradients grow layer by layer (exploding); with He initialization they
keep their scale. Intermediate values are not part of a generated module's contract, so
this works on the spec through the compiler's IR evaluator, which computes every named
value and every adjoint.

Batch norm is evaluated in training mode, as ``loss_and_grad`` computes it: each feature
is normalized with this batch's own mean and variance (the running statistics, which
inference uses, are not trained yet at initialization). Its steps (``bn1_mu`` …) are not
layers and are left out; for each batch norm the table is followed by its effect per
feature (axis 1, over the batch and any pixels): the spread of the features going in
and coming out, mean 0 and standard deviation about 1 whatever the scale going in. With
weights drawn too small (DLFS ch. 6.3), activations without batch norm shrink layer by
layer towards 0; with it every layer's stay spread.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir.evaluate import evaluate, initial_params, random_feeds
from ..compiler.ir import Init, Program
from ..compiler.vocab import STATS_STEPS

from ..runtime.batching import dimension_sizes
from ..runtime.errors import UserError
from ..runtime.points import check_memory, check_point, contract


def init_from_text(text: str) -> Init:
    """An initializer written as in a spec (``he``, ``normal(std=1)``), checked like one."""
    from ..compiler.errors import SpecError
    from ..compiler.pipeline import program_from_text

    try:
        prog = program_from_text(f"model init\nparam w : [2, 2] = {text}\nloss L = sum(w)\n",
                                 "--init", stage="ir")
    except SpecError as e:
        raise UserError(f"--init {text}: not an initializer\n{e.render()}") from None
    return prog.inits["w"]


def override_weights(prog: Program, init: Init) -> list[str]:
    """Use ``init`` for every parameter with two or more dimensions (the weights)."""
    changed = []
    for bd in prog.params:
        if len(bd.node.shape) >= 2:
            old = prog.inits[bd.name]
            prog.inits[bd.name] = Init(init.kind, dict(init.args), old.fan_in, old.fan_out,
                                       f"overridden by --init ({init.kind})")
            changed.append(bd.name)
    return changed


STEPS = STATS_STEPS  # the length of the random sequences a loop over time steps through


def data_batch(prog: Program, module, batch: int, source: str | None = None
               ) -> tuple[dict, str]:
    """(feeds, description): the first ``batch`` examples of the training data as ``bpc
    train`` loads it (``source``, a --data string, else the spec's data line, drawn from
    the spec's data seed), for the statistics instead of a random batch."""
    from ..runtime.data import batch_axes, examples, training_examples
    from ..runtime.settings import spec_data_seed

    data, count, name = training_examples(module, source, spec_data_seed(module))
    if batch > count:
        raise UserError(f"--batch {batch}: the training data ({name}) has {count} examples",
                        f"use --batch {count} or fewer")
    picked = examples(data, batch_axes(module), slice(0, batch))
    feeds = {bd.name: picked[bd.name] for bd in prog.inputs + prog.targets
             if bd.name in picked}
    return feeds, f"the first {batch} examples of the training data ({name})"


def stats_batch(prog: Program, batch: int, seed: int, steps: int,
                params: dict | None = None, feeds: dict | None = None) -> tuple[dict, dict]:
    """(feeds, params): a random batch (sequences of ``steps`` steps), or ``feeds`` (a
    batch of data, ``data_batch``), at initialization, or with ``params`` (a trained
    model's) and the same batch."""
    from ..compiler.ir.ops.recurrence import time_axes

    module = contract(prog)
    lengths = dict.fromkeys(time_axes(prog), steps)
    check_memory(module, batch, "the statistics' batch", "use a smaller --batch",
                 sizes=lengths if feeds is None else dimension_sizes(module, feeds))
    rng = np.random.default_rng(seed)
    initial = initial_params(prog, rng)  # drawn anyway: the batch is the same either way
    params = initial if params is None else params
    if feeds is None:
        feeds = random_feeds(prog, rng, batch, lengths)
    check_point(module, feeds, params, "the statistics' batch")  # as every point is
    return feeds, params


def layer_values(prog: Program, batch: int = 100, seed: int = 0, steps: int = STEPS,
                 params: dict | None = None, feeds: dict | None = None):
    """(name, activation, gradient or None) of every named value but the loss and a
    function's steps (batch norm's ``bn1_mu`` …), at initialization (or with ``params``)
    on a random batch (or ``feeds``), in training mode: what the statistics and ``bpc
    explain``'s histograms are made of."""
    from .graph import steps as folded_steps

    folded = folded_steps(prog)
    feeds, params = stats_batch(prog, batch, seed, steps, params, feeds)
    with np.errstate(all="ignore"):
        values = evaluate(prog, feeds, params)
    prefix = f"d{prog.loss}_d"
    adjoint = {bd.name[len(prefix):]: bd.name for bd in prog.backward
               if bd.name.startswith(prefix)}
    for bd in prog.forward:
        if bd.name == prog.loss or bd.name in folded:
            continue
        act = np.asarray(values[bd.name], dtype=np.float64)
        grad_name = adjoint.get(bd.name)
        grad = np.asarray(values[grad_name], dtype=np.float64) if grad_name in values else None
        yield bd.name, act, grad


def time_grad_norms(prog: Program, batch: int = 100, seed: int = 0, steps: int = STEPS,
                    last_only: bool = False, params: dict | None = None,
                    feeds: dict | None = None) -> dict[str, list[float]]:
    """Each step equation of a loop over time that an adjoint reaches from outside its
    step -> ``||dL/dh_t||`` for t = 0 .. T-1 at initialization (or with ``params``), on
    the batch ``layer_values`` draws (``last_only``: of the loss at the last step alone,
    carried back): the vanishing (or exploding) gradient over time."""
    from ..compiler.ir.evaluate import evaluate_nodes
    from ..compiler.ir.ops.recurrence import step_grad_norms

    loops = list({bd.node.args[0].id: bd.node.args[0] for bd in prog.backward
                  if bd.node.op == "part" and bd.node.args[0].op == "scan_grad"}.values())
    if not loops:
        return {}
    feeds, params = stats_batch(prog, batch, seed, steps, params, feeds)
    with np.errstate(all="ignore"):
        values = evaluate_nodes(prog, feeds, params, loops)
    norms: dict[str, list[float]] = {}
    for loop in loops:
        norms.update(step_grad_norms(loop.attr("grad"), [values[a.id] for a in loop.args],
                                     last_only))
    return norms


def batch_norms(prog: Program) -> dict[str, str | None]:
    """Each batch norm equation (it updates state) -> the name of the value it
    normalizes (None when the spec wrote an expression there)."""
    named = {bd.node.id: bd.name for bd in prog.leaves + prog.forward}
    forward = {bd.name: bd for bd in prog.forward}
    out: dict[str, str | None] = {}
    for u in prog.updates:
        eq = u.sources[0] if u.sources else None
        if eq is None or eq in out or eq not in forward:
            continue
        # its first step is the batch mean, mean(x) over all but axis 1 (named eq_mu, or
        # eq_mu_2 should the spec use that name itself)
        mu = next((bd for bd in prog.forward if bd.sources == (eq,)), None)
        x = mu.node.args[0] if mu is not None and mu.node.args else None
        out[eq] = named.get(x.id) if x is not None else None
    return out


def _per_feature(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's (axis 1) mean and standard deviation over every other axis."""
    axes = (0,) + tuple(range(2, a.ndim))
    return np.mean(a, axis=axes), np.std(a, axis=axes)


def _feature_summary(a: np.ndarray) -> dict:
    mean, std = _per_feature(a)
    return {"mean_absmax": float(np.max(np.abs(mean))), "std_min": float(np.min(std)),
            "std_max": float(np.max(std))}


def layer_stats(prog: Program, batch: int = 100, seed: int = 0, steps: int = STEPS,
                params: dict | None = None, feeds: dict | None = None) -> list[dict]:
    """A row per layer (at initialization, or with ``params``; on a random batch, or
    ``feeds``); a batch norm's row also
    has ``batch_norm``: the value it normalizes and the per-feature spread going in
    (``in``) and coming out (``out``); a
    loop's step equation's, ``grad_norm_per_step``: ``||dL/dh_t||`` for t = 0 .. T-1, and
    ``last_step_grad_norm_per_step``: the same of the last step's loss alone."""
    rows = []
    norms = batch_norms(prog)
    over_time = time_grad_norms(prog, batch, seed, steps, params=params, feeds=feeds)
    from_last = time_grad_norms(prog, batch, seed, steps, last_only=True, params=params,
                                feeds=feeds)
    acts = {}
    for name, act, grad in layer_values(prog, batch, seed, steps, params, feeds):
        acts[name] = act
        row = {
            "layer": name,
            "shape": list(act.shape),
            "act_mean": float(np.mean(act)),
            "act_std": float(np.std(act)),
            "grad_mean": float(np.mean(grad)) if grad is not None else None,
            "grad_std": float(np.std(grad)) if grad is not None else None,
        }
        if name in norms and act.ndim >= 2:
            source = norms[name]
            row["batch_norm"] = {
                "input": source, "mode": "training",
                "in": _feature_summary(acts[source]) if source in acts else None,
                "out": _feature_summary(act)}
        if name in over_time:
            row["grad_norm_per_step"] = over_time[name]
            row["last_step_grad_norm_per_step"] = from_last[name]
        rows.append(row)
    return rows


def _columns(lines: list[tuple]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def format_table(rows: list[dict]) -> str:
    """The table of layers; with batch norm, a line on its mode first and the table of
    its effect per feature after."""
    def num(v):
        return "" if v is None else f"{v:.3e}"
    norms = [r for r in rows if r.get("batch_norm")]
    header = ("layer", "act_mean", "act_std", "grad_mean", "grad_std")
    lines = [header] + [(r["layer"] + (" *" if r.get("batch_norm") else ""),
                         num(r["act_mean"]), num(r["act_std"]),
                         num(r["grad_mean"]), num(r["grad_std"])) for r in rows]
    over_time = _over_time(rows)
    if not norms:
        return _columns(lines) + over_time
    out = ["batch_norm in training mode: each feature normalized with this batch's own "
           "mean and variance", "", _columns(lines), "",
           "* batch norm, per feature (axis 1, over the batch and an image's pixels): the "
           "largest |mean|", "  and the range of standard deviations of the features going "
           "in and coming out"]

    def spread(side, digits):
        if side is None:
            return "", ""
        return (f"{side['mean_absmax']:.2e}",
                f"{side['std_min']:.{digits}f} … {side['std_max']:.{digits}f}"
                if digits else f"{side['std_min']:.3g} … {side['std_max']:.3g}")

    table = [("layer", "normalizes", "in: |mean| ≤", "in: std", "out: |mean| ≤",
              "out: std")]
    for r in norms:
        bn = r["batch_norm"]
        table.append((r["layer"], bn["input"] or "(an expression)", *spread(bn["in"], 0),
                      *spread(bn["out"], 4)))
    return "\n".join(out + [_columns(table)]) + over_time


def _over_time(rows: list[dict]) -> str:
    """The table of ``||dL/dh_t||`` by time step, two columns per step equation (the
    whole loss; the last step's loss alone, carried back), and how much of the last
    step's gradient reaches t = 0 ('' when no loop)."""
    timed = [r for r in rows if r.get("grad_norm_per_step")]
    if not timed:
        return ""
    length = len(timed[0]["grad_norm_per_step"])
    table = [("t", *(c for r in timed for c in (f"{r['layer']}: all", f"{r['layer']}: last")))]
    table += [(str(t), *(f"{r[key][t]:.3e}" for r in timed for key in
                         ("grad_norm_per_step", "last_step_grad_norm_per_step")))
              for t in range(length)]
    ratios = ", ".join(f"{r['layer']} {_ratio(r['last_step_grad_norm_per_step'])}"
                       for r in timed)
    return "\n".join([
        "", "", "gradient norm per time step, ||dL/dh_t||: the adjoint into step t from "
        "outside it (the loss's at t", "and the one carried from t+1); all: of the whole "
        "loss, last: of the last step's loss alone, carried back", _columns(table),
        f"the last step's gradient at t = 0 over its size where it starts: {ratios} "
        "(far below 1: vanishing going back in time; far above: exploding)"])


def _ratio(norms: list[float]) -> str:
    """``norms[0]`` over the last nonzero norm (a carried value the loss does not read at
    the last step gets its adjoint a step earlier)."""
    start = next((n for n in reversed(norms) if n), 0.0)
    return f"{norms[0] / start:.3g}" if start else "0 (no gradient)"
