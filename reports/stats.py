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


def layer_values(prog: Program, batch: int = 100, seed: int = 0):
    """(name, activation, gradient or None) of every named value but the loss and a
    function's steps (batch norm's ``bn1_mu`` …), at initialization on a random batch, in
    training mode: what the statistics and ``bpc explain``'s histograms are made of."""
    from .graph import steps

    folded = steps(prog)
    module = contract(prog)
    check_memory(module, batch, "the statistics' batch", "use a smaller --batch")
    rng = np.random.default_rng(seed)
    params = initial_params(prog, rng)
    feeds = random_feeds(prog, rng, batch)
    check_point(module, feeds, params, "the random batch")  # as every point is
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


def layer_stats(prog: Program, batch: int = 100, seed: int = 0) -> list[dict]:
    """A row per layer; a batch norm's row also has ``batch_norm``: the value it
    normalizes and the per-feature spread going in (``in``) and coming out (``out``)."""
    rows = []
    norms = batch_norms(prog)
    acts = {}
    for name, act, grad in layer_values(prog, batch, seed):
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
    if not norms:
        return _columns(lines)
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
    return "\n".join(out + [_columns(table)])
