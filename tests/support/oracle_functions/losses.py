"""The oracle's losses: mse, sse, least_squares, cross_entropy, softmax_cross_entropy (labels
or one-hot targets; a padding id ignored by torch's F.cross_entropy) and
sigmoid_cross_entropy."""

from __future__ import annotations

import math

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import DT, OracleError, tensor


def _squares(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["y", "t"])
    y, t = tensor(o.expr(b["y"], env)), tensor(o.expr(b["t"], env))
    sq = (y - t) ** 2
    return {"mse": lambda: sq.mean(), "sse": lambda: 0.5 * sq.sum(),
            "least_squares": lambda: sq.sum()}[f]()


def _cross_entropy(o, e: ast.Call, env):
    b = o.bind(e, ["p", "t"])
    p, t = tensor(o.expr(b["p"], env)), tensor(o.expr(b["t"], env))
    n = math.prod(p.shape[:-1]) if p.ndim else 1
    return -(t * torch.log(p)).sum() / n


def _softmax_cross_entropy(o, e: ast.Call, env):
    b = o.bind(e, ["logits", "t", "ignore"], {"ignore": None})
    z, t = tensor(o.expr(b["logits"], env)), tensor(o.expr(b["t"], env))
    if b["ignore"] is not None:  # torch's own: F.cross_entropy(ignore_index=), summed
        ignore, labels = int(o.const(b["ignore"])), t.detach().long()
        total = torch.nn.functional.cross_entropy(
            z.reshape(-1, z.shape[-1]), labels.reshape(-1), ignore_index=ignore,
            reduction="sum")
        return total / max(int((labels != ignore).sum()), 1)  # all ignored: 0, not NaN
    if z.ndim == 0:
        raise OracleError("softmax_cross_entropy of a scalar")
    n = math.prod(z.shape[:-1])
    logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
    if t.ndim == z.ndim - 1:  # integer labels
        idx = t.detach().round().long()
        if not torch.equal(idx.to(DT), t.detach().to(DT)):
            raise OracleError("labels must be whole numbers")
        return -torch.gather(logp, -1, idx[..., None]).sum() / n
    if tuple(t.shape) != tuple(z.shape):
        raise OracleError("one-hot targets must have the logits' shape")
    return -(t * logp).sum() / n


def _sigmoid_cross_entropy(o, e: ast.Call, env):
    b = o.bind(e, ["logits", "t"])
    z, t = tensor(o.expr(b["logits"], env)), tensor(o.expr(b["t"], env))
    n = z.shape[0] if z.ndim else 1
    return (torch.logaddexp(z, torch.zeros_like(z)) - t * z).sum() / n


FUNCTIONS = {
    "mse": _squares,
    "sse": _squares,
    "least_squares": _squares,
    "cross_entropy": _cross_entropy,
    "softmax_cross_entropy": _softmax_cross_entropy,
    "sigmoid_cross_entropy": _sigmoid_cross_entropy,
}
