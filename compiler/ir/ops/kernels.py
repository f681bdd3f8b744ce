"""The module helpers: NumPy functions that generated modules call, and the IR evaluator too.

Codegen copies a helper's source, as written here (``inspect.getsource``), into each
generated module that calls it, so every function is self-contained: it uses only its
arguments and ``np``, and this module imports nothing else. The names keep their leading
underscore because that is how a generated module names them (private to the module).
The IR evaluator (the ops' ``evaluate``) calls the same functions: one implementation of
the maths, tested directly against PyTorch in tests/compiler/ir/test_kernels.py.
"""

import numpy as np


def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return np.exp(-np.logaddexp(0, -x))


def _softplus(x):
    """log(1 + exp(x)), without overflow."""
    return np.logaddexp(0, x)


def _sigmoid_tanh(x, out=None):
    """1 / (1 + exp(-x)) as 0.5 * tanh(x / 2) + 0.5: no overflow, about 10 times faster
    than exp(-logaddexp(0, -x)) (bench/fast_forms.py). Its absolute error is within the
    dtype's epsilon; far below 0 it is 0 (float64: x < -37), a tiny sigmoid's place."""
    s = np.multiply(x, 0.5, out=out)
    if not isinstance(s, np.ndarray):  # a scalar: nothing to work in place
        return 0.5 * np.tanh(s) + 0.5
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return s


def _softplus_log1p(x, out=None):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): no overflow, several times
    faster than np.logaddexp(0, x) (bench/fast_forms.py)."""
    top = np.maximum(x, 0)
    e = np.abs(x, out=out)
    if not isinstance(e, np.ndarray):  # a scalar: nothing to work in place
        return top + np.log1p(np.exp(-e))
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    e += top
    return e


def _leaky_relu(x, alpha):
    return np.where(x > 0, x, alpha * x)


def _softmax(x, axis=-1):
    """exp(x) / sum(exp(x)), shifted by the maximum for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _masked_softmax(x, mask, axis=-1):
    """softmax over the positions where mask is true (or nonzero), 0 elsewhere; a row
    with no position left is all 0, not 0 / 0."""
    shifted = np.where(mask, x, -np.inf)
    top = np.max(shifted, axis=axis, keepdims=True)
    e = np.exp(shifted - np.where(np.isfinite(top), top, 0))
    total = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(total > 0, total, 1)


def _logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), shifted by the maximum for stability."""
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _index_add(x, *updates):
    """A copy of x with each value added into its positions: out[index] += value."""
    out = x.copy()
    for index, value in zip(updates[::2], updates[1::2]):
        out[index] += value
    return out


def _sinusoidal(length, dim, dtype):
    """Vaswani et al.'s positional encodings, [length, dim]: row t holds sin(t * w_i) at
    column 2i and cos(t * w_i) at column 2i + 1, with w_i = 10000^(-2i / dim)."""
    length = int(length)
    t = np.arange(length)[:, None]
    rates = 10000.0 ** (-np.arange(0, dim, 2) / dim)
    table = np.empty((length, dim), dtype=dtype)
    table[:, 0::2] = np.sin(t * rates)
    table[:, 1::2] = np.cos(t * rates[: dim // 2])
    return table


def _first_rows(table, n):
    """table[:n], the positions of a sequence of n steps; more than the table holds is
    an error (a slice would silently give fewer)."""
    n = int(n)
    if n > len(table):
        raise ValueError(f"the sequences have {n} steps, but the table of positions holds "
                         f"{len(table)}: declare it with at least {n} rows")
    return table[:n]


def _pad_rows(x, rows):
    """x followed by rows of zeros, ``rows`` in all (the adjoint of table[:n])."""
    out = np.zeros((rows,) + x.shape[1:], dtype=x.dtype)
    out[:len(x)] = x
    return out


def _im2col(x, kh, kw, stride=1, pad=0):
    """The patch matrix of a convolution, one column per output pixel.

    x is [N, C, H, W]; the result is [N, C*kh*kw, OH*OW]: column (i*OW + j) of example
    n holds the C*kh*kw input values that the filter at output pixel (i, j) covers, in
    the filters' own order (channel, row, column), so the filters reshaped to rows
    [F, C*kh*kw] times it are the convolution. A copy, kept for the backward pass,
    except for a 1x1 kernel at stride 1 without padding: each pixel is then a patch of
    its own, and the result is x reshaped (a view of x, which must then stay unchanged
    while the result is kept)."""
    n, c, h, w = x.shape
    if kh == kw == stride == 1 and not pad:
        return x.reshape(n, c, h * w)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # [N, C, OH, OW, kh, kw], a view
    oh, ow = windows.shape[2:4]
    col = windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)
    # A kernel as tall or as wide as the image can leave that reshape a view of x.
    return col.copy() if np.may_share_memory(col, x) else col


def _col2im(col, shape, kh, kw, stride=1, pad=0):
    """The adjoint of _im2col: every entry of the patch matrix [N, C*kh*kw, OH*OW]
    added back onto the pixel of the [N, C, H, W] image it was copied from (a pixel
    that several patches cover collects several terms). One loop step per kernel
    offset (kh*kw steps), none per example or pixel."""
    n, c, h, w = shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    col = col.reshape(n, c, kh, kw, oh, ow)
    x = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            x[:, :, rows, cols] += col[:, :, i, j]
    return x[:, :, pad : pad + h, pad : pad + w]


def _max_pool(x, size, stride=1, pad=0):
    """The maximum of every size x size window of the last two axes (windows stride
    apart, the image surrounded by pad rows and columns of -inf)."""
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2
        x = np.pad(x, edges, constant_values=-np.inf)
    oh = (x.shape[-2] - size) // stride + 1
    ow = (x.shape[-1] - size) // stride + 1
    out = x[..., : stride * oh : stride, : stride * ow : stride].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                rows = slice(i, i + stride * oh, stride)
                cols = slice(j, j + stride * ow, stride)
                np.maximum(out, x[..., rows, cols], out=out)
    return out


def _max_pool_mask(x, out, size, stride=1, pad=0):
    """Where each window of _max_pool took its maximum, one boolean array per offset
    in the window: [size*size, ..., OH, OW] (the argmax mask, ties kept). What the
    backward keeps instead of x."""
    oh, ow = out.shape[-2:]
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2
        x = np.pad(x, edges, constant_values=-np.inf)
    mask = np.empty((size * size,) + out.shape, dtype=bool)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            np.equal(x[..., rows, cols], out, out=mask[i * size + j])
    return mask


def _max_pool_grad(g, mask, size, stride=1, pad=0):
    """The adjoint of _max_pool: each window's adjoint g goes to the pixel holding the
    window's maximum (mask from _max_pool_mask), split evenly among tied pixels. One
    loop step per offset in the window (size*size steps)."""
    oh, ow = g.shape[-2:]
    h = (oh - 1) * stride + size  # the padded image (the windows tile it exactly)
    w = (ow - 1) * stride + size
    share = mask[0].astype(g.dtype)
    for ties in mask[1:]:
        share += ties
    np.divide(g, share, out=share)
    # Windows side by side (stride == size) cover every pixel once: nothing to clear.
    empty = np.empty if stride == size else np.zeros
    dx = empty(g.shape[:-2] + (h, w), dtype=g.dtype)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            if stride >= size:  # windows do not overlap: each pixel is written once
                np.multiply(mask[i * size + j], share, out=dx[..., rows, cols])
            else:
                dx[..., rows, cols] += mask[i * size + j] * share
    return dx[..., pad : h - pad, pad : w - pad]


def _avg_pool(x, size, stride=1, pad=0):
    """The mean of every size x size window of the last two axes (windows stride apart;
    pad rows and columns of zeros around the image count in every mean)."""
    if pad:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2)
    oh = (x.shape[-2] - size) // stride + 1
    ow = (x.shape[-1] - size) // stride + 1
    out = x[..., : stride * oh : stride, : stride * ow : stride].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                rows = slice(i, i + stride * oh, stride)
                cols = slice(j, j + stride * ow, stride)
                out += x[..., rows, cols]
    out /= size * size
    return out


def _avg_pool_grad(g, shape, size, stride=1, pad=0):
    """The adjoint of _avg_pool: each window's adjoint spread evenly, g / size^2, over
    the size x size pixels of the window."""
    h, w = shape[-2:]
    dx = np.zeros(tuple(shape[:-2]) + (h + 2 * pad, w + 2 * pad), dtype=g.dtype)
    share = g / (size * size)
    oh, ow = g.shape[-2:]
    for i in range(size):
        for j in range(size):
            dx[..., i : i + stride * oh : stride, j : j + stride * ow : stride] += share
    return dx[..., pad : pad + h, pad : pad + w]


def _embed_grad(ids, g, rows):
    """The gradient of a table [rows, D] whose rows ``ids`` picked: each row of ``g``
    added into a table of zeros at its id. np.add.at adds every occurrence of a repeated
    id, where ``out[ids] += g`` would keep only one."""
    out = np.zeros((rows, g.shape[-1]), dtype=g.dtype)
    np.add.at(out, ids, g)
    return out


def _embed_grad_sorted(ids, g, rows):
    """``_embed_grad``, 1.4 to 6 times faster (bench/README.md): the rows of ``g``
    sorted by id, and each id's run of rows summed in one call (np.add.reduceat)."""
    flat = ids.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((rows, g.shape[-1]), dtype=g.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(g.reshape(flat.size, -1)[order], starts)
    return out
