"""The oracle's functions for sequence models: layer_norm with torch's own
``F.layer_norm``."""

from __future__ import annotations

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import tensor


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


FUNCTIONS = {
    "layer_norm": _layer_norm,
}
