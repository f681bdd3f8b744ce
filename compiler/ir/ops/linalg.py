"""Linear algebra and reshapes: ``matmul`` (over batch axes too), ``outer``,
``row_product`` (a shared weight's gradient over a batch), ``transpose`` and ``permute``,
and the ops that move elements without changing them (``reshape``, ``reshape_like``,
``reshape_each``, ``expand_dims``)."""

from __future__ import annotations

import numpy as np

from .. import NAMED_LEAVES, ShapeError, fmt_shape
from .core import (MUL, POSTFIX, as_float, axis_text, broadcast_shapes, call, defop, ex,
                   expand, infix, paren, tcall)


# ----------------------------------------------------------------------------- products
def _matmul_shape(args, attrs):
    """NumPy's matmul: the last two axes multiply as matrices (a vector as a row on the
    left, a column on the right) and the axes before them, the batch axes, broadcast."""
    a, b = args[0].shape, args[1].shape
    if len(a) == 0 or len(b) == 0:
        raise ShapeError("'@' needs vectors or matrices, not scalars",
                         hint="use '*' to multiply by a scalar")
    if len(a) == 1 and len(b) > 2:
        raise ShapeError("'@' takes a vector on the left of matrices only, not of a batch",
                         hint="make the vector a row: reshape(u, [1, D])")
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError("matmul inner dimensions differ",
                         hint="the last dimension on the left of '@' must equal the "
                              + ("first dimension of a matrix" if len(b) < 3 else
                                 "second-to-last dimension of the batch") + " on its right")
    try:
        batch = broadcast_shapes(a[:-2], b[:-2])
    except ShapeError:
        raise ShapeError("the batch axes of '@' (all but the last two) do not broadcast",
                         hint="NumPy's matmul broadcasts the axes before the last two "
                              "as elementwise operations do") from None
    return batch + a[-2:-1] + (b[-1:] if len(b) > 1 else ())


def _swap_last(b, x):
    """``x`` with its last two axes swapped: ``x.T`` for a matrix."""
    return permuted(b, x, tuple(range(len(x.shape) - 2)) + (len(x.shape) - 1,
                                                            len(x.shape) - 2))


def _product(b, left, right, arg):
    """``left @ right``, the adjoint of the operand ``arg``. When ``arg`` is a swap of
    its last two axes (``swapaxes(k, -1, -2)``), it is written as the swap of the product
    the other way round, so the swap's own adjoint cancels it and ``k``'s comes out as
    the textbook's ``dK = dS^T Q`` rather than ``(Q^T dS)^T``."""
    if arg.op == "permute" and _swaps_last(arg.attr("axes")):
        return _swap_last(b, b.op("matmul", _swap_last(b, right), _swap_last(b, left)))
    return b.op("matmul", left, right)


def _matmul_vjp(b, n, g):
    from ...passes.autodiff import unbroadcast  # the one place broadcasting is undone

    x, w = n.args
    g = expand(b, g, n)
    rx, rw = len(x.shape), len(w.shape)
    if rx == 2 and rw == 2:
        return [b.op("matmul", g, b.op("transpose", w)), b.op("matmul", b.op("transpose", x), g)]
    if rx == 1 and rw == 2:
        return [b.op("matmul", w, g), b.op("outer", x, g)]
    if rx == 2 and rw == 1:
        return [b.op("outer", g, w), b.op("matmul", b.op("transpose", x), g)]
    if rx == 1 and rw == 1:
        return [b.op("mul", g, w), b.op("mul", g, x)]
    if rw == 1:  # a batch of matrices times a vector: [N, T, D] @ [D]
        column = b.op("expand_dims", g, axis=(rx - 1,))
        return [b.op("mul", column, w),
                b.op("sum", b.op("mul", x, column), axis=tuple(range(rx - 1)), keepdims=False)]
    dx = _product(b, g, _swap_last(b, w), x)
    if rw == 2:  # one matrix shared by the batch: a textbook product of all rows at once
        dw = b.op("row_product", x, g)
    else:
        dw = _product(b, _swap_last(b, x), g, w)
    return [unbroadcast(b, dx, dx.shape, x.shape, x), unbroadcast(b, dw, dw.shape, w.shape, w)]


def _row_product_shape(args, attrs):
    x, g = args[0].shape, args[1].shape
    if len(x) < 2 or x[:-1] != g[:-1]:
        raise ShapeError("row_product needs two values with the same axes but the last")
    return (x[-1], g[-1])


def _rows(fn: str, arg, v) -> str:
    """``np.reshape(x, (-1, D))``, a fixed ``D`` as its number: written as
    ``x.shape[-1]``, an operand that is an expression (a transposed reshape) would be
    computed twice."""
    d = v.shape[-1]
    size = d if isinstance(d, int) else f"{paren(arg, POSTFIX)}.shape[-1]"
    return f"{fn}({arg[0]}, (-1, {size}))"


def _emit_row_product(fn: str):
    """``np.reshape(x, (-1, D)).T @ np.reshape(g, (-1, K))``: every row of ``x`` (all
    axes but the last made one) times the matching row of ``g``, summed."""
    def emit(a, attrs, n):
        return f"{_rows(fn, a[0], n.args[0])}.T @ {_rows(fn, a[1], n.args[1])}", MUL
    return emit


def _row_product_into(args, attrs, out, node) -> str:
    x, g = (_rows("np.reshape", (a, POSTFIX), v) for a, v in zip(args, node.args))
    return f"np.matmul({x}.T, {g}, out={out})"


def _eval_row_product(v, a):
    leading = list(range(np.ndim(v[0]) - 1))
    return np.tensordot(v[0], v[1], axes=(leading, leading))


defop("row_product", arity=2, shape=_row_product_shape, emit=_emit_row_product("np.reshape"),
      torch=lambda a, attrs, n: _emit_row_product("torch.reshape")(
          [as_float(x, v) for x, v in zip(a, n.args)], attrs, n),
      evaluate=_eval_row_product,
      out_form=_row_product_into,
      rule="a weight shared by a batch gathers X.T @ G over every row of it",
      examples=(ex((2, 4, 3), (2, 4, 5)), ex((2, 3, 2, 3), (2, 3, 2, 1))))


def _torch_matmul(a, attrs, node):
    return infix("@", MUL)([as_float(x, n) for x, n in zip(a, node.args)], attrs, node)


def _by_rows(node) -> bool:
    """A batch times one matrix (``[N, T, H] @ [H, V]``): one product over all its rows."""
    return len(node.args[0].shape) >= 3 and len(node.args[1].shape) == 2


def _matmul_fast(a, attrs, node):
    if _by_rows(node):
        return f"_matmul_rows({a[0][0]}, {a[1][0]})", POSTFIX
    return infix("@", MUL)(a, attrs, node)


def _matmul_fast_into(args, attrs, out, node) -> str:
    fn = "_matmul_rows" if _by_rows(node) else "np.matmul"
    return f"{fn}({args[0]}, {args[1]}, out={out})"


defop("matmul", arity=2, shape=_matmul_shape, emit=infix("@", MUL), torch=_torch_matmul,
      torch_out="torch.matmul({0}, {1}, out={out})",
      evaluate=lambda v, a: np.matmul(v[0], v[1]),
      vjp=_matmul_vjp,
      rule="d(X @ W) = dX @ W + X @ dW, so dX = G @ W.T and dW = X.T @ G",
      out_form="np.matmul({0}, {1}, out={out})",
      fast=(("emit", _matmul_fast), ("out_form", _matmul_fast_into),
            ("helpers", lambda node: ("_matmul_rows",) if _by_rows(node) else ())),
      examples=(ex((2, 3), (3, 4)), ex((3,), (3, 2)), ex((2, 3), (3,)), ex((3,), (3,)),
                ex((2, 4, 3), (3, 5)), ex((2, 4, 3), (2, 3, 5)), ex((2, 3, 4, 2), (2, 3, 2, 4)),
                ex((2, 1, 4, 3), (3, 3, 2)), ex((3, 2), (2, 2, 4)), ex((2, 4, 3), (3,))))

defop("outer", arity=2, shape=lambda args, attrs: args[0].shape + args[1].shape,
      emit=call("np.outer"), torch=tcall("torch.outer"),
      evaluate=lambda v, a: np.outer(v[0], v[1]),
      examples=(ex((2,), (3,)),))

defop("transpose", arity=1, shape=lambda args, attrs: tuple(reversed(args[0].shape)),
      emit=lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}.T", POSTFIX),
      torch=lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}." + (
          "T" if len(n.shape) == 2 else f"permute{tuple(reversed(range(len(n.shape))))}"),
          POSTFIX),
      evaluate=lambda v, a: np.transpose(v[0]),
      vjp=lambda b, n, g: [b.op("transpose", expand(b, g, n))],
      rule="d(X.T) = (dX).T",
      cheap=True, views=(0,),
      examples=(ex((2, 3)), ex((1, 4))))


def permuted(b, x, axes: tuple[int, ...]):
    """``x`` with its axes in the order ``axes``: itself, ``x.T`` when they are reversed,
    else a ``permute``; a move that undoes the move giving ``x`` is its argument."""
    if x.op in ("permute", "transpose"):
        inner = x.attr("axes") if x.op == "permute" else tuple(reversed(range(len(axes))))
        if tuple(inner[i] for i in axes) == tuple(range(len(axes))):
            return x.args[0]
    if axes == tuple(range(len(axes))):
        return x
    if axes == tuple(reversed(range(len(axes)))):
        return b.op("transpose", x)
    return b.op("permute", x, axes=axes)


def _swaps_last(axes) -> bool:
    return axes[-2:] == (len(axes) - 1, len(axes) - 2) and axes[:-2] == tuple(range(len(axes) - 2))


def _emit_permute(a, attrs, n):
    axes = attrs["axes"]
    if _swaps_last(axes):
        return f"np.swapaxes({a[0][0]}, -1, -2)", POSTFIX
    return f"np.transpose({a[0][0]}, {axes})", POSTFIX


def _torch_permute(a, attrs, n):
    axes, x = attrs["axes"], paren(a[0], POSTFIX)
    return (f"{x}.transpose(-1, -2)" if _swaps_last(axes) else f"{x}.permute{axes}"), POSTFIX


defop("permute", arity=1,
      shape=lambda args, attrs: tuple(args[0].shape[i] for i in attrs["axes"]),
      emit=_emit_permute, torch=_torch_permute,
      evaluate=lambda v, a: np.transpose(v[0], a["axes"]),
      vjp=lambda b, n, g: [permuted(b, expand(b, g, n), tuple(np.argsort(n.attr("axes"))
                                                              .tolist()))],
      rule="moving axes moves the adjoint back by the inverse permutation",
      cheap=True, views=(0,),
      examples=(ex((2, 3, 4), axes=(0, 2, 1)), ex((2, 3, 4, 5), axes=(0, 2, 1, 3)),
                ex((2, 3, 4), axes=(1, 2, 0))))


# ----------------------------------------------------------------------------- reshapes
def _size_split(shape):
    fixed, symbols = 1, []
    for d in shape:
        if isinstance(d, int):
            fixed *= d
        else:
            symbols.append(d)
    return fixed, sorted(symbols)


def _reshape_shape(args, attrs):
    """Numbers, symbolic dimensions (``N``, each also passed as a ``count`` argument) and
    at most one ``-1``, which takes the size left over: a number, or the one symbolic
    dimension the other dimensions do not account for."""
    src, want = args[0].shape, list(attrs["shape"])
    if sum(1 for d in want if d == -1) > 1:
        raise ShapeError("reshape can infer (-1) at most one dimension", (0,))
    for d in want:
        if isinstance(d, int) and d < 1 and d != -1:
            raise ShapeError("reshape dimensions must be positive (or one -1)", (0,))
    fixed_src, sym_src = _size_split(src)
    fixed_w, sym_w = _size_split([d for d in want if d != -1])
    rest = list(sym_src)
    for s in sym_w:
        if s not in rest:
            raise ShapeError(f"reshape to {fmt_shape(tuple(want))} needs dimension {s}, "
                             "which the value does not have", (0,))
        rest.remove(s)
    if -1 in want:
        if fixed_src % fixed_w or len(rest) > 1 or (rest and fixed_src != fixed_w):
            left = " * ".join([str(fixed_src // fixed_w)] * (fixed_src % fixed_w == 0) + rest)
            raise ShapeError(f"reshape to {fmt_shape(tuple(want))} cannot keep the size"
                             + (f" (-1 would be {left})" if left and not fixed_src % fixed_w
                                else ""), (0,),
                             hint="-1 must come out as a whole number or one symbolic "
                                  "dimension such as N")
        want[want.index(-1)] = rest[0] if rest else fixed_src // fixed_w
    elif fixed_w != fixed_src or rest:
        raise ShapeError(f"reshape to {fmt_shape(tuple(want))} changes the number of elements",
                         (0,))
    return tuple(want)


def _sizes_unprinted(attrs) -> tuple[int, ...]:
    """The size arguments ``_emit_reshape`` leaves out: all, when it prints -1."""
    want = attrs["shape"]
    symbolic = sum(1 for d in want if not isinstance(d, int))
    free = symbolic + sum(1 for d in want if d == -1)
    return tuple(range(1, 1 + symbolic)) if free == 1 else ()


def _emit_reshape(a, attrs, n, fn="np.reshape"):
    """``np.reshape(x, (-1, 6))``: a symbolic dimension prints as -1 when it is the only
    one left to infer, else as its size from the data (``x.shape[0]``); ``fn``: torch's."""
    want, sizes = attrs["shape"], iter(a[1:])
    free = sum(1 for d in want if not isinstance(d, int) or d == -1)
    dims = []
    for d in want:
        if isinstance(d, int):
            dims.append(str(d))
        else:
            size = next(sizes)[0]
            dims.append("-1" if free == 1 else size)
    return f"{fn}({a[0][0]}, ({', '.join(dims)}{',' if len(dims) == 1 else ''}))", POSTFIX


def _eval_reshape(v, a):
    sizes = iter(v[1:])
    return np.reshape(v[0], tuple(d if isinstance(d, int) else int(next(sizes))
                                  for d in a["shape"]))


def _reshape_back(b, n, g):
    """The adjoint of a reshape: ``g`` in the shape of the reshaped value, its sizes from
    the data (``np.reshape(dL_dz, (x.shape[0], 4, 32))``), so that nothing keeps the
    reshaped value (a head split's, say) alive, or computes it again, for its shape. A
    parameter or an input is at hand: ``np.reshape(g, W1.shape)`` says it best; so does
    ``reshape_like`` where the data does not give a size."""
    want = n.args[0].shape
    sizes = [d for d in want if isinstance(d, str)]
    if n.args[0].op in NAMED_LEAVES or not all(d in b.symbols for d in sizes):
        return b.op("reshape_like", g, n.args[0])
    return b.op("reshape", g, *(b.size([d]) for d in sizes), shape=want)


defop("reshape", arity=None, shape=_reshape_shape, emit=_emit_reshape,
      torch=lambda a, attrs, n: _emit_reshape([as_float(a[0], n.args[0])] + a[1:], attrs, n,
                                              "torch.reshape"),
      evaluate=_eval_reshape,
      vjp=lambda b, n, g: [_reshape_back(b, n, expand(b, g, n))] + [None] * (
          len(n.args) - 1),
      rule="reshape moves elements without changing them",
      cheap=True, views=(0,), unprinted=_sizes_unprinted,
      examples=(ex((2, 3), shape=(3, 2)), ex((2, 3), shape=(6,)), ex((2, 3), shape=(1, -1, 1)),
                ex((), shape=(1, 1))))

defop("reshape_like", arity=2, shape=lambda args, attrs: args[1].shape,
      emit=lambda a, attrs, n: (f"np.reshape({a[0][0]}, {paren(a[1], POSTFIX)}.shape)",
                                POSTFIX),
      torch=lambda a, attrs, n: (f"torch.reshape({a[0][0]}, {paren(a[1], POSTFIX)}.shape)",
                                 POSTFIX),
      evaluate=lambda v, a: np.reshape(v[0], np.shape(v[1])),
      cheap=True, views=(0,),
      examples=(ex((2, 3), (3, 2)), ex((6,), (1, 2, 3))))


def _reshape_each_shape(args, attrs):
    shape, dims = args[0].shape, tuple(attrs["dims"])
    if not shape:
        raise ShapeError("a scalar has no first axis to keep", (0,))
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise ShapeError("the sizes after the first axis must be fixed numbers", (0,))
    size = 1
    for d in rest:
        size *= d
    want = 1
    for d in dims:
        want *= d
    if size != want:
        raise ShapeError(f"cannot reshape {fmt_shape(rest)} to {fmt_shape(dims)} for each "
                         "example", (0,))
    return (shape[0],) + dims


def _reshape_each(fn: str):
    def emit(a, attrs, n):
        dims = ", ".join(str(d) for d in attrs["dims"])
        return f"{fn}({a[0][0]}, (-1, {dims}))", POSTFIX
    return emit


defop("reshape_each", arity=1, shape=_reshape_each_shape, emit=_reshape_each("np.reshape"),
      torch=_reshape_each("torch.reshape"),
      evaluate=lambda v, a: np.reshape(v[0], (np.shape(v[0])[0],) + tuple(a["dims"])),
      vjp=lambda b, n, g: [b.op("reshape_each", expand(b, g, n),
                                dims=tuple(n.args[0].shape[1:]))],
      rule="reshaping each example moves elements without changing them",
      cheap=True, views=(0,),
      examples=(ex((2, 3, 4), dims=(12,)), ex((2, 12), dims=(3, 4))))


def _new_axes(node) -> str:
    """``expand_dims`` as an index (``None, :, None``): torch's unsqueeze takes one axis."""
    axes = node.attr("axis")
    items = ["None" if i in axes else ":" for i in range(len(node.shape))]
    while items[-1] == ":":
        items.pop()
    return ", ".join(items)


def _expand_shape(shape, axes):
    out = list(shape)
    for ax in sorted(axes):
        out.insert(ax, 1)
    return tuple(out)


defop("expand_dims", arity=1,
      shape=lambda args, attrs: _expand_shape(args[0].shape, attrs["axis"]),
      emit=lambda a, attrs, n: (f"np.expand_dims({a[0][0]}, {axis_text(attrs['axis'])!r})",
                                POSTFIX),
      torch=lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}[{_new_axes(n)}]", POSTFIX),
      evaluate=lambda v, a: np.expand_dims(v[0], a["axis"]),
      cheap=True, views=(0,),
      examples=(ex((2, 3), axis=(1,)), ex((3,), axis=(0, 2))))
