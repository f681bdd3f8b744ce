"""The spec language's functions for sequence models (LANGUAGE.md §5): layer norm and
pooling over time, each lowered to primitives step by step so the derivation shows them.

``functions.FUNCTIONS`` takes this table in; the lowering conventions (``Function``, the
builder's named steps) are functions.py's.
"""

from __future__ import annotations

from . import ShapeError, fmt_shape
from .functions import FLOAT32_TINY, Function, _fn
from ..vocab import sig

LAYER_NORM_EPS = 1e-5  # PyTorch's nn.LayerNorm default


def _located(message: str, nodes, at: int, hint: str | None = None) -> ShapeError:
    """A shape error located on argument ``at`` of a call whose arguments are ``nodes``."""
    err = ShapeError(message, (at,), hint=hint)
    err.nodes, err.at = nodes, at
    return err


def _layer_norm(b, a, s):
    """Layer normalization (Ba et al. 2016): each row normalized over its last axis (the
    features of one example, or of one time step of [N, T, D]), then scaled and shifted
    per feature. Step by step, as batch_norm, so the backward pass goes back through each:
    mu = mean(x, -1), xc = x - mu, var = mean(xc^2, -1), std = sqrt(var + eps),
    xn = xc / std, out = gamma * xn + beta. No state: both modes compute the same."""
    x, gamma, beta, eps = a["x"], a["gamma"], a["beta"], s["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
        raise ShapeError(f"layer_norm's eps must be a number above 0 and at most 1, not "
                         f"{eps!r}", (), hint=f"the default is eps={LAYER_NORM_EPS}")
    if b.dtype == "float32" and eps < FLOAT32_TINY:
        raise ShapeError(f"layer_norm's eps {eps!r} is 0 in float32 (its smallest normal "
                         f"number is about 1.2e-38): a constant row would divide 0 by 0",
                         (), hint=f"the default is eps={LAYER_NORM_EPS}")
    nodes = (x, gamma, beta)
    if not x.shape:
        raise _located("layer_norm normalizes each row of a value over its last axis; a "
                       "scalar has none", nodes, 0)
    d = x.shape[-1]
    for k, key in ((1, "gamma"), (2, "beta")):
        if nodes[k].shape not in ((d,), ()):
            raise _located(f"layer_norm's {key} holds one number per feature (the last axis "
                           f"of x), so it must be {fmt_shape((d,))}", nodes, k,
                           hint=f"declare it with shape {fmt_shape((d,))} (or use a scalar "
                                "for every feature)")
    last = (len(x.shape) - 1,)

    def mean(v):
        return b.op("mean", v, axis=last, keepdims=True)

    mu = b.step(mean(x), "mu")
    xc = b.step(b.op("sub", x, mu), "xc")
    variance = b.step(mean(b.op("pow", xc, b.const(2))), "var")
    std = b.step(b.op("sqrt", b.op("add", variance, b.const(float(eps)))), "std")
    xn = b.step(b.op("div", xc, std), "xn")
    return b.op("add", b.op("mul", gamma, xn), beta)


FUNCTIONS: dict[str, Function] = {
    "layer_norm": _fn(sig("x", "gamma", "beta", ("eps", LAYER_NORM_EPS)), _layer_norm,
                      static=("eps",)),
}
