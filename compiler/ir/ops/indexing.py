"""Indexing and joining: ``slice`` (``x[1:, ::2]``), its adjoint ``index_add``, and
``concat`` and ``stack``, whose adjoints are slices.

An index (attribute ``index``) has one item per leading axis: None for a whole axis
(``:``), an integer (the axis is dropped), or a slice (start, stop, step) whose start and
stop are None where they are the default bounds for the step's direction, so the text is
written without knowing the shape (``::-1``, ``1:``). Trailing whole axes are left out.
``functions.normalize_index`` turns what a spec writes into this form.
"""

from __future__ import annotations

import numpy as np

from .. import Builder, Node, Shape, ShapeError, fmt_shape
from . import kernels
from .core import (POSTFIX, as_float, broadcast_shapes, defop, ex, expand, int_labels,
                   paren)


def index_text(index) -> str:
    def item(it):
        if it is None:
            return ":"
        if isinstance(it, int):
            return str(it)
        start, stop, step = it
        text = f"{'' if start is None else start}:{'' if stop is None else stop}"
        return text + ("" if step == 1 else f":{step}")
    return ", ".join(item(it) for it in index)


def forward_index(index, shape: Shape) -> tuple[tuple, tuple[int, ...]]:
    """``index`` with every negative step made positive, for torch (whose tensors take
    no negative step), and the axes of the result to flip back: ``x[::-1]`` is
    ``torch.flip(x[0:3], dims=(0,))``. The sizes are known where a step is given."""
    out, flips, axis = [], [], 0
    for k, it in enumerate(index):
        if isinstance(it, tuple) and it[2] < 0:
            taken = range(shape[k])[slice(*it)]
            out.append((taken[-1], taken[0] + 1, -it[2]) if taken else (0, 0, 1))
            flips.append(axis)
        else:
            out.append(it)
        axis += not isinstance(it, int)
    return tuple(out), tuple(flips)


def _flipped(text: str, dims) -> str:
    return f"torch.flip({text}, dims={tuple(dims)!r})" if dims else text


def _torch_slice(a, attrs, n):
    index, flips = forward_index(attrs["index"], n.args[0].shape)
    return _flipped(f"{paren(a[0], POSTFIX)}[{index_text(index)}]", flips), POSTFIX


def _py_index(index) -> tuple:
    return tuple(slice(None) if it is None else it if isinstance(it, int) else slice(*it)
                 for it in index)


def indexed_shape(shape: Shape, index) -> Shape:
    if len(index) > len(shape):
        raise ShapeError(f"too many indices ({len(index)}) for a value of shape "
                         f"{fmt_shape(shape)}", (0,))
    out = []
    for axis, d in enumerate(shape):
        it = index[axis] if axis < len(index) else None
        if it is None:
            out.append(d)
        elif not isinstance(d, int):
            if not isinstance(it, int):  # one position drops the axis (h[:, -1])
                raise ShapeError(f"only ':' or one position may index the symbolic axis "
                                 f"{axis} ({d})", (0,))
        elif isinstance(it, tuple):
            out.append(len(range(d)[slice(*it)]))
    return tuple(out)


def take(b: Builder, x: Node, index) -> Node:
    """``x[index]``; ``x`` itself when every axis is taken whole."""
    index = tuple(index)
    while index and index[-1] is None:
        index = index[:-1]
    return b.op("slice", x, index=index) if index else x


# ----------------------------------------------------------------------------- slice
def _slice_vjp(b, n, g):
    x = n.args[0]
    return [b.op("index_add", b.op("zeros_like", x), g, index=(n.attr("index"),))]


defop("slice", arity=1,
      shape=lambda args, attrs: indexed_shape(args[0].shape, attrs["index"]),
      emit=lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}[{index_text(attrs['index'])}]",
                                POSTFIX),
      torch=_torch_slice,
      evaluate=lambda v, a: np.array(np.asarray(v[0])[_py_index(a["index"])]),
      vjp=_slice_vjp,
      rule="d x[i] = dx[i]: the adjoint goes back into the positions taken, zeros elsewhere",
      cheap=True, keeps_dtype=True, views=(0,),
      examples=(ex((3,), index=(1,)), ex((3,), index=((None, None, -1),)),
                ex((2, 3), index=(None, (1, None, 1))),
                ex((2, 3, 4), index=((1, None, 1), None, (3, 0, -2))),
                ex(int_labels((4,), 3), index=((1, 3, 1),))))


# ----------------------------------------------------------------------------- index_add
def _index_add_shape(args, attrs):
    base = args[0].shape
    for k, (g, index) in enumerate(zip(args[1:], attrs["index"])):
        part = indexed_shape(base, index)
        if broadcast_shapes(g.shape, part) != part:
            raise ShapeError(f"index_add: a value of shape {fmt_shape(g.shape)} does not fit "
                             f"[{index_text(index)}] of {fmt_shape(base)}", (0, k + 1))
    return base


def _emit_index_add(a, attrs, n):
    parts = [a[0][0]]
    for g, index in zip(a[1:], attrs["index"]):
        parts += [f"np.s_[{index_text(index)}]", g[0]]
    return f"_index_add({', '.join(parts)})", POSTFIX


def _torch_update(g: str, g_node: Node, index, base: Shape) -> tuple[tuple, str]:
    """(index, value) of one update on torch: the index with positive steps, the value
    flipped to match along the axes a negative step reversed (counted from the end, as
    a smaller value broadcasts)."""
    forward, flips = forward_index(index, base)
    rank = len(indexed_shape(base, index))
    dims = [k - rank for k in flips if not g_node.weak and rank - k <= len(g_node.shape)]
    return forward, _flipped(g, dims)


def _index_tuple(index) -> str:
    """An index as a Python tuple (``(slice(1, None), 0)``): what ``np.s_[1:, 0]`` is."""
    def item(it):
        if it is None or isinstance(it, int):
            return "slice(None)" if it is None else str(it)
        start, stop, step = it
        return f"slice({start}, {stop}{'' if step == 1 else f', {step}'})"
    items = [item(it) for it in index]
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def _torch_index_add(a, attrs, n):
    parts = [a[0][0]]
    for g, node, index in zip(a[1:], n.args[1:], attrs["index"]):
        where, value = _torch_update(g[0], node, index, n.args[0].shape)
        parts += [_index_tuple(where), value]
    return f"_index_add({', '.join(parts)})", POSTFIX


def _torch_augmented(args, attrs, name, node):
    return [f"{name}[{index_text(where)}] += {value}" for where, value in
            (_torch_update(g, g_node, index, node.args[0].shape)
             for g, g_node, index in zip(args[1:], node.args[1:], attrs["index"]))]


def _eval_index_add(v, a):
    updates = [x for g, index in zip(v[1:], a["index"]) for x in (_py_index(index), g)]
    return kernels._index_add(np.array(v[0], dtype=float), *updates)


def _index_add_vjp(b, n, g):
    g = expand(b, g, n)
    return [g] + [take(b, g, index) for index in n.attr("index")]


def _augmented_index_add(args, attrs, name):
    return [f"{name}[{index_text(index)}] += {g}" for g, index in zip(args[1:], attrs["index"])]


defop("index_add", arity=None, shape=_index_add_shape, emit=_emit_index_add,
      torch=_torch_index_add, torch_augmented=_torch_augmented, torch_helpers=("_index_add",),
      evaluate=_eval_index_add,
      vjp=_index_add_vjp,
      rule="x with g added into positions [i]: the adjoint of a slice",
      augmented=_augmented_index_add, helpers=("_index_add",),
      examples=(ex((2, 3), (2, 2), index=((None, (1, None, 1)),)),
                ex((3,), (), (2,), index=((1,), ((None, None, 2),)))))


# ----------------------------------------------------------------------------- joining
def _joined(fn: str):
    """``np.concatenate([a, b], axis=1)``, given the model's dtype when an argument is not
    already an array of it (a Python number, labels)."""
    def emit(a, attrs, n):
        extra = "" if all(x.is_array for x in n.args) else ", dtype=DTYPE"
        return f"{fn}([{', '.join(t for t, _ in a)}], axis={attrs['axis']}{extra})", POSTFIX
    return emit


def _tjoined(fn: str):
    """``torch.cat([a, b], dim=1)``, every part a tensor of the function's dtype."""
    def emit(a, attrs, n):
        parts = ", ".join(as_float(x, v)[0] for x, v in zip(a, n.args))
        return f"{fn}([{parts}], dim={attrs['axis']})", POSTFIX
    return emit


def _concat_shape(args, attrs):
    axis, first = attrs["axis"], args[0].shape
    total = 0
    for i, x in enumerate(args):
        shape = x.shape
        if len(shape) != len(first) or any(d != e for k, (d, e) in
                                           enumerate(zip(shape, first)) if k != axis):
            err = ShapeError(f"concat along axis {axis} needs the other axes equal", (0, i),
                             hint="every value must have the same shape except along the "
                                  "joined axis")
            err.at = i
            raise err
        if not isinstance(shape[axis], int):
            err = ShapeError(f"concat cannot join along the symbolic axis {axis} "
                             f"({shape[axis]}): the result's size would not be known", (i,),
                             hint="join along an axis of fixed size")
            err.at = i
            raise err
        total += shape[axis]
    return first[:axis] + (total,) + first[axis + 1:]


def _concat_vjp(b, n, g):
    g, axis, start, out = expand(b, g, n), n.attr("axis"), 0, []
    for x in n.args:
        stop = start + x.shape[axis]
        item = (start or None, None if stop == n.shape[axis] else stop, 1)
        out.append(take(b, g, (None,) * axis + (item,)))
        start = stop
    return out


defop("concat", arity=None, shape=_concat_shape, emit=_joined("np.concatenate"),
      torch=_tjoined("torch.cat"),
      evaluate=lambda v, a: np.concatenate([np.asarray(x, dtype=float) for x in v],
                                           axis=a["axis"]),
      vjp=_concat_vjp,
      rule="d concat(a, b) = concat(da, db): each part's adjoint is its slice",
      examples=(ex((2, 3), (2, 1), axis=1), ex((3,), (2,), (1,), axis=0),
                ex((2, 3), int_labels((1, 3), 4), axis=0)))


def _stack_shape(args, attrs):
    first = args[0].shape
    for i, x in enumerate(args):
        if x.shape != first:
            err = ShapeError("stack needs values of one shape", (0, i))
            err.at = i
            raise err
    return first[:attrs["axis"]] + (len(args),) + first[attrs["axis"]:]


defop("stack", arity=None, shape=_stack_shape, emit=_joined("np.stack"),
      torch=_tjoined("torch.stack"),
      evaluate=lambda v, a: np.stack([np.asarray(x, dtype=float) for x in v], axis=a["axis"]),
      vjp=lambda b, n, g: [take(b, expand(b, g, n), (None,) * n.attr("axis") + (i,))
                           for i in range(len(n.args))],
      rule="d stack(a, b) = stack(da, db): each part's adjoint is its index along the new axis",
      examples=(ex((2, 3), (2, 3), axis=0), ex((3,), (3,), (3,), axis=1), ex((), (), axis=0)))
