"""Reverse-mode differentiation: ``differentiate(program) -> program`` with a backward pass.

Walks the forward IR in reverse creation order (= reverse spec order), seeds
``d{L}_d{L} = 1``, and for each node on a path from a differentiated leaf to the loss
asks the primitive table for its vector-Jacobian contributions, reduces each back to its
argument's shape (``unbroadcast``, the single place broadcasting is undone) and
accumulates them. Every named forward value and every leaf gets an adjoint binding named
``d{L}_d{name}``; a leaf's binding is written as soon as its last contribution is known,
so ``dl_dbeta3`` and ``dl_domega3`` follow ``dl_df3`` like a textbook derivation.

The result is unsimplified ("--stage grad"); ``optimize`` folds constants, applies
identities, shares common subexpressions and removes dead code.
"""

from __future__ import annotations

from collections import defaultdict

from ..ir import Binding, Builder, Node, Program, topo_order
from ..names import fresh
from ..ir.primitives import PRIMITIVES, expand

LEAVES = ("input", "param", "state", "const")


def adjoint_name(loss: str, name: str) -> str:
    return f"d{loss}_d{name}"


def unbroadcast(b: Builder, g: Node, out_shape, shape, like: Node | None = None) -> Node:
    """Reduce ``g``, the adjoint of a value of ``out_shape``, to an operand of ``shape``.

    Along each axis where the operand was broadcast (missing in front, or 1 against a
    larger size) the adjoint is summed: with ``np.sum`` where ``g`` really has the axis,
    and by multiplying with the axis length where ``g`` is itself only lazily broadcast
    there. Axes in front are summed away, the others keep their dimension. Decided at
    compile time from shapes; the result broadcasts to ``shape``.

    When axes are both summed away and kept (a conv bias ``[F, 1, 1]`` against
    ``[N, F, OH, OW]``) and the result would have exactly the operand's shape, it is one
    sum over all of them reshaped to the operand (``like``, if given: its ``.shape``)."""
    rank = len(out_shape)
    gs = (1,) * (rank - len(g.shape)) + tuple(g.shape)
    ts = (None,) * (rank - len(shape)) + tuple(shape)
    missing = rank - len(g.shape)  # leading axes g does not have
    drop, keep, replicate = [], [], []
    for axis, (o, gd, t) in enumerate(zip(out_shape, gs, ts)):
        if not (t is None or (t == 1 and o != 1)):
            continue
        if gd == 1:
            if o != 1:
                replicate.append(o)
            if t is None and axis >= missing:
                drop.append(axis - missing)  # a size-1 axis g has but the operand lacks
        elif t is None:
            drop.append(axis - missing)
        else:
            keep.append(axis - missing)
    if drop and keep and _one_sum(g.shape, drop, keep, shape, like):
        g = b.op("sum", g, axis=tuple(sorted(drop + keep)), keepdims=False)
        if like is not None and like.op in LEAVES:
            g = b.op("reshape_like", g, like)  # np.reshape(..., b1.shape)
        else:
            g = b.op("reshape", g, shape=tuple(shape))
        keep = []
    elif drop:
        g = b.op("sum", g, axis=tuple(drop), keepdims=False)
        keep = [k - sum(1 for d in drop if d < k) for k in keep]
    if keep:
        g = b.op("sum", g, axis=tuple(keep), keepdims=True)
    if replicate:
        g = b.op("mul", b.size(replicate), g)
    return g


def _one_sum(gshape, drop, keep, shape, like) -> bool:
    """Whether summing ``drop`` and ``keep`` away in one step and reshaping gives ``shape``
    (what the two sums would give); the reshape needs the operand or fixed sizes."""
    two_sums = tuple(1 if i in keep else d for i, d in enumerate(gshape) if i not in drop)
    if two_sums != tuple(shape):
        return False
    return (like is not None and like.op in LEAVES) or all(isinstance(d, int) for d in shape)


# The names of a rule's steps, by the word the rule gives each (``b.hint``): the adjoint
# of a value the forward pass holds (conv's patch matrix a1_col), else a role of the
# equation's own (``p1_argmax``; the conv's adjoint laid out one row per filter, and the
# filters' gradient before it takes W's shape).
STEP_NAMES = {"col": "d{loss}_d{eq}_col", "argmax": "{eq}_argmax",
              "rows": "{eq}_grad_rows", "filters": "{eq}_filters_grad"}


def _name_parts(hints: dict[int, str], adjoint: str, parts: list, partial: list) -> None:
    """Names for the terms of an adjoint summed from several uses, should they become
    temporaries: each term by the equation it comes through (``dl_dr23_via_z47``), each
    running sum as such (``sum_dL_dw``)."""
    if len(parts) < 2:
        return
    for term, equation, _ in parts:
        if equation is not None:
            hints.setdefault(term.id, f"{adjoint}_via_{equation}")
    for running in partial:
        hints.setdefault(running.id, f"sum_{adjoint}")


def differentiate(prog: Program, scaled: bool = True) -> Program:
    b = Builder(prog.dtype)
    b.loss = prog.loss
    b.symbol_table(prog.inputs + prog.targets, prog.symbols)
    by_name = {bd.name: bd for bd in prog.leaves + prog.forward}
    loss_node = by_name[prog.loss].node
    wrt_ids = {by_name[n].node.id for n in prog.wrt}

    order = topo_order([loss_node])
    order.sort(key=lambda n: n.id)  # creation order: spec order, leaves first
    needs: set[int] = set()
    for n in order:
        if n.id in wrt_ids or any(a.id in needs for a in n.args):
            needs.add(n.id)

    named: dict[int, Binding] = {}
    for bd in prog.leaves + prog.forward:
        named.setdefault(bd.node.id, bd)
    # The unnamed inputs of a named value's outermost operation, e.g. the pre-activation
    # in y = sigmoid(h @ W + b): their adjoints are called dL_dy_in if they need a name.
    inner: dict[int, str] = {}
    for bd in prog.forward:
        args = [a for a in bd.node.args if a.id not in named and a.op not in LEAVES]
        for k, a in enumerate(args):
            inner.setdefault(a.id, f"{bd.name}_in" + (str(k + 1) if len(args) > 1 else ""))
    hints: dict[int, str] = {}
    owner: dict[int, str] = {}  # node -> the first equation whose expression holds it
    for bd in prog.forward:
        stack = [bd.node]
        while stack:
            n = stack.pop()
            if n.id in owner:
                continue
            owner[n.id] = bd.name
            stack.extend(a for a in n.args if a.id not in owner)
    first_use: dict[int, int] = {}
    for n in order:
        for a in n.args:
            first_use[a.id] = min(first_use.get(a.id, n.id), n.id)

    taken = {bd.name for bd in prog.all_bindings()}
    adj_names: dict[int, str] = {}
    contribs: dict[int, list[tuple[Node, str | None, str]]] = defaultdict(list)
    backward: list[Binding] = []
    grads: dict[str, str] = {}

    def finish(n: Node) -> Node:
        """Sum the contributions to ``n`` and bind the adjoint if ``n`` has a name."""
        parts = contribs.pop(n.id)
        b.span = n.span
        g, sums = parts[0][0], []
        for p, _, _ in parts[1:]:
            g = b.op("add", g, p)
            sums.append(g)
        bd = named.get(n.id)
        if n.id in wrt_ids and (g.shape != n.shape or not g.is_array):
            g = expand(b, g, n)  # a gradient is an array of its variable's shape and dtype
        if n.id in inner:
            hints.setdefault(g.id, adjoint_name(prog.loss, inner[n.id]))
        if bd is not None:
            name = fresh(adjoint_name(prog.loss, bd.name), taken)
            adj_names[n.id] = name
            _name_parts(hints, name, parts, sums[:-1])
            sources = tuple(dict.fromkeys((src, rule) for _, src, rule in parts if src))
            kind = "grad" if n.op in LEAVES else "seed" if n is loss_node else "adjoint"
            backward.append(Binding(name, g, kind,
                                    bd.span, sources=tuple(dict.fromkeys(s for s, _ in sources)),
                                    note="; ".join(dict.fromkeys(r for _, r in sources if r))
                                    or None))
        return g

    b.span = loss_node.span
    # 1 unless the caller scales the gradient (``scale``); a loop's step (``scaled=False``)
    # is differentiated from adjoints that already carry the scale
    seed = b.op("seed") if scaled else b.const(1)
    contribs[loss_node.id].append((seed, None, ""))
    pending_leaves: dict[int, Node] = {}
    # A loop's adjoint (ops/recurrence): its results' adjoints, by result index.
    results: dict[int, dict[int, Node]] = defaultdict(dict)
    for n in reversed(order):
        if n.op in LEAVES and n is loss_node:  # 'loss L = p': dL/dp = 1
            pending_leaves[n.id] = n
        if n.op in LEAVES or n.id not in needs or (n.id not in contribs
                                                   and n.id not in results):
            continue
        prim = PRIMITIVES[n.op]
        if n.id in results:  # a loop: its results' adjoints are all known now
            g = results.pop(n.id)
        else:
            g = finish(n)
        if n.op == "part":  # one result of a loop: its adjoint waits for the loop's
            made, index = n.args[0], n.attr("index")
            known = results[made.id].get(index)
            results[made.id][index] = g if known is None else b.op("add", known, g)
            continue
        b.span = n.span
        rule = prim.rule
        b.hints.clear()
        parts = prim.vjp(b, n, g)
        for node_id, hint in b.hints.items():  # a rule's names for its steps
            equation = owner.get(n.id, "v")
            hints.setdefault(node_id, STEP_NAMES.get(hint, "{eq}_{hint}").format(
                loss=prog.loss, eq=equation, hint=hint))
        for arg, c in zip(n.args, parts):
            if c is None or arg.id not in needs:
                continue
            # Only elementwise ops broadcast their operands; other rules already return
            # a contribution in the argument's own frame.
            frame = n.shape if prim.elementwise else arg.shape
            c = unbroadcast(b, c, frame, arg.shape, arg)
            contribs[arg.id].append((c, owner.get(n.id), rule))
            if arg.op in LEAVES:
                pending_leaves[arg.id] = arg
        # Leaves whose earliest use was this node have all their contributions now.
        for leaf_id in [i for i in pending_leaves if first_use[i] == n.id]:
            finish(pending_leaves.pop(leaf_id))
    for leaf in pending_leaves.values():  # its first use passed no gradient on
        if leaf.id in contribs:
            finish(leaf)

    for name in prog.wrt:
        leaf = by_name[name].node
        if leaf.id in adj_names:
            grads[name] = adj_names[leaf.id]
        else:  # the loss does not depend on it
            b.span = by_name[name].span
            adj = fresh(adjoint_name(prog.loss, name), taken)
            backward.append(Binding(adj, b.op("zeros_like", leaf), "grad",
                                    by_name[name].span,
                                    note=f"{prog.loss} does not depend on {name}"))
            grads[name] = adj
    return prog.with_(backward=backward, grads=grads, stage="grad",
                      hints={**prog.hints, **hints})
