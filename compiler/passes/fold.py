"""Constant folding: an operation on scalar constants becomes a constant."""

from __future__ import annotations

import math

import numpy as np

from ..ir import Program
from ..primitives import PRIMITIVES
from . import rewrite

INTEGER_OPS = {"add", "sub", "mul", "neg"}


def _fold(b, node, args):
    if not args or node.op in ("count",) or not all(a.is_const for a in args):
        return None
    if node.shape != () or any(isinstance(a.value, tuple) for a in args):
        return None  # keep array literals as written
    with np.errstate(all="ignore"):
        value = PRIMITIVES[node.op].evaluate([np.asarray(a.value, dtype=float) for a in args],
                                             dict(node.attrs))
    value = float(np.asarray(value))
    if not math.isfinite(value):
        return None  # leave it to run time rather than print inf or nan
    ints = all(isinstance(a.value, int) for a in args)
    if ints and value.is_integer() and (node.op in INTEGER_OPS or (
            node.op == "pow" and args[1].value >= 0)):
        value = int(value)
    return b.const(value)


def fold_constants(prog: Program) -> Program:
    return rewrite(prog, _fold)
