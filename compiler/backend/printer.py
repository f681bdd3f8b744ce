"""From IR bindings to straight-line NumPy statements.

``schedule(program, bindings)`` decides what becomes a statement: every binding (a spec
name, an adjoint), and every unnamed node that is used more than once and is not cheap
(a view, a constant, a scalar operation), so each shared subexpression is computed once.
Everything else is printed inline with the fewest parentheses Python's precedence allows.
Single-use temporaries stay inline, so ``dl_df3 = 2 * (f3 - y)`` reads like the textbook.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import NAMED_LEAVES, Binding, Node, Program, batch_sized, fmt_shape, topo_order
from ..names import fresh
from ..ir.primitives import ATOM, PRIMITIVES, styled
from ..ir.ops.recurrence import LOOPS
from .pyfmt import STATEMENT_WIDTH

_SAFE_COMMENT = set(" !#$%&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`"
                    "abcdefghijklmnopqrstuvwxyz{|}~'\"")


def safe_comment(text: str) -> str:
    """Spec text made safe for a ``#`` comment: one line, printable ASCII only."""
    return " ".join("".join(c if c in _SAFE_COMMENT else "?" for c in text).split())


@dataclass
class Statement:
    name: str
    expr: str
    node: Node
    kind: str  # a binding kind, or "temp"
    comment: str | None = None
    alias: bool = False  # the right-hand side is just another name
    # The top operation's arguments as printed, and for each the statement name it is
    # (None for an inline expression or a leaf): what buffer planning needs.
    args: tuple[str, ...] = ()
    arg_names: tuple[str | None, ...] = ()
    inline_fresh: tuple[bool, ...] = ()  # argument i is an unnamed, freshly computed array
    # What the printed expression reads (names of leaves, statements, 'let' constants)
    # and the module helpers it calls; ``arg_helpers``: those its printed arguments call
    # (what a buffer form of the statement, which prints them, calls).
    reads: frozenset[str] = frozenset()
    helpers: frozenset[str] = frozenset()
    arg_helpers: frozenset[str] = frozenset()
    # A loop over time (kind "loop", ``backend/loops``): its lines, and every name it
    # assigns (its results; ``name`` is the first).
    lines: tuple[str, ...] = ()
    defines: tuple[str, ...] = ()
    steps: tuple[Statement, ...] = ()  # a loop's: the step's own statements (bpc trace)
    # A loop's backward (bpc trace): what the code writes a step statement as (its name ->
    # ``dL_dWh +=``, ``dL_dx[:, t]``, ``dL_dh_next``), and each step's seeds (a seed's name
    # -> the sum it starts from, ``dL_dh[:, t] + dL_dh_next``).
    written_as: tuple[tuple[str, str], ...] = ()
    seeded_from: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> str:
        """What the statement assigns: its name, or for a state update (training mode)
        the caller's state entry, ``state["bn1_running_mean"]``."""
        return f'state["{self.name}"]' if self.kind == "update" else self.name


class _Names(dict):
    """Node id -> printed name; naming a node forgets what was printed of expressions
    (their text, what it reads), which may have held it inline."""

    def __init__(self, items, *printed: dict):
        super().__init__(items)
        self._printed = printed

    def __setitem__(self, key, value) -> None:
        if self.get(key) != value:
            for done in self._printed:
                done.clear()
        super().__setitem__(key, value)


_NOTHING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


class Printer:
    def __init__(self, prog: Program, lets: bool = False, target: str = "numpy",
                 style: str = "textbook"):
        """``lets``: print a constant the spec named with ``let`` by that name (the
        textbook style, which defines the names at module level), not as its number;
        ``target``: the printer field of each op that prints it ("numpy" or "torch");
        ``style``: whose forms of the ops to print (``styled``: the fast style's
        ``_sigmoid_tanh`` where the textbook's is ``_sigmoid``, on NumPy)."""
        self.prog = prog
        self.lets = lets
        self.target = target
        self.style = style
        self.table = styled(style)
        # Printed (text, precedence) per node: a node shared inline (a view, a constant)
        # is printed once, so printing a DAG is linear in its size, not in its unfolding.
        self._printed: dict[int, tuple[str, int]] = {}
        # Per printed node, the names its text reads and the helpers it calls.
        self._uses: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
        self.names: dict[int, str] = _Names(
            {bd.node.id: bd.name for bd in prog.leaves}, self._printed, self._uses)
        # What decides the schedule's line splits: NumPy's text, whatever the target, so
        # every target names the same temporaries (a NumPy twin sharing the names).
        self.measure = self
        if target != "numpy":
            self.measure = Printer(prog, lets, style=style)
            self.measure.names = self.names
            self.names._printed += (self.measure._printed, self.measure._uses)

    def expr(self, node: Node) -> tuple[str, int]:
        done = self._printed.get(node.id)
        if done is not None:
            return done
        # Children first, without recursion: expressions may nest thousands deep.
        stack = [(node, False)]
        while stack:
            n, ready = stack.pop()
            if n.id in self._printed:
                continue
            if n.id in self.names and not n.is_const:
                self._printed[n.id] = (self.names[n.id], ATOM)
                self._uses[n.id] = (frozenset((self.names[n.id],)), frozenset())
                continue
            if self.lets and n.is_const and n.attr("let"):
                self._printed[n.id] = n.attr("let")  # (text, precedence)
                # its own 'let' name, or those a folded one was made of (2 * lam)
                self._uses[n.id] = (frozenset(n.attr("let_names") or ()), frozenset())
                continue
            if not ready:
                stack.append((n, True))
                stack.extend((a, False) for a in n.args if a.id not in self._printed)
                continue
            prim = self.table[n.op]
            args = [self._printed[a.id] for a in n.args]
            self._printed[n.id] = self.emit(n, args)
            self._uses[n.id] = _union([self._uses[a.id] for a in prim.printed(n)],
                                      prim.helpers_for(self.target, n))
        return self._printed[node.id]

    def emit(self, node: Node, args: list[tuple[str, int]]) -> tuple[str, int]:
        """``node`` printed for the target, given its arguments printed."""
        return self.table[node.op].printer(self.target)(args, dict(node.attrs), node)

    def text(self, node: Node) -> str:
        return self.expr(node)[0]

    def reads(self, node: Node) -> frozenset[str]:
        """The names ``node``'s printed text reads: leaves, statements, 'let' constants."""
        self.expr(node)
        return self._uses[node.id][0]

    def helpers(self, node: Node) -> frozenset[str]:
        """The module helpers ``node``'s printed text calls."""
        self.expr(node)
        return self._uses[node.id][1]


def _union(parts: list[tuple[frozenset[str], frozenset[str]]], helpers: tuple[str, ...]
           ) -> tuple[frozenset[str], frozenset[str]]:
    if not parts and not helpers:
        return _NOTHING
    if len(parts) == 1 and not helpers:
        return parts[0]  # shared, not copied: a long chain of unary ops stays linear
    return (frozenset().union(*(r for r, _ in parts)),
            frozenset(helpers).union(*(h for _, h in parts)))


def _cheap(node: Node) -> bool:
    """Recomputing is cheaper than naming: views, constants, and O(1) scalar arithmetic
    (a scalar result of scalar arguments; a sum or matmul to a scalar is not cheap).
    A random draw is never cheap: printed twice, it would draw twice; nor is a reshape of
    moved axes (heads joined back, or their adjoints): NumPy copies it."""
    if PRIMITIVES[node.op].random or _copied_reshape(node):
        return False
    return PRIMITIVES[node.op].cheap or (
        node.shape == () and all(a.shape == () for a in node.args))


def _copied_reshape(node: Node) -> bool:
    return node.op in ("reshape", "reshape_like") \
        and node.args[0].op in ("permute", "transpose") \
        and len(node.args[0].shape) > 2


def schedule(prog: Program, bindings: list[Binding], printer: Printer | None = None,
             taken: set[str] | None = None, early_masks: bool = True) -> list[Statement]:
    """Statements computing ``bindings`` in order, with shared temporaries materialised.
    ``early_masks``: take ReLU-style masks early so the value they test can be released
    (the fast style); the textbook style leaves them inline where the chain rule uses them."""
    p = printer or Printer(prog)
    bound_at: dict[int, int] = {}  # node id -> index of the first binding naming it
    for i, bd in enumerate(bindings):
        if bd.kind != "update":  # state["h1_state"] = ... names no value of the function
            bound_at.setdefault(bd.node.id, i)

    def named_for(node_id: int, i: int) -> bool:
        return node_id in p.names or bound_at.get(node_id, i) < i

    # Count how many distinct expressions use each node not yet named where it is used.
    uses: dict[int, int] = {}
    first: dict[int, int] = {}  # node id -> index of the first binding using it
    draws: set[int] = set()
    found: list[tuple[Node, int]] = []  # users before what they use
    for i, bd in enumerate(bindings):
        stack = [bd.node]
        while stack:
            n = stack.pop()
            for a in n.args:
                if named_for(a.id, i):
                    continue
                uses[a.id] = uses.get(a.id, 0) + 1
                if uses[a.id] == 1:
                    first[a.id] = i
                    stack.append(a)
                    found.append((a, i))
                    if PRIMITIVES[a.op].random or PRIMITIVES[a.op].early \
                            or _loop_or_read_by_one(n, a):
                        draws.add(a.id)
    # A view used twice is printed twice, and its arguments with it: one that is not
    # cheap (the product under a reshape of heads) is computed once and named.
    for n, i in found:
        if uses[n.id] > 1 and _cheap(n):
            for a in n.args:
                if not named_for(a.id, i):
                    uses[a.id] = max(uses[a.id], 2)
    # A node used twice, or used before the binding that names it, is computed once; a
    # random draw is always a statement of its own, before its first use: drawn exactly
    # once, in the order the function computes its statements (an early read likewise).
    shared = {n for n, count in uses.items()
              if count > 1 or (n in bound_at and bound_at[n] > first[n]) or n in draws}
    hoisted = _early_masks(bindings, named_for, shared) if early_masks else {}

    taken = set(taken or ()) | {bd.name for bd in prog.all_bindings()} | set(p.names.values())
    results = _loop_results([bd.node for bd in bindings])
    out: list[Statement] = []
    statement_names: dict[int, str] = {}
    temp_ids: set[int] = set()
    for i, bd in enumerate(bindings):
        # Temporaries first used here, arguments before users.
        temps: list[Node] = []
        seen: set[int] = set()

        # Post-order (arguments first), without recursion: chains may be thousands deep.
        work: list[tuple[Node, bool, bool]] = [(bd.node, True, False)]
        while work:
            n, root, done = work.pop()
            if done:
                if not root and n.id in shared and first.get(n.id) == i and not _cheap(n):
                    temps.append(n)
                continue
            if n.id in seen:
                continue
            seen.add(n.id)
            if not root and (n.id in p.names):
                continue
            work.append((n, root, True))
            work.extend((a, False, False) for a in reversed(n.args))
        def add_temp(t: Node, why: str | None = None) -> None:
            if t.op in LOOPS:  # a loop: its results get their names, bound or fresh
                parts = results.get(t.id, {})
                out.append(_loop(prog, p, t, parts, bindings, bound_at, taken))
                for name, same in zip(out[-1].defines, (parts[k] for k in sorted(parts))):
                    for part in same:
                        p.names[part.id] = statement_names[part.id] = name
                return
            name = fresh(_temp_name(prog, p, bd, t), taken)
            out.append(_statement(p, name, t, "temp", statement_names,
                                  ", ".join(filter(None, (fmt_shape(t.shape), why)))))
            temp_ids.add(t.id)
            p.names[t.id] = name
            statement_names[t.id] = name

        for t in temps:
            if t.id in p.names:  # a loop's result, named by the loop's statement just made
                continue
            later = bindings[bound_at[t.id]].name if t.id in bound_at else None
            add_temp(t, f"used {uses[t.id]} times" if uses[t.id] > 1 else
                     f"kept for {later}" if later else
                     "drawn once" if PRIMITIVES[t.op].random else
                     "read early" if PRIMITIVES[t.op].early else "read by the loop")
        if not (bd.node.id in p.names and not bd.node.is_const):
            for t in _split_long_line(prog, p.measure, bd):  # its name says what it is
                add_temp(t)
        if p.names.get(bd.node.id) == bd.name:
            pass  # a loop's result, which the loop assigns
        elif bd.node.id in p.names and not bd.node.is_const:
            out.append(Statement(bd.name, p.names[bd.node.id], bd.node, bd.kind, alias=True,
                                 reads=frozenset((p.names[bd.node.id],))))
            if bd.kind == "adjoint" and (bd.node.op in NAMED_LEAVES
                                         or bd.node.id in temp_ids):
                # An adjoint that equals a leaf (d price/d all_price = tax) or a temporary:
                # later chain-rule steps read better through the adjoint's name. Same
                # value, so still exact.
                p.names[bd.node.id] = bd.name
        else:
            out.append(_statement(p, bd.name, bd.node, bd.kind, statement_names))
            if not bd.node.is_const and bd.kind != "update":
                p.names[bd.node.id] = bd.name
                statement_names[bd.node.id] = bd.name
        for mask, big in hoisted.get(i, ()):
            base = p.names.get(big.id, "value")
            name = fresh(prog.hints.get(mask.id) or f"{base}_mask", taken)
            out.append(_statement(p, name, mask, "temp", statement_names,
                                  f"{fmt_shape(mask.shape)} bool, taken now so {base} "
                                  f"can be released"))
            temp_ids.add(mask.id)
            p.names[mask.id] = name
            statement_names[mask.id] = name
    return out


def _loop_or_read_by_one(user: Node, a: Node) -> bool:
    """Whether ``a`` must be a statement of its own: a loop (it is lines, not an
    expression), or a value a loop reads that would otherwise be recomputed each step."""
    return a.op in LOOPS or (user.op in LOOPS and not _cheap(a) and not a.is_const)


def _loop_results(roots: list[Node]) -> dict[int, dict[int, list[Node]]]:
    """Per loop: its results read (``part`` nodes), by result index."""
    found: dict[int, dict[int, list[Node]]] = {}
    for n in topo_order(roots):
        if n.op == "part":
            found.setdefault(n.args[0].id, {}).setdefault(n.attr("index"), []).append(n)
    return found


def _loop(prog: Program, p: Printer, node: Node, parts: dict[int, list[Node]],
          bindings: list[Binding], bound_at: dict[int, int], taken: set[str]) -> Statement:
    """The statement of a loop: each result read is named by the binding that names it,
    else by what it is (``dL_dWh``, the adjoint of the loop's argument ``Wh``)."""
    from .loops import loop_statement

    names = {}
    equations = {bd.node.id: bd.name for bd in reversed(prog.forward)}
    for index, same in sorted(parts.items()):
        bound = [bound_at[part.id] for part in same if part.id in bound_at]
        if bound:
            names[index] = bindings[min(bound)].name
            continue
        named = [equations[part.id] for part in same if part.id in equations]
        if named:  # a step equation this function computes only for the backward
            names[index] = named[0]
            continue
        base = _argument_name(p, node, index) if node.op == "scan_grad" else "v"
        names[index] = fresh(f"d{prog.loss}_d{base}" if node.op == "scan_grad" else base,
                             taken)
    return loop_statement(p, node, names, taken)


def _argument_name(p: Printer, node: Node, index: int) -> str:
    """The name of a backward loop's argument ``index``; for a sequence passed as 0,
    the sequence's (its stacked adjoint's name, ``dL_da_x``)."""
    arg = node.args[index]
    if arg.is_const:
        body = node.attr("grad").body
        return body.slices[index - len(body.carries)].attr("name").removesuffix(
            f"_{body.time}")
    return p.names.get(arg.id, "v")


def _temp_name(prog: Program, p: Printer, bd: Binding, t: Node) -> str:
    """A temporary's name, by its role: the name a rule or a function gave it
    (``a1_col``, ``dl_dr23_via_z47``), a test of a named value as that value's mask
    (``z49_mask``), else the operation of ``bd``'s expression it is (``L_sub``)."""
    if t.id in prog.hints:
        return prog.hints[t.id]
    if PRIMITIVES[t.op].dtype == "bool":
        tested = next((p.names[a.id] for a in t.args if a.id in p.names and not a.is_const),
                      None)
        if tested is not None:
            return f"{tested}_mask"
    return f"{bd.name}_{t.op}"


def _split_long_line(prog: Program, p: Printer, bd: Binding):
    """Subexpressions to name before ``bd`` so its line fits (black would otherwise break
    it over several lines): each time the largest one whose own line fits. A generator:
    the caller names each before the next is chosen.

    Each choice scans the whole expression, so a very long one (a parameter's gradient
    summing thousands of uses) is first cut into line-sized parts in one pass."""
    if len(bd.name) + 3 + len(p.text(bd.node)) > _HUGE_LINE:
        yield from _split_huge_line(prog, p, bd)
    while _longest_line(p, bd) > STATEMENT_WIDTH:
        best, best_len = None, 0
        seen: set[int] = set()
        stack = list(bd.node.args)
        while stack:
            n = stack.pop()
            if n.id in seen or n.id in p.names or n.is_const or n.op in NAMED_LEAVES:
                continue
            seen.add(n.id)
            stack.extend(n.args)
            if PRIMITIVES[n.op].cheap and n.id not in prog.hints:  # a named view may go
                continue
            size = len(p.text(n))
            if size > best_len and len(_temp_name(prog, p, bd, n)) + 3 + size <= STATEMENT_WIDTH:
                best, best_len = n, size
        if best is None:
            return  # nothing left to name that would fit: black lays the line out
        yield best


def _longest_line(p: Printer, bd: Binding) -> int:
    """The statement's longest line. An op that updates its first argument in place
    (``index_add``) prints as that argument, then one line per update."""
    prim = p.table[bd.node.op]
    if callable(prim.augmented):
        args = [p.text(a) for a in bd.node.args]
        lines = [f"{bd.name} = {args[0]}",
                 *prim.update_lines(args, dict(bd.node.attrs), bd.name, bd.node, p.target)]
        return max(len(line) for line in lines)
    # A gradient may be computed into the caller's buffer: room for ', out=grads.get("W")'
    # (when its op can write into one).
    room = len(f', out=grads.get("{bd.name}")') \
        if bd.kind == "grad" and p.table[bd.node.op].out_form is not None else 0
    return len(bd.name) + 3 + room + len(p.text(bd.node))


_HUGE_LINE = 16 * STATEMENT_WIDTH
_NAME_SLACK = 6  # room for the suffix names.fresh may add (``_2`` … ``_99999``)


def _split_huge_line(prog: Program, p: Printer, bd: Binding):
    """Linear-time splitting: in one pass, arguments before users, each node's length
    as printed once the parts chosen so far are names; a node that would not fit on a
    line of its own gets its longest fitting, non-trivial arguments named until it fits.
    Yields the parts to name, arguments before users."""
    length: dict[int, tuple[str, int]] = {}  # node id -> (text or placeholder, precedence)
    chosen: list[Node] = []
    chosen_ids: set[int] = set()

    def fits(n: Node, size: int) -> bool:
        return len(_temp_name(prog, p, bd, n)) + _NAME_SLACK + 3 + size <= STATEMENT_WIDTH

    def leaf(n: Node) -> bool:
        return n.id in p.names or n.is_const or n.op in NAMED_LEAVES

    def printed(n: Node) -> tuple[str, int]:
        if n.id in chosen_ids:
            return "x" * (len(_temp_name(prog, p, bd, n)) + _NAME_SLACK), ATOM
        return length[n.id]

    work: list[tuple[Node, bool]] = [(bd.node, False)]
    while work:
        n, ready = work.pop()
        if n.id in length:
            continue
        if leaf(n) and n is not bd.node:
            length[n.id] = p.expr(n)
            continue
        if not ready:
            work.append((n, True))
            work.extend((a, False) for a in n.args if a.id not in length)
            continue
        args = [printed(a) for a in n.args]
        text = p.emit(n, args)
        if n is bd.node or not fits(n, len(text[0])):
            # Name the longest fitting arguments until this node fits.
            candidates = sorted(
                (a for a in {a.id: a for a in n.args}.values()
                 if a.id not in chosen_ids and not leaf(a) and not PRIMITIVES[a.op].cheap
                 and fits(a, len(length[a.id][0]))),
                key=lambda a: -len(length[a.id][0]))
            for a in candidates:
                chosen.append(a)
                chosen_ids.add(a.id)
                text = p.emit(n, [printed(a) for a in n.args])
                if (len(bd.name) + 3 + len(text[0]) <= STATEMENT_WIDTH if n is bd.node
                        else fits(n, len(text[0]))):
                    break
        length[n.id] = text
    yield from chosen


def _early_masks(bindings: list[Binding], named_for, shared: set[int]):
    """Boolean masks (``z2 > 0``) of the backward, to compute right after the last earlier
    statement that reads the large value they test, so that value can be released before
    the next large allocation — as the textbook's ReLU layer keeps only ``self.mask``.
    Returns {binding index after which to emit: [(mask node, the value it tests)]}."""
    backward_start = next((i for i, bd in enumerate(bindings)
                           if bd.kind in ("seed", "adjoint", "grad")), len(bindings))
    refs: list[set[int]] = []
    inline: list[list[Node]] = []
    readers: list[dict[int, set[int]]] = []  # per binding: named value -> nodes reading it
    for i, bd in enumerate(bindings):
        seen, found, nodes, read = set(), set(), [], {}
        stack = [bd.node]
        while stack:
            n = stack.pop()
            for a in n.args:
                if named_for(a.id, i):
                    found.add(a.id)
                    read.setdefault(a.id, set()).add(n.id)
                elif a.id not in seen:
                    seen.add(a.id)
                    nodes.append(a)
                    stack.append(a)
        refs.append(found)
        inline.append(nodes)
        readers.append(read)
    plan: dict[int, list[tuple[Node, Node]]] = {}
    placed: set[int] = set()
    for i in range(backward_start, len(bindings)):
        for n in inline[i]:
            if n.id in shared or n.id in placed or PRIMITIVES[n.op].dtype != "bool":
                continue
            if not all(named_for(a.id, i) or a.is_const for a in n.args):
                continue
            big = [a for a in n.args if not a.is_const and batch_sized(a.shape)]
            if not big:
                continue
            ids = {a.id for a in n.args}
            j = max((k for k in range(i) if refs[k] & ids), default=-1)
            j = max(j, backward_start - 1)
            if j < i - 1:
                plan.setdefault(j, []).append((n, big[0]))
                placed.add(n.id)
                for a in ids:  # a mask taken early no longer reads its value here
                    readers[i].get(a, set()).discard(n.id)
                    if a in refs[i] and not readers[i].get(a):
                        refs[i].discard(a)
    return plan


def _statement(p: Printer, name: str, node: Node, kind: str, statement_names: dict[int, str],
               comment: str | None = None) -> Statement:
    args = tuple(p.text(a) for a in node.args)
    arg_names = tuple(p.names.get(a.id) if a.id in statement_names else None
                      for a in node.args)
    fresh_inline = tuple(
        a.id not in p.names and not PRIMITIVES[a.op].cheap and a.op not in NAMED_LEAVES
        for a in node.args)
    prim = PRIMITIVES[node.op]
    arg_helpers = frozenset().union(*(p.helpers(a) for a in prim.printed(node)))
    return Statement(name, p.text(node), node, kind, comment, False, args, arg_names,
                     fresh_inline, p.reads(node), p.helpers(node), arg_helpers)


def source_text(prog: Program, bd: Binding) -> str | None:
    """The spec equation a forward binding came from, made safe for a comment."""
    if bd.note:
        return safe_comment(bd.note)
    if bd.span is None or bd.span.line not in prog.source_lines:
        return None
    line = prog.source_lines[bd.span.line]
    if bd.span.end_line == bd.span.line:
        line = line[bd.span.col - 1:bd.span.end_col - 1]
    return safe_comment(line.split("#", 1)[0])


def show_stage(prog: Program) -> str:
    """A readable listing of a program stage: one assignment per line, with shapes."""
    p = Printer(prog)
    lines = [f"# {prog.name} ({prog.path}), {prog.dtype}, stage {prog.stage}"]
    for bd in prog.inputs:
        default = prog.defaults.get(bd.name)
        extra = f" = {default!r}" if default is not None else ""
        lines.append(f"input  {bd.name} : {fmt_shape(bd.node.shape)}{extra}")
    for bd in prog.targets:
        lines.append(f"target {bd.name} : {fmt_shape(bd.node.shape)}"
                     + (" (integer labels)" if bd.node.dtype == "int" else ""))
    for bd in prog.params:
        init = prog.inits[bd.name]
        how = init.kind if init.kind not in ("value", "array") else repr(init.args["value"])
        args = ", ".join(f"{k}={v!r}" for k, v in init.args.items()) if init.kind not in (
            "value", "array") else ""
        lines.append(f"param  {bd.name} : {fmt_shape(bd.node.shape)} = {how}"
                     + (f"({args})" if args else "")
                     + (f"  # fan_in={init.fan_in}" if init.fan_in is not None and init.kind
                        in ("he", "xavier", "lecun", "xavier_uniform") else ""))
    lines.append("")
    lines.append("# forward")
    statements = schedule(prog, prog.forward + prog.backward, p)
    backward_names = {bd.name for bd in prog.backward}
    in_backward = False
    for st in statements:
        if not in_backward and st.name in backward_names:
            in_backward = True
            lines.append("")
            lines.append(f"# backward (gradients: {', '.join(prog.grads[w] for w in prog.wrt)})")
        tag = {"loss": "loss ", "output": "output "}.get(st.kind, "")
        if st.lines:
            lines.extend(st.lines)
        else:
            lines.append(f"{tag}{st.name} : {fmt_shape(st.node.shape)} = {st.expr}")
    return "\n".join(lines) + "\n"
