"""Central finite differences against the derived gradient, through the IR evaluator."""

import numpy as np

from compiler.evaluate import evaluate, kink_distance


def check(prog, feeds, params, eps=1e-6, samples=None, rng=None):
    """Max relative error per differentiated variable; raises AssertionError on a mismatch."""
    grads = evaluate(prog, feeds, params, names=list(prog.grads.values()))
    feeds = {**{k: np.asarray(v, dtype=float) for k, v in prog.defaults.items()}, **feeds}
    values = {**feeds, **params}
    rng = rng or np.random.default_rng(0)

    def loss_at(name, arr):
        f = dict(feeds)
        p = dict(params)
        (p if name in params else f)[name] = arr
        return float(evaluate(prog, f, p, names=[prog.loss])[prog.loss])

    errors = {}
    for name in prog.wrt:
        base = np.array(values[name], dtype=float)
        g = np.asarray(grads[prog.grads[name]], dtype=float)
        assert g.shape == base.shape, (name, g.shape, base.shape)
        idx = list(np.ndindex(base.shape))
        if samples is not None and len(idx) > samples:
            idx = [idx[i] for i in rng.choice(len(idx), samples, replace=False)]
        worst = 0.0
        for i in idx:
            plus, minus = base.copy(), base.copy()
            plus[i] += eps
            minus[i] -= eps
            numeric = (loss_at(name, plus) - loss_at(name, minus)) / (2 * eps)
            analytic = g[i]
            err = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-2)
            worst = max(worst, err)
        errors[name] = worst
    return errors


def away_from_kinks(prog, feeds, params, margin=1e-3):
    return kink_distance(prog, feeds, params) > margin
