"""The oracle's attention functions: attention with torch's own
``F.scaled_dot_product_attention`` (its boolean mask: True where a key is seen), or,
with dropout on the weights in training, written directly in torch with the module's
masks; the heads split and merged with torch's reshape and transpose."""

from __future__ import annotations

import math

import torch

from bpc.compiler.frontend import ast
from oracle_functions.modes import _dropout_mask
from oracle_functions.tensors import OracleError, tensor


def _flag(o, e) -> bool:
    if isinstance(e, ast.Name) and e.id in ("true", "false"):
        return e.id == "true"
    return bool(o.const(e))


def _seen(o, b, env, q, k):
    """Which keys each query sees (booleans broadcast to the scores), or None for all."""
    seen = None
    if "mask" in b:
        seen = tensor(o.expr(b["mask"], env)) != 0
    if "keys" in b:
        keys = tensor(o.expr(b["keys"], env)) != 0
        if tuple(keys.shape) != (q.shape[0], k.shape[-2]):
            raise OracleError(f"keys mask of shape {tuple(keys.shape)}")
        keys = keys.reshape((keys.shape[0],) + (1,) * (q.ndim - 2) + (keys.shape[1],))
        seen = keys if seen is None else seen & keys
    if "causal" in b and _flag(o, b["causal"]):
        tri = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        seen = tri if seen is None else seen & tri
    return seen


def _attention(o, e: ast.Call, env):
    b = o.bind(e, ["q", "k", "v", "mask", "keys", "causal", "dropout"])
    q, k, v = (tensor(o.expr(b[n], env)) for n in "qkv")
    seen = _seen(o, b, env, q, k)
    p = float(o.const(b["dropout"])) if "dropout" in b else 0.0
    if p == 0:
        if seen is not None and not seen.any(-1).all():
            raise OracleError("a query that sees no key: torch gives NaN")
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=seen)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if seen is not None:
        scores = scores.masked_fill(~seen, float("-inf"))
    weights = torch.softmax(scores, -1)
    return _dropout_mask(o, weights, p) @ v


def _split_heads(o, e: ast.Call, env):
    b = o.bind(e, ["x", "heads"])
    x, heads = tensor(o.expr(b["x"], env)), int(o.const(b["heads"]))
    return x.reshape(tuple(x.shape[:-1]) + (heads, x.shape[-1] // heads)).transpose(-2, -3)


def _merge_heads(o, e: ast.Call, env):
    x = tensor(o.expr(o.bind(e, ["x"])["x"], env)).transpose(-2, -3)
    return x.reshape(tuple(x.shape[:-2]) + (x.shape[-2] * x.shape[-1],))


FUNCTIONS = {"attention": _attention, "split_heads": _split_heads,
             "merge_heads": _merge_heads}
