"""Gradient checks through the IR evaluator, with the runtime's gradcheck criterion.

A program is wrapped to look like a generated module (``loss``, ``loss_and_grad``), so
the IR is checked by exactly the code that checks generated modules.
"""

from types import SimpleNamespace

import numpy as np

from bpc.compiler.ir.evaluate import evaluate, kink_distance
from bpc.runtime.gradcheck import format_table, gradcheck


def as_module(prog):
    def loss(params, **data):
        return float(evaluate(prog, data, params, names=[prog.loss])[prog.loss])

    def loss_and_grad(params, **data):
        out = evaluate(prog, data, params, names=[prog.loss, *prog.grads.values()])
        return float(out[prog.loss]), {w: out[prog.grads[w]] for w in prog.wrt}

    return SimpleNamespace(loss=loss, loss_and_grad=loss_and_grad)


def check(prog, feeds, params, eps=1e-6, samples=None, rng=None, tol=1e-6):
    """Per-variable max relative error; fails with the table when any variable fails."""
    feeds = {**{k: np.asarray(v, dtype=float) for k, v in prog.defaults.items()}, **feeds}
    seed = int(rng.integers(1 << 30)) if rng is not None else 0
    rows = gradcheck(as_module(prog), eps=eps, tol=tol, samples=samples or 10**9, seed=seed,
                     data=feeds, params={k: np.asarray(v, dtype=float)
                                         for k, v in params.items()})
    assert all(r.ok for r in rows), "\n" + format_table(rows)
    return {r.name: r.max_rel for r in rows}


def away_from_kinks(prog, feeds, params, margin=1e-3):
    return kink_distance(prog, feeds, params) > margin
