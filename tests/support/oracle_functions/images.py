"""The oracle's image functions: conv2d, max_pool (ties split evenly), avg_pool, flatten."""

from __future__ import annotations

import math

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import OracleError, tensor


def _window(o, b, key, default):
    """A window setting as LANGUAGE.md writes it: a number, or [rows, columns]."""
    if key not in b or (isinstance(b[key], ast.Name) and b[key].id == "none"):
        return default
    value = o.const(b[key])
    return tuple(int(v) for v in value) if isinstance(value, list) else (int(value),) * 2


def _conv2d(o, e: ast.Call, env):
    b = o.bind(e, ["x", "W", "stride", "pad"])
    x, w = tensor(o.expr(b["x"], env)), tensor(o.expr(b["W"], env))
    return torch.nn.functional.conv2d(x, w, stride=_window(o, b, "stride", (1, 1)),
                                      padding=_window(o, b, "pad", (0, 0)))


def _pool(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["x", "size", "stride", "pad"])
    x = tensor(o.expr(b["x"], env))
    size = _window(o, b, "size", None)
    stride = _window(o, b, "stride", size)
    (kh, kw), (sh, sw) = size, stride
    ph, pw = _window(o, b, "pad", (0, 0))
    lead = x.shape[:-2]
    images = x.reshape(-1, 1, *x.shape[-2:])  # the last two axes are pooled
    # Padding as LANGUAGE.md says: -inf around the image for max (a pad is never
    # the maximum), zeros for the mean (counted in it, as torch's default). The rows
    # and columns past the last window are left out (torch's rule, floor).
    images = torch.nn.functional.pad(images, (pw, pw, ph, ph),
                                     value=-math.inf if f == "max_pool" else 0.0)
    if f == "max_pool":
        # The maximum of each window with torch.amax, which splits the gradient
        # evenly among tied maxima (LANGUAGE.md's convention; torch's max_pool2d
        # gives it to one of them); overlapping windows add through unfold.
        windows = images.unfold(2, kh, sh).unfold(3, kw, sw)
        flat = windows.reshape(*windows.shape[:4], -1)
        if flat.shape[-1] >= 2:
            top2 = torch.topk(flat.detach(), 2, dim=-1).values
            o.note_kink(top2[..., 0] - top2[..., 1])
        out = torch.amax(flat, dim=-1)
        check = torch.nn.functional.max_pool2d(images.detach(), size, stride)
        if not torch.equal(out.detach(), check):
            raise OracleError("max_pool: amax over windows != torch's max_pool2d")
    else:
        out = torch.nn.functional.avg_pool2d(images, size, stride)
    return out.reshape(*lead, *out.shape[-2:])


def _flatten(o, e: ast.Call, env):
    x = tensor(o.expr(e.args[0], env))
    return x.reshape(x.shape[0], -1)


FUNCTIONS = {
    "conv2d": _conv2d,
    "max_pool": _pool,
    "avg_pool": _pool,
    "flatten": _flatten,
}
