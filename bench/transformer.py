"""A transformer block's training step, timed: bpc's generated module against a hand-fused
NumPy version written here and PyTorch eager (skipped without torch), ratios in one run.

    python bench/transformer.py [--rounds 15]

The block is pre-norm (GPT-2's order): ``n1 = layer_norm(x)``, four-head self-attention
on it (no mask) added back, ``n2 = layer_norm(x1)``, a ReLU feed-forward layer added back;
the loss is the mean squared error against a target of the block's shape. One step is
the loss, every parameter's gradient and an SGD update in place. Shape: N 32, T 64,
D 128, 4 heads of 32, feed-forward 512; float64 and float32.

- ``generated``: the module bpc compiles from ``SPEC``, stepped as ``bpc train`` steps it
  (gradients into preallocated buffers, ``scale=-lr``, ``p += g``);
- ``hand-fused``: ``fused_step`` below: 2-D matmuls over all N·T rows, the softmax and
  its backward in place, layer norm's closed-form backward, no gradient for the input;
- ``torch eager``: ``F.layer_norm``, ``F.scaled_dot_product_attention``, ``backward()``.

Each figure is the median over ``rounds`` of the best of 3 steps, the implementations
alternating, one BLAS thread; the three are checked to agree on the loss and gradients
first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_peers import generated_module  # noqa: E402

N, T, D, H, FF = 32, 64, 128, 4, 512
K = D // H
EPS = 1e-5
LR = 0.01
SPEC = f"""model block
dtype DTYPE
let D = {D}
let H = {H}
let K = {K}
input x : [N, T, D]
target t : [N, T, D]
param g1 : [D] = ones
param b1 : [D] = zeros
param Wq : [D, D] = xavier
param Wk : [D, D] = xavier
param Wv : [D, D] = xavier
param Wo : [D, D] = xavier
param g2 : [D] = ones
param b2 : [D] = zeros
param F1 : [D, {FF}] = he
param c1 : [{FF}] = zeros
param F2 : [{FF}, D] = xavier
param c2 : [D] = zeros
n1 = layer_norm(x, g1, b1)
q = transpose(reshape(n1 @ Wq, [N, T, H, K]), axes=[0, 2, 1, 3])
k = transpose(reshape(n1 @ Wk, [N, T, H, K]), axes=[0, 2, 1, 3])
v = transpose(reshape(n1 @ Wv, [N, T, H, K]), axes=[0, 2, 1, 3])
a = softmax(q @ swapaxes(k, -1, -2) / sqrt(K))
x1 = x + reshape(transpose(a @ v, axes=[0, 2, 1, 3]), [N, T, D]) @ Wo
n2 = layer_norm(x1, g2, b2)
output y = x1 + relu(n2 @ F1 + c1) @ F2 + c2
loss L = mse(y, t)
"""


# ----------------------------------------------------------------------------- hand-fused
def _norm(x, g, b):
    """Layer norm over the last axis: (output, normalized x, 1 / std)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + EPS)
    xc *= rstd
    return xc * g + b, xc, rstd


def _heads(m):
    """[N·T, D] rows as [N, H, T, K] heads."""
    return m.reshape(N, T, H, K).transpose(0, 2, 1, 3)


def _rows(h):
    """[N, H, T, K] heads as [N·T, D] rows."""
    return h.transpose(0, 2, 1, 3).reshape(N * T, D)


def fused_grads(p, x, t):
    """(loss, gradients) of the block, written out by hand."""
    xm = x.reshape(N * T, D)
    n1, xn1, _ = _norm(xm, p["g1"], p["b1"])
    q, k, v = _heads(n1 @ p["Wq"]), _heads(n1 @ p["Wk"]), _heads(n1 @ p["Wv"])
    a = q @ k.swapaxes(-1, -2)
    a *= 1.0 / np.sqrt(K)
    a -= a.max(axis=-1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=-1, keepdims=True)
    o = _rows(a @ v)
    x1 = xm + o @ p["Wo"]
    n2, xn2, rstd2 = _norm(x1, p["g2"], p["b2"])
    pre = n2 @ p["F1"]
    pre += p["c1"]
    h = np.maximum(pre, 0, out=pre)
    e = x1 + h @ p["F2"]
    e += p["c2"]
    e -= t.reshape(N * T, D)
    loss = float(np.vdot(e, e)) / e.size
    dy = e
    dy *= 2.0 / e.size
    g = {"c2": dy.sum(axis=0), "F2": h.T @ dy}
    dh = dy @ p["F2"].T
    dh *= h > 0
    g["c1"], g["F1"] = dh.sum(axis=0), n2.T @ dh
    dn2 = dh @ p["F1"].T
    g["b2"], g["g2"] = dn2.sum(axis=0), (dn2 * xn2).sum(axis=0)
    dn2 *= p["g2"]
    dx1 = dn2 - dn2.mean(axis=-1, keepdims=True)
    dx1 -= xn2 * (dn2 * xn2).mean(axis=-1, keepdims=True)
    dx1 *= rstd2
    dx1 += dy
    g["Wo"] = o.T @ dx1
    do = _heads(dx1 @ p["Wo"].T)
    da = do @ v.swapaxes(-1, -2)
    dv = a.swapaxes(-1, -2) @ do
    da -= (da * a).sum(axis=-1, keepdims=True)
    da *= a
    da *= 1.0 / np.sqrt(K)
    dq, dk = da @ k, da.swapaxes(-1, -2) @ q
    dq, dk, dv = _rows(dq), _rows(dk), _rows(dv)
    g["Wq"], g["Wk"], g["Wv"] = n1.T @ dq, n1.T @ dk, n1.T @ dv
    dn1 = dq @ p["Wq"].T
    dn1 += dk @ p["Wk"].T
    dn1 += dv @ p["Wv"].T
    g["b1"], g["g1"] = dn1.sum(axis=0), (dn1 * xn1).sum(axis=0)
    return loss, g


def fused_step(p):
    def step(x, t):
        loss, g = fused_grads(p, x, t)
        for name, grad in g.items():
            grad *= -LR
            p[name] += grad
        return loss
    return step


# ----------------------------------------------------------------------------- the others
def generated_step(module, p):
    grads = {k: np.empty_like(v) for k, v in p.items()}

    def step(x, t):
        loss, g = module.loss_and_grad(p, x, t, scale=-LR, grads=grads)
        for name, grad in g.items():
            p[name] += grad
        return loss
    return step


def torch_parts(params, dtype):
    """(step, loss and gradients) of the block in PyTorch eager; None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(1)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    tp = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}

    def heads(m):
        return m.reshape(N, T, H, K).transpose(1, 2)

    def loss_fn(x, t):
        n1 = F.layer_norm(x, (D,), tp["g1"], tp["b1"], EPS)
        o = F.scaled_dot_product_attention(heads(n1 @ tp["Wq"]), heads(n1 @ tp["Wk"]),
                                           heads(n1 @ tp["Wv"]))
        x1 = x + o.transpose(1, 2).reshape(N, T, D) @ tp["Wo"]
        n2 = F.layer_norm(x1, (D,), tp["g2"], tp["b2"], EPS)
        y = x1 + torch.relu(n2 @ tp["F1"] + tp["c1"]) @ tp["F2"] + tp["c2"]
        return F.mse_loss(y, t)

    def grads(x, t):
        loss = loss_fn(torch.as_tensor(x), torch.as_tensor(t))
        loss.backward()
        out = {k: v.grad.numpy().copy() for k, v in tp.items()}
        for v in tp.values():
            v.grad = None
        return loss.item(), out

    def step(x, t):
        loss = loss_fn(x, t)
        loss.backward()
        with torch.no_grad():
            for v in tp.values():
                v -= LR * v.grad
                v.grad = None
        return loss.item()
    return step, grads, (lambda a: torch.as_tensor(a))


# ----------------------------------------------------------------------------- the run
def _agree(module, params, x, t, torch_grads, dtype) -> None:
    """Every implementation's loss and gradients equal the generated module's."""
    tol = {"float64": 1e-8, "float32": 2e-3}[dtype]
    want_loss, want = module.loss_and_grad({k: v.copy() for k, v in params.items()}, x, t)
    others = {"hand-fused": fused_grads({k: v.copy() for k, v in params.items()}, x, t)}
    if torch_grads is not None:
        others["torch eager"] = torch_grads(x, t)
    for name, (loss, grads) in others.items():
        np.testing.assert_allclose(loss, want_loss, rtol=tol, err_msg=name)
        for k in want:
            scale = float(np.abs(want[k]).max()) or 1.0
            np.testing.assert_allclose(grads[k], want[k], rtol=tol, atol=tol * scale,
                                       err_msg=f"{name}: {k}")


def run(dtype: str, rounds: int, tmp: str) -> dict[str, float]:
    module = generated_module(SPEC.replace("DTYPE", dtype), tmp)
    rng = np.random.default_rng(0)
    params = module.init_params(rng)
    x = rng.normal(size=(N, T, D)).astype(dtype)
    t = rng.normal(size=(N, T, D)).astype(dtype)
    torch = torch_parts(params, dtype)
    _agree(module, params, x, t, torch and torch[1], dtype)
    steps = {"generated": (generated_step(module, {k: v.copy() for k, v in params.items()}),
                           (x, t)),
             "hand-fused": (fused_step({k: v.copy() for k, v in params.items()}), (x, t))}
    if torch is not None:
        steps["torch eager"] = (torch[0], (torch[2](x), torch[2](t)))
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, data = steps[name]
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                step(*data)
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    rounds = p.parse_args().rounds
    print(f"transformer block step: N {N}, T {T}, D {D}, heads {H}, ff {FF}; ms per step "
          f"(median of {rounds} rounds of the best of 3), NumPy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float64", "float32"):
            times = run(dtype, rounds, tmp)
            base = times["generated"]
            print(f"{dtype}: bpc {1e3 * base:.1f} ms; " + "; ".join(
                f"{name} {1e3 * s:.1f} ms, bpc at {base / s:.2f}x its time"
                for name, s in times.items() if name != "generated"))


if __name__ == "__main__":
    main()
