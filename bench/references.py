"""Hand-written NumPy references for the benchmark's MLPs (ReLU hidden layers, softmax
cross-entropy on one-hot targets, plain SGD).

- ``LayerNet``: the textbook's layer objects (Affine / Relu / SoftmaxWithLoss, as in
  "Deep Learning from Scratch" ch. 5), written the way the book writes them.
- ``FusedNet``: what a careful person writes for speed: every buffer preallocated,
  ``out=`` matmuls, in-place elementwise work, the ReLU mask from the output, no gradient
  for the input, and an in-place SGD update.
- ``BatchNormNet``: the batch-norm MLP written the same way, with batch norm's
  closed-form backward.

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


# ----------------------------------------------------------------------------- batch norm
class BatchNormNet:
    """The batch-norm MLP (dense, batch norm, ReLU per hidden layer; a dense output; softmax
    cross-entropy on one-hot targets) by hand, as a careful person writes it for speed:
    every buffer preallocated, ``out=`` matmuls, normalization in place (only xn and std
    kept), the closed-form backward ``dx = gamma / std * (g - mean(g) - xn mean(g xn))``
    in place, the running statistics updated in place. ``state`` holds
    ``bn{k}_running_mean``/``_var`` as the generated module names them."""

    name = "hand-fused"

    def __init__(self, params, state, depth, batch, dtype, momentum=0.9, eps=1e-6):
        self.params, self.state, self.depth = params, state, depth
        self.momentum, self.eps = momentum, eps
        sizes = [params[f"W{k}"].shape[1] for k in range(1, depth + 1)]
        self.xn = [np.empty((batch, s), dtype) for s in sizes]  # normalized, kept
        self.z = [np.empty((batch, s), dtype) for s in sizes]  # layer outputs
        self.g = [np.empty((batch, s), dtype) for s in sizes]  # adjoints
        self.tmp = [np.empty((batch, s), dtype) for s in sizes]
        self.std = [None] * depth
        self.grads = {k: np.empty_like(v) for k, v in params.items()}
        self.scratch = {k: np.empty_like(v) for k, v in params.items()}

    def loss_and_grad(self, x, t):
        p, depth, xn, z, g = self.params, self.depth, self.xn, self.z, self.g
        n, keep = x.shape[0], 1 - self.momentum
        h = x
        for k in range(1, depth):
            a = xn[k - 1]
            np.matmul(h, p[f"W{k}"], out=a)
            a += p[f"b{k}"]
            mu = np.mean(a, axis=0)
            a -= mu
            var = np.mean(np.square(a, out=self.tmp[k - 1]), axis=0)
            std = self.std[k - 1] = np.sqrt(var + self.eps)
            a /= std
            out = np.multiply(a, p[f"bn{k}_gamma"], out=z[k - 1])
            out += p[f"bn{k}_beta"]
            np.maximum(out, 0, out=out)
            for stat, value in (("mean", mu), ("var", var)):
                running = self.state[f"bn{k}_running_{stat}"]
                value -= running
                value *= keep
                running += value
            h = out
        logits = z[-1]
        np.matmul(h, p[f"W{depth}"], out=logits)
        logits += p[f"b{depth}"]
        logits -= np.max(logits, axis=1, keepdims=True)
        probs = g[-1]
        np.exp(logits, out=probs)
        s = np.sum(probs, axis=1, keepdims=True)
        probs /= s
        loss = -(np.vdot(t, logits) - np.sum(np.log(s))) / n  # t rows sum to 1
        probs -= t
        probs /= n
        grads = self.grads
        for k in range(depth, 0, -1):
            below = x if k == 1 else z[k - 2]
            np.matmul(below.T, g[k - 1], out=grads[f"W{k}"])
            np.sum(g[k - 1], axis=0, out=grads[f"b{k}"])
            if k == 1:
                break
            dz = g[k - 2]  # the adjoint of layer k-1's output, then of its pre-activation
            np.matmul(g[k - 1], p[f"W{k}"].T, out=dz)
            dz *= below > 0
            j, x_n, tmp = k - 1, xn[k - 2], self.tmp[k - 2]
            dbeta = np.sum(dz, axis=0, out=grads[f"bn{j}_beta"])
            dgamma = np.sum(np.multiply(x_n, dz, out=tmp), axis=0, out=grads[f"bn{j}_gamma"])
            np.multiply(x_n, dgamma / n, out=tmp)
            tmp += dbeta / n
            dz -= tmp
            dz *= p[f"bn{j}_gamma"] / self.std[j - 1]
        return float(loss), grads

    def step(self, x, t, lr):
        loss, grads = self.loss_and_grad(x, t)
        for k, gr in grads.items():
            np.multiply(gr, lr, out=self.scratch[k])
            self.params[k] -= self.scratch[k]
        return loss


# ----------------------------------------------------------------------------- the UDL toy
TOY_NAMES = ("beta0", "omega0", "beta1", "omega1", "beta2", "omega2", "beta3", "omega3")


class ToyNet:
    """The toy of *Understanding Deep Learning* (fig. 7.3) by hand, as a careful person
    writes it for speed: the eight parameters in one array, read as NumPy scalars (no 0-d
    array arithmetic), the backward pass written out, and one in-place SGD update of the
    whole array."""

    name = "hand-fused"

    def __init__(self, params, dtype):
        self.dtype = np.dtype(dtype).type
        self.flat = np.array([params[k] for k in TOY_NAMES], dtype)
        self.scratch = np.empty_like(self.flat)

    def grad_array(self, x, y):
        b0, w0, b1, w1, b2, w2, b3, w3 = self.flat  # NumPy scalars of the dtype
        x, y = self.dtype(x), self.dtype(y)
        f0 = b0 + w0 * x
        h1 = np.sin(f0)
        f1 = b1 + w1 * h1
        h2 = np.exp(f1)
        f2 = b2 + w2 * h2
        h3 = np.cos(f2)
        f3 = b3 + w3 * h3
        d3 = 2 * (f3 - y)
        d2 = -np.sin(f2) * (w3 * d3)
        d1 = h2 * (w2 * d2)
        d0 = np.cos(f0) * (w1 * d1)
        grad = np.array([d0, x * d0, d1, h1 * d1, d2, h2 * d2, d3, h3 * d3], self.flat.dtype)
        return (f3 - y) ** 2, grad

    def loss_and_grad(self, x, y):
        loss, grad = self.grad_array(x, y)
        return float(loss), dict(zip(TOY_NAMES, grad))

    def step(self, x, y, lr):
        loss, grad = self.grad_array(x, y)
        self.flat -= np.multiply(grad, lr, out=self.scratch)
        return loss


# ----------------------------------------------------------------------------- a plain loop
def plain_loop(module, train_arrays, settings, axes):
    """The run ``bpc train`` makes (same initial parameters, batches in the same shuffled
    order, epochs, optimizer arithmetic), as a bare loop: the generated gradient into kept
    buffers and an update per parameter array, nothing else (no evaluation, history,
    checkpoint, divergence or interrupt handling). SGD and Adam with a constant learning
    rate, no weight decay or clipping (the gallery's runs); batch norm's state and
    dropout's generator passed as bpc train passes them; SGD folds the learning rate into
    the seed (``scale=-lr``) as bpc train does. Returns the parameters."""
    import inspect

    opt = {**{"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, **settings.opt}
    if settings.optimizer not in ("sgd", "adam") or opt.get("schedule", "constant") != \
            "constant" or opt.get("weight_decay") or opt.get("clip"):
        raise ValueError(f"plain_loop writes out SGD and Adam at a constant learning rate "
                         f"without weight decay or clipping, not {settings.optimizer} {opt}")
    lr, b1, b2, eps = (float(opt[k]) for k in ("lr", "beta1", "beta2", "eps"))
    rng = np.random.default_rng(settings.seed)
    params = {k: np.array(v, dtype=module.DTYPE) for k, v in module.init_params(rng).items()}
    grads = {k: np.empty_like(v) for k, v in params.items()}
    takes = inspect.signature(module.loss_and_grad).parameters
    kw = {"grads": grads} if "grads" in takes else {}
    if "state" in takes:  # batch norm's running statistics, updated in place
        kw["state"] = module.init_state()
    if "rng" in takes:  # dropout's masks, drawn from the run's generator as bpc train does
        kw["rng"] = rng
    folded = settings.optimizer == "sgd" and "scale" in takes
    if folded:  # as bpc train does: the gradient comes as -lr g, and is added
        kw["scale"] = -lr
    scratch = {k: np.empty_like(v) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    n = len(next(iter(train_arrays.values())))
    if any(axes.get(k) != 0 for k in train_arrays):
        raise ValueError(f"plain_loop takes examples along axis 0, not {axes}")
    steps_per_epoch = -(-n // settings.batch)
    t = 0
    for _ in range(settings.epochs):
        order = rng.permutation(n) if settings.shuffle else np.arange(n)
        for i in range(steps_per_epoch):
            idx = order[i * settings.batch:(i + 1) * settings.batch]
            batch = {k: a[idx] for k, a in train_arrays.items()}
            _, g = module.loss_and_grad(params, **batch, **kw)
            t += 1
            for k, p in params.items():
                s = scratch[k]
                if folded:
                    p += g[k]
                    continue
                if settings.optimizer == "sgd":
                    p -= np.multiply(g[k], lr, out=s)
                    continue
                m[k] *= b1
                m[k] += np.multiply(g[k], 1 - b1, out=s)
                v[k] *= b2
                np.multiply(g[k], 1 - b2, out=s)
                s *= g[k]
                v[k] += s
                step = m[k] / (1 - b1 ** t)
                step *= lr
                denom = np.divide(v[k], 1 - b2 ** t, out=s)
                np.sqrt(denom, out=denom)
                denom += eps
                step /= denom
                p -= step
    return params
