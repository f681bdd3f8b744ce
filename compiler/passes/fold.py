"""Constant folding: arithmetic on scalar constants becomes a constant.

Each primitive that can be folded says how in its table entry (``fold``, plain Python
on numbers), so compiling a spec needs no NumPy. Integers stay integers where the
result is a whole number of an integer operation (``2 - 1`` prints ``1``).
"""

from __future__ import annotations

import math

from ..ir import Program
from ..ir.primitives import PRIMITIVES
from . import rewrite


def _fold(b, node, args):
    fold = PRIMITIVES[node.op].fold
    if fold is None or not args or not all(a.is_const for a in args):
        return None
    if any(isinstance(a.value, tuple) for a in args):
        return None  # keep array literals as written
    try:
        value = fold(*(a.value for a in args))
    except (ArithmeticError, ValueError):
        return None  # 1 / 0, (-1) ^ 0.5 …: leave it to run time
    if isinstance(value, complex) or not math.isfinite(value):
        return None
    if isinstance(value, float) and value.is_integer() and all(
            isinstance(a.value, int) for a in args) and node.op != "div":
        value = int(value)
    return b.const(value, let=let_text(node.op, args, dict(node.attrs), node),
                   let_names=let_names(args))


def let_text(op: str, args, attrs, node):
    """How the textbook style writes a folded constant made from 'let' names (``2 *
    lam``): the operation printed with the names; None when no argument has one."""
    if not any(a.attr("let") for a in args):
        return None
    if op == "mul":  # as a reader writes a product: 2 * lam, not lam * 1.0 * 2
        args = [a for a in args if a.attr("let") or a.value != 1]
        if len(args) == 1:
            return args[0].attr("let")
        args = sorted(args, key=lambda a: a.attr("let") is not None)
    parts = [a.attr("let") or PRIMITIVES["const"].emit([], dict(a.attrs), a) for a in args]
    return PRIMITIVES[op].emit(parts, attrs, node)


def let_names(args) -> tuple[str, ...]:
    """The 'let' names a constant folded from ``args`` reads (those its text prints)."""
    return tuple(name for a in args for name in a.attr("let_names") or ())


def fold_constants(prog: Program) -> Program:
    return rewrite(prog, _fold)
