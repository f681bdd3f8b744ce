"""Built-in functions of the spec language (LANGUAGE.md §5): signature and lowering.

A function is what a spec author calls; a *primitive* (``compiler/ir/primitives.py``) is
what the IR computes and differentiates. Most functions are one primitive; a few are
short compositions written here so the derivation shows each step (``mse`` is
``mean((y - t) ^ 2)``), and the fused losses lower to a primitive with its own
vector-Jacobian rule. ``static`` parameters (axis, alpha, …) must be compile-time
constants and become primitive attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import ShapeError, fmt_shape
from .ops.linalg import permuted
from .primitives import out_hw, pair, unread
from ..vocab import Signature, sig, whole_number


@dataclass(frozen=True)
class Function:
    signature: Signature
    static: frozenset[str]
    lower: Callable  # (builder, {param: Node}, {param: static value}) -> Node
    # Parameters that take a list of values written [a, b, ...] (a tuple of Nodes).
    listed: frozenset[str] = frozenset()
    # Parameters that name a declared state (its leaf), which training mode updates.
    states: frozenset[str] = frozenset()


def _fn(signature: Signature, lower: Callable, static=(), listed=(), states=()) -> Function:
    return Function(signature, frozenset(static), lower, frozenset(listed), frozenset(states))


def _unary(op: str) -> Function:
    return _fn(sig("x"), lambda b, a, s: b.op(op, a["x"]))


def _binary(op: str) -> Function:
    return _fn(sig("a", "b"), lambda b, a, s: b.op(op, a["a"], a["b"]))


def _reduction(op: str) -> Function:
    return _fn(sig("x", ("axis", None), ("keepdims", False)),
               lambda b, a, s: b.op(op, a["x"], axis=b.axes(a["x"], s["axis"]),
                                    keepdims=bool(s["keepdims"])),
               static=("axis", "keepdims"))


def _same_shape(name: str, lower: Callable, first: str = "y", second: str = "t") -> Callable:
    """A loss comparing two values element by element needs them of one shape (or one
    of them a scalar): NumPy would silently broadcast [N, 1] against [N] into [N, N]."""
    def checked(b, a, s):
        x, t = a[first], a[second]
        if x.shape != t.shape and x.shape != () and t.shape != ():
            err = ShapeError(f"{name} compares its two arguments element by element, so "
                             "they must have the same shape", (0, 1),
                             hint="reshape one of them, e.g. reshape(t, [N, 1]), or declare "
                                  "the target with the prediction's shape")
            err.nodes = (x, t)
            raise err
        return lower(b, a, s)
    return checked


def _squared_error(b, a, s):
    return b.op("pow", b.op("sub", a["y"], a["t"]), b.const(2))


def _log_softmax(b, a, s):
    x = a["x"]
    axis = b.axes(x, s["axis"])
    return b.op("sub", x, b.op("logsumexp", x, axis=axis, keepdims=True))


def _softmax(b, a, s):
    """softmax(x, axis, mask): a mask (booleans, or numbers: nonzero keeps) gives the
    positions left out weight 0; a row left with none is all 0, never NaN."""
    x, m = a["x"], a.get("mask")
    axis = b.axes(x, s["axis"])
    return b.op("softmax", x, axis=axis) if m is None else \
        b.op("masked_softmax", x, m, axis=axis)


def _transpose(b, a, s):
    """transpose(x): the axes reversed; transpose(x, axes=[0, 2, 1]): in that order."""
    x, axes = a["x"], s["axes"]
    if axes is None:
        return b.transpose(x)
    order = tuple(b.axes(x, [k])[0] for k in axes) if isinstance(axes, list) else ()
    if sorted(order) != list(range(len(x.shape))):
        raise ShapeError(f"transpose's axes must name each of the {len(x.shape)} axes of a "
                         f"{fmt_shape(x.shape)} value once", (0,),
                         hint=f"e.g. axes={list(reversed(range(len(x.shape))))}")
    return permuted(b, x, order)


def _swapaxes(b, a, s):
    x = a["x"]
    first, second = b.axes(x, [s["axis1"]])[0], b.axes(x, [s["axis2"]])[0]
    order = list(range(len(x.shape)))
    order[first], order[second] = second, first
    return permuted(b, x, tuple(order))


def _causal(b, a, s):
    """causal(T): [T, T] booleans, true on and below the diagonal (position t sees 0..t)."""
    return b.op("causal", a["n"])


def _cross_entropy(b, a, s):
    p, t = a["p"], a["t"]
    total = b.op("sum", b.op("mul", t, b.op("log", p)), axis=None, keepdims=False)
    return b.op("neg", b.op("div", total, b.rows(p)))


def _softmax_cross_entropy(b, a, s):
    logits, t, ignore = a["logits"], a["t"], s["ignore"]
    lse = b.op("logsumexp", logits, axis=b.axes(logits, -1), keepdims=True)
    log_p = b.hint(b.op("sub", logits, lse), "log_softmax")  # shared by loss and gradient
    if ignore is None:
        return b.op("softmax_xent", logits, log_p, t, b.rows(logits))
    classes = logits.shape[-1] if logits.shape else None
    if len(t.shape) != len(logits.shape) - 1:
        raise ShapeError("ignore= leaves out the positions of a padding id, so the targets "
                         "must be integer labels (the logits' shape without the last axis)",
                         (0, 1), hint="declare the target as labels, e.g. [N, T] for "
                                      "[N, T, V] logits")
    if whole_number(ignore) is None or not isinstance(classes, int) \
            or not 0 <= whole_number(ignore) < classes:
        raise ShapeError(f"ignore= names the padding id, a class of the logits' last axis "
                         f"(0..{classes - 1 if isinstance(classes, int) else 'V-1'}), not "
                         f"{ignore!r}", (0,))
    keep = b.op("ne", t, b.const(whole_number(ignore)))  # the positions that count
    return b.op("softmax_xent", logits, log_p, t, b.op("count_kept", keep), keep)


def _sigmoid_cross_entropy(b, a, s):
    logits = a["logits"]
    batch = b.count(logits, (0,)) if logits.shape else b.const(1)
    return b.op("sigmoid_xent", logits, a["t"], batch)


def _embed(b, a, s):
    """embed(ids, E): the rows of E that integer ids pick, E[ids]. The ids are data (an
    input, checked by the runtime to lie in 0..V-1): a computed value holds no ids."""
    ids = a["ids"]
    if ids.op != "input" or ids.attr("default"):
        err = ShapeError("embed picks rows by integer ids, so its first argument must be "
                         "an input (token ids), not a computed value or a default", (0,),
                         hint="declare the ids as an input, e.g. 'input ids : [N, T]'")
        err.nodes = (ids, a["E"])
        raise err
    return b.op("embed", ids, a["E"])


def normalize_index(shape, items, what: str = "the value") -> tuple:
    """What ``x[...]`` writes -> a ``slice`` primitive's index (``primitives.index_text``).

    ``items`` has one entry per subscript: an integer, or (start, stop, step) with None
    for an omitted part. Integers may be negative (from the end); a slice bound must lie
    in [-size, size]; a slice may not be empty; a symbolic axis (N) takes only ':'.
    Raises ``ShapeError`` naming ``what`` (``'x'``) and its shape, with ``item`` set to
    the offending subscript's position."""
    def fail(k, message, hint=None):
        err = ShapeError(message, (0,), hint)
        err.item = k
        raise err

    of = f"{what}, which is {fmt_shape(shape)}"
    if not shape:
        fail(0, f"{what} is a scalar and cannot be indexed",
             "index vectors and arrays: x[0], x[:, 1:3]")
    if len(items) > len(shape):
        fail(len(shape), f"too many indices for {of}: {len(items)} given, it has "
                         f"{len(shape)} {'axis' if len(shape) == 1 else 'axes'}")
    out = []
    for k, (item, d) in enumerate(zip(items, shape)):
        parts = item if isinstance(item, tuple) else (item,)
        for v in parts:
            if v is not None and (isinstance(v, bool) or not float(v).is_integer()):
                fail(k, f"an index must be a whole number, not {v!r}")
        parts = tuple(None if v is None else int(v) for v in parts)
        whole = isinstance(item, tuple) and parts[0] in (None, 0) and parts[1] is None \
            and parts[2] in (None, 1)
        if not isinstance(d, int):
            if not isinstance(item, tuple):  # one position, checked when the module runs
                out.append(parts[0])  # (h[:, -1], a sequence's last step)
                continue
            if not whole:
                fail(k, f"{what} is {fmt_shape(shape)}: its axis {k} has the symbolic size "
                        f"{d}, so it takes only ':' (all of it) or one position",
                     "its size is known only when the module runs; index a fixed axis, "
                     "take all of this one, or one position (x[:, -1])")
            out.append(None)
            continue
        if not isinstance(item, tuple):
            if not -d <= parts[0] < d:
                fail(k, f"index {parts[0]} is out of range for axis {k} of {of}",
                     f"valid indices are 0..{d - 1}, or -{d}..-1 from the end")
            out.append(parts[0] % d)
            continue
        start, stop, step = parts
        if step == 0:
            fail(k, "a slice step cannot be 0")
        for v in (start, stop):
            if v is not None and not -d <= v <= d:
                fail(k, f"slice bound {v} is out of range for axis {k} of {of}",
                     f"bounds lie in -{d}..{d}; omit one to mean the end")
        taken = range(d)[slice(start, stop, step)]
        if len(taken) == 0:
            fail(k, f"the slice takes no elements of axis {k} of {of}",
                 "a slice must keep at least one element (start before stop for a "
                 "positive step)")
        if taken == range(d):
            out.append(None)
            continue
        step = taken.step
        first, last = taken[0], taken[-1]
        default_first = 0 if step > 0 else d - 1
        end = last + step
        out.append((None if first == default_first else first,
                    None if (end >= d if step > 0 else end < 0) else end, step))
    return tuple(out)


def _joined_axis(xs, axis, extra: int) -> int:
    """concat's (extra=0) or stack's (extra=1, a new axis) axis, negatives from the end."""
    rank = len(xs[0].shape) + extra
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"axis must be a whole number, not {axis!r}", ())
    if not -rank <= axis < rank:
        err = ShapeError(f"axis {axis} is out of range for "
                         f"{'stacking' if extra else 'joining'} values", (0,),
                         hint=f"axes run from {-rank} to {rank - 1} here")
        err.nodes = xs
        raise err
    return axis % rank


def _concat(b, a, s):
    xs = a["xs"]
    if not xs[0].shape:
        err = ShapeError("concat joins vectors or arrays, not scalars", (0,),
                         hint="stack([a, b]) makes a vector of scalars")
        err.nodes = xs
        raise err
    axis = _joined_axis(xs, s["axis"], 0)
    return b.op("concat", *xs, axis=axis) if len(xs) > 1 else xs[0]


def _whole(name: str, value, low: int) -> int:
    """A count setting: a whole number >= low."""
    whole = whole_number(value)
    if whole is None or whole < low:
        raise ShapeError(f"'{name}' must be a whole number >= {low}, not {value!r}", ())
    return whole


def _window(name: str, value, low: int):
    """A window setting (size, stride, pad): a whole number >= low for both axes, or a
    list [rows, columns] of two; a pair of equal numbers is that number."""
    if not isinstance(value, list):
        return _whole(name, value, low)
    whole = [whole_number(v) for v in value]
    if len(whole) != 2 or any(v is None or v < low for v in whole):
        raise ShapeError(f"'{name}' must be a whole number >= {low} or a list [rows, "
                         f"columns] of two, not {_listed(value)}", ())
    return whole[0] if whole[0] == whole[1] else tuple(whole)


def _listed(value) -> str:
    return "[" + ", ".join(map(str, value)) + "]"


def _spelled(value) -> str:
    """A window setting as a spec writes it: 2, or [1, 2]."""
    return str(value) if isinstance(value, int) else _listed(value)


def _warn_unread(b, x, kernel, stride, pad) -> None:
    """PyTorch's rule leaves out the rows and columns past the last window: a located
    warning names them, so no pixel is dropped silently."""
    rows, cols = unread(x.shape[-2:], kernel, stride, pad)
    if not rows and not cols:
        return
    parts = [f"{n} {word}{'s' if n > 1 else ''}" for n, word in ((rows, "row"),
                                                                 (cols, "column")) if n]
    kh, kw = pair(kernel)
    at = f" at stride {_spelled(stride)}" + (f" and pad {_spelled(pad)}" if pad else "")
    fixes = [f"{n} + 2*pad - {k} ({axis})" for n, k, left, axis in zip(
        x.shape[-2:], (kh, kw), (rows, cols), ("height", "width")) if left]
    one = rows + cols == 1
    b.warn(f"the last {' and '.join(parts)} of {{}} {'is' if one else 'are'} never read by "
           f"this {kh}×{kw} window{at}",
           f"PyTorch leaves {'it' if one else 'them'} out too (the gradient there is 0); to "
           "read every pixel, choose stride and pad so that the stride divides "
           + " and ".join(fixes), x)


def _conv2d(b, a, s):
    """conv2d(x, W) = the patch matrix of x times the filters reshaped into rows,
    moved to [N, F, OH, OW] (the textbook's Convolution layer, step by step)."""
    x, w = a["x"], a["W"]
    stride, pad = _window("stride", s["stride"], 1), _window("pad", s["pad"], 0)

    def fail(message, hint=None):
        err = ShapeError(message, (0, 1), hint=hint)
        err.nodes = (x, w)
        return err

    if len(x.shape) != 4 or len(w.shape) != 4:
        raise fail("conv2d needs an image batch x : [N, C, H, W] and filters W : "
                   "[F, C, KH, KW]")
    if x.shape[1] != w.shape[1]:
        raise fail("conv2d channels differ: the image's channels (axis 1 of x) must equal "
                   "the filters' channels (axis 1 of W)",
                   f"filters for this image are [F, {x.shape[1]}, KH, KW]")
    f, c, kh, kw = w.shape
    if not all(isinstance(d, int) for d in w.shape):
        raise fail("conv2d needs filters of fixed size")
    try:
        col = b.hint(b.op("im2col", x, kh=kh, kw=kw, stride=stride, pad=pad), "col")
    except ShapeError as e:
        raise fail("conv2d: " + e.message, e.hint) from None
    _warn_unread(b, x, (kh, kw), stride, pad)
    rows = b.op("reshape", w, shape=(f, c * kh * kw))  # one filter per row
    return b.op("filters_matmul", rows, col,
                image=out_hw(x.shape[2:], (kh, kw), stride, pad, "convolution"))


def _pool(op):
    def lower(b, a, s):
        size = _window("size", s["size"], 1)
        stride = size if s["stride"] is None else _window("stride", s["stride"], 1)
        pad = _window("pad", s["pad"], 0)
        if any(p >= k for p, k in zip(pair(pad), pair(size))):
            raise _pad_alone(op, size, pad)
        try:
            node = b.op(op, a["x"], size=size, stride=stride, pad=pad)
        except ShapeError as e:
            err = ShapeError(f"{op}: " + e.message, (0,), hint=e.hint)
            err.nodes = (a["x"],)
            raise err from None
        _warn_unread(b, a["x"], size, stride, pad)
        return node
    return _fn(sig("x", "size", ("stride", None), ("pad", 0)), lower,
               static=("size", "stride", "pad"))


def _pad_alone(op: str, size, pad) -> ShapeError:
    """The error for a pad as large as the window: the first window would hold padding
    alone."""
    alone = "whose maximum is -inf" if op == "max_pool" else \
        "whose mean is 0 whatever the input"
    small = min(pair(size))
    return ShapeError(f"{op}'s pad ({_spelled(pad)}) must be smaller than its size "
                      f"({_spelled(size)}): a window could hold padding alone, {alone}", (),
                      hint=f"use a pad from 0 to {small - 1}"
                           + (f" ({(small - 1) // 2} keeps a stride-1 image's size)"
                              if small % 2 and isinstance(size, int) else ""))


def _dropout(b, a, s):
    """Inverted dropout: in training, keep each element with probability 1 - p and divide
    the kept ones by 1 - p, so the expected value is x and inference is x itself."""
    x, p = a["x"], s["p"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ShapeError(f"dropout's p is the probability of zeroing an element, from 0 "
                         f"up to (not including) 1, not {p!r}", (),
                         hint="e.g. dropout(h, 0.5): half the elements zeroed in training")
    if not b.train:
        return x
    # p = 0 draws too (a mask of ones): every site draws, so a later site's mask does
    # not depend on this one's p (LANGUAGE.md, "Modes")
    b.random_sites += 1
    keep = b.hint(b.op("keep_mask", x, p=float(p), site=b.random_sites), "keep")
    return b.op("div", b.op("mul", x, keep), b.const(1 - float(p)))


BATCH_NORM_MOMENTUM = 0.9  # the running statistics keep 0.9 of themselves per step
BATCH_NORM_EPS = 1e-6  # "Deep Learning from Scratch" writes 10e-7
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32


def _located(message: str, nodes, at: int, hint: str | None = None) -> ShapeError:
    """A shape error located on argument ``at`` of a call whose arguments are ``nodes``."""
    err = ShapeError(message, (at,), hint=hint)
    err.nodes, err.at = nodes, at
    return err


def _setting(fn: str, key: str, value, ok, want: str, hint: str) -> None:
    """A normalization's constant setting (``eps``, ``momentum``): a number ``ok`` takes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ShapeError(f"{fn}'s {key} must be a number {want}, not {value!r}", (),
                         hint=hint)


def _eps_in_dtype(b, fn: str, eps, what: str, hint: str) -> None:
    """An eps that float32 rounds to 0 would divide a constant ``what`` by 0."""
    if b.dtype == "float32" and eps < FLOAT32_TINY:
        raise ShapeError(f"{fn}'s eps {eps!r} is 0 in float32 (its smallest normal "
                         f"number is about 1.2e-38): a constant {what} would divide 0 by 0",
                         (), hint=hint)


def _normalized(b, x, axes: tuple, keepdims: bool, eps, line_up=lambda v: v):
    """The normalization steps batch and layer norm share, each a named step the
    backward pass goes back through: mu = mean(x), xc = x - mu, var = mean(xc^2),
    std = sqrt(var + eps), xn = xc / std, the means over ``axes`` (``line_up`` puts a
    statistic beside x). Returns (mu, var, xn)."""
    mu = b.step(b.op("mean", x, axis=axes, keepdims=keepdims), "mu")
    xc = b.step(b.op("sub", x, line_up(mu)), "xc")
    variance = b.step(b.op("mean", b.op("pow", xc, b.const(2)), axis=axes,
                           keepdims=keepdims), "var")
    std = b.step(b.op("sqrt", b.op("add", variance, b.const(float(eps)))), "std")
    return mu, variance, b.step(b.op("div", xc, line_up(std)), "xn")


def _batch_norm(b, a, s):
    """Batch normalization ("Deep Learning from Scratch" 6.3), each feature (axis 1)
    normalized over every other axis: the batch of [N, D], batch and pixels of
    [N, C, H, W].

    Training mode, step by step as the book's computational graph draws it, so the
    chain rule's backward pass goes back through each step (not the fused formula):
    mu = mean(x), xc = x - mu, var = mean(xc^2), std = sqrt(var + eps), xn = xc / std,
    out = gamma * xn + beta; and the running statistics are updated,
    mean <- momentum * mean + (1 - momentum) * mu (likewise var; the biased batch
    variance, as the book). Inference mode: the running statistics in place of the
    batch's, out = gamma * (x - mean) / sqrt(var + eps) + beta."""
    x, gamma, beta, mean, var = a["x"], a["gamma"], a["beta"], a["mean"], a["var"]
    momentum, eps = s["momentum"], s["eps"]
    for key, value, ok, want in (
            ("momentum", momentum, lambda v: 0 <= v < 1, "from 0 up to (not including) 1"),
            ("eps", eps, lambda v: 0 < v <= 1, "above 0 and at most 1")):
        _setting("batch_norm", key, value, ok, want, "the defaults are momentum=0.9, eps=1e-6")
    _eps_in_dtype(b, "batch_norm", eps, "feature", "the default is eps=1e-6")
    rank = len(x.shape)
    nodes = (x, gamma, beta, mean, var)  # what the message names, by argument index
    if rank not in (2, 4):
        raise _located("batch_norm normalizes [N, D] values (each feature over the batch) or "
                       "[N, C, H, W] images (each channel over the batch and its pixels)",
                       nodes, 0, hint="reshape the value first, e.g. reshape(h, [N, -1])")
    c = x.shape[1]
    if not isinstance(c, int):
        raise _located("batch_norm needs a fixed number of features (axis 1)", nodes, 0)
    for k, (key, v) in enumerate((("gamma", gamma), ("beta", beta), ("mean", mean),
                                  ("var", var)), start=1):
        if v.shape != (c,) and not (v.shape == () and key in ("gamma", "beta")):
            err = ShapeError(f"batch_norm's {key} holds one number per feature (axis 1 "
                             f"of x), so it must be [{c}]", (0, k),
                             hint=f"declare it with shape [{c}]" + (
                                 " (or use a scalar for every feature)"
                                 if key in ("gamma", "beta") else ""))
            err.nodes, err.at = nodes, k
            raise err
    axes = (0,) + tuple(range(2, rank))  # every axis but the features'

    def per_feature(v):
        """A [C] vector lined up with axis 1 of an image batch: [C, 1, 1]."""
        if rank == 2 or v.shape == ():
            return v
        return b.op("reshape", v, shape=(c, 1, 1))

    if b.train:
        mu, variance, xn = _normalized(b, x, axes, False, eps, per_feature)
        keep, new = b.const(float(momentum)), b.const(round(1 - float(momentum), 12))
        for leaf, batch in ((mean, mu), (var, variance)):
            b.updates.append((leaf, b.op("add", b.op("mul", keep, leaf),
                                         b.op("mul", new, batch))))
    else:
        xc = b.op("sub", x, per_feature(mean))
        std = b.op("sqrt", b.op("add", var, b.const(float(eps))))
        xn = b.step(b.op("div", xc, per_feature(std)), "xn")
    return b.op("add", b.op("mul", per_feature(gamma), xn), per_feature(beta))


def _flatten(b, a, s):
    """flatten(x): [N, d1, d2, …] -> [N, d1*d2*…], keeping the first axis."""
    x = a["x"]
    if len(x.shape) < 2:
        raise ShapeError("flatten needs a value with at least two axes (the first is kept)",
                         (0,))
    if not all(isinstance(d, int) for d in x.shape[1:]):
        raise ShapeError("flatten needs fixed sizes after the first axis", (0,))
    size = 1
    for d in x.shape[1:]:
        size *= d
    return b.op("reshape_each", x, dims=(size,))

FUNCTIONS: dict[str, Function] = {
    **{name: _unary(name) for name in (
        "exp", "log", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "softplus",
        "sqrt", "abs", "square", "sign")},
    "leaky_relu": _fn(sig("x", ("alpha", 0.01)),
                      lambda b, a, s: b.op("leaky_relu", a["x"], alpha=float(s["alpha"])),
                      static=("alpha",)),
    "maximum": _binary("maximum"),
    "minimum": _binary("minimum"),
    "sum": _reduction("sum"),
    "mean": _reduction("mean"),
    "max": _reduction("max"),
    "logsumexp": _reduction("logsumexp"),
    "softmax": _fn(sig("x", ("axis", -1), ("mask", None)), _softmax, static=("axis",)),
    "log_softmax": _fn(sig("x", ("axis", -1)), _log_softmax, static=("axis",)),
    "transpose": _fn(sig("x", ("axes", None)), _transpose, static=("axes",)),
    "swapaxes": _fn(sig("x", "axis1", "axis2"), _swapaxes, static=("axis1", "axis2")),
    "causal": _fn(sig("n"), _causal),
    "reshape": _fn(sig("x", "shape"),
                   lambda b, a, s: b.op("reshape", a["x"], *(b.size([d]) for d in s["shape"]
                                                              if isinstance(d, str)),
                                        shape=tuple(s["shape"])),
                   static=("shape",)),
    "concat": _fn(sig("xs", ("axis", 0)), _concat, static=("axis",), listed=("xs",)),
    "stack": _fn(sig("xs", ("axis", 0)),
                 lambda b, a, s: b.op("stack", *a["xs"], axis=_joined_axis(a["xs"], s["axis"],
                                                                           1)),
                 static=("axis",), listed=("xs",)),
    "mse": _fn(sig("y", "t"), _same_shape("mse", lambda b, a, s: b.op(
        "mean", _squared_error(b, a, s), axis=None, keepdims=False))),
    "sse": _fn(sig("y", "t"), _same_shape("sse", lambda b, a, s: b.op(
        "mul", b.const(0.5), b.op("sum", _squared_error(b, a, s), axis=None,
                                  keepdims=False)))),
    "least_squares": _fn(sig("y", "t"), _same_shape("least_squares", lambda b, a, s: b.op(
        "sum", _squared_error(b, a, s), axis=None, keepdims=False))),
    "cross_entropy": _fn(sig("p", "t"), _same_shape("cross_entropy", _cross_entropy, "p")),
    "softmax_cross_entropy": _fn(sig("logits", "t", ("ignore", None)), _softmax_cross_entropy,
                                 static=("ignore",)),
    "sigmoid_cross_entropy": _fn(sig("logits", "t"), _same_shape(
        "sigmoid_cross_entropy", _sigmoid_cross_entropy, "logits")),
    "conv2d": _fn(sig("x", "W", ("stride", 1), ("pad", 0)), _conv2d, static=("stride", "pad")),
    "max_pool": _pool("max_pool"),
    "avg_pool": _pool("avg_pool"),
    "flatten": _fn(sig("x"), _flatten),
    "embed": _fn(sig("ids", "E"), _embed),
    "stop_gradient": _unary("stop_gradient"),
    "dropout": _fn(sig("x", "p"), _dropout, static=("p",)),
    "batch_norm": _fn(sig("x", "gamma", "beta", "mean", "var",
                          ("momentum", BATCH_NORM_MOMENTUM), ("eps", BATCH_NORM_EPS)),
                      _batch_norm, static=("momentum", "eps"), states=("mean", "var")),
}

# The sequence models' functions (layer norm, pooling over time) and attention's have
# modules of their own, built on this one's helpers, hence imported last.
from .sequence_functions import FUNCTIONS as _SEQUENCE_FUNCTIONS  # noqa: E402
from .attention_functions import FUNCTIONS as _ATTENTION_FUNCTIONS  # noqa: E402

FUNCTIONS.update(_SEQUENCE_FUNCTIONS)
FUNCTIONS.update(_ATTENTION_FUNCTIONS)
