"""``bpc stats``: per-layer activation and gradient statistics at initialization.

The experiment of "Understanding Deep Learning" §7.5: with weights drawn too large,
activations and gradients grow layer by layer (exploding); with He initialization they
keep their scale. Intermediate values are not part of a generated module's contract, so
this works on the spec through the compiler's IR evaluator, which computes every named
value and every adjoint.
"""

from __future__ import annotations

import numpy as np

from bpc.compiler.evaluate import evaluate, initial_params, random_feeds
from bpc.compiler.ir import Init, Program

from .errors import UserError


def init_from_text(text: str) -> Init:
    """An initializer written as in a spec (``he``, ``normal(std=1)``), checked like one."""
    from bpc.compiler.errors import SpecError
    from bpc.compiler.pipeline import program_from_text

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
    """(name, activation, gradient or None) of every named value but the loss, at
    initialization on a random batch: what the statistics and ``bpc explain``'s
    histograms are made of."""
    rng = np.random.default_rng(seed)
    params = initial_params(prog, rng)
    feeds = random_feeds(prog, rng, batch)
    with np.errstate(all="ignore"):
        values = evaluate(prog, feeds, params)
    prefix = f"d{prog.loss}_d"
    adjoint = {bd.name[len(prefix):]: bd.name for bd in prog.backward
               if bd.name.startswith(prefix)}
    for bd in prog.forward:
        if bd.name == prog.loss:
            continue
        act = np.asarray(values[bd.name], dtype=np.float64)
        grad_name = adjoint.get(bd.name)
        grad = np.asarray(values[grad_name], dtype=np.float64) if grad_name in values else None
        yield bd.name, act, grad


def layer_stats(prog: Program, batch: int = 100, seed: int = 0) -> list[dict]:
    rows = []
    for name, act, grad in layer_values(prog, batch, seed):
        rows.append({
            "layer": name,
            "shape": list(act.shape),
            "act_mean": float(np.mean(act)),
            "act_std": float(np.std(act)),
            "grad_mean": float(np.mean(grad)) if grad is not None else None,
            "grad_std": float(np.std(grad)) if grad is not None else None,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    def num(v):
        return "" if v is None else f"{v:.3e}"
    header = ("layer", "act_mean", "act_std", "grad_mean", "grad_std")
    lines = [header] + [(r["layer"], num(r["act_mean"]), num(r["act_std"]),
                         num(r["grad_mean"]), num(r["grad_std"])) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)
