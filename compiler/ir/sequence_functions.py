"""The spec language's functions for sequence models (LANGUAGE.md §5): layer norm, pooling
over time (each lowered to primitives step by step so the derivation shows them) and
positional encodings.

``functions.FUNCTIONS`` takes this table in; the lowering conventions (``Function``, the
builder's named steps) are functions.py's.
"""

from __future__ import annotations

import numpy as np

from . import ShapeError, fmt_shape
from .functions import Function, _eps_in_dtype, _fn, _located, _normalized, _setting
from .ops.positions import length
from ..vocab import sig, whole_number

LAYER_NORM_EPS = 1e-5  # PyTorch's nn.LayerNorm default


def _layer_norm(b, a, s):
    """Layer normalization (Ba et al. 2016): each row normalized over its last axis (the
    features of one example, or of one time step of [N, T, D]), then scaled and shifted
    per feature. Step by step, as batch_norm, so the backward pass goes back through each:
    mu = mean(x, -1), xc = x - mu, var = mean(xc^2, -1), std = sqrt(var + eps),
    xn = xc / std, out = gamma * xn + beta. No state: both modes compute the same."""
    x, gamma, beta, eps = a["x"], a["gamma"], a["beta"], s["eps"]
    default = f"the default is eps={LAYER_NORM_EPS}"
    _setting("layer_norm", "eps", eps, lambda v: 0 < v <= 1, "above 0 and at most 1", default)
    _eps_in_dtype(b, "layer_norm", eps, "row", default)
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
    _, _, xn = _normalized(b, x, (len(x.shape) - 1,), True, eps)
    return b.op("add", b.op("mul", gamma, xn), beta)


def _mask_over(b, x, m, axis, name: str):
    """The pooled axis, and the mask ``m`` ([N, T], lined up with x's axes up to it) with
    x's later axes added (``[N, T, 1]``), so it broadcasts against x."""
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(x.shape) <= axis \
            < len(x.shape):
        raise _located(f"{name}'s axis must be one of x's axes (a whole number), not "
                       f"{axis!r}", (x, m), 0, hint="axis=1: over T of [N, T, D]")
    axis %= len(x.shape)
    if len(x.shape) < 2 or axis == 0:
        raise _located(f"{name} pools axis {axis} of a value with axes before it ([N, T, D] "
                       f"over T is axis=1)", (x, m), 0)
    if m.shape != x.shape[:axis + 1]:
        raise _located(f"{name}'s mask marks the real steps of each sequence, so it must be "
                       f"{fmt_shape(x.shape[:axis + 1])} (x's axes up to the pooled one)",
                       (x, m), 1, hint="a padding mask of 0s and 1s, 1 at a real step")
    later = tuple(range(axis + 1, len(x.shape)))
    return axis, b.op("expand_dims", m, axis=later) if later else m


def _real_steps(b, keep, axis: int):
    """How many real steps each sequence has ([N, 1] for [N, T, D]: the mask's later axes
    are kept, lined up with the pooled value), as numbers of the model's dtype."""
    return b.step(b.op("sum", b.op("mul", keep, b.const(1.0)), axis=(axis,),
                       keepdims=False), "count")


def _masked_mean(b, a, s):
    """The mean over the real steps: sum(x * mask) / count, count the mask's sum. A
    sequence without a real step has the mean 0 (its count is taken as 1), never NaN."""
    x = a["x"]
    axis, keep = _mask_over(b, x, a["m"], s["axis"], "masked_mean")
    keep = b.step(keep, "keep")
    total = b.op("sum", b.op("mul", x, keep), axis=(axis,), keepdims=False)
    count = _real_steps(b, keep, axis)
    return b.op("div", total, b.op("maximum", count, b.const(1)))


def _masked_max(b, a, s):
    """The maximum over the real steps: each padded step is replaced by the dtype's lowest
    number first, so it is never the maximum and gets no gradient. A sequence without a
    real step has the maximum 0, never -inf."""
    x = a["x"]
    axis, keep = _mask_over(b, x, a["m"], s["axis"], "masked_max")
    keep = b.step(keep, "keep")
    lowest = b.const(float(np.finfo(b.dtype).min))
    real = b.op("gt", keep, b.const(0))  # a condition torch.where takes too
    filled = b.step(b.op("where", real, x, lowest), "filled")
    top = b.op("max", filled, axis=(axis,), keepdims=False)
    some = b.op("gt", _real_steps(b, keep, axis), b.const(0))
    return b.op("where", some, top, b.const(0))


def _steps(b, n, name: str, at: int):
    """A number of steps (argument ``at``): a whole number, a dimension such as T (a
    count), or a sequence [N, T, ...] whose axis 1 gives it."""
    if n.is_array:
        if len(n.shape) < 2:
            raise ShapeError(f"{name} takes the number of steps from a sequence [N, T, ...], "
                             f"but this value is {fmt_shape(n.shape)}", (at,),
                             hint="give the number of steps itself, e.g. T")
        return b.count(n, (1,))
    try:
        length(n)  # a whole number or a dimension
    except ShapeError as e:
        raise ShapeError(f"{name}: {e.message}", (at,), hint="e.g. T, or 64") from None
    return n


def _sinusoidal(b, a, s):
    """Vaswani et al.'s sinusoidal positional encodings, [T, D]: a constant table the
    module computes from the data's T (no parameter, no gradient)."""
    n, d = a["n"], s["d"]
    if n.is_array and d is None:  # sinusoidal(x): the table for the sequence x
        d = n.shape[-1] if len(n.shape) >= 2 else None
        if not isinstance(d, int):
            raise ShapeError("sinusoidal(x) takes the width from the last axis of x, which "
                             "must be a number", (0,), hint="or write sinusoidal(T, D)")
    if d is None:
        raise ShapeError("sinusoidal(T, D) needs the table's width D", (),
                         hint="e.g. sinusoidal(T, 16), or sinusoidal(x) for a sequence x")
    width = whole_number(d)
    if width is None or width < 1:
        raise ShapeError(f"sinusoidal's width D must be a whole number >= 1, not {d!r}", (),
                         hint="e.g. sinusoidal(T, 16): a [T, 16] table")
    return b.op("sinusoidal", _steps(b, n, "sinusoidal", 0), dim=width)


def _first_rows(b, a, s):
    """A learned table of positions [T_max, D], its first T rows: T the data's."""
    table = a["table"]
    if len(table.shape) < 1 or not isinstance(table.shape[0], int):
        raise _located("first_rows takes the rows of a table of positions [T_max, D] with a "
                       "fixed number of rows", (table, a["n"]), 0)
    return b.op("first_rows", table, _steps(b, a["n"], "first_rows", 1))


FUNCTIONS: dict[str, Function] = {
    "layer_norm": _fn(sig("x", "gamma", "beta", ("eps", LAYER_NORM_EPS)), _layer_norm,
                      static=("eps",)),
    "masked_mean": _fn(sig("x", "m", ("axis", 1)), _masked_mean, static=("axis",)),
    "masked_max": _fn(sig("x", "m", ("axis", 1)), _masked_max, static=("axis",)),
    "sinusoidal": _fn(sig("n", ("d", None)), _sinusoidal, static=("d",)),
    "first_rows": _fn(sig("table", "n"), _first_rows),
}
