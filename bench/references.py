"""Hand-written NumPy references for the benchmark's MLPs (ReLU hidden layers, softmax
cross-entropy on one-hot targets, plain SGD).

- ``LayerNet``: the textbook's layer objects (Affine / Relu / SoftmaxWithLoss, as in
  "Deep Learning from Scratch" ch. 5), written the way the book writes them.
- ``FusedNet``: what a careful person writes for speed: every buffer preallocated,
  ``out=`` matmuls, in-place elementwise work, the ReLU mask from the output, no gradient
  for the input, and an in-place SGD update.

Both take the same ``params`` dict (W1, b1, W2, b2, …) as the generated module.
"""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- layer objects
class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dx


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class SoftmaxWithLoss:
    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        x = x - np.max(x, axis=1, keepdims=True)
        e = np.exp(x)
        self.y = e / np.sum(e, axis=1, keepdims=True)
        return -np.sum(t * np.log(self.y + 1e-7)) / x.shape[0]

    def backward(self):
        return (self.y - self.t) / self.t.shape[0]


class LayerNet:
    name = "layer objects"

    def __init__(self, params, depth):
        self.params = params
        self.depth = depth

    def loss_and_grad(self, x, t):
        p = self.params
        layers = []
        for k in range(1, self.depth + 1):
            layers.append(Affine(p[f"W{k}"], p[f"b{k}"]))
            if k < self.depth:
                layers.append(Relu())
        last = SoftmaxWithLoss()
        h = x
        for layer in layers:
            h = layer.forward(h)
        loss = last.forward(h, t)
        dout = last.backward()
        for layer in reversed(layers):
            dout = layer.backward(dout)
        grads = {}
        for k, layer in enumerate(layers[::2], 1):
            grads[f"W{k}"], grads[f"b{k}"] = layer.dW, layer.db
        return loss, grads

    def step(self, x, t, lr):
        loss, grads = self.loss_and_grad(x, t)
        for k, g in grads.items():
            self.params[k] -= lr * g
        return loss


# ----------------------------------------------------------------------------- hand-fused
class FusedNet:
    name = "hand-fused"

    def __init__(self, params, depth, batch, dtype):
        self.params, self.depth = params, depth
        sizes = [params["W1"].shape[0]] + [params[f"W{k}"].shape[1] for k in range(1, depth + 1)]
        self.z = [np.empty((batch, s), dtype) for s in sizes[1:]]  # pre-activations, in place
        self.g = [np.empty((batch, s), dtype) for s in sizes[1:]]  # adjoints
        self.mask = [np.empty((batch, s), bool) for s in sizes[1:]]
        self.m = np.empty((batch, 1), dtype)
        self.grads = {k: np.empty_like(v) for k, v in params.items()}
        self.scratch = {k: np.empty_like(v) for k, v in params.items()}

    def loss_and_grad(self, x, t):
        p, depth, z, g = self.params, self.depth, self.z, self.g
        n = x.shape[0]
        h = x
        for k in range(depth):
            np.matmul(h, p[f"W{k + 1}"], out=z[k])
            z[k] += p[f"b{k + 1}"]
            if k < depth - 1:
                np.maximum(z[k], 0, out=z[k])
            h = z[k]
        logits = z[-1]
        np.max(logits, axis=1, keepdims=True, out=self.m)
        logits -= self.m  # shifted logits, in place
        probs = g[-1]
        np.exp(logits, out=probs)
        s = np.sum(probs, axis=1, keepdims=True)
        probs /= s
        loss = -(np.vdot(t, logits) - np.sum(np.log(s))) / n  # t rows sum to 1
        probs -= t
        probs /= n  # dL/dlogits
        grads = self.grads
        for k in reversed(range(depth)):
            below = x if k == 0 else z[k - 1]
            np.matmul(below.T, g[k], out=grads[f"W{k + 1}"])
            np.sum(g[k], axis=0, out=grads[f"b{k + 1}"])
            if k > 0:
                np.matmul(g[k], p[f"W{k + 1}"].T, out=g[k - 1])
                np.greater(z[k - 1], 0, out=self.mask[k - 1])
                g[k - 1] *= self.mask[k - 1]
        return float(loss), grads

    def step(self, x, t, lr):
        loss, grads = self.loss_and_grad(x, t)
        for k, gr in grads.items():
            np.multiply(gr, lr, out=self.scratch[k])
            self.params[k] -= self.scratch[k]
        return loss
