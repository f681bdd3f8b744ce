"""Compile-time constants: the value of a ``let``, a dimension or a layer option.

``const_value`` evaluates numbers, ``let`` names, ``+ - * / ^``, unary minus and matrix
literals; anything else is ``NotConstant``, whose reason the caller reports in context.
"""

from __future__ import annotations

import math

from . import ast
from ..limits import MAX_MAGNITUDE


class NotConstant(Exception):
    """``expr`` is not a usable constant; ``standalone`` reasons need no context."""

    def __init__(self, expr: ast.Expr, why: str, standalone: bool = False,
                 hint: str | None = None):
        super().__init__(why)
        self.expr, self.why, self.standalone, self.hint = expr, why, standalone, hint

    def message(self, context: str) -> str:
        """``context: why``, or just the reason when it says everything itself."""
        return self.why if self.standalone else f"{context}: {self.why}"


TRUTH_VALUES = ("true", "false")


def truth_value(expr: ast.Expr, default) -> bool | None:
    """``keepdims=true``: the words true and false where an option's default is a truth
    value (None otherwise). Nowhere else are they values: a boolean is not a number."""
    if isinstance(default, bool) and isinstance(expr, ast.Name) and expr.id in TRUTH_VALUES:
        return expr.id == "true"
    return None


def const_value(expr: ast.Expr, constants: dict[str, float | int]):
    """Evaluate a compile-time constant: numbers, lets, + - * / ^, unary minus, lists.
    ``true`` and ``false`` are not numbers (NotConstant); an option that takes them reads
    them with ``truth_value``."""
    if isinstance(expr, ast.Num):
        if isinstance(expr.value, float) and not math.isfinite(expr.value):
            raise NotConstant(expr, f"the number {expr.text} is too large to be finite")
        return expr.value
    if isinstance(expr, ast.Name):
        if expr.id in constants:
            return constants[expr.id]
        if expr.id in TRUTH_VALUES:
            raise NotConstant(expr, f"'{expr.id}' is a truth value, not a number",
                              hint="write the number itself (true and false are only "
                                   "for options such as keepdims and shuffle)")
        raise NotConstant(expr, f"'{expr.id}' is not a constant")
    if isinstance(expr, ast.Neg):
        return -const_value(expr.operand, constants)
    if isinstance(expr, ast.BinOp) and expr.op != "@":
        a = const_value(expr.left, constants)
        b = const_value(expr.right, constants)
        if isinstance(a, list) or isinstance(b, list):
            raise NotConstant(expr, "arithmetic on a matrix literal is not a constant")
        try:
            if expr.op == "^":
                value = _power(a, b)
            else:
                value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                         "/": lambda: a / b}[expr.op]()
        except ZeroDivisionError as e:
            raise NotConstant(expr, f"cannot evaluate this constant ({e})") from None
        except OverflowError:
            raise NotConstant(expr, "this constant is too large (limit: magnitude below "
                                    "2^1024, about 1.8e308)") from None
        if isinstance(value, complex) or abs(value) >= MAX_MAGNITUDE \
                or not math.isfinite(value):
            raise NotConstant(expr, "this constant is not a finite real number "
                                    "(limit: magnitude below 2^1024, about 1.8e308)")
        if isinstance(value, float) and value.is_integer() and expr.op != "/" \
                and isinstance(a, int) and isinstance(b, int):
            value = int(value)
        return value
    if isinstance(expr, ast.Matrix):
        if not expr.rows:
            raise NotConstant(expr, "an empty matrix literal holds no values", standalone=True)
        if len({len(row) for row in expr.rows}) > 1:
            raise NotConstant(expr, "every row of a matrix literal needs the same length",
                              standalone=True)
        for row in expr.rows:
            for item in row:
                if isinstance(item, ast.Matrix):
                    raise NotConstant(item, "a matrix literal holds numbers, not other "
                                            "matrices; write rows separated by ';'",
                                      standalone=True)
        rows = [[const_value(e, constants) for e in row] for row in expr.rows]
        return rows[0] if len(rows) == 1 else rows
    raise NotConstant(expr, "expected a constant (a number or a 'let' name)")


def _power(a, b):
    """``a ** b``, in floats first: an exact integer power is computed only when its
    result is known to be of a sensible size (``9^9^9`` would take minutes)."""
    approx = float(a) ** float(b)  # OverflowError, ZeroDivisionError: the caller reports
    if isinstance(approx, complex) or not math.isfinite(approx):
        return approx
    return a ** b  # below 2^1024 in magnitude: at most about 1024 bits of work
