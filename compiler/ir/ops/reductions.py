"""Reductions over axes (``sum``, ``mean``, ``max``, ``logsumexp``), the ``count`` of
elements a reduction combines, and ``softmax``, which normalises along an axis (and
``masked_softmax``, over the positions a mask keeps)."""

from __future__ import annotations

import numpy as np

from . import kernels
from .. import ShapeError
from .core import (ATOM, MUL, POSTFIX, as_float, broadcast_shapes, defop, ex, keep_axes, mask,
                   no_gradient, paren, reduce_call, reduce_into, reduction, same, scalar,
                   top_gap, treduce, treduce_into)


def _sum_vjp(b, n, g):
    return [keep_axes(b, g, n)]


def _mean_vjp(b, n, g):
    x = n.args[0]
    return [keep_axes(b, b.op("div", g, b.count(x, n.attr("axis"))), n)]


def _max_vjp(b, n, g):
    """The adjoint is split evenly among tied maximal elements (as PyTorch's amax and
    JAX do), so the gradient's total stays g whatever the number of ties."""
    x = n.args[0]
    mask = b.op("cast", b.op("eq", x, keep_axes(b, n, n)))
    ties = b.op("sum", mask, axis=n.attr("axis"), keepdims=n.attr("axis") is not None)
    return [b.op("mul", b.op("div", mask, ties), keep_axes(b, g, n))]


def _logsumexp_vjp(b, n, g):
    x = n.args[0]
    return [b.op("mul", b.op("exp", b.op("sub", x, keep_axes(b, n, n))), keep_axes(b, g, n))]


reduction("sum", numpy="np.sum", torch_fn="torch.sum", evaluate=np.sum,
          vjp=_sum_vjp,
          rule="d sum(x) = sum(dx): the adjoint is copied to every element",
          out_form=reduce_into("np.sum"), torch_out=treduce_into("torch.sum"))

reduction("mean", numpy="np.mean", torch_fn="torch.mean", evaluate=np.mean,
          vjp=_mean_vjp,
          rule="d mean(x) = mean(dx): the adjoint / count to every element",
          out_form=reduce_into("np.mean"), torch_out=treduce_into("torch.mean"))

reduction("max", numpy="np.max", torch_fn="torch.amax", evaluate=np.max,
          vjp=_max_vjp,
          rule="d max(x) flows to the maximal element, split evenly among ties",
          kink=lambda v, a: top_gap(v[0], a.get("axis")))

reduction("logsumexp", numpy="_logsumexp", torch_fn="torch.logsumexp",
          torch=treduce("torch.logsumexp", always_dims=True),  # it takes no dim=None
          evaluate=kernels._logsumexp,
          vjp=_logsumexp_vjp,
          fast=(("emit", reduce_call("_logsumexp_shifted")),
                ("helpers", ("_logsumexp_shifted",))),
          rule="d logsumexp(x) = softmax(x) . dx")


# ----------------------------------------------------------------------------- count
def _emit_count(a, attrs, n):
    base, axes = paren(a[0], POSTFIX), attrs.get("axis")
    if axes is None:
        return f"{base}.size", POSTFIX
    parts = [f"{base}.shape[{i}]" for i in axes]
    return (parts[0], POSTFIX) if len(parts) == 1 else (" * ".join(parts), MUL)


def _torch_count(a, attrs, n):
    """A count on torch: a tensor's ``numel()`` for every axis; a Python number is one."""
    if n.args[0].weak:
        return "1", ATOM
    if attrs.get("axis") is None:
        return f"{paren(a[0], POSTFIX)}.numel()", POSTFIX
    return _emit_count(a, attrs, n)


def _eval_count(v, a):
    axes = a["axis"] if a.get("axis") is not None else range(np.ndim(v[0]))
    return np.asarray(np.prod([np.shape(v[0])[i] for i in axes]) * 1.0)


defop("count", arity=1, shape=scalar, emit=_emit_count, torch=_torch_count,
      evaluate=_eval_count,
      vjp=no_gradient,
      rule="a count does not depend on the values",
      dtype="int", cheap=True,
      examples=(ex((2, 3)), ex((2, 3), axis=(1,)), ex((2, 3, 4), axis=(0, 2))))


# ----------------------------------------------------------------------------- softmax
def _softmax_vjp(b, n, g):
    axis = n.attr("axis")
    inner = b.op("sum", b.op("mul", g, n), axis=axis, keepdims=True)
    return [b.op("mul", n, b.op("sub", g, inner))]


defop("softmax", arity=1, shape=same, emit=reduce_call("_softmax"), helpers=("_softmax",),
      torch=lambda a, attrs, n: (f"torch.softmax({as_float(a[0], n.args[0])[0]}, "
                                 f"dim={attrs['axis'][0]})", POSTFIX),
      evaluate=lambda v, a: kernels._softmax(v[0], a["axis"]),
      vjp=_softmax_vjp,
      rule="softmax's Jacobian-vector product from its output p: p (g - sum(g p))",
      examples=(ex((2, 3), axis=(1,)), ex((2, 3), axis=(0,)), ex((3,), axis=(0,))))


def _masked_shape(args, attrs):
    x, m = args[0].shape, args[1].shape
    try:
        fits = broadcast_shapes(x, m) == x
    except ShapeError:
        fits = False
    if not fits:
        raise ShapeError("softmax's mask must broadcast to the scores' shape",
                         hint="a causal mask is [T, T]; a padding mask [N, T] over "
                              "[N, H, T, T] scores is reshape(m, [N, 1, 1, T])")
    return x


def _emit_masked(fn: str):
    def emit(a, attrs, n):
        return f"{fn}({a[0][0]}, {a[1][0]}, axis={attrs['axis'][0]})", POSTFIX
    return emit


defop("masked_softmax", arity=2, shape=_masked_shape, emit=_emit_masked("_masked_softmax"),
      helpers=("_masked_softmax",),
      torch=lambda a, attrs, n: _emit_masked("_masked_softmax")(
          [as_float(a[0], n.args[0]), a[1]], attrs, n),
      torch_helpers=("_masked_softmax",),
      evaluate=lambda v, a: kernels._masked_softmax(v[0], v[1], a["axis"][0]),
      vjp=lambda b, n, g: _softmax_vjp(b, n, g) + [None],
      rule="softmax's Jacobian-vector product from its output p, which is 0 where masked: "
           "p (g - sum(g p))",
      examples=(ex((2, 3, 3), mask((3, 3)), axis=(2,)), ex((2, 3), mask((2, 3)), axis=(1,)),
                ex((2, 2, 3, 3), mask((2, 1, 1, 3)), axis=(3,))))
