"""IR -> IR: reverse-mode differentiation (``autodiff``) and the optimization passes,
each a function ``Program -> Program`` in its own module, run by ``optimize``.

``rewrite`` is the shared walk: it rebuilds every node reachable from the bindings in
topological order, letting a pass replace a node given its (already rewritten)
arguments, and remaps every binding to the rewritten node.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..ir import Binding, Builder, Node, Program, topo_order

Rule = Callable[[Builder, Node, tuple[Node, ...]], Node | None]


def rebuild(b: Builder, node: Node, args: tuple[Node, ...]) -> Node:
    """``node`` with new arguments (the same node when nothing changed)."""
    if all(x is y for x, y in zip(args, node.args)):
        return node
    b.span = node.span
    return b.op(node.op, *args, **dict(node.attrs))


def rewrite(prog: Program, rule: Rule) -> Program:
    """Apply ``rule`` bottom-up; a rule returns a replacement node or None to keep it.

    A replacement that would lose a random draw (``0 * sum(dropout(x, 0.5))`` folded to
    0) is refused: every dropout site draws its mask in training mode, read or not
    (LANGUAGE.md, "Modes"), so no pass may remove one."""
    from ..ir.primitives import PRIMITIVES

    b = Builder(prog.dtype)
    bindings = prog.all_bindings()
    memo: dict[int, Node] = {}
    sites: dict[int, frozenset] = {}  # node id -> the dropout sites it reaches

    def reached(node: Node) -> frozenset:
        """The site numbers of the random draws ``node`` reaches (once per node, no
        recursion; a spec has few sites, so the sets are small)."""
        stack = [(node, False)]
        while stack:
            n, ready = stack.pop()
            if n.id in sites:
                continue
            if not ready:
                stack.append((n, True))
                stack.extend((a, False) for a in n.args if a.id not in sites)
                continue
            found: frozenset = frozenset()
            for a in n.args:
                more = sites[a.id]
                found = more if not found else found if more <= found else found | more
            if PRIMITIVES[n.op].random:
                found = found | {n.attr("site")}
            sites[n.id] = found
        return sites[node.id]

    for node in topo_order([bd.node for bd in bindings]):
        args = tuple(memo[a.id] for a in node.args)
        b.span = node.span
        new = rule(b, node, args)
        if new is not None and not reached(new) >= reached(node):
            new = None  # it would drop a dropout's mask
        memo[node.id] = new if new is not None else rebuild(b, node, args)

    def remap(items: list[Binding]) -> list[Binding]:
        return [replace(bd, node=memo[bd.node.id]) for bd in items]

    hints = {}
    for old_id, name in prog.hints.items():
        if old_id in memo:
            hints.setdefault(memo[old_id].id, name)
    return prog.with_(inputs=remap(prog.inputs), targets=remap(prog.targets),
                      params=remap(prog.params), forward=remap(prog.forward),
                      states=remap(prog.states), updates=remap(prog.updates),
                      backward=remap(prog.backward), hints=hints)
