"""The oracle's functions for sequence models: layer_norm with torch's own
``F.layer_norm``; pooling over the real steps of padded sequences written directly in
torch (a padded step -inf for the maximum); positional encodings, Vaswani et al.'s table
computed from its formula element by element, a learned table's first rows."""

from __future__ import annotations

import math

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import OracleError, tensor


def _layer_norm(o, e: ast.Call, env):
    """layer_norm(x, gamma, beta, eps=1e-5): torch's ``F.layer_norm`` over the last axis
    (a scalar gamma or beta stands for every feature)."""
    b = o.bind(e, ["x", "gamma", "beta", "eps"])
    x = tensor(o.expr(b["x"], env))
    d = x.shape[-1]
    gamma, beta = (tensor(o.expr(b[k], env)) for k in ("gamma", "beta"))
    gamma, beta = ((v.expand(d) if v.ndim == 0 else v).contiguous() for v in (gamma, beta))
    eps = float(o.const(b["eps"])) if "eps" in b else 1e-5
    return torch.nn.functional.layer_norm(x, (d,), gamma, beta, eps=eps)


def _masked(o, e: ast.Call, env):
    """x, the mask with x's later axes added, and the pooled axis."""
    b = o.bind(e, ["x", "m", "axis"])
    x, m = tensor(o.expr(b["x"], env)), tensor(o.expr(b["m"], env))
    axis = int(o.const(b["axis"])) % x.ndim if "axis" in b else 1
    if tuple(m.shape) != tuple(x.shape[:axis + 1]):
        raise OracleError(f"mask of shape {tuple(m.shape)} for x of {tuple(x.shape)}")
    return x, m.reshape(tuple(m.shape) + (1,) * (x.ndim - axis - 1)), axis


def _masked_mean(o, e: ast.Call, env):
    """The mask-weighted sum over the axis divided by the mask's sum (at least 1)."""
    x, keep, axis = _masked(o, e, env)
    return (x * keep).sum(dim=axis) / torch.clamp(keep.sum(dim=axis), min=1)


def _masked_max(o, e: ast.Call, env):
    """amax over the steps where the mask is positive; 0 for a sequence with none."""
    x, keep, axis = _masked(o, e, env)
    top = torch.amax(torch.where(keep > 0, x, -torch.inf), dim=axis)
    return torch.where(keep.sum(dim=axis) > 0, top, torch.zeros((), dtype=x.dtype))


def _steps(o, e, env) -> int:
    """A number of steps: a number, a dimension such as T, or a sequence's axis 1."""
    if isinstance(e, ast.Name) and e.id not in env and e.id in o.symbols:
        return o.symbols[e.id]
    value = o.expr(e, env)
    return value.shape[1] if isinstance(value, torch.Tensor) and value.ndim >= 2 \
        else int(value)


def _sinusoidal(o, e: ast.Call, env):
    """PE(t, 2i) = sin(t / 10000^(2i / D)), PE(t, 2i + 1) = cos(the same), element by
    element; sinusoidal(x) takes T and D from the sequence x."""
    b = o.bind(e, ["n", "d"])
    steps = _steps(o, b["n"], env)
    width = int(o.const(b["d"])) if "d" in b else tensor(o.expr(b["n"], env)).shape[-1]
    rows = [[(math.sin if j % 2 == 0 else math.cos)(t / 10000 ** (2 * (j // 2) / width))
             for j in range(width)] for t in range(steps)]
    return torch.tensor(rows, dtype=torch.float64)


def _first_rows(o, e: ast.Call, env):
    b = o.bind(e, ["table", "n"])
    table, steps = tensor(o.expr(b["table"], env)), _steps(o, b["n"], env)
    if steps > table.shape[0]:
        raise OracleError(f"{steps} steps for a table of {table.shape[0]} positions")
    return table[:steps]


FUNCTIONS = {
    "layer_norm": _layer_norm,
    "masked_mean": _masked_mean,
    "masked_max": _masked_max,
    "sinusoidal": _sinusoidal,
    "first_rows": _first_rows,
}
