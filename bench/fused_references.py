"""Hand-fused NumPy references for two of the benchmark's step rows: the batch-norm MLP
(dense, batch norm, ReLU, repeated, then dense) and the sigmoid MLP, both with softmax
cross-entropy on one-hot targets and plain SGD. Written as a person tuning NumPy would:
every activation and adjoint in a buffer kept across steps, ``out=`` everywhere, batch
norm's compact backward (``dx = gamma / std * (dy - mean(dy) - xn * mean(dy * xn))``: four
passes, not the textbook graph's eight), the running statistics updated in place, the
sigmoid as ``0.5 * (1 + tanh(x / 2))`` (overflow-free, one transcendental), and the update
of each parameter as ``g *= lr; p -= g``. tests/bench/test_fused_references.py holds them
to the generated module's loss and gradients."""

from __future__ import annotations

import numpy as np


def _softmax_ce(logits, t, probs, m):
    """Loss of softmax cross-entropy on one-hot ``t``; ``probs`` becomes dL/dlogits."""
    n = logits.shape[0]
    np.max(logits, axis=1, keepdims=True, out=m)
    logits -= m
    np.exp(logits, out=probs)
    s = np.sum(probs, axis=1, keepdims=True)
    probs /= s
    loss = -(np.vdot(t, logits) - np.sum(np.log(s))) / n
    probs -= t
    probs /= n
    return float(loss)


class _Fused:
    """What both nets share: gradient buffers and the in-place SGD step."""

    def __init__(self, params):
        self.params = params
        self.grads = {k: np.empty_like(v) for k, v in params.items()}

    def step(self, x, t, lr):
        loss, grads = self.loss_and_grad(x, t)
        for k, g in grads.items():
            g *= lr
            self.params[k] -= g
        return loss


class FusedBNNet(_Fused):
    """``depth`` blocks of dense, batch norm (training mode: the batch's statistics, the
    running ones updated in ``state``) and ReLU, then a dense layer; the parameter and
    state names are the generated module's (``W1``, ``b1``, ``bn1_gamma``, ...)."""

    def __init__(self, params, state, depth, batch, dtype, eps=1e-6, momentum=0.9):
        super().__init__(params)
        self.state, self.depth, self.eps, self.momentum = state, depth, eps, momentum
        width = [params[f"W{k}"].shape[1] for k in range(1, depth + 2)]
        dt = np.dtype(dtype)
        self.xn = [np.empty((batch, w), dt) for w in width[:-1]]  # normalized, kept
        self.z = [np.empty((batch, w), dt) for w in width[:-1]]  # block outputs, kept
        self.inv = [np.empty(w, dt) for w in width[:-1]]  # 1 / std
        self.mu = [np.empty(w, dt) for w in width[:-1]]
        self.var = [np.empty(w, dt) for w in width[:-1]]
        self.logits = np.empty((batch, width[-1]), dt)
        self.probs = np.empty_like(self.logits)
        self.m = np.empty((batch, 1), dt)
        self.dz = [np.empty((batch, w), dt) for w in width[:-1]]
        self.tmp = [np.empty((batch, w), dt) for w in width[:-1]]
        self.mask = [np.empty((batch, w), bool) for w in width[:-1]]

    def loss_and_grad(self, x, t):
        p, g, s, n = self.params, self.grads, self.state, x.shape[0]
        h = x
        for k in range(self.depth):
            i = k + 1
            a, mu, var, inv = self.xn[k], self.mu[k], self.var[k], self.inv[k]
            np.matmul(h, p[f"W{i}"], out=a)
            a += p[f"b{i}"]
            np.mean(a, axis=0, out=mu)
            a -= mu
            np.einsum("ij,ij->j", a, a, out=var)
            var /= n
            np.add(var, self.eps, out=inv)
            np.sqrt(inv, out=inv)
            np.divide(1, inv, out=inv)
            a *= inv  # a is xn now
            for name, stat in ((f"bn{i}_running_mean", mu), (f"bn{i}_running_var", var)):
                s[name] *= self.momentum
                s[name] += (1 - self.momentum) * stat
            z = np.multiply(a, p[f"bn{i}_gamma"], out=self.z[k])
            z += p[f"bn{i}_beta"]
            np.maximum(z, 0, out=z)
            h = z
        last = self.depth + 1
        np.matmul(h, p[f"W{last}"], out=self.logits)
        self.logits += p[f"b{last}"]
        loss = _softmax_ce(self.logits, t, self.probs, self.m)
        dy = self.probs
        np.matmul(h.T, dy, out=g[f"W{last}"])
        np.sum(dy, axis=0, out=g[f"b{last}"])
        np.matmul(dy, p[f"W{last}"].T, out=self.dz[-1])
        for k in reversed(range(self.depth)):
            i, dz, xn, tmp = k + 1, self.dz[k], self.xn[k], self.tmp[k]
            np.greater(self.z[k], 0, out=self.mask[k])
            dz *= self.mask[k]  # dL/d(batch norm's output)
            dbeta, dgamma = g[f"bn{i}_beta"], g[f"bn{i}_gamma"]
            np.sum(dz, axis=0, out=dbeta)
            np.einsum("ij,ij->j", dz, xn, out=dgamma)
            scale = p[f"bn{i}_gamma"] * self.inv[k]
            dz *= scale
            np.multiply(xn, scale * dgamma / n, out=tmp)
            dz -= tmp
            dz -= scale * dbeta / n  # dz is dL/da now
            below = x if k == 0 else self.z[k - 1]
            np.matmul(below.T, dz, out=g[f"W{i}"])
            np.sum(dz, axis=0, out=g[f"b{i}"])
            if k > 0:
                np.matmul(dz, p[f"W{i}"].T, out=self.dz[k - 1])
        return loss, g


class FusedSigmoidNet(_Fused):
    """``x -> sigmoid(x W1 + b1) -> W2, b2`` (one hidden layer)."""

    def __init__(self, params, batch, dtype):
        super().__init__(params)
        dt = np.dtype(dtype)
        hidden, classes = params["W2"].shape
        self.z = np.empty((batch, hidden), dt)
        self.dz = np.empty_like(self.z)
        self.logits = np.empty((batch, classes), dt)
        self.probs = np.empty_like(self.logits)
        self.m = np.empty((batch, 1), dt)

    def loss_and_grad(self, x, t):
        p, g, z, dz = self.params, self.grads, self.z, self.dz
        np.matmul(x, p["W1"], out=z)
        z += p["b1"]
        z *= 0.5
        np.tanh(z, out=z)
        z += 1
        z *= 0.5  # sigmoid
        np.matmul(z, p["W2"], out=self.logits)
        self.logits += p["b2"]
        loss = _softmax_ce(self.logits, t, self.probs, self.m)
        np.matmul(z.T, self.probs, out=g["W2"])
        np.sum(self.probs, axis=0, out=g["b2"])
        np.matmul(self.probs, p["W2"].T, out=dz)
        dz *= z
        np.subtract(1, z, out=z)  # z is not read again
        dz *= z
        np.matmul(x.T, dz, out=g["W1"])
        np.sum(dz, axis=0, out=g["b1"])
        return loss, g
