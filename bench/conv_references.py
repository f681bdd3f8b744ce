"""Hand-written NumPy references for the conv benchmark: SimpleConvNet of "Deep Learning
from Scratch" (conv 30x5x5, ReLU, 2x2 max pooling, dense 100, ReLU, dense 10, softmax
cross-entropy on integer labels).

- ``BookConvNet``: the book's layer objects (ch. 7's ``Convolution`` and ``Pooling`` on
  top of its ``im2col``/``col2im``, ch. 5's ``Relu``, ``Affine``, ``SoftmaxWithLoss``),
  written here in our own words the way the book structures them: a patch matrix with
  one row per output pixel, filters as columns, pooling through an argmax over patch
  rows, and every layer's backward run (the first convolution's input gradient too,
  as the book's network does; ``input_grad=False`` skips it).
- ``HandConvNet``: what a careful person writes for speed: the patch matrix taken with
  a strided view in the layout the filters multiply (no transposes of activations),
  batched matmuls into preallocated buffers, ReLU and bias in place, pooling and its
  adjoint by kernel offset, the ReLU mask folded into the pooling adjoint, no input
  gradient.

Both take the generated module's ``params`` (W1 [30, 1, 5, 5], b1 [30, 1, 1], W2, b2,
W3, b3) and give its loss and gradients (the book's loss adds its 1e-7 inside the log).
Max pooling splits a window's gradient evenly among tied maxima in ``HandConvNet`` (as
bpc does); the book's argmax gives it to the first: they agree away from ties.
"""

from __future__ import annotations

import numpy as np

from references import Relu  # ch. 5's Relu, shared with the MLP references


# ----------------------------------------------------------------------------- the book's layers
def book_im2col(x, fh, fw, stride=1, pad=0):
    """[N*OH*OW, C*fh*fw]: one row per output pixel, filled one kernel offset at a time."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((n, c, fh, fw, oh, ow), dtype=x.dtype)
    for i in range(fh):
        for j in range(fw):
            col[:, :, i, j] = img[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def book_col2im(col, shape, fh, fw, stride=1, pad=0):
    """The patch rows added back onto the (padded) image, one kernel offset at a time."""
    n, c, h, w = shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for i in range(fh):
        for j in range(fw):
            img[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, :, i, j]
    return img[:, :, pad:h + pad, pad:w + pad]


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x = self.col = self.col_W = self.dW = self.db = None

    def forward(self, x):
        fn, c, fh, fw = self.W.shape
        n, _, h, w = x.shape
        oh = (h + 2 * self.pad - fh) // self.stride + 1
        ow = (w + 2 * self.pad - fw) // self.stride + 1
        col = book_im2col(x, fh, fw, self.stride, self.pad)
        col_W = self.W.reshape(fn, -1).T
        out = col @ col_W + self.b.reshape(-1)
        self.x, self.col, self.col_W = x, col, col_W
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout, input_grad=True):
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = np.sum(dout, axis=0).reshape(self.b.shape)
        self.dW = (self.col.T @ dout).transpose(1, 0).reshape(fn, c, fh, fw)
        if not input_grad:
            return None
        dcol = dout @ self.col_W.T
        return book_col2im(dcol, self.x.shape, fh, fw, self.stride, self.pad)


class Pooling:
    def __init__(self, ph, pw, stride=1, pad=0):
        self.ph, self.pw, self.stride, self.pad = ph, pw, stride, pad
        self.x = self.arg_max = None

    def forward(self, x):
        n, c, h, w = x.shape
        oh = (h - self.ph) // self.stride + 1
        ow = (w - self.pw) // self.stride + 1
        col = book_im2col(x, self.ph, self.pw, self.stride, self.pad)
        col = col.reshape(-1, self.ph * self.pw)
        self.x, self.arg_max = x, np.argmax(col, axis=1)
        return np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        size = self.ph * self.pw
        dmax = np.zeros((dout.size, size), dtype=dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (size,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return book_col2im(dcol, self.x.shape, self.ph, self.pw, self.stride, self.pad)


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.original_shape = self.dW = self.db = None

    def forward(self, x):
        self.original_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_shape)


class SoftmaxWithLoss:
    """Integer labels t, as the book's class accepts them."""

    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        x = x - np.max(x, axis=1, keepdims=True)
        e = np.exp(x)
        self.y = e / np.sum(e, axis=1, keepdims=True)
        n = x.shape[0]
        return -np.sum(np.log(self.y[np.arange(n), t] + 1e-7)) / n

    def backward(self, dout=1):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx / n


class BookConvNet:
    def __init__(self, params, input_grad=True):
        self.params = params
        self.input_grad = input_grad
        p = params
        self.conv = Convolution(p["W1"], p["b1"])
        self.layers = [self.conv, Relu(), Pooling(2, 2, stride=2), Affine(p["W2"], p["b2"]),
                       Relu(), Affine(p["W3"], p["b3"])]
        self.last = SoftmaxWithLoss()

    def loss_and_grad(self, x, t):
        for layer in self.layers:
            x = layer.forward(x)
        loss = self.last.forward(x, t)
        dout = self.last.backward()
        for layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        self.conv.backward(dout, self.input_grad)
        c, a2, a3 = self.conv, self.layers[3], self.layers[5]
        return loss, {"W1": c.dW, "b1": c.db, "W2": a2.dW, "b2": a2.db, "W3": a3.dW,
                      "b3": a3.db}


# ----------------------------------------------------------------------------- hand-fused
class HandConvNet:
    def __init__(self, params, n, dtype, image=(1, 28, 28), k=5, pool=2):
        self.params = params
        f = params["W1"].shape[0]
        c, h, w = image
        oh, ow = h - k + 1, w - k + 1
        self.k, self.pool, self.shape = k, pool, (n, f, oh, ow)
        hidden = params["W2"].shape[1]
        classes = params["W3"].shape[1]
        dt = np.dtype(dtype)
        self.col = np.empty((n, c * k * k, oh * ow), dtype=dt)
        self.a1 = np.empty((n, f, oh, ow), dtype=dt)
        self.p1 = np.empty((n, f, oh // pool, ow // pool), dtype=dt)
        self.ties = np.empty_like(self.p1)
        self.share = np.empty_like(self.p1)
        self.a2 = np.empty((n, hidden), dtype=dt)
        self.y = np.empty((n, classes), dtype=dt)
        self.da1 = np.empty_like(self.a1)
        self.dz2 = np.empty((n, hidden), dtype=dt)
        self.df1 = np.empty((n, f * (oh // pool) * (ow // pool)), dtype=dt)
        self.dfilters = np.empty((n, f, c * k * k), dtype=dt)
        self.grads = {name: np.empty_like(v) for name, v in params.items()}
        self.mask = np.empty(self.p1.shape, dtype=bool)

    def loss_and_grad(self, x, t):
        p, g = self.params, self.grads
        n, f, oh, ow = self.shape
        k, s = self.k, self.pool
        # forward: patches in the layout the filters multiply, into a kept buffer
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
        np.copyto(self.col.reshape(n, x.shape[1], k, k, oh, ow),
                  windows.transpose(0, 1, 4, 5, 2, 3))
        a1 = self.a1
        np.matmul(p["W1"].reshape(f, -1), self.col, out=a1.reshape(n, f, oh * ow))
        a1 += p["b1"]
        np.maximum(a1, 0, out=a1)
        offsets = [(slice(i, None, s), slice(j, None, s)) for i in range(s) for j in range(s)]
        p1 = self.p1
        np.copyto(p1, a1[..., offsets[0][0], offsets[0][1]])
        for rows, cols in offsets[1:]:
            np.maximum(p1, a1[..., rows, cols], out=p1)
        f1 = p1.reshape(n, -1)
        a2 = np.matmul(f1, p["W2"], out=self.a2)
        a2 += p["b2"]
        np.maximum(a2, 0, out=a2)
        y = np.matmul(a2, p["W3"], out=self.y)
        y += p["b3"]
        y -= np.max(y, axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= np.sum(y, axis=1, keepdims=True)
        rows = np.arange(n)
        loss = -float(np.sum(np.log(y[rows, t]))) / n
        # backward
        y[rows, t] -= 1
        y /= n
        np.sum(y, axis=0, out=g["b3"])
        np.matmul(a2.T, y, out=g["W3"])
        dz2 = np.matmul(y, p["W3"].T, out=self.dz2)
        dz2 *= a2 > 0
        np.sum(dz2, axis=0, out=g["b2"])
        np.matmul(f1.T, dz2, out=g["W2"])
        dp1 = np.matmul(dz2, p["W2"].T, out=self.df1).reshape(p1.shape)
        # pooling adjoint (ties split evenly) with the ReLU mask: a window whose maximum
        # is 0 passes nothing back (relu'(0) = 0)
        ties, share, mask = self.ties, self.share, self.mask
        ties.fill(0)
        for rows_, cols in offsets:
            np.equal(a1[..., rows_, cols], p1, out=mask)
            ties += mask
        np.divide(dp1, ties, out=share)
        share *= p1 > 0
        da1 = self.da1
        for rows_, cols in offsets:
            np.equal(a1[..., rows_, cols], p1, out=mask)
            np.multiply(mask, share, out=da1[..., rows_, cols])
        np.sum(da1, axis=(0, 2, 3), out=g["b1"].reshape(-1))
        np.matmul(da1.reshape(n, f, -1), self.col.transpose(0, 2, 1), out=self.dfilters)
        np.sum(self.dfilters, axis=0, out=g["W1"].reshape(f, -1))
        return loss, g
