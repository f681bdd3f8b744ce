"""Declarations the loss does not depend on, found on the IR: a parameter no path leads
from to the loss (its gradient is always zero, so training never moves it) and a target
no loss reads (training ignores it). Both compile, and both are almost always a mistake
(a layer left out of the chain, a typo in the loss): each is a located warning.
"""

from __future__ import annotations

from ..errors import Diagnostics
from . import Binding, topo_order


def warn_unused(params: list[Binding], targets: list[Binding], forward: list[Binding],
                loss: str, diags: Diagnostics) -> None:
    """A warning on each parameter and target the loss ``loss`` does not depend on,
    saying what reads it instead, if anything."""
    values = {bd.name: bd.node for bd in forward}
    if loss not in values:
        return
    reached = {n.id for n in topo_order([values[loss]])}
    unreached = [bd for bd in [*params, *targets] if bd.node.id not in reached]
    readers = _first_readers(forward) if unreached else {}
    found = []
    for bd in unreached:
        reader = readers.get(bd.node.id)
        if bd.kind == "param":
            found.append((bd, f"parameter '{bd.name}' does not affect the loss '{loss}' ("
                          + (f"only '{reader}' reads it" if reader else "nothing reads it")
                          + "): its gradient is always zero and training never changes it",
                          "use it on the way to the loss, or remove it"))
        else:
            found.append((bd, f"target '{bd.name}' is read by no loss"
                          + (f" (only '{reader}' reads it)" if reader else "")
                          + ": training ignores it",
                          f"compare the output with it in the loss '{loss}', or remove it"))
    for bd, message, hint in sorted(found, key=lambda f: _position(f[0])):
        diags.warning(message, bd.span, hint)


def _position(bd: Binding) -> tuple[int, int]:
    return (bd.span.line, bd.span.col) if bd.span is not None else (0, 0)


def _first_readers(forward: list[Binding]) -> dict[int, str]:
    """A node's id -> the first equation whose value reads it, in one walk over the
    program (what an earlier equation reads, and all below it, is not walked again)."""
    readers: dict[int, str] = {}
    for bd in forward:
        stack = [bd.node]
        while stack:
            n = stack.pop()
            if n.id not in readers:
                readers[n.id] = bd.name
                stack.extend(n.args)
    return readers
