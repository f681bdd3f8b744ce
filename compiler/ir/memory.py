"""What a step must hold in memory, from the shapes the compiler knows (``N`` symbolic).

Two lower bounds of a step's peak, each a sum of terms ``bytes × N^…`` that the runtime
evaluates at the batch it is about to use (``runtime/points.check_memory``), before it
allocates anything:

- ``kept``: the forward values the backward pass reads (the patch matrix of a
  convolution, activations), all alive together when the forward pass ends, and a
  boolean mask (ReLU's, max pooling's) of a value nothing else keeps: the mask is taken
  early or the value is kept until the backward takes it, and the mask is the smaller;
- ``moments``: the largest single operations — a value being computed together with
  the operands it is computed from (an ``im2col`` patch matrix and the image), named
  and shaped so a refusal can say which value, of which shape, does not fit.

Views (transpose, reshape, slicing) cost nothing; parameters and constants are not
counted (they exist before the step). Both are lower bounds — the code may hold more
(temporaries the buffer planner does not reuse) — so a refusal is never a false alarm.
"""

from __future__ import annotations

from . import Node, Program, topo_order
from ..memory_terms import value_at

FREE = frozenset({"input", "param", "state", "const", "count", "transpose", "reshape",
                  "reshape_each", "reshape_like", "expand_dims", "slice", "stop_gradient"})
LEAVES = frozenset({"param", "state", "const", "count"})
VIEWS = FREE - {"input"} - LEAVES
PROBE = 1000  # the size every symbolic dimension takes to rank values by size
TOP = 2  # moments kept: the largest of a step, and the largest of inference


def itemsize(node: Node, dtype: str) -> int:
    if node.weak:
        return 0
    return 1 if node.dtype == "bool" else 8 if node.dtype == "int" else \
        4 if dtype == "float32" else 8


def _base(node: Node) -> Node:
    while node.op in VIEWS and node.args:
        node = node.args[0]
    return node


def _terms(nodes, dtype: str) -> dict[str, int]:
    """{"N": bytes, "": bytes, …}: the bytes of ``nodes``, one entry per product of
    symbolic dimensions ("N": bytes per example; "": a fixed size; "N*T" …)."""
    out: dict[str, int] = {}
    for n in nodes:
        size = itemsize(n, dtype)
        dims = []
        for d in n.shape:
            if isinstance(d, str):
                dims.append(d)
            else:
                size *= int(d)
        if size:
            key = "*".join(sorted(dims))
            out[key] = out.get(key, 0) + size
    return dict(sorted(out.items()))


def kept_values(prog: Program) -> list[Node]:
    """The forward values the backward pass reads (views resolved to what they view),
    with the boolean masks kept in place of a value nothing else keeps: what a training
    step holds when its forward pass ends."""
    forward = {n.id for n in topo_order([bd.node for bd in prog.forward])}
    kept: dict[int, Node] = {}
    masks = []
    for n in _backward_nodes(prog, forward):
        if n.op in FREE:
            continue
        args = [_base(a) for a in n.args]
        if n.dtype == "bool" and all(a.id in forward or a.op in LEAVES for a in args):
            masks.append((n, args))  # a mask of forward values: taken early, or later
            continue
        for a in args:
            if a.id in forward and a.op not in LEAVES:
                kept[a.id] = a
    for n, args in masks:  # the mask, or the values it is taken from, are kept
        if any(a.id not in kept and a.op not in LEAVES for a in args):
            kept[n.id] = n  # the smaller of the two: one byte an entry
    return list(kept.values())


def _backward_nodes(prog: Program, forward: set[int]) -> list[Node]:
    return [n for n in topo_order([bd.node for bd in prog.backward]) if n.id not in forward]


def footprint(prog: Program) -> dict:
    """``{"kept": terms, "moments": [(label, shape, dtype, terms, forward, op), …]}``
    (terms: the bytes of an operation's result and operands; label, shape, dtype and op:
    of the largest of those arrays; forward: whether inference computes it)
    (plain data for the module's CONFIG)."""
    dtype = prog.dtype
    forward_nodes = topo_order([bd.node for bd in prog.forward])
    forward = {n.id for n in forward_nodes}
    backward_nodes = _backward_nodes(prog, forward)
    names = {bd.node.id: bd.name
             for bd in prog.inputs + prog.targets + prog.forward + prog.backward}
    moments = []
    for n in forward_nodes + backward_nodes:
        if n.op in FREE or not itemsize(n, dtype):
            continue
        operands = list({a.id: a for a in (_base(a) for a in n.args)
                         if a.op not in LEAVES and itemsize(a, dtype)}.values())
        # an elementwise result may be written into an operand of its shape: not counted
        own = [] if any(a.shape == n.shape and a.dtype == n.dtype for a in operands) else [n]
        terms = _terms(operands + own, dtype)
        probe = _probe(terms)
        # named after the largest array it holds: the patch matrix, not the small
        # gradient of the filters computed from it
        big = max(operands + [n], key=lambda a: _probe(_terms([a], dtype)))
        label = names.get(big.id) or prog.hints.get(big.id) or \
            (f"the {big.op} of line {big.span.line}" if big.span else f"a {big.op}")
        moments.append((probe, n.id in forward, (label, tuple(big.shape),
                                                 _dtype_name(big, dtype), terms,
                                                 n.id in forward, big.op)))
    moments.sort(key=lambda m: -m[0])
    top = [m[2] for m in moments[:TOP]]
    if not any(m[4] for m in top):  # and the largest inference computes (evaluation)
        top += [m[2] for m in moments if m[1]][:1]
    return {"kept": _terms(kept_values(prog), dtype), "moments": top}


def _probe(terms) -> int:
    return value_at(terms, {d: PROBE for key in terms for d in key.split("*") if d}) or 0


def _dtype_name(node: Node, dtype: str) -> str:
    return "bool" if node.dtype == "bool" else "int64" if node.dtype == "int" else dtype
