"""The oracle's functions with modes (torch_oracle's docstring says how): dropout, its masks
drawn from the oracle's generator, and batch_norm with its running statistics."""

from __future__ import annotations

import numpy as np
import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import DT, OracleError, tensor


def _dropout(o, e: ast.Call, env):
    b = o.bind(e, ["x", "p"])
    x = tensor(o.expr(b["x"], env))
    p = float(o.const(b["p"]))
    if not 0 <= p < 1:
        raise OracleError(f"dropout's p must be in [0, 1), not {p}")
    return _dropout_mask(o, x, p)


def _dropout_mask(o, x, p: float):
    """Inverted dropout of ``x`` in training, the identity in inference."""
    if not o.train:
        return x
    # inverted dropout with the module's mask: the next draw of the generator
    # (every site draws, in spec order, whatever its p and whether or not the
    # loss reads it)
    keep = o.mask_rng.random(tuple(x.shape)) >= p
    o.masks += 1
    return x * torch.tensor(keep, dtype=DT) / (1 - p)


def _batch_norm(o, e: ast.Call, env):
    """batch_norm(x, gamma, beta, mean, var, momentum=0.9, eps=1e-6) with torch's own
    ``batch_norm``: statistics per feature (axis 1) over every other axis."""
    b = o.bind(e, ["x", "gamma", "beta", "mean", "var", "momentum", "eps"])
    x = tensor(o.expr(b["x"], env))
    if x.ndim not in (2, 4):
        raise OracleError(f"batch_norm of rank {x.ndim}")
    c = x.shape[1]
    gamma, beta = (tensor(o.expr(b[k], env)) for k in ("gamma", "beta"))
    # A scalar applies to every feature. contiguous(): torch's CPU batch_norm backward
    # misreads a weight of stride 0 (an expand()ed scalar): garbage gradients.
    gamma = (gamma.expand(c) if gamma.ndim == 0 else gamma).contiguous()
    beta = (beta.expand(c) if beta.ndim == 0 else beta).contiguous()
    names = []
    for k in ("mean", "var"):
        if not isinstance(b[k], ast.Name) or b[k].id not in o.d.states:
            raise OracleError(f"batch_norm's {k} is not a state")
        names.append(b[k].id)
    momentum = float(o.const(b["momentum"])) if "momentum" in b else 0.9
    eps = float(o.const(b["eps"])) if "eps" in b else 1e-6
    for n in names:
        if n not in o.state_in:  # sized by the value flowing in: [C]
            o.state_in[n] = np.broadcast_to(
                np.asarray(o.state_init[n][1], dtype=float), (c,))
            o.state_out[n] = np.array(o.state_in[n], dtype=np.float64)
    running = [torch.tensor(np.asarray(o.state_in[n], dtype=np.float64), dtype=DT)
               for n in names]
    for n, r in zip(names, running):
        if tuple(r.shape) != (c,):
            raise OracleError(f"state '{n}' has shape {tuple(r.shape)}, not ({c},)")
    F = torch.nn.functional
    if not o.train:
        return F.batch_norm(x, running[0], running[1], gamma, beta, training=False,
                            eps=eps)
    axes = [0] + list(range(2, x.ndim))
    count = x.numel() // c
    with torch.no_grad():  # the expected running statistics, computed apart
        mu = x.detach().mean(dim=axes)
        var = x.detach().var(dim=axes, unbiased=False)
        scale = x.detach().abs().amax(dim=axes) if count else torch.zeros(c)
        cond = float((scale / torch.sqrt(var + eps)).max()) if c else 1.0
        o.bn_condition *= max(cond, 1.0)  # compounds through chained sites
    for n, r, stat in zip(names, running, (mu, var)):
        if n in o.bn_updated:
            raise OracleError(f"state '{n}' updated twice")
        o.bn_updated.add(n)
        o.state_out[n] = (momentum * r + (1 - momentum) * stat).numpy().copy()
    if count > 1:
        # torch's own training-mode batch norm (biased variance for normalizing);
        # no running buffers given, so torch updates nothing
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    # one value per feature (torch refuses it): x - mean is 0, the output beta, and
    # the gradient still flows through the mean (the formula, by hand)
    shape = [1, c] + [1] * (x.ndim - 2)
    xc = x - x.mean(dim=axes, keepdim=True)
    xn = xc / torch.sqrt((xc ** 2).mean(dim=axes, keepdim=True) + eps)
    return gamma.reshape(shape) * xn + beta.reshape(shape)


FUNCTIONS = {
    "dropout": _dropout,
    "batch_norm": _batch_norm,
}
