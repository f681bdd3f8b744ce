"""Dead-code elimination for the backward pass.

Keeps the gradient bindings and the adjoint bindings a gradient actually uses; drops the
rest: the seed ``dL_dL = 1`` (folded into its uses), adjoints of values no gradient flows
through. Forward equations stay: every generated function emits only the statements its
results need.
"""

from __future__ import annotations

from ..ir import Program, topo_order


def eliminate_dead_code(prog: Program) -> Program:
    grad_names = set(prog.grads.values())
    roots = [bd.node for bd in prog.backward if bd.name in grad_names]
    live = {n.id for n in topo_order(roots)}
    backward = [bd for bd in prog.backward
                if bd.name in grad_names or (bd.kind != "seed" and bd.node.id in live)]
    return prog.with_(backward=backward)
