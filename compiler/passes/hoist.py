"""The fast style's hoisting: IR -> IR before differentiation, for the fast style only.
A loop's work that reads its sequences but nothing it carries is done once, over the
whole sequence, before the loop.

In a ``scan``'s step, a largest subexpression that reads a sequence's slice ``x[:, t]``,
reads no carried value (nor anything computed from one), draws no random numbers and
contains a matrix product becomes a sequence of its own, computed before the loop over
every step at once: an LSTM's ``a[t] = x[:, t] @ Wx + h[t-1] @ Wh + b`` reads
``a_x = x @ Wx + b`` (one product over all N*T rows, ``_matmul_rows``) as
``a_x[:, t] + h[t-1] @ Wh``. A sum is regrouped for it (``(xWx + hWh) + b`` becomes
``(xWx + b) + hWh``). Lifted over the sequence are: the slices themselves, a matrix
product of a lifted value by a closed-over matrix or vector, and elementwise operations
of lifted values and of closed-over values or constants that do not reach the batch axis
(a bias ``[K]`` broadcasts the same against ``[N, K]`` and ``[N, T, K]``); nothing else.
A step equation hoisted whole (a GRU's ``gx[t] = x[:, t] @ Wx + bx``) is that sequence:
``gx`` is computed before the loop, read as ``gx[:, t]``, and the loop no longer computes
it. A carried one stays in the step (the next step reads it as the loop's value): what
it computes from the sequence is hoisted, its last operation is not.

The backward follows from the rules as they are: the loop's derivative writes the
hoisted sequence's adjoint per step (``dL_da_x[:, t]``), and the product's rule outside
the loop gives ``dL_dWx``, ``dL_db`` and ``dL_dx`` in one product or sum each after the
loop, where the loop made one per step. The backward loop is not given the hoisted
sequence (its derivative does not read it), so the forward releases it after its loop;
what the step holds beyond the per-step form is the stacked adjoint ``[N, T, K]`` (an
LSTM: 4H numbers per example and step).

The textbook style never runs this pass: it keeps the loop as the spec writes it. Both
compute the same values up to rounding (the differential test runs every spec in both
styles).
"""

from __future__ import annotations

from ..ir import Builder, Node, Program, topo_order
from ..ir.ops.recurrence import Body
from ..ir.primitives import PRIMITIVES
from ..names import fresh
from . import rebuild, rewrite

_LIFTED, _FIXED, _STUCK = "lifted", "fixed", "stuck"


def hoist(prog: Program) -> Program:
    """``prog`` with its loops' sequence-only work hoisted; ``prog`` itself when a loop
    has none (or there is no loop)."""
    if not any(n.op == "scan" for n in topo_order([bd.node for bd in prog.forward])):
        return prog
    hints: dict[int, str] = {}
    wholes: dict[int, dict[int, Node | int]] = {}  # a new loop -> where its results went

    def rule(b: Builder, node: Node, args: tuple[Node, ...]) -> Node | None:
        if node.op == "part" and args[0].id in wholes:
            # a step equation hoisted whole (a GRU's gx) is the sequence; another result
            # may have a new index
            went = wholes[args[0].id][node.attr("index")]
            return went if isinstance(went, Node) else b.op("part", args[0], index=went)
        if node.op != "scan":
            return None
        made = _hoisted(b, rebuild(b, node, args), hints)
        if made is None:
            return None
        wholes[made[0].id] = made[1]
        return made[0]

    out = rewrite(prog, rule)
    return out.with_(hints={**out.hints, **hints}) if wholes else prog


class _Step:
    """A step being regrouped: each node's kind (lifted over the sequence, fixed: the
    same at every step, or stuck in the loop) and whether it holds a matrix product."""

    def __init__(self, body: Body):
        self.kind: dict[int, str] = {leaf.id: _STUCK for leaf in body.carries}
        self.kind.update((leaf.id, _LIFTED) for leaf in body.slices)
        self.kind.update((leaf.id, _FIXED) for leaf in body.closed)
        self.product: dict[int, bool] = {}

    def classify(self, n: Node) -> str:
        if n.id not in self.kind:
            self.kind[n.id] = _kind(n, [self.kind[a.id] for a in n.args])
        self.product[n.id] = n.op == "matmul" or any(self.product.get(a.id, False)
                                                     for a in n.args)
        return self.kind[n.id]

    def hoistable(self, n: Node) -> bool:
        return self.kind[n.id] == _LIFTED and self.product[n.id]


def _kind(n: Node, kinds: list[str]) -> str:
    """Whether ``n`` computed over the whole sequence ``[N, T, ...]`` (axis 1 inserted in
    every lifted operand) gives each step's value at ``[:, t]``."""
    if n.is_const:
        return _FIXED
    prim = PRIMITIVES[n.op]
    if prim.random or n.dtype in ("bool", "int") or _STUCK in kinds or _LIFTED not in kinds:
        return _STUCK
    if n.op == "matmul":
        x, w = n.args
        lifted = kinds == [_LIFTED, _FIXED] and len(x.shape) >= 2 and len(w.shape) in (1, 2)
        return _LIFTED if lifted else _STUCK
    if not prim.elementwise:
        return _STUCK
    rank = len(n.shape)
    fits = all(len(a.shape) == rank if k == _LIFTED else len(a.shape) < rank
               for a, k in zip(n.args, kinds))
    return _LIFTED if fits else _STUCK


def _regrouped(b: Builder, body: Body, step: _Step) -> tuple[Node, ...]:
    """The step's equations with every sum of lifted and stuck terms regrouped, the
    lifted (and fixed) terms summed first, when that sum holds a matrix product."""
    nodes = topo_order(list(body.steps))
    uses: dict[int, int] = {}
    for n in nodes:
        for a in n.args:
            uses[a.id] = uses.get(a.id, 0) + 1
    memo: dict[int, Node] = {}
    for n in nodes:
        if n.id in step.kind and not n.args:
            memo[n.id] = n
            step.classify(n)
            continue
        new = rebuild(b, n, tuple(memo[a.id] for a in n.args))
        if n.op == "add" and step.classify(new) == _STUCK:
            new = _sum_regrouped(b, n, new, [memo[t.id] for t in _terms(n, uses)], step)
        step.classify(new)
        memo[n.id] = new
    return tuple(memo[s.id] for s in body.steps)


def _terms(n: Node, uses: dict[int, int]) -> list[Node]:
    """The terms of the sum ``n``, through the sums only it reads."""
    return [t for a in n.args for t in (
        _terms(a, uses) if a.op == "add" and uses[a.id] == 1 else [a])]


def _sum_regrouped(b: Builder, old: Node, new: Node, terms: list[Node], step: _Step) -> Node:
    """The sum ``old`` (rebuilt: ``new``) of ``terms`` as (lifted and fixed terms) + the
    others, when that first sum holds a product and is lifted; else ``new``."""
    rank = len(old.shape)
    ahead = [step.kind[t.id] == _LIFTED or (step.kind[t.id] == _FIXED and len(t.shape) < rank)
             for t in terms]
    first = [t for t, a in zip(terms, ahead) if a]
    rest = [t for t, a in zip(terms, ahead) if not a]
    if len(first) < 2 or not rest or not any(step.hoistable(t) for t in first):
        return new
    b.span = old.span
    total = first[0]
    for t in first[1:]:
        total = b.op("add", total, t)
        if step.classify(total) != _LIFTED:
            return new
    for t in rest:
        total = b.op("add", total, t)
        step.classify(total)
    return total if total.shape == old.shape else new


def _hoisted(b: Builder, scan: Node, hints: dict[int, str]
             ) -> tuple[Node, dict[int, Node | int]] | None:
    """``scan`` with its step's hoistable subexpressions computed before it as new
    sequences, and where each of its results went: a step equation hoisted whole, the
    sequence it is; another, its new index. None when the step has nothing to hoist."""
    body: Body = scan.attr("body")
    step = _Step(body)
    steps = _regrouped(b, body, step)
    nodes = topo_order(list(steps))
    # Read where it is not lifted: as a step equation's value, or by a node that stays
    # in the step. A carried step equation stays (the next step reads it as a value of
    # the loop), its value computed from what is hoisted.
    carried = {steps[j].id for j in body.carried}
    wanted = {s.id for s in steps if s.id not in carried} | {
        a.id for u in nodes if step.kind[u.id] != _LIFTED or u.id in carried for a in u.args}
    chosen = [n for n in nodes if step.hoistable(n) and n.id in wanted - carried]
    if not chosen:
        return None
    k = len(body.carries)
    outer = dict(zip((leaf.id for leaf in body.slices + body.closed), scan.args[k:]))
    leaves = _sequences(b, body, steps, chosen, outer, hints)
    memo: dict[int, Node] = {}
    for n in nodes:
        memo[n.id] = leaves.get(n.id) or rebuild(b, n, tuple(memo[a.id] for a in n.args))
    # A step equation hoisted whole is its sequence, unless the loop reads a random draw
    # the sequence does not (``rewrite`` refuses to lose a draw)
    drawn = _draws(list(scan.args))
    whole = {j: outer[leaves[s.id].id] for j, s in enumerate(steps)
             if s.id in leaves and drawn <= _draws([outer[leaves[s.id].id]])}
    sequences = {leaf.id for leaf in body.slices} | {leaf.id for leaf in leaves.values()}
    stay = _staying([memo[s.id] for s in steps], whole, sequences)
    moved: dict[int, Node | int] = {j: whole[j] if j in whole else stay.index(j)
                                    for j in range(len(steps))}
    if not stay:  # every result is a sequence now: the loop is left unread
        return scan, moved
    new_steps = tuple(memo[steps[j].id] for j in stay)
    read = {n.id for n in topo_order(list(new_steps))}
    old = tuple(leaf for leaf in body.slices if leaf.id in read)
    new = tuple(leaves[n.id] for n in chosen if leaves[n.id].id in read)
    first = body.slices[0].attr("name").removesuffix(f"_{body.time}")
    new_body = Body(carries=body.carries, slices=old + new,
                    closed=tuple(leaf for leaf in body.closed if leaf.id in read),
                    steps=new_steps, names=tuple(body.names[j] for j in stay),
                    carried=tuple(stay.index(j) for j in body.carried), time=body.time,
                    hoisted=len(new),
                    reads=body.reads or (first if old[:1] != body.slices[:1] else None))
    b.span = scan.span
    made = b.op("scan", *scan.args[:k], *(outer[leaf.id] for leaf in new_body.leaves[k:]),
                body=new_body)
    return made, moved


def _sequences(b: Builder, body: Body, steps: tuple[Node, ...], chosen: list[Node],
               outer: dict[int, Node], hints: dict[int, str]) -> dict[int, Node]:
    """Each chosen node computed over the whole sequence (named ``a_x`` after the step
    equation that reads it, or like the step equation it is) and a slice leaf reading
    it, by the chosen node's id; ``outer`` gets each new leaf's sequence."""
    taken = {leaf.attr("name") for leaf in body.leaves} | set(body.names)
    leaves: dict[int, Node] = {}
    whole_of = dict(outer)  # a value in the step -> the same over the whole sequence
    root_of = {s.id: j for j, s in enumerate(steps)}
    for n in chosen:
        b.span = n.span
        whole = _lifted(b, n, whole_of)
        name = body.names[root_of[n.id]] if n.id in root_of else \
            fresh(f"{_owner(n, body, steps)}_x", taken)
        hints.setdefault(whole.id, name)
        # named like the sequence: its adjoint at t prints as dL_da_x_t
        leaves[n.id] = b.leaf("input", name, n.shape, n.dtype)
        outer[leaves[n.id].id] = whole
    return leaves


def _staying(steps: list[Node], whole: dict[int, Node], sequences: set[int]) -> list[int]:
    """The step equations the loop keeps computing: all but those ``whole`` (read from
    their sequences), unless the rest would read no sequence (``sequences``: the slice
    leaves; one gives the loop its length)."""
    stay = [j for j in range(len(steps)) if j not in whole]
    reads_one = any(n.id in sequences for n in topo_order([steps[j] for j in stay]))
    return stay if reads_one or not stay else list(range(len(steps)))


def _draws(roots: list[Node]) -> set:
    """The random draws (dropout's sites) ``roots`` reach."""
    return {n.attr("site") for n in topo_order(roots) if PRIMITIVES[n.op].random}


def _lifted(b: Builder, root: Node, memo: dict[int, Node]) -> Node:
    """``root`` computed over the whole sequence: each leaf replaced by the value it
    stands for outside the loop (a slice by its sequence); ``memo`` holds those values
    and the ones computed so far (shared by the hoisted values, so computed once)."""
    for n in topo_order([root]):
        if n.id not in memo:
            memo[n.id] = rebuild(b, n, tuple(memo[a.id] for a in n.args))
    return memo[root.id]


def _owner(n: Node, body: Body, steps: tuple[Node, ...]) -> str:
    """The name of the first step equation that reads ``n``."""
    return next(name for name, s in zip(body.names, steps)
                if any(m is n for m in topo_order([s])))
