"""Buffer planning for generated functions: in-place updates and early release.

Works on the scheduled statements of one function, using liveness:

- **In place into a dead operand.** ``dL_da1 = (a1 > 0) * dL_dz1`` where ``dL_dz1`` is
  never read again and has the result's shape and dtype becomes
  ``dL_da1 = np.multiply(a1 > 0, dL_dz1, out=dL_dz1)``: no new array.
- **In place into a fresh left operand.** ``a1 = x @ W1 + b1`` becomes ``a1 = x @ W1``
  then ``a1 += b1``: the matmul's result is the buffer, the bias is added into it.
- **Early release.** A batch-sized intermediate is ``del``-eted after its last use when
  another batch-sized array is allocated later, which lowers the function's peak memory.

The ``textbook`` style (``bpc show``, ``bpc explain``) plans nothing: every statement is
``name = expression`` as the derivation writes it, with no ``out=``, no in-place update
and no ``del``; only the ``fast`` style (``bpc train``, the default of ``bpc compile``)
does the above. This function is the one place where the two styles differ in code.

A buffer is only ever reused when every name bound to its memory is dead and none of
them is returned or stored into the caller's state. Names share memory through aliases
(``dl_dbeta3 = dl_df3``) and through views: an operation whose printed result may be a
view of an argument says so in the primitive table (``Primitive.views``: reshape, a
slice, ``.T``, ``stop_gradient``, the patch matrix of a 1x1 convolution), and the plan
follows those arguments, through inline expressions too, to the named values they view.
All names that may share memory form one buffer: a write into any of them needs all of
them dead. A value that may view an input, a parameter or the caller's state or buffers
is never written at all. Which memory a statement's value may share is read from the IR
nodes behind the statements.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..ir import NAMED_LEAVES, Node, batch_sized, topo_order
from ..ir.primitives import PRIMITIVES
from .printer import Printer, Statement


@dataclass
class Step:
    statement: Statement
    code: list[str]
    release: list[str] = field(default_factory=list)
    into: bool = False  # computed straight into the caller's buffer (``into``)
    helpers: frozenset[str] = frozenset()  # the module helpers ``code`` calls


STYLES = ("fast", "textbook")


@dataclass
class _Buffer:
    """Memory that one or more names may share."""
    members: list[int]  # statements binding a name to it, in order
    last: int  # the last statement reading any of the names
    escapes: bool  # a name is returned, or the memory is stored into the caller's state
    owned: bool  # the function allocated it (releasing it can free memory)
    writable: bool  # it may share no memory with inputs, parameters or caller's arrays
    batch: bool  # a name's value is batch-sized


def plan(statements: list[Statement], returns: list[str], into: dict[str, str] | None,
         style: str, printer: Printer) -> list[Step]:
    """Steps for ``statements``; ``into`` maps a returned name to a caller's buffer
    expression (``grads.get("W1")``) that its value is computed into when it can be.
    In the ``textbook`` style each statement is one plain assignment. ``printer``
    (the one that printed the statements) says whose buffer forms (``out=``) the ops
    are written in (its ``target``: "numpy" or "torch") and lets an elementwise chain be
    computed in place along its length (``chain``)."""
    if style not in STYLES:
        raise ValueError(f"unknown code style {style!r}; expected one of {STYLES}")
    if style == "textbook":
        return [Step(st, list(st.lines) or [f"{st.target} = {st.expr}"], helpers=st.helpers)
                for st in statements]
    into = into or {}
    target = printer.target
    returned = set(returns)
    table = printer.table  # the style's forms: the fast style's out= of _sigmoid_tanh

    # Which statement first binds each node: a later statement prints that node as a
    # name of that buffer (a state update binds no name the function reads again; a
    # constant is always printed as itself).
    bound: dict[int, int] = {}
    index: dict[str, int] = {}
    for i, st in enumerate(statements):
        if st.kind != "update":
            index.update((name, i) for name in st.defines or (st.name,))
            # An alias binds no memory of its own: it names a value bound before it, a
            # loop's result (bound just below, to the loop) or an input.
            if not st.node.is_const and not st.alias:
                bound.setdefault(st.node.id, i)
    for n in topo_order([st.node for st in statements]):  # a loop's results are its buffer
        if n.op == "part" and n.args[0].id in bound:
            bound.setdefault(n.id, bound[n.args[0].id])
    # Per statement, the statements whose names its code reads. An op's printed form
    # need not read every argument (the fused loss prints its log-softmax, not the
    # logits): the printer records what the printed text reads.
    reads = [{index[m] for m in st.reads if m in index} for st in statements]
    last_read = [-1] * len(statements)
    for i, used in enumerate(reads):
        for j in used:
            last_read[j] = i

    # Buffers, merged as names come to share memory (union-find over statement indices).
    parent: dict[int, int] = {}
    buffers: dict[int, _Buffer] = {}

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def merge(roots: set[int]) -> int:
        keep = max(roots, key=lambda r: len(buffers[r].members))
        b = buffers[keep]
        for r in sorted(roots - {keep}):
            other = buffers.pop(r)
            parent[r] = keep
            if other.members[0] > b.members[-1]:  # the usual case: the newest statement
                b.members.extend(other.members)
            else:
                b.members = list(heapq.merge(b.members, other.members))
            b.last = max(b.last, other.last)
            b.escapes |= other.escapes
            b.owned |= other.owned
            b.writable &= other.writable
            b.batch |= other.batch
        return keep

    def free_after(root: int, i: int) -> bool:
        b = buffers[root]
        return b.last <= i and not b.escapes

    def sharing(nodes: list[Node], i: int) -> tuple[set[int], bool]:
        """The buffers the values of ``nodes``, as printed in statement ``i``, may share
        memory with, and whether they may share an input's, a parameter's or a state's
        (the caller's arrays). Anything else they hold was allocated in the statement."""
        roots, foreign = set(), False
        stack = list(nodes)
        while stack:
            n = stack.pop()
            j = bound.get(n.id)
            if j is not None and j < i:
                roots.add(find(j))
            elif n.op in NAMED_LEAVES:
                foreign = True
            elif not n.is_const:
                stack.extend(n.args[k] for k in PRIMITIVES[n.op].viewed(n))
        return roots, foreign

    def fresh(a: Node, node: Node) -> bool:
        """Whether ``a`` is computed in ``node``'s own statement at its shape and dtype."""
        return not (a.id in printer.names or a.op in NAMED_LEAVES or a.is_const
                    or table[a.op].cheap or table[a.op].viewed(a)
                    or a.shape != node.shape or a.dtype != node.dtype)

    def chain(node: Node, name: str, i: int, later: frozenset[str], top: bool = False):
        """An elementwise chain computed in place into a dead value's buffer, which
        ``name`` then holds: ``dL_dy = np.exp(L_log_softmax, out=L_log_softmax)`` then
        ``dL_dy -= t`` for ``np.exp(L_log_softmax) - t``, ``np.multiply(y, 1 - y,
        out=y)`` then ``*= dL_dy`` for ``y * (1 - y) * dL_dy``. Down the operand that
        is freshly computed at the result's shape (an augmented update of it by the
        others), to an operation with an operand whose buffer dies here and that no
        later line (``later``: the names they read) reads: (lines, that buffer, the
        helpers the lines call), or None. ``top``: only the way down (the statement's
        own out= is planned apart)."""
        prim = table[node.op]
        if not (prim.elementwise or callable(prim.augmented)) or node.shape == ():
            return None
        if isinstance(prim.augmented, str):
            for k in (0, 1) if prim.augmented in ("+=", "*=") else (0,):
                a = node.args[k]
                if not fresh(a, node):
                    continue
                other = node.args[1 - k]
                inner = chain(a, name, i, later | printer.reads(other))
                if inner is None:
                    return None
                return (inner[0] + [f"{name} {prim.augmented} {printer.text(other)}"],
                        inner[1], inner[2] | printer.helpers(other))
        elif callable(prim.augmented) and fresh(node.args[0], node):  # its own lines
            others = node.args[1:]
            inner = chain(node.args[0], name, i, later.union(*map(printer.reads, others)))
            if inner is None:
                return None
            lines = prim.update_lines([name, *map(printer.text, others)], dict(node.attrs),
                                      name, node, target)
            return (inner[0] + lines, inner[1], inner[2].union(
                _called(prim, node, lines, target), *map(printer.helpers, others)))
        if top:
            return None
        for a in node.args:
            j = bound.get(a.id)
            if j is None or j >= i or a.shape != node.shape or a.dtype != node.dtype:
                continue
            r = find(j)
            members = {statements[m].name for m in buffers[r].members}
            if printer.text(a) in members and buffers[r].writable and free_after(r, i) \
                    and not members & later:
                args = [printer.text(x) for x in node.args]
                form = prim.write_into(args, dict(node.attrs), printer.text(a), node, target)
                if form is None:
                    return None
                helpers = frozenset(prim.helpers_for(target, node)).union(
                    *map(printer.helpers, node.args))
                return [f"{name} = {form}"], r, helpers
        return None

    allocates_batch = [bool(st.lines) or (not st.alias and not PRIMITIVES[st.node.op].cheap
                                          and batch_sized(st.node.shape))
                       for st in statements]
    later_alloc = [False] * len(statements)  # a batch-sized allocation comes after i
    for i in range(len(statements) - 2, -1, -1):
        later_alloc[i] = later_alloc[i + 1] or allocates_batch[i + 1]
    steps: list[Step] = []
    released: set[int] = set()
    for i, st in enumerate(statements):
        node = st.node
        parent[i] = i
        if st.kind == "update":
            # The caller's state now holds this value: whatever memory it shares must
            # never be written again.
            for r in sharing([node], i)[0]:
                buffers[r].escapes = True
            buffers[i] = _Buffer([], -1, False, False, False, False)
            if _updates_in_place(st, statements):  # the caller's array, which it holds
                steps.append(Step(st, [f"{st.name} {table[node.op].augmented} {st.args[1]}"],
                                  helpers=st.arg_helpers))
            else:
                steps.append(Step(st, [f"{st.target} = {st.expr}"], helpers=st.helpers))
            continue
        prim = table[node.op]
        buffers[i] = _Buffer([i], last_read[i], bool(returned.intersection(
            st.defines or (st.name,))), True, True, batch_sized(node.shape) or bool(st.lines))
        code = list(st.lines) or [f"{st.name} = {st.expr}"]
        # A buffer form (``out=``, an augmented update) prints the arguments with NumPy's
        # own functions or operators, not the op's printed form: only theirs are called.
        helpers = st.helpers
        computed_into = False  # straight into the caller's buffer
        if st.lines:
            pass  # a loop: new arrays, written by its own lines
        elif st.alias or prim.viewed(node):
            # The memory the result may share: the value it names, or those it views.
            roots, foreign = sharing([node] if st.alias else
                                     [node.args[k] for k in prim.viewed(node)], i)
            b = buffers[i]
            # A view owns nothing beyond what it views (memory computed in its own
            # expression, ``np.reshape(h @ W, …)``, is its own); an op that may or may
            # not return a view (a 1x1 convolution's patches) may allocate.
            b.owned = not (roots or foreign) or not (st.alias or prim.cheap)
            b.writable = not foreign
            merge(roots | {i})
        else:
            caller = into.get(st.name) if node.shape != () else None
            direct = prim.write_into(list(st.args), dict(node.attrs), caller, node, target) \
                if caller else None
            reused = None
            chained = chain(node, st.name, i, frozenset(), top=True) \
                if direct is None else None
            if direct is None and chained is None and node.shape != () and prim.elementwise:
                for k, arg_name in enumerate(st.arg_names):
                    arg = node.args[k]
                    if arg_name is None or bound.get(arg.id, i) >= i:
                        continue
                    r = find(bound[arg.id])
                    if arg.shape == node.shape and arg.dtype == node.dtype \
                            and buffers[r].writable and free_after(r, i):
                        form = prim.write_into(list(st.args), dict(node.attrs), arg_name,
                                               node, target)
                        if form is not None:
                            reused = (form, r)
                        break
            # An out= form calls NumPy, or the op's own helper (``_sigmoid_tanh(a,
            # out=a)``, the fast style's); an augmented update calls neither.
            out_helpers = st.arg_helpers | frozenset(prim.helpers_for(target, node))
            if direct is not None:  # straight into the caller's buffer
                code = [f"{st.name} = {direct}"]
                computed_into = True
                helpers = out_helpers
                buffers[i].owned = buffers[i].writable = False
            elif chained is not None:  # in place along an elementwise chain
                code, helpers = chained[0], chained[2]
                merge({chained[1], i})
            elif reused is not None:
                code = [f"{st.name} = {reused[0]}"]
                merge({reused[1], i})
                helpers = out_helpers
            else:
                k = _fresh_operand(st, prim) if node.shape != () else None
                if k is not None and sharing([node.args[k]], i) != (set(), False):
                    k = None  # may be a view of a named value: not fresh after all
                if k is not None and callable(prim.augmented):  # dL_dx[:, :3] += dL_dh
                    lines = prim.update_lines(list(st.args), dict(node.attrs), st.name,
                                              node, target)
                    code = [f"{st.name} = {st.args[0]}", *lines]
                    helpers = st.arg_helpers | _called(prim, node, lines, target)
                elif k is not None:
                    other = st.args[1 - k]
                    code = [f"{st.name} = {st.args[k]}",
                            f"{st.name} {prim.augmented} {other}"]
                    helpers = st.arg_helpers
        step = Step(st, code, into=computed_into, helpers=helpers)
        if later_alloc[i]:
            # Only a buffer read here (or just made and never read) can die here.
            candidates = {find(j) for j in reads[i]} | {find(i)}
            for r in sorted(candidates):
                b = buffers[r]
                if r in released or not (b.owned and b.batch) or not free_after(r, i):
                    continue
                released.add(r)
                step.release.extend(name for j in b.members
                                    for name in statements[j].defines or (statements[j].name,)
                                    if name not in step.release)
        steps.append(step)
    return steps


def _called(prim, node: Node, lines: list[str], target: str) -> frozenset[str]:
    """The op's own helpers that its update lines call (``_minus_one_hot(p, t, out=p)``;
    ``dL_dx[:, :3] += dL_dh`` calls none)."""
    text = "\n".join(lines)
    return frozenset(h for h in prim.helpers_for(target, node) if f"{h}(" in text)


def _updates_in_place(st: Statement, statements: list[Statement]) -> bool:
    """Whether a state update ``s + delta`` (the fast form of a running statistic) can be
    written ``s += delta`` into the state's own array: the array the caller's ``state``
    holds, which no other statement reads."""
    node, aug = st.node, PRIMITIVES[st.node.op].augmented
    if not isinstance(aug, str) or len(node.args) != 2:
        return False
    leaf = node.args[0]
    return (leaf.op == "state" and leaf.attr("name") == st.name and leaf.shape == node.shape
            and leaf.dtype == node.dtype
            and not any(st.name in other.reads for other in statements if other is not st))


def _fresh_operand(st: Statement, prim) -> int | None:
    """Which operand is a freshly computed array of the result's shape, to update in
    place (``a1 = x @ W1; a1 += b1``): the left one, or the right one of + and *."""
    node = st.node
    if not prim.augmented or not st.inline_fresh:
        return None
    order = (0, 1) if prim.augmented in ("+=", "*=") else (0,)
    for k in order:
        arg = node.args[k]
        if st.inline_fresh[k] and arg.shape == node.shape and arg.dtype == node.dtype:
            return k
    return None
