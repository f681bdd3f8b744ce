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
