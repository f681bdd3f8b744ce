"""The optimization pipeline: fold, simplify, share, prune, until nothing changes."""

from __future__ import annotations

from ..ir import Program, topo_order
from .algebra import simplify_algebra
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants

PASSES = (fold_constants, simplify_algebra, eliminate_common_subexpressions)


def _size(prog: Program) -> int:
    return len(topo_order([bd.node for bd in prog.all_bindings()]))


def optimize(prog: Program, max_rounds: int = 8) -> Program:
    size = _size(prog)
    for _ in range(max_rounds):
        for p in PASSES:
            prog = p(prog)
        new = _size(prog)
        if new == size:
            break
        size = new
    return eliminate_dead_code(prog).with_(stage="opt")
