"""Embeddings: ``embed`` (the rows of a table picked by integer ids, ``E[ids]``) and its
adjoint ``embed_grad`` (each id's gradient row added into a table of zeros, so that an
id used several times gets the sum of its rows)."""

from __future__ import annotations

import numpy as np

from .. import ShapeError, fmt_shape
from . import kernels
from .core import POSTFIX, defop, ex, expand, int_labels, paren


def _embed_shape(args, attrs):
    ids, table = args[0].shape, args[1].shape
    if len(table) != 2:
        raise ShapeError(f"embed needs a table [V, D] (one row of D numbers per id), but "
                         f"the table is {fmt_shape(table)}", (1,))
    return ids + table[1:]


def _embed_emit(a, attrs, node):
    return f"{paren(a[1], POSTFIX)}[{a[0][0]}]", POSTFIX


def _embed_vjp(b, node, g):
    ids, table = node.args
    return [None, b.op("embed_grad", ids, expand(b, g, node), rows=table.shape[0])]


defop("embed", arity=2, shape=_embed_shape, emit=_embed_emit, torch=_embed_emit,
      evaluate=lambda v, a: v[1][np.asarray(v[0]).astype(int)],
      vjp=_embed_vjp,
      rule="E[ids] picks rows, so dL/dE[i] = the sum of dL/dout over the positions of id i",
      data_roles=lambda node: [(0, "labels", int(node.args[1].shape[0]))],
      examples=(ex(int_labels((2, 3), 4), (4, 5)), ex(int_labels((6,), 3), (3, 2)),
                ex(int_labels((), 3), (3, 2))))


def _embed_grad_shape(args, attrs):
    ids, g = args[0].shape, args[1].shape
    if g[:len(ids)] != ids or len(g) != len(ids) + 1:
        raise ShapeError(f"embed_grad needs one gradient row per id: ids {fmt_shape(ids)}, "
                         f"rows {fmt_shape(g)}", (0, 1))
    return (attrs["rows"], g[-1])


def _embed_grad_call(fn: str):
    def emit(a, attrs, node):
        return f"{fn}({a[0][0]}, {a[1][0]}, {attrs['rows']})", POSTFIX
    return emit


defop("embed_grad", arity=2, shape=_embed_grad_shape, emit=_embed_grad_call("_embed_grad"),
      helpers=("_embed_grad",),
      fast=(("emit", _embed_grad_call("_embed_grad_sorted")),
            ("helpers", ("_embed_grad_sorted",))),
      torch=_embed_grad_call("_embed_grad"), torch_helpers=("_embed_grad",),
      evaluate=lambda v, a: kernels._embed_grad(np.asarray(v[0]).astype(int),
                                                np.asarray(v[1], dtype=float), a["rows"]),
      vjp=lambda b, node, g: [None, b.op("embed", node.args[0], expand(b, g, node))],
      rule="rows of g added into zeros at their ids (repeated ids add up)",
      examples=(ex(int_labels((2, 3), 4), (2, 3, 5), rows=4),
                ex(int_labels((6,), 3), (6, 2), rows=3)))
