"""The model's output when the spec has no ``output`` statement: the prediction,
computed from the data and never from a target, as the spec is written."""

from __future__ import annotations

import dataclasses

from ..frontend import ast
from . import NAMED_LEAVES, Binding, topo_order

DATA, PARAM, TARGET = 1, 2, 4  # what a value is computed from


def implied_output(forward: list[Binding], loss: str, inputs: list[Binding],
                   targets: list[Binding], defaults: dict,
                   written: tuple[set[str], set[str], set[str]]) -> str | None:
    """Without 'output': the model's prediction, computed from the data and never
    from a target (predict takes no targets). Among the equations before the loss
    that the loss depends on and that read no target, the last one of the first
    kind there is: computed from a data input (one without a default) and a
    parameter; from a data input; computed at all; only another name for an input
    or a parameter. Dependence and aliases are judged as the spec is written
    (``written``, from ``as_written``): 'v = x[:, :]' is computed from x, though its
    value is x's, and the loss depends on it only if the loss names it. None (the loss
    is the output) when every such equation reads a target."""
    equations, needed, bare = written
    loss_node = next(b.node for b in forward if b.name == loss)
    kinds = {b.node.id: TARGET for b in targets}
    kinds.update({b.node.id: DATA for b in inputs if b.name not in defaults})
    reads: dict[int, int] = {}  # node id -> the kinds of leaf it is computed from
    steps: dict[int, list[int]] = {}  # a loop's id -> what each step equation reads

    def step_reads(part) -> int:
        loop = part.args[0]
        if loop.id not in steps:
            steps[loop.id] = _step_reads(loop, reads)
        return steps[loop.id][part.attr("index")]

    for n in topo_order([loss_node]):
        if n.op in NAMED_LEAVES:
            reads[n.id] = PARAM if n.op == "param" else kinds.get(n.id, 0)
        elif n.op == "part":  # one step equation of a loop: what that equation reads
            reads[n.id] = step_reads(n)
        elif n.op == "zeros_rows":  # 'from 0', as written, reads nothing (only the
            reads[n.id] = 0  # number of rows of the sequence it is made for)
        else:
            flags = 0
            for a in n.args:
                flags |= reads[a.id]
            reads[n.id] = flags
    best, best_rank = None, -1
    for b in forward:
        flags = reads.get(b.node.id)
        if flags is None and b.node.op == "part" and b.node.args[0].id in reads:
            # a step equation the loss reads only through its loop (c[t-1] in g0[t])
            flags = step_reads(b.node)
        written = b.sources[0] if b.sources else b.name  # a function's step: its equation
        if b.name == loss or flags is None or flags & TARGET or \
                written in equations and written not in needed:
            continue
        rank = 0 if b.name in bare else \
            3 if flags & DATA and flags & PARAM else 2 if flags & DATA else 1
        if rank >= best_rank:
            best, best_rank = b.name, rank
    return best


def _step_reads(loop, reads: dict[int, int]) -> list[int]:
    """The kinds of leaf each step equation of ``loop`` (a ``scan``) is computed from: the
    loop's arguments its step reads, and for a carried value read a step back, its
    initial value and what the carried equation is computed from (to a fixed point)."""
    body = loop.attr("body")
    leaf_flags = {leaf.id: reads[arg.id] for leaf, arg in zip(body.leaves, loop.args)}
    carried = {leaf.id: body.carried[k] for k, leaf in enumerate(body.carries)}
    reached = [[n.id for n in topo_order([step]) if n.id in leaf_flags] for step in body.steps]
    flags = [0] * len(body.steps)
    changed = True
    while changed:
        changed = False
        for j, leaves in enumerate(reached):
            new = flags[j]
            for i in leaves:
                new |= leaf_flags[i] | (flags[carried[i]] if i in carried else 0)
            changed, flags[j] = changed or new != flags[j], new
    return flags


def as_written(spec: ast.Spec, loss: str, leaves: list[Binding]):
    """(the spec's equation names, those the loss names directly or through other
    equations, those written as a bare name of an input or parameter: 'a = W')."""
    equations = {st.name: st for st in spec.statements if isinstance(st, ast.Equation)
                 and st.value is not None}
    needed, todo = set(), [loss]
    while todo:
        st = equations.get(todo.pop())
        for name in _names_in(st.value) if st is not None else ():
            if name in equations and name not in needed:
                needed.add(name)
                todo.append(name)
    names = {b.name for b in leaves}
    bare = {n for n, st in equations.items()
            if isinstance(st.value, ast.Name) and st.value.id in names}
    return set(equations), needed, bare


def _names_in(expr) -> set[str]:
    """Every name an AST expression reads."""
    found, todo = set(), [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, ast.Name):
            found.add(e.id)
        elif isinstance(e, (list, tuple)):
            todo.extend(e)
        elif dataclasses.is_dataclass(e) and not isinstance(e, type):
            todo.extend(getattr(e, f.name) for f in dataclasses.fields(e))
    return found
