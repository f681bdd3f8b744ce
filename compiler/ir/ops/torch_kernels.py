"""The module helpers of the PyTorch target: ``kernels``' functions written with torch.

Codegen copies a helper's source, as written here, into each torch module that calls
it, as ``kernels``' are copied into NumPy modules: each function uses only its arguments
and ``torch`` (which the generated module imports), under the same name and with the
same arguments as its NumPy twin, so a line calling it prints the same on both targets.
This file imports torch only where it is installed (the compiler needs no torch: it
only copies the text); the torch target's differential test runs each against its twin.
Helpers NumPy needs and torch has (``_sigmoid``, ``_softmax``, ``_logsumexp``) have no
twin here: the torch printers call ``torch.sigmoid``, ``torch.softmax``,
``torch.logsumexp``.
"""

try:
    import torch
except ImportError:  # the compiler copies these as text: torch is the module's import
    torch = None


def _placement(params, *data):
    """The dtype and device a function computes in: its parameters' (the first floating
    tensor among them, else among the data), else DTYPE on the CPU."""
    for value in (*params.values(), *data):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype, value.device
    return DTYPE, torch.device("cpu")  # noqa: F821 - DTYPE: the module's own constant


def _softplus(x):
    """log(1 + exp(x)), without overflow."""
    return torch.logaddexp(x, torch.zeros_like(x))


def _leaky_relu(x, alpha):
    return torch.where(x > 0, x, alpha * x)


def _masked_softmax(x, mask, axis=-1):
    """softmax over the positions where mask is true (or nonzero), 0 elsewhere; a row
    with no position left is all 0, not 0 / 0."""
    shifted = torch.where(mask != 0, x, float("-inf"))
    top = torch.amax(shifted, dim=axis, keepdim=True)
    e = torch.exp(shifted - torch.where(torch.isfinite(top), top, 0.0))
    total = torch.sum(e, dim=axis, keepdim=True)
    return e / torch.where(total > 0, total, 1.0)


def _index_add(x, *updates):
    """A copy of x with each value added into its positions: out[index] += value."""
    out = x.clone()
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
    t = torch.arange(length, dtype=torch.float64)[:, None]
    rates = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.empty((length, dim), dtype=torch.float64)
    table[:, 0::2] = torch.sin(t * rates)
    table[:, 1::2] = torch.cos(t * rates[: dim // 2])
    return table.to(dtype)


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
    out = torch.zeros((rows,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    out[:len(x)] = x
    return out


def _im2col(x, kh, kw, stride=1, pad=0):
    """The patch matrix of a convolution, one column per output pixel: [N, C*kh*kw,
    OH*OW], each column in the filters' own order (channel, row, column), as
    torch.nn.functional.unfold lays it out (stride and pad a number or a pair)."""
    return torch.nn.functional.unfold(x, (kh, kw), padding=pad, stride=stride)


def _col2im(col, shape, kh, kw, stride=1, pad=0):
    """The adjoint of _im2col: every entry of the patch matrix added back onto the pixel
    of the [N, C, H, W] image it was copied from (torch.nn.functional.fold)."""
    return torch.nn.functional.fold(col, tuple(shape[-2:]), (kh, kw), padding=pad,
                                    stride=stride)


def _max_pool(x, size, stride=1, pad=0):
    """The maximum of every size window of the last two axes (windows stride apart, the
    image surrounded by pad rows and columns of -inf; each a number or a pair)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    if pad:
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph), value=-torch.inf)
    oh = (x.shape[-2] - kh) // sh + 1
    ow = (x.shape[-1] - kw) // sw + 1
    out = x[..., : sh * oh : sh, : sw * ow : sw].clone()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                rows = slice(i, i + sh * oh, sh)
                cols = slice(j, j + sw * ow, sw)
                out = torch.maximum(out, x[..., rows, cols])  # autograd can follow it
    return out


def _max_pool_mask(x, out, size, stride=1, pad=0):
    """Where each window of _max_pool took its maximum, one boolean tensor per offset
    in the window: [kh*kw, ..., OH, OW] (the argmax mask, ties kept)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    oh, ow = out.shape[-2:]
    if pad:
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph), value=-torch.inf)
    mask = torch.empty((kh * kw,) + tuple(out.shape), dtype=torch.bool, device=x.device)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * oh, sh)
            cols = slice(j, j + sw * ow, sw)
            torch.eq(x[..., rows, cols], out, out=mask[i * kw + j])
    return mask


def _max_pool_grad(g, mask, size, stride=1, pad=0, image=None):
    """The adjoint of _max_pool: each window's adjoint g goes to the pixel holding the
    window's maximum (mask from _max_pool_mask), split evenly among tied pixels; image,
    the input's last two sizes, is given when windows leave pixels out (adjoint 0)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    oh, ow = g.shape[-2:]
    h = (oh - 1) * sh + kh  # the padded image, as far as the windows reach
    w = (ow - 1) * sw + kw
    if image is not None:
        h, w = image[0] + 2 * ph, image[1] + 2 * pw
    share = g / mask.sum(dim=0, dtype=g.dtype)
    dx = torch.zeros(tuple(g.shape[:-2]) + (h, w), dtype=g.dtype, device=g.device)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * oh, sh)
            cols = slice(j, j + sw * ow, sw)
            dx[..., rows, cols] += mask[i * kw + j] * share
    return dx[..., ph : h - ph, pw : w - pw]


def _avg_pool(x, size, stride=1, pad=0):
    """The mean of every size window of the last two axes (windows stride apart; pad
    rows and columns of zeros around the image count in every mean; each a number or
    a pair)."""
    (kh, kw), (sh, sw), (ph, pw) = [
        (v, v) if isinstance(v, int) else v for v in (size, stride, pad)
    ]
    if pad:
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    oh = (x.shape[-2] - kh) // sh + 1
    ow = (x.shape[-1] - kw) // sw + 1
    out = x[..., : sh * oh : sh, : sw * ow : sw].clone()
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
    dx = torch.zeros(tuple(shape[:-2]) + (h + 2 * ph, w + 2 * pw), dtype=g.dtype,
                     device=g.device)
    share = g / (kh * kw)
    oh, ow = g.shape[-2:]
    for i in range(kh):
        for j in range(kw):
            dx[..., i : i + sh * oh : sh, j : j + sw * ow : sw] += share
    return dx[..., ph : ph + h, pw : pw + w]


def _embed_grad(ids, g, rows):
    """The gradient of a table [rows, D] whose rows ``ids`` picked: each row of ``g``
    added into a table of zeros at its id (repeated ids add up)."""
    out = torch.zeros((rows, g.shape[-1]), dtype=g.dtype, device=g.device)
    return out.index_add_(0, ids.reshape(-1), g.reshape(-1, g.shape[-1]))
