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


def _one_hot(labels, classes, dtype):
    """``np.eye(classes)[labels]`` without the classes x classes identity (800 MB for a
    float64 vocabulary of 10,000): zeros with a 1 put at each label."""
    out = np.zeros(np.shape(labels) + (classes,), dtype=dtype)
    np.put_along_axis(out, np.asarray(labels)[..., None], 1, axis=-1)
    return out


def _minus_one_hot(p, labels, amount=1, out=None):
    """p - amount * one_hot(labels), into ``out`` (which may be p): ``amount`` (a
    number, or one per label, shaped [..., 1]) subtracted at each label's place along
    the last axis, as the book's softmax backward does (``dx[arange, t] -= 1``), with no
    [..., classes] table of zeros."""
    if out is None:
        out = p.copy()
    elif out is not p:
        out[...] = p
    at = np.asarray(labels)[..., None]
    np.put_along_axis(out, at, np.take_along_axis(out, at, axis=-1) - amount, axis=-1)
    return out


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


def _matmul_rows(x, w, out=None):
    """x @ w for a batch x ([N, T, D]) and a matrix w ([D, K]) as one product over all
    the rows ([N*T, D] @ [D, K]), as the book's TimeAffine reshapes: NumPy's matmul runs
    one product per leading index (bench/README.md, the LSTM: 42 -> 30 ms)."""
    rows = np.reshape(x, (-1, x.shape[-1]))
    if out is not None and out.flags.c_contiguous:  # its rows are a view to write into
        np.matmul(rows, w, out=np.reshape(out, (-1, w.shape[-1])))
        return out
    product = np.reshape(rows @ w, x.shape[:-1] + w.shape[-1:])
    if out is None:
        return product
    out[...] = product
    return out


def _logsumexp_shifted(x, axis=None, keepdims=False):
    """``_logsumexp`` with one temporary the size of x, shifted and exponentiated in
    place (a spec's ``logsumexp`` or ``log_softmax`` over a large array: one such array
    fewer; softmax cross-entropy has its own form). A scalar's difference is a NumPy
    scalar, which cannot be written into: made a 0-d array."""
    m = np.max(x, axis=axis, keepdims=True)
    e = np.asarray(np.subtract(x, m))
    np.exp(e, out=e)
    out = np.log(np.sum(e, axis=axis, keepdims=True))
    out += m
    return out if keepdims else np.squeeze(out, axis=axis)


def _index_add(x, *updates):
    """A copy of x with each value added into its positions: out[index] += value."""
    out = x.copy()
    for index, value in zip(updates[::2], updates[1::2]):
        out[index] += value
    return out


def _stream(state, x, name):
    """A loop's start read from a state (``h[t] = ... from hc``): one row per stream,
    row i of the batch continuing row i of the state; a batch of another size is an
    error, never a broadcast."""
    if state.shape[0] != x.shape[0]:
        rows, streams = x.shape[0], state.shape[0]
        raise ValueError(
            f"state '{name}' carries {streams} streams but this batch has "
            f"{rows} rows: a stateful loop continues row i of the last batch in "
            f"row i of this one; use batches of {streams}"
        )
    return state


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
    [F, C*kh*kw] times it are the convolution. stride and pad are a number or a pair
    (rows, columns); rows and columns past the last window are left out (PyTorch's
    rule). A copy, kept for the backward pass, except for a 1x1 kernel at stride 1
    without padding: each pixel is then a patch of its own, and the result is x
    reshaped (a view of x, which must then stay unchanged while the result is kept)."""
    n, c, h, w = x.shape
    if kh == kw == stride == 1 and not pad:
        return x.reshape(n, c, h * w)
    (sh, sw), (ph, pw) = [(v, v) if isinstance(v, int) else v for v in (stride, pad)]
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if pad else x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw]  # [N, C, OH, OW, kh, kw], a view
    oh, ow = windows.shape[2:4]
    col = windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)
    # A kernel as tall or as wide as the image can leave that reshape a view of x.
    return col.copy() if np.may_share_memory(col, x) else col


def _col2im(col, shape, kh, kw, stride=1, pad=0):
    """The adjoint of _im2col: every entry of the patch matrix [N, C*kh*kw, OH*OW]
    added back onto the pixel of the [N, C, H, W] image it was copied from (a pixel
    that several patches cover collects several terms, one no patch covers stays 0).
    One loop step per kernel offset (kh*kw steps), none per example or pixel."""
    n, c, h, w = shape
    (sh, sw), (ph, pw) = [(v, v) if isinstance(v, int) else v for v in (stride, pad)]
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    col = col.reshape(n, c, kh, kw, oh, ow)
    x = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * oh, sh)
            cols = slice(j, j + sw * ow, sw)
            x[:, :, rows, cols] += col[:, :, i, j]
    return x[:, :, ph : ph + h, pw : pw + w]


def _max_pool(x, size, stride=1, pad=0):
    """The maximum of every size window of the last two axes (windows stride apart, the
    image surrounded by pad rows and columns of -inf). size, stride and pad are a
    number or a pair (rows, columns); rows and columns past the last window are left
    out (PyTorch's rule)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
        x = np.pad(x, edges, constant_values=-np.inf)
    oh = (x.shape[-2] - kh) // sh + 1
    ow = (x.shape[-1] - kw) // sw + 1
    out = x[..., : sh * oh : sh, : sw * ow : sw].copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                rows = slice(i, i + sh * oh, sh)
                cols = slice(j, j + sw * ow, sw)
                np.maximum(out, x[..., rows, cols], out=out)
    return out


def _max_pool_mask(x, out, size, stride=1, pad=0):
    """Where each window of _max_pool took its maximum, one boolean array per offset
    in the window: [kh*kw, ..., OH, OW] (the argmax mask, ties kept). What the
    backward keeps instead of x."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    oh, ow = out.shape[-2:]
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
        x = np.pad(x, edges, constant_values=-np.inf)
    mask = np.empty((kh * kw,) + out.shape, dtype=bool)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * oh, sh)
            cols = slice(j, j + sw * ow, sw)
            np.equal(x[..., rows, cols], out, out=mask[i * kw + j])
    return mask


def _max_pool_grad(g, mask, size, stride=1, pad=0, image=None):
    """The adjoint of _max_pool: each window's adjoint g goes to the pixel holding the
    window's maximum (mask from _max_pool_mask), split evenly among tied pixels. One
    loop step per offset in the window (kh*kw steps). image, the input's last two
    sizes, is given when the windows leave rows or columns out: their adjoint is 0."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    oh, ow = g.shape[-2:]
    h = (oh - 1) * sh + kh  # the padded image, as far as the windows reach
    w = (ow - 1) * sw + kw
    if image is not None:
        h, w = image[0] + 2 * ph, image[1] + 2 * pw
    share = mask[0].astype(g.dtype)
    for ties in mask[1:]:
        share += ties
    np.divide(g, share, out=share)
    # Windows side by side (stride == size) cover every pixel once: nothing to clear.
    empty = np.empty if (sh, sw) == (kh, kw) and image is None else np.zeros
    dx = empty(g.shape[:-2] + (h, w), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * oh, sh)
            cols = slice(j, j + sw * ow, sw)
            # Windows that do not overlap write each pixel once.
            if sh >= kh and sw >= kw:
                np.multiply(mask[i * kw + j], share, out=dx[..., rows, cols])
            else:
                dx[..., rows, cols] += mask[i * kw + j] * share
    return dx[..., ph : h - ph, pw : w - pw]


def _avg_pool(x, size, stride=1, pad=0):
    """The mean of every size window of the last two axes (windows stride apart; pad
    rows and columns of zeros around the image count in every mean). size, stride and
    pad are a number or a pair (rows, columns); rows and columns past the last window
    are left out (PyTorch's rule)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    if pad:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)])
    oh = (x.shape[-2] - kh) // sh + 1
    ow = (x.shape[-1] - kw) // sw + 1
    out = x[..., : sh * oh : sh, : sw * ow : sw].copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                rows = slice(i, i + sh * oh, sh)
                cols = slice(j, j + sw * ow, sw)
                out += x[..., rows, cols]
    out /= kh * kw
    return out


def _avg_pool_grad(g, shape, size, stride=1, pad=0):
    """The adjoint of _avg_pool: each window's adjoint spread evenly, g / (kh*kw), over
    the pixels of the window (a pixel no window covers gets 0)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    h, w = shape[-2:]
    dx = np.zeros(tuple(shape[:-2]) + (h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    share = g / (kh * kw)
    oh, ow = g.shape[-2:]
    for i in range(kh):
        for j in range(kw):
            dx[..., i : i + sh * oh : sh, j : j + sw * ow : sw] += share
    return dx[..., ph : ph + h, pw : pw + w]


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
