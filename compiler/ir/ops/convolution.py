"""Convolution and pooling, as steps the backward pass can read one by one.

A convolution is written as the textbook's Convolution layer (Deep Learning from Scratch,
ch. 7): the patch matrix of the input (``im2col``), a matrix product with the filters
reshaped into rows (``filters_matmul``), the result moved to [N, F, OH, OW]. The
filters' gradient is a product with the kept patch matrix (``batch_gram``); the
patches' gradient is folded back onto the input (``col2im``). Pooling works on the last
two axes of any value of rank >= 2; max pooling's backward keeps a boolean argmax mask
(``max_pool_mask``), not its input. The maths is in ``kernels`` (``_im2col``,
``_max_pool``, ...), which generated modules and the evaluator share.
"""

from __future__ import annotations

import numpy as np

from .. import ShapeError
from . import kernels
from .core import MUL, POSTFIX, defop, derived, ex, expand, paren


def pair(value) -> tuple[int, int]:
    """A window setting (kernel, stride, pad) as (rows, columns): a number serves both."""
    return (value, value) if isinstance(value, int) else tuple(value)


def out_size(size, kernel: int, stride: int, pad: int, what: str, axis: str) -> int:
    """floor((size + 2 pad - kernel) / stride) + 1 along the image's ``axis`` (height or
    width), PyTorch's rule: the rows or columns past the last window are left out."""
    if not isinstance(size, int):
        raise ShapeError(f"{what} needs fixed image sizes, not the symbolic dimension "
                         f"{size}", (0,), hint="declare the height and width as numbers")
    span = size + 2 * pad - kernel
    if span < 0:
        raise ShapeError(f"the {what} window's {axis} ({kernel}) is larger than the padded "
                         f"input's ({size} + 2*{pad} = {size + 2 * pad})",
                         hint="use a smaller kernel or more padding")
    return span // stride + 1


def _left(size, kernel, stride, pad) -> int:
    """The rows (or columns) of the padded image past the last window."""
    return (size + 2 * pad - kernel) % stride


def unread(hw, kernel, stride, pad) -> tuple[int, int]:
    """How many of the image's last rows and columns no window reads (PyTorch leaves
    them out too): what is left of the padded image past the last window, less the
    padding there. ``hw`` is the image's (height, width), each setting a number or a
    pair."""
    return tuple(max(0, _left(n, k, s, p) - p) for n, k, s, p in zip(
        hw, pair(kernel), pair(stride), pair(pad)))


def out_hw(hw, kernel, stride, pad, what: str) -> tuple[int, int]:
    """The output's (height, width) for the image sizes ``hw``, each setting a number or
    a pair."""
    return tuple(out_size(n, k, s, p, what, axis) for n, k, s, p, axis in zip(
        hw, pair(kernel), pair(stride), pair(pad), ("height", "width")))


# ----------------------------------------------------------------------------- patches
def _im2col_shape(args, attrs):
    n, c, h, w = args[0].shape
    kh, kw = attrs["kh"], attrs["kw"]
    oh, ow = out_hw((h, w), (kh, kw), attrs["stride"], attrs["pad"], "convolution")
    return (n, c * kh * kw, oh * ow)


def _window_args(attrs) -> str:
    return f"{attrs['kh']}, {attrs['kw']}, stride={attrs['stride']}, pad={attrs['pad']}"


def _im2col_is_reshape(attrs) -> bool:
    """A 1x1 kernel at stride 1 without padding: every pixel is a patch of its own, and
    ``_im2col`` returns the input reshaped (a view of it where NumPy can make one)."""
    return (attrs["kh"], attrs["kw"], attrs["stride"], attrs["pad"]) == (1, 1, 1, 0)


def _window(kh, kw, stride, pad) -> dict:
    """An example's attributes (stride and pad a number or a pair (rows, columns))."""
    return {"kh": kh, "kw": kw, "stride": stride, "pad": pad}


def _emit_im2col(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_im2col({a[0][0]}, {_window_args(attrs)})", POSTFIX)


defop("im2col", arity=1, shape=_im2col_shape,
      helpers=("_im2col",), torch_helpers=("_im2col",),
      emit=_emit_im2col, torch=_emit_im2col,
      evaluate=lambda v, a: kernels._im2col(v[0], a["kh"], a["kw"], a["stride"], a["pad"]),
      vjp=lambda b, n, g: [b.op("col2im", expand(b, g, n), n.args[0], **dict(n.attrs))],
      rule="im2col copies input pixels into patches: its adjoint adds each patch back (col2im)",
      views=lambda attrs: (0,) if _im2col_is_reshape(attrs) else (),
      examples=(ex((2, 2, 5, 4), **_window(3, 2, 1, 1)), ex((1, 3, 3, 2), **_window(1, 1, 1, 0)),
                ex((1, 2, 5, 5), **_window(3, 3, 2, 0)), ex((1, 1, 2, 3), **_window(2, 3, 1, 0)),
                ex((1, 2, 6, 7), **_window(3, 2, (2, 1), (1, 0))),
                ex((1, 1, 7, 6), **_window(2, 2, 2, 0))))


def _emit_col2im(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_col2im({a[0][0]}, {paren(a[1], POSTFIX)}.shape, {_window_args(attrs)})",
            POSTFIX)


defop("col2im", arity=2, shape=lambda args, attrs: args[1].shape,
      helpers=("_col2im",), torch_helpers=("_col2im",),
      emit=_emit_col2im, torch=_emit_col2im,
      evaluate=lambda v, a: kernels._col2im(v[0], np.shape(v[1]), a["kh"], a["kw"],
                                            a["stride"], a["pad"]),
      vjp=lambda b, n, g: [b.op("im2col", expand(b, g, n), **dict(n.attrs)), None],
      rule="col2im adds patches onto the image: its adjoint copies the image into patches",
      examples=(ex((2, 12, 25), (2, 2, 5, 4), **_window(3, 2, 1, 1)),
                ex((1, 18, 4), (1, 2, 5, 5), **_window(3, 3, 2, 0)),
                ex((1, 12, 18), (1, 2, 6, 7), **_window(3, 2, (2, 1), (1, 0))),
                ex((1, 4, 9), (1, 1, 7, 6), **_window(2, 2, 2, 0))))


# ----------------------------------------------------------------------------- filters
def _filters_matmul_shape(args, attrs):
    m, x = args[0].shape, args[1].shape
    if len(m) != 2 or len(x) != 3 or m[1] != x[1]:
        raise ShapeError("filters [A, B] need patches [N, B, P]", (0, 1))
    image = attrs.get("image")
    if image is None:
        return (x[0], m[0], x[2])
    if image[0] * image[1] != x[2]:
        raise ShapeError(f"{x[2]} output pixels do not make a {image[0]}x{image[1]} image",
                         (1,))
    return (x[0], m[0]) + tuple(image)


def _filters_matmul(fn: str):
    def emit(a, attrs, node):
        product = f"{paren(a[0], MUL)} @ {paren(a[1], MUL + 1)}"
        image = attrs.get("image")
        if image is None:
            return product, MUL
        return f"{fn}({product}, (-1, {node.shape[1]}, {image[0]}, {image[1]}))", POSTFIX
    return emit


def _filters_matmul_vjp(b, n, g):
    """Y_n = M @ X_n for every example n (M [A, B], X [N, B, P]; with ``image`` Y_n is
    then reshaped to [A, OH, OW]): dX_n = M.T @ G_n, dM = the sum over n of
    G_n @ X_n.T."""
    m, x = n.args
    g = expand(b, g, n)
    if n.attr("image") is not None:
        g = b.hint(b.op("reshape_each", g, dims=(m.shape[0], x.shape[2])), "rows")
    return [b.hint(b.op("batch_gram", g, x), "filters"),
            b.hint(b.op("filters_matmul", b.transpose(m), g), "col")]


def _eval_filters_matmul(v, a):
    out = np.matmul(v[0], v[1])
    image = a.get("image")
    return out if image is None else out.reshape(out.shape[:2] + tuple(image))


defop("filters_matmul", arity=2, shape=_filters_matmul_shape,
      emit=_filters_matmul("np.reshape"), torch=_filters_matmul("torch.reshape"),
      evaluate=_eval_filters_matmul,
      vjp=_filters_matmul_vjp,
      rule="Y_n = M @ X_n: dX_n = M.T @ G_n, dM = sum over n of G_n @ X_n.T",
      examples=(ex((3, 4), (2, 4, 5)), ex((3, 4), (2, 4, 6), image=(2, 3))))


def _batch_gram_shape(args, attrs):
    g, x = args[0].shape, args[1].shape
    if len(g) != 3 or len(x) != 3 or g[0] != x[0] or g[2] != x[2]:
        raise ShapeError("both stacks must be [N, ., P] with the same N and P", (0, 1))
    return (g[1], x[1])


defop("batch_gram", arity=2, shape=_batch_gram_shape,
      emit=lambda a, attrs, n: (f"np.sum({paren(a[0], MUL)} @ np.swapaxes({a[1][0]}, 1, 2), "
                                "axis=0)", POSTFIX),
      torch=lambda a, attrs, n: (f"torch.sum({paren(a[0], MUL)} @ "
                                 f"{paren(a[1], POSTFIX)}.transpose(1, 2), dim=0)", POSTFIX),
      evaluate=lambda v, a: np.einsum("nap,nbp->ab", v[0], v[1]),
      rule="the sum over examples n of G_n @ X_n.T",
      examples=(ex((2, 3, 5), (2, 4, 5)),))


# ----------------------------------------------------------------------------- pooling
def _pool_shape(args, attrs):
    shape = args[0].shape
    if len(shape) < 2:
        raise ShapeError("pooling needs a value with at least two axes (the last two are "
                         "pooled)", (0,))
    return shape[:-2] + out_hw(shape[-2:], attrs["size"], attrs["stride"], attrs["pad"],
                                "pooling")


def _pool_args(attrs) -> str:
    return f"{attrs['size']}, stride={attrs['stride']}, pad={attrs['pad']}"


def _pool(kernel):
    """The evaluator of a pooling op: ``kernel(*values, size, stride, pad)``."""
    return lambda v, a: kernel(*v, a["size"], a["stride"], a["pad"])


def _pool_gap(v, a):
    """How close each window's maximum is to its runner-up (a tie is max_pool's kink)."""
    (kh, kw), (sh, sw), (ph, pw) = pair(a["size"]), pair(a["stride"]), pair(a["pad"])
    x = np.asarray(v[0], dtype=float)
    if ph or pw:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)], constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(-2, -1))
    win = win[..., ::sh, ::sw, :, :]  # [..., OH, OW, kh, kw]
    flat = np.sort(win.reshape(win.shape[:-2] + (kh * kw,)), axis=-1)
    if kh * kw < 2 or not flat.size:
        return np.inf
    return float(np.min(flat[..., -1] - flat[..., -2]))


def _max_pool_vjp(b, n, g):
    """The adjoint from a boolean argmax mask, one per offset in the window and window
    (the textbook's ``arg_max``, with ties kept), which the backward can take as soon as
    the forward is done: the pooled input itself need not be kept."""
    attrs = dict(n.attrs)
    mask = b.hint(b.op("max_pool_mask", n.args[0], n, **attrs), "argmax")
    hw = n.args[0].shape[-2:]
    if any(map(_left, hw, pair(attrs["size"]), pair(attrs["stride"]), pair(attrs["pad"]))):
        attrs["image"] = hw  # the adjoint has rows or columns no window reached
    return [b.op("max_pool_grad", expand(b, g, n), mask, **attrs)]



def _pooled(**attrs):
    """An example argument: the max pooling of the argument before it."""
    return derived(lambda b, new, x: b.op("max_pool", x, **attrs))


def _argmax_mask(x_shape, **attrs):
    """An example argument: the argmax mask of max pooling a new float leaf."""
    def build(b, new, *earlier):
        x = new(x_shape)
        return b.op("max_pool_mask", x, b.op("max_pool", x, **attrs), **attrs)
    return derived(build)


def _max_pool_grad_shape(args, attrs):
    shape = args[0].shape
    if "image" in attrs:
        return shape[:-2] + tuple(attrs["image"])
    return shape[:-2] + tuple((d - 1) * s + k - 2 * p for d, k, s, p in zip(
        shape[-2:], pair(attrs["size"]), pair(attrs["stride"]), pair(attrs["pad"])))


TILED, OVERLAPPING, GAPS = (dict(size=2, stride=2, pad=0), dict(size=3, stride=1, pad=1),
                            dict(size=2, stride=3, pad=0))
PER_AXIS, LEFT_OUT = dict(size=(3, 2), stride=(2, 1), pad=(1, 0)), dict(size=2, stride=2, pad=0)
POOL_EXAMPLES = (ex((2, 2, 4, 4), **TILED), ex((1, 2, 5, 5), **OVERLAPPING),
                 ex((2, 5, 8), **GAPS), ex((3, 4), size=2, stride=1, pad=1),
                 ex((1, 2, 7, 5), **PER_AXIS), ex((2, 7, 5), **LEFT_OUT))

def _emit_max_pool(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_max_pool({a[0][0]}, {_pool_args(attrs)})", POSTFIX)


defop("max_pool", arity=1, shape=_pool_shape,
      helpers=("_max_pool",), torch_helpers=("_max_pool",),
      emit=_emit_max_pool, torch=_emit_max_pool,
      evaluate=_pool(kernels._max_pool),
      vjp=_max_pool_vjp,
      rule="max pooling passes each window's adjoint to its maximum (split evenly among ties)",
      kink=_pool_gap,
      examples=POOL_EXAMPLES)

def _offsets(attrs) -> int:
    """The offsets in a pooling window, kh * kw: the masks max pooling keeps."""
    kh, kw = pair(attrs["size"])
    return kh * kw


def _emit_max_pool_mask(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_max_pool_mask({a[0][0]}, {a[1][0]}, {_pool_args(attrs)})",
                POSTFIX)


defop("max_pool_mask", arity=2,
      helpers=("_max_pool_mask",), torch_helpers=("_max_pool_mask",),
      shape=lambda args, attrs: (_offsets(attrs),) + args[1].shape,
      emit=_emit_max_pool_mask, torch=_emit_max_pool_mask,
      evaluate=_pool(kernels._max_pool_mask),
      dtype="bool",
      examples=(ex((1, 2, 4, 4), _pooled(**TILED), **TILED),
                ex((1, 5, 5), _pooled(**OVERLAPPING), **OVERLAPPING),
                ex((1, 7, 5), _pooled(**PER_AXIS), **PER_AXIS)))


def _emit_max_pool_grad(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    image = f", image={attrs['image']}" if "image" in attrs else ""
    return f"_max_pool_grad({a[0][0]}, {a[1][0]}, {_pool_args(attrs)}{image})", POSTFIX


defop("max_pool_grad", arity=2, shape=_max_pool_grad_shape,
      helpers=("_max_pool_grad",), torch_helpers=("_max_pool_grad",),
      emit=_emit_max_pool_grad, torch=_emit_max_pool_grad,
      evaluate=lambda v, a: kernels._max_pool_grad(*v, a["size"], a["stride"], a["pad"],
                                                   a.get("image")),
      examples=(ex((1, 2, 2, 2), _argmax_mask((1, 2, 4, 4), **TILED), **TILED),
                ex((1, 5, 5), _argmax_mask((1, 5, 5), **OVERLAPPING), **OVERLAPPING),
                ex((2, 2, 3), _argmax_mask((2, 5, 8), **GAPS), **GAPS),
                ex((1, 4, 4), _argmax_mask((1, 7, 5), **PER_AXIS), **PER_AXIS),
                ex((2, 3, 2), _argmax_mask((2, 7, 5), **LEFT_OUT), image=(7, 5), **LEFT_OUT)))


def _emit_avg_pool(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_avg_pool({a[0][0]}, {_pool_args(attrs)})", POSTFIX)


defop("avg_pool", arity=1, shape=_pool_shape,
      helpers=("_avg_pool",), torch_helpers=("_avg_pool",),
      emit=_emit_avg_pool, torch=_emit_avg_pool,
      evaluate=_pool(kernels._avg_pool),
      vjp=lambda b, n, g: [b.op("avg_pool_grad", expand(b, g, n), n.args[0], **dict(n.attrs))],
      rule="average pooling spreads each window's adjoint evenly over its pixels",
      examples=POOL_EXAMPLES)

def _emit_avg_pool_grad(a, attrs, n):
    """The call of the helper, the same text on both targets."""
    return (f"_avg_pool_grad({a[0][0]}, {paren(a[1], POSTFIX)}.shape, "
                f"{_pool_args(attrs)})", POSTFIX)


defop("avg_pool_grad", arity=2, shape=lambda args, attrs: args[1].shape,
      helpers=("_avg_pool_grad",), torch_helpers=("_avg_pool_grad",),
      emit=_emit_avg_pool_grad, torch=_emit_avg_pool_grad,
      evaluate=lambda v, a: kernels._avg_pool_grad(v[0], np.shape(v[1]), a["size"],
                                                   a["stride"], a["pad"]),
      examples=(ex((1, 2, 2, 2), (1, 2, 4, 4), **TILED),
                ex((1, 5, 5), (1, 5, 5), **OVERLAPPING), ex((2, 2, 3), (2, 5, 8), **GAPS),
                ex((1, 4, 4), (1, 7, 5), **PER_AXIS), ex((2, 3, 2), (2, 7, 5), **LEFT_OUT)))
