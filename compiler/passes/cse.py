"""Common-subexpression elimination: structurally equal nodes become one node."""

from __future__ import annotations

from ..ir import Program
from . import rebuild, rewrite


def eliminate_common_subexpressions(prog: Program) -> Program:
    table: dict = {}

    def share(b, node, args):
        new = rebuild(b, node, args)
        key = new.key
        if new.is_const:  # 1 and 1.0 print differently: keep them apart
            key = key + (type(new.value).__name__,)
        return table.setdefault(key, new)

    return rewrite(prog, share)
