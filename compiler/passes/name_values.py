"""Every value named: ``name_every_value(program) -> program`` for ``bpc graph``.

The graph draws one node per operation, and shows each one's value and gradient; the
backward pass has an adjoint only for named values. This pass binds every unnamed
operation of the forward pass (``_h_matmul`` for the ``x @ W`` inside ``h = x @ W + b``)
to a fresh name, before its equation, so that differentiating the result gives every
value of the graph an adjoint. Boolean and integer values (masks, labels) stay unnamed:
they have no gradient.
"""

from __future__ import annotations

import dataclasses

from ..ir import Binding, Program, topo_order
from ..names import fresh


def name_every_value(prog: Program) -> tuple[Program, dict[int, str]]:
    """``prog`` (stage "ir") with every unnamed operation bound to a name, without a
    backward pass; and the names given (node id -> name)."""
    taken = {bd.name for bd in prog.all_bindings()}
    named = {bd.node.id for bd in prog.leaves + prog.forward}
    given: dict[int, str] = {}
    forward: list[Binding] = []
    for bd in prog.forward:
        for n in topo_order([bd.node]):
            if n.id in named or n.op in ("input", "param", "const") or n.dtype == "bool" \
                    or n.dtype == "int":
                continue
            name = fresh(f"_{bd.name}_{n.op}", taken)
            forward.append(Binding(name, n, "eq", bd.span))
            named.add(n.id)
            given[n.id] = name
        forward.append(bd)
    plain = dataclasses.replace(prog, forward=forward, backward=[], grads={}, stage="ir")
    return plain, given
