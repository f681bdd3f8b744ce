"""The LSTM language model written as *Deep Learning from Scratch 2*'s layer classes
(TimeEmbedding, TimeLSTM, TimeAffine, TimeSoftmaxWithLoss, ch. 5-6), the book's way:
the reference bpc's generated step is measured against (bench/lstm.py).

Gates in the book's order f, g, i, o, one weight matrix for the four; ``params`` is the
dict the generated module takes (E, Wx, Wh, b, Wo, bo); the initial state is zeros, as
a stateless ``TimeLSTM`` starts.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class TimeEmbedding:
    def __init__(self, W):
        self.W = W
        self.idx = self.dW = None

    def forward(self, xs):
        self.idx = xs
        return self.W[xs]

    def backward(self, dout):
        self.dW = np.zeros_like(self.W)
        np.add.at(self.dW, self.idx, dout)


class LSTM:
    """One step; ``cache`` is what the book keeps for the backward, per step."""

    def __init__(self, Wx, Wh, b):
        self.Wx, self.Wh, self.b = Wx, Wh, b
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        H = h_prev.shape[1]
        A = x @ self.Wx + h_prev @ self.Wh + self.b
        f = sigmoid(A[:, :H])
        g = np.tanh(A[:, H:2 * H])
        i = sigmoid(A[:, 2 * H:3 * H])
        o = sigmoid(A[:, 3 * H:])
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c_next = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c_next ** 2)
        dc_prev = ds * f
        di = ds * g * i * (1 - i)
        df = ds * c_prev * f * (1 - f)
        do = dh_next * tanh_c_next * o * (1 - o)
        dg = ds * i * (1 - g ** 2)
        dA = np.hstack((df, dg, di, do))
        self.grads = (x.T @ dA, h_prev.T @ dA, dA.sum(axis=0))
        return dA @ self.Wx.T, dA @ self.Wh.T, dc_prev


class TimeLSTM:
    def __init__(self, Wx, Wh, b):
        self.Wx, self.Wh, self.b = Wx, Wh, b
        self.layers = []

    def forward(self, xs):
        N, T, _ = xs.shape
        H = self.Wh.shape[0]
        hs = np.empty((N, T, H), dtype=xs.dtype)
        h = np.zeros((N, H), dtype=xs.dtype)
        c = np.zeros((N, H), dtype=xs.dtype)
        self.layers = []
        for t in range(T):
            layer = LSTM(self.Wx, self.Wh, self.b)
            h, c = layer.forward(xs[:, t, :], h, c)
            hs[:, t, :] = h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        N, T, _ = dhs.shape
        dxs = np.empty((N, T, self.Wx.shape[0]), dtype=dhs.dtype)
        dh, dc = 0, 0
        self.grads = [np.zeros_like(self.Wx), np.zeros_like(self.Wh), np.zeros_like(self.b)]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for k, grad in enumerate(layer.grads):
                self.grads[k] += grad
        return dxs


class TimeAffine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = None

    def forward(self, x):
        N, T, D = x.shape
        self.x = x
        return (x.reshape(N * T, -1) @ self.W + self.b).reshape(N, T, -1)

    def backward(self, dout):
        x = self.x
        N, T, D = x.shape
        dout = dout.reshape(N * T, -1)
        self.db = np.sum(dout, axis=0)
        self.dW = x.reshape(N * T, -1).T @ dout
        return (dout @ self.W.T).reshape(x.shape)


class TimeSoftmaxWithLoss:
    def __init__(self, ignore_label=-1):
        self.ignore_label = ignore_label
        self.cache = None

    def forward(self, xs, ts):
        N, T, V = xs.shape
        mask = ts != self.ignore_label
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        mask = mask.reshape(N * T)
        xs = xs - xs.max(axis=1, keepdims=True)
        ys = np.exp(xs)
        ys /= ys.sum(axis=1, keepdims=True)
        ls = np.log(ys[np.arange(N * T), ts]) * mask
        self.cache = (ts, ys, mask, (N, T, V))
        return -np.sum(ls) / mask.sum()

    def backward(self, dout=1):
        ts, ys, mask, (N, T, V) = self.cache
        dx = ys.copy()
        dx[np.arange(N * T), ts] -= 1
        dx *= dout / mask.sum()
        dx *= mask[:, np.newaxis]
        return dx.reshape(N, T, V)


class BookRnnlm:
    """Embedding, LSTM, affine, softmax with loss: the book's ``Rnnlm``."""

    name = "book layers"

    def __init__(self, params):
        self.params = p = params
        self.embed = TimeEmbedding(p["E"])
        self.lstm = TimeLSTM(p["Wx"], p["Wh"], p["b"])
        self.affine = TimeAffine(p["Wo"], p["bo"])
        self.loss_layer = TimeSoftmaxWithLoss()

    def loss_and_grad(self, ids, t):
        z = self.affine.forward(self.lstm.forward(self.embed.forward(ids)))
        loss = self.loss_layer.forward(z, t)
        self.embed.backward(self.lstm.backward(self.affine.backward(
            self.loss_layer.backward())))
        dWx, dWh, db = self.lstm.grads
        return loss, {"E": self.embed.dW, "Wx": dWx, "Wh": dWh, "b": db,
                      "Wo": self.affine.dW, "bo": self.affine.db}

    def kept_per_step(self) -> int:
        """Bytes the LSTM keeps per time step for the backward (one step's cache)."""
        return sum(a.nbytes for a in self.lstm.layers[0].cache)


def _sigmoid(x):
    """sigmoid(x) in place as 0.5 * tanh(x / 2) + 0.5: overflow-free, one transcendental."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5


class FusedRnnlm:
    """The same model and SGD step as a person tuning NumPy writes it by hand: every
    activation, adjoint and gradient in a buffer allocated once and reused, the input
    projection (``x @ Wx + b``) one product over all N·T rows before the loop, the gates
    f, g, i, o activated in place in one [N, T, 4H] array, the softmax in place with the
    gradient's scale folded into its normalization, the input-side gradients (``Wx``,
    ``b``, ``dx``) and ``Wh``'s one product each after the backward loop, and the update
    folded into the seed (``scale=-lr``, then ``p += g``). The initial state is zeros, as
    the book's stateless ``TimeLSTM`` starts, so step 0 skips its ``h @ Wh`` and ``f * c``."""

    name = "hand-fused"

    def __init__(self, params, batch, steps):
        self.params = p = params
        (D, H4), V = p["Wx"].shape, p["Wo"].shape[1]
        N, T, H, dt = batch, steps, H4 // 4, p["Wx"].dtype
        self.x = np.empty((N, T, D), dt)
        self.a = np.empty((N, T, H4), dt)  # pre-activations, then the gates in place
        self.c, self.tanh_c, self.h = (np.empty((N, T, H), dt) for _ in range(3))
        self.z = np.empty((N * T, V), dt)  # logits, then dL/dz
        self.dh, self.dx = np.empty((N, T, H), dt), np.empty((N * T, D), dt)
        self.da = np.empty((N, T, H4), dt)
        self.row4 = np.empty((N, H4), dt)
        self.dh_next, self.dc, self.ds = (np.empty((N, H), dt) for _ in range(3))
        self.row_max, self.row_sum = np.empty((N * T, 1), dt), np.empty((N * T, 1), dt)
        self.grads = {k: np.empty_like(v) for k, v in p.items()}

    def step(self, ids, t, lr):
        """One SGD step; the loss before it."""
        loss, grads = self.loss_and_grad(ids, t, scale=-lr)
        for k, g in grads.items():
            self.params[k] += g
        return loss

    def loss_and_grad(self, ids, t, scale=1.0):
        """The mean softmax cross-entropy over all N·T tokens and ``scale`` times its
        gradients (the buffers in ``self.grads``, overwritten by the next call)."""
        loss = self._forward(ids, t, scale)
        self._backward(ids)
        return loss, self.grads

    def _forward(self, ids, t, scale):
        p, a, c, tanh_c, h = self.params, self.a, self.c, self.tanh_c, self.h
        N, T, H = h.shape
        x2, a2, h2 = (v.reshape(N * T, -1) for v in (self.x, a, h))
        np.take(p["E"], ids.ravel(), axis=0, out=x2)
        np.matmul(x2, p["Wx"], out=a2)
        a2 += p["b"]
        for k in range(T):
            ak = a[:, k]
            if k:
                np.matmul(h[:, k - 1], p["Wh"], out=self.row4)
                ak += self.row4
            _sigmoid(ak[:, :H])
            np.tanh(ak[:, H:2 * H], out=ak[:, H:2 * H])
            _sigmoid(ak[:, 2 * H:])
            np.multiply(ak[:, H:2 * H], ak[:, 2 * H:3 * H], out=c[:, k])
            if k:
                np.multiply(ak[:, :H], c[:, k - 1], out=self.ds)
                c[:, k] += self.ds
            np.tanh(c[:, k], out=tanh_c[:, k])
            np.multiply(ak[:, 3 * H:], tanh_c[:, k], out=h[:, k])
        return self._softmax_ce(h2, t.ravel(), scale)

    def _softmax_ce(self, h2, labels, scale):
        """The loss; ``self.z`` becomes ``scale`` times dL/dz."""
        p, z, m, s = self.params, self.z, self.row_max, self.row_sum
        rows = np.arange(len(labels))
        np.matmul(h2, p["Wo"], out=z)
        z += p["bo"]
        np.max(z, axis=1, keepdims=True, out=m)
        z -= m
        picked = z[rows, labels]
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=s)
        loss = (np.sum(np.log(s)) - np.sum(picked)) / len(labels)
        s *= len(labels) / scale
        z /= s
        z[rows, labels] -= scale / len(labels)
        return float(loss)

    def _backward(self, ids):
        p, gr, a, da = self.params, self.grads, self.a, self.da
        N, T, H = self.h.shape
        h2, da2, x2 = (v.reshape(N * T, -1) for v in (self.h, da, self.x))
        np.sum(self.z, axis=0, out=gr["bo"])
        np.matmul(h2.T, self.z, out=gr["Wo"])
        np.matmul(self.z, p["Wo"].T, out=self.dh.reshape(N * T, H))
        for k in reversed(range(T)):
            self._backward_step(k, a[:, k], da[:, k], H)
        np.sum(da2, axis=0, out=gr["b"])
        np.matmul(x2.T, da2, out=gr["Wx"])
        np.matmul(da2, p["Wx"].T, out=self.dx)
        # Wh's gradient pairs each row's h[n, k - 1] with da[n, k]: one product over the
        # rows shifted by one, less the pairs that cross from one sequence into the next
        # (h[n, T - 1] with da[n + 1, 0]; h0 is zero)
        np.matmul(h2[:-1].T, da2[1:], out=gr["Wh"])
        gr["Wh"] -= self.h[:-1, T - 1].T @ da[1:, 0]
        self._embed_grad(ids.ravel(), gr["E"])

    def _backward_step(self, k, ak, dak, H):
        """One time step back: da[:, k] from dL/dh[:, k] and dL/dc at k; then dL/dh and
        dL/dc at k - 1 (``self.dh_next``, ``self.dc``)."""
        f, g, i, o = (ak[:, j * H:(j + 1) * H] for j in range(4))
        df, dg, di, do = (dak[:, j * H:(j + 1) * H] for j in range(4))
        dh, tc, ds = self.dh[:, k], self.tanh_c[:, k], self.ds
        last = k == self.h.shape[1] - 1
        if not last:
            dh += self.dh_next
        np.multiply(tc, tc, out=ds)  # ds = dc + dh * o * (1 - tanh(c)^2)
        np.subtract(1, ds, out=ds)
        ds *= o
        ds *= dh
        if not last:
            ds += self.dc
        np.subtract(1, o, out=do)  # do = dh * tanh(c) * o * (1 - o)
        do *= o
        do *= tc
        do *= dh
        np.subtract(1, i, out=di)  # di = ds * g * i * (1 - i)
        di *= i
        di *= g
        di *= ds
        np.multiply(g, g, out=dg)  # dg = ds * i * (1 - g^2)
        np.subtract(1, dg, out=dg)
        dg *= i
        dg *= ds
        if k:
            np.subtract(1, f, out=df)  # df = ds * c[k - 1] * f * (1 - f)
            df *= f
            df *= self.c[:, k - 1]
            df *= ds
            np.multiply(ds, f, out=self.dc)
            np.matmul(dak, self.params["Wh"].T, out=self.dh_next)
        else:
            df.fill(0)

    def _embed_grad(self, flat, out):
        """dL/dE: the rows of dL/dx sorted by id, each id's run summed (np.add.reduceat)."""
        order = np.argsort(flat, kind="stable")
        ids = flat[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        out.fill(0)
        out[ids[starts]] = np.add.reduceat(self.dx[order], starts)
