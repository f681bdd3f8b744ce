"""Batch and layer normalization's fused scales: the fast style's closed-form backwards.

The textbook style differentiates batch norm through its steps (``mu, xc, var, std,
xn``: the book's computational graph, 11 elementwise passes over the batch and 4 sums per
layer). The fast style (``passes/fast_forms.py``) writes the scale ``gamma * xn`` as
``batch_norm_scale(x, gamma, std, xn)``, whose rule is the closed form: the adjoint goes
straight to ``x``, none through the steps, in 5 passes and 2 sums (gamma's and beta's
gradients among them). Layer norm's ``layer_norm_scale`` is the same over the last axis,
where gamma varies along the normalized axis and so enters the sums.
"""

from __future__ import annotations

import numpy as np

from .. import ShapeError
from .core import MUL, defop, derived, ex, expand, paren


def _scale_shape(args, attrs):
    x, gamma, std, xn = args
    if xn.shape != x.shape or gamma.shape not in ((), std.shape):
        raise ShapeError("batch_norm_scale takes x, gamma (per feature or a scalar), the "
                         "per-feature std and xn of x's shape", (0, 1, 2, 3))
    return x.shape


def _scale_emit(a, attrs, node):
    return f"{paren(a[1], MUL)} * {paren(a[3], MUL + 1)}", MUL


def _per_feature(b, total, frame):
    """A sum over the batch axes ([C]) lined up with the features of x: ``frame``."""
    return total if total.shape == frame else b.op("reshape", total, shape=frame)


def _scale_vjp(b, n, g):
    """out = gamma * xn with xn = (x - mean(x)) / sqrt(var(x) + eps) over the batch axes:
    dx = gamma / std * (g - (sum(g) + xn * sum(g xn)) / N), the textbook's result once
    its steps are summed up; nothing flows back through std and xn (the rule covers
    them), so the forward keeps only xn and std."""
    x, gamma, std, xn = n.args
    axes, frame = n.attr("axis"), std.shape
    g = expand(b, g, n)  # a lazily broadcast adjoint (sum(h)'s): the sums need its axes
    count = b.count(x, axes)
    s1 = _per_feature(b, b.op("sum", g, axis=axes, keepdims=False), frame)
    s2 = _per_feature(b, b.op("sum", b.op("mul", xn, g), axis=axes, keepdims=False), frame)
    # What the normalization takes out of g: its mean, and its part along xn.
    centred = b.hint(b.op("add", b.op("div", s1, count),
                          b.op("mul", xn, b.op("div", s2, count))), "grad_mean")
    dx = b.op("mul", b.op("div", gamma, std), b.op("sub", g, centred))
    dgamma = s2 if gamma.shape == frame else b.op("sum", s2, axis=None, keepdims=False)
    return [dx, dgamma, None, None]


def steps(b, x, axes, frame, eps):
    """std and xn of x over ``axes``, as batch_norm computes them (for the examples)."""
    xc = b.op("sub", x, _per_feature(b, b.op("mean", x, axis=axes, keepdims=False), frame))
    var = b.op("mean", b.op("pow", xc, b.const(2)), axis=axes, keepdims=False)
    std = _per_feature(b, b.op("sqrt", b.op("add", var, b.const(eps))), frame)
    return std, b.op("div", xc, std)


def _example(shape, axes, frame, gamma):
    """x of ``shape``, gamma, and std and xn derived from x, as batch_norm builds them."""
    std = derived(lambda b, new, x, gamma: steps(b, x, axes, frame, 1e-6)[0])
    xn = derived(lambda b, new, x, gamma, std: steps(b, x, axes, frame, 1e-6)[1])
    return ex(shape, gamma, std, xn, axis=axes)


def _evaluate(v, a):
    return np.asarray(v[1]) * v[3]


defop("batch_norm_scale", arity=4, shape=_scale_shape, emit=_scale_emit, torch=_scale_emit,
      evaluate=_evaluate,
      vjp=_scale_vjp,
      unprinted=(0, 2),  # x and std are read by the rule only
      rule="batch norm's closed form: dx = gamma / std * (g - (sum(g) + xn sum(g xn)) / N)",
      examples=(_example((5, 3), (0,), (3,), (3,)),
                _example((4, 2, 3, 3), (0, 2, 3), (2, 1, 1), (2, 1, 1)),
                _example((5, 3), (0,), (3,), ())))


# ----------------------------------------------------------------------------- layer norm
def _layer_scale_shape(args, attrs):
    x, gamma, std, xn = args
    if xn.shape != x.shape or std.shape != x.shape[:-1] + (1,) \
            or gamma.shape not in ((), x.shape[-1:]):
        raise ShapeError("layer_norm_scale takes x, gamma (per feature or a scalar), the "
                         "per-row std (x's shape, last axis 1) and xn of x's shape",
                         (0, 1, 2, 3))
    return x.shape


def _layer_scale_vjp(b, n, g):
    """out = gamma * xn with xn = (x - mean(x)) / sqrt(var(x) + eps) over the last axis:
    with gg = gamma * g, dx = (gg - mean(gg) - xn * mean(gg xn)) / std, means over the
    last axis (the textbook's steps summed up); dgamma = sum(g xn) over the other axes."""
    x, gamma, std, xn = n.args
    last = (len(x.shape) - 1,)
    g = expand(b, g, n)
    gg = b.hint(b.op("mul", gamma, g), "grad_scaled")

    def mean(v):
        return b.op("mean", v, axis=last, keepdims=True)

    centred = b.hint(b.op("add", mean(gg), b.op("mul", xn, mean(b.op("mul", gg, xn)))),
                     "grad_mean")
    dx = b.op("div", b.op("sub", gg, centred), std)
    product = b.op("mul", g, xn)
    leading = tuple(range(len(x.shape) - 1))
    dgamma = b.op("sum", product, axis=leading if gamma.shape else None, keepdims=False)
    return [dx, dgamma, None, None]


def _layer_example(shape, gamma):
    """x of ``shape``, gamma, and std and xn over the last axis, as layer_norm builds them."""
    def parts(b, x):
        last = (len(shape) - 1,)
        xc = b.op("sub", x, b.op("mean", x, axis=last, keepdims=True))
        var = b.op("mean", b.op("pow", xc, b.const(2)), axis=last, keepdims=True)
        std = b.op("sqrt", b.op("add", var, b.const(1e-5)))
        return std, b.op("div", xc, std)

    std = derived(lambda b, new, x, gamma: parts(b, x)[0])
    xn = derived(lambda b, new, x, gamma, std: parts(b, x)[1])
    return ex(shape, gamma, std, xn)


defop("layer_norm_scale", arity=4, shape=_layer_scale_shape, emit=_scale_emit,
      torch=_scale_emit, evaluate=_evaluate,
      vjp=_layer_scale_vjp,
      unprinted=(0, 2),  # x and std are read by the rule only
      rule="layer norm's closed form: dx = (gg - mean(gg) - xn mean(gg xn)) / std, "
           "gg = gamma g",
      examples=(_layer_example((4, 3), (3,)), _layer_example((2, 3, 4), (4,)),
                _layer_example((3, 5), ())))
