"""The oracle's linear algebra, indexing, reductions and shapes: ``@``, ``x[...]``, sum, mean,
max (ties split evenly), logsumexp, softmax, transpose, reshape, concat, stack and embed."""

from __future__ import annotations

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import OracleError, reverse_axes, tensor


def matmul(a, b):
    a, b = tensor(a), tensor(b)
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        raise OracleError("'@' takes 1-D and 2-D operands")
    return torch.matmul(a, b)


def index(o, e: ast.Index, env):
    """``x[...]`` with NumPy's meaning: an integer drops its axis (negative from the
    end); a slice keeps the positions Python's ``range(size)[start:stop:step]``
    keeps (torch slicing has no negative steps, so positions are gathered)."""
    x = tensor(o.expr(e.value, env))
    if len(e.items) > x.ndim:
        raise OracleError("too many indices")
    axis = 0
    for item in e.items:
        if isinstance(item, ast.Slice):
            parts = [None if p is None else int(o.const(p))
                     for p in (item.start, item.stop, item.step)]
            keep = list(range(x.shape[axis])[slice(*parts)])
            if not keep:
                raise OracleError("an empty slice")
            x = torch.index_select(x, axis, torch.tensor(keep, dtype=torch.long))
            axis += 1
        else:
            k = int(o.const(item))
            if not -x.shape[axis] <= k < x.shape[axis]:
                raise OracleError(f"index {k} out of range")
            x = x.select(axis, k)
    return x


def _reduce(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["x", "axis", "keepdims"])
    x = tensor(o.expr(b["x"], env))
    axes = o.axes(x, b.get("axis"))
    keep = o.flag(b.get("keepdims"))
    dims = tuple(range(x.ndim)) if axes is None else axes
    if f == "sum":
        return x.sum(dim=dims, keepdim=keep) if dims else x.clone()
    if f == "mean":
        return x.mean(dim=dims, keepdim=keep) if dims else x.clone()
    if f == "max":
        if not dims:
            return x.clone()
        _note_top_gap(o, x, dims)
        return torch.amax(x, dim=dims, keepdim=keep)  # ties: split evenly
    return torch.logsumexp(x, dim=dims, keepdim=keep) if dims else x.clone()


def _softmax(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["x", "axis"])
    x = tensor(o.expr(b["x"], env))
    axes = o.axes(x, b.get("axis", ast.Num(e.span, -1, "-1")))
    if len(axes) != 1:
        # a list of axes: normalise over all of them together
        lse = torch.logsumexp(x, dim=axes, keepdim=True)
        return torch.exp(x - lse) if f == "softmax" else x - lse
    fn = torch.softmax if f == "softmax" else torch.log_softmax
    return fn(x, dim=axes[0])


def _transpose(o, e: ast.Call, env):
    return reverse_axes(tensor(o.expr(e.args[0], env)))


def _reshape(o, e: ast.Call, env):
    b = o.bind(e, ["x", "shape"])
    x = tensor(o.expr(b["x"], env))
    s = b["shape"]
    if not isinstance(s, ast.Matrix) or len(s.rows) > 1:
        raise OracleError("reshape's shape must be one list of dimensions")
    items = s.rows[0] if s.rows else []  # '[]': a scalar
    dims = []
    for item in items:
        if isinstance(item, ast.Name) and item.id not in o.constants:
            if item.id not in o.symbols:
                raise OracleError(f"unknown dimension {item.id}")
            dims.append(o.symbols[item.id])
        else:
            dims.append(int(o.const(item)))
    return x.reshape(dims)


def _concat_stack(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["xs", "axis"])
    xs = b["xs"]
    if not isinstance(xs, ast.Matrix) or len(xs.rows) != 1:
        raise OracleError(f"{f} takes a list [a, b, ...]")
    parts = [tensor(o.expr(x, env)) for x in xs.rows[0]]
    axis = int(o.const(b["axis"])) if "axis" in b else 0
    return torch.cat(parts, dim=axis) if f == "concat" else torch.stack(parts, dim=axis)



def _note_top_gap(o, x, dims):
    """How close each maximum is to its runner-up (a tie is max's kink)."""
    x = x.detach()
    rest = [i for i in range(x.ndim) if i not in dims]
    y = x.permute(*rest, *dims).reshape(*[x.shape[i] for i in rest], -1)
    if y.shape[-1] < 2:
        return
    top2 = torch.topk(y, 2, dim=-1).values
    o.note_kink(top2[..., 0] - top2[..., 1])


def _embed(o, e: ast.Call, env):
    """embed(ids, E): torch's nn.Embedding lookup, F.embedding."""
    b = o.bind(e, ["ids", "E"])
    ids, table = o.expr(b["ids"], env), tensor(o.expr(b["E"], env))
    if ids.dtype != torch.long:
        raise OracleError("embed's ids must be integers")
    return torch.nn.functional.embedding(ids, table)


FUNCTIONS = {
    "embed": _embed,
    "sum": _reduce,
    "mean": _reduce,
    "max": _reduce,
    "logsumexp": _reduce,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "transpose": _transpose,
    "reshape": _reshape,
    "concat": _concat_stack,
    "stack": _concat_stack,
}
