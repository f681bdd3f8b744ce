"""Positional encodings: ``sinusoidal`` (Vaswani et al.'s constant table for T steps),
``first_rows`` (a learned table's first T rows, T the data's) and its adjoint
``pad_rows``. T is a number or a symbolic dimension, given as a ``count`` of the axis
that declares it (printed ``x.shape[1]``)."""

from __future__ import annotations

import numpy as np

from .. import ShapeError
from . import kernels
from .core import POSTFIX, defop, derived, ex, expand, no_gradient


def length(n) -> int | str:
    """The number of steps a length argument gives: a whole number, or the symbolic
    dimension a count of one axis stands for."""
    if n.op == "const" and isinstance(n.attr("value"), int) and n.attr("value") > 0:
        return n.attr("value")
    if n.op == "count" and n.attr("axis") is not None and len(n.attr("axis")) == 1:
        return n.args[0].shape[n.attr("axis")[0]]
    raise ShapeError("a number of steps is a whole number or a dimension such as T", (0,))


def step_limits(nodes) -> dict[str, list]:
    """The most steps a symbolic dimension may have: {T: [rows, table]} for each learned
    table of positions (``first_rows``) that takes T rows of a parameter, the smallest."""
    limits: dict[str, list] = {}
    for n in nodes:
        if n.op != "first_rows" or n.args[0].op != "param":
            continue
        steps, rows = length(n.args[1]), n.args[0].shape[0]
        if isinstance(steps, str) and (steps not in limits or rows < limits[steps][0]):
            limits[steps] = [rows, n.args[0].attr("name")]
    return limits


def _call(fn: str, *texts: str) -> tuple[str, int]:
    return f"{fn}({', '.join(texts)})", POSTFIX


defop("sinusoidal", arity=1,
      shape=lambda args, attrs: (length(args[0]), attrs["dim"]),
      emit=lambda a, attrs, n: _call("_sinusoidal", a[0][0], str(attrs["dim"]), "DTYPE"),
      helpers=("_sinusoidal",),
      torch=lambda a, attrs, n: (_call("_sinusoidal", a[0][0], str(attrs["dim"]),
                                       "dtype")[0] + ".to(device)", POSTFIX),
      torch_helpers=("_sinusoidal",),
      evaluate=lambda v, a: kernels._sinusoidal(int(v[0]), a["dim"], np.float64),
      vjp=no_gradient, rule="a constant table: no gradient",
      examples=(ex(derived(lambda b, new: b.const(5)), dim=4),
                ex(derived(lambda b, new: b.const(3)), dim=5)))  # an odd width


def _first_rows_shape(args, attrs):
    table, steps = args[0].shape, length(args[1])
    if not table:
        raise ShapeError("a table of positions has one row per step; a scalar has none",
                         (0,))
    if isinstance(steps, int) and isinstance(table[0], int) and steps > table[0]:
        raise ShapeError(f"the table of positions has {table[0]} rows, fewer than the "
                         f"{steps} steps taken", (0,),
                         hint=f"declare it with at least {steps} rows")
    return (steps,) + table[1:]


def _first_rows_vjp(b, n, g):
    table = n.args[0]
    return [b.op("pad_rows", expand(b, g, n), rows=table.shape[0]), None]


defop("first_rows", arity=2, shape=_first_rows_shape,
      emit=lambda a, attrs, n: _call("_first_rows", a[0][0], a[1][0]),
      helpers=("_first_rows",),
      torch=lambda a, attrs, n: _call("_first_rows", a[0][0], a[1][0]),
      torch_helpers=("_first_rows",),
      evaluate=lambda v, a: np.array(kernels._first_rows(np.asarray(v[0]), int(v[1]))),
      vjp=_first_rows_vjp,
      rule="d table[:T] = dtable[:T]: the adjoint goes to the rows taken, zeros after",
      keeps_dtype=True, views=(0,),
      examples=(ex((5, 3), derived(lambda b, new, table: b.const(2))),
                ex((4, 2, 3), derived(lambda b, new, table: b.const(4)))))


defop("pad_rows", arity=1,
      shape=lambda args, attrs: (attrs["rows"],) + args[0].shape[1:],
      emit=lambda a, attrs, n: _call("_pad_rows", a[0][0], str(attrs["rows"])),
      helpers=("_pad_rows",),
      torch=lambda a, attrs, n: _call("_pad_rows", a[0][0], str(attrs["rows"])),
      torch_helpers=("_pad_rows",),
      evaluate=lambda v, a: kernels._pad_rows(np.asarray(v[0]), a["rows"]),
      vjp=lambda b, n, g: [b.op("first_rows", expand(b, g, n),
                                b.count(n.args[0], (0,)))],
      rule="padding with zeros: the adjoint is the padded adjoint's first rows",
      keeps_dtype=True,
      examples=(ex((2, 3), rows=5), ex((3,), rows=4)))
