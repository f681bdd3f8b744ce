"""Elaborating a loop over time: consecutive step equations -> one ``scan`` node.

A mixin of ``elaborate._Elaborator`` (beside ``Expressions``). The step equations are
elaborated as one step, where ``h[t-1]`` is a leaf (the carried value's previous step),
``x[:, t]`` a leaf (the sequence's slice) and ``h[t]`` an earlier equation of the step;
values read from outside the loop become leaves named like them. Each step equation is
then bound to its stacked result, ``[N, T, ...]`` (LANGUAGE.md, "Recurrences"). Every
misuse of time is a located error: reading the future, a carried value without an
initial value, a step whose shape is not its initial value's, time on another axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import streaming
from ..errors import Note, Span
from ..frontend import ast
from ..frontend.astprint import expr as spec_text
from ..names import fresh
from . import Binding, Node, fmt_shape, topo_order
from .expressions import _Poisoned
from .ops.core import NeedsWidth, Unknown
from .ops.recurrence import Body
from .primitives import PRIMITIVES


@dataclass
class _Step:
    """The loop being elaborated: its equations, time variable, and the leaves made."""

    equations: dict[str, ast.Equation]
    time: str
    done: dict[str, Node] = field(default_factory=dict)  # step equations so far, at t
    carries: dict[str, Node] = field(default_factory=dict)  # name -> previous-step leaf
    inits: dict[str, Node] = field(default_factory=dict)
    slices: dict[str, tuple[Node, Node]] = field(default_factory=dict)  # x -> (x, x_t)


class Loops:
    """Loops over time, a mixin of ``elaborate._Elaborator`` (reads ``b``, ``env``,
    ``diags``, ``taken``, ``hints``; calls ``_expr``)."""

    loop: _Step | None = None

    def _loop(self, group: list[ast.Equation], forward: list[Binding],
              updates: list[Binding]) -> None:
        """Elaborate one loop and bind each step equation's stacked result (and, for a
        value started from a state, the state's update: its last step)."""
        step = _Step({st.name: st for st in group}, group[0].time)
        for st in group:
            if _from_zero(st):
                continue
            if st.init is not None:
                self.b.span = st.span
                init = self._stream_start(st, group, step) if self._names_state(st.init) \
                    else self._expr_top(st.init)
                if init is None:  # reported; the step would report its reads again
                    return self._poison(group)
                step.inits[st.name] = init
                step.carries[st.name] = self.b.leaf(
                    "input", fresh(f"{st.name}_prev", self.taken), init.shape, init.dtype)
        zeros = [st for st in group if _from_zero(st)]
        if zeros and not self._start_at_zero(group, step, zeros):
            return self._poison(group)
        if not self._steps(group, step) or \
                any(self._draws(st, step.done[st.name]) for st in group):
            return self._poison(group)
        if not step.slices:
            self.diags.error("a loop over time steps through a sequence, and this one reads "
                             "none", group[0].span, f"read a sequence [N, T, ...] at each "
                             f"step as x[:, {step.time}]")
            return self._poison(group)
        self._bind(group, step, forward)
        for st in group:
            if self._names_state(st.init):
                self.b.span = st.span
                last = self._expr_top(ast.Index(st.init.span, ast.Name(st.init.span, st.name),
                                                [ast.Slice(st.init.span, None, None, None),
                                                 ast.Num(st.init.span, -1, "-1")]))
                updates.append(Binding(st.init.id, last, "update", st.span,
                                       sources=(st.name,)))

    def _check_streaming(self, config: dict) -> None:
        """A spec whose loops continue states trains on batches that continue each other
        (LANGUAGE.md, "Stateful loops"): its ``train`` settings must not shuffle, hold out
        a validation split, or take batches of another size than the states' rows; a
        built-in ``zen`` must give windows that do not overlap."""
        train = next((st for st in self.spec.statements if isinstance(st, ast.Train)), None)
        rows = {self.env[name].shape[0] for name in self.streams}
        first = self.streams[0]
        settings = {s.key: s for s in train.settings} if train is not None else {}
        values = config.get("train", {})
        if values.get("shuffle", False):
            self.diags.error(streaming.in_order(first), settings["shuffle"].span,
                             "leave 'shuffle' out: such a model trains in order")
        if values.get("validation"):
            self.diags.error(streaming.no_split(first), settings["validation"].span,
                             "leave 'validation' out")
        batch = values.get("batch")
        if batch is not None and {batch} != rows:
            self.diags.error(streaming.rows(first, min(rows), batch), settings["batch"].span,
                             f"train with batch = {min(rows)}, or declare the state "
                             f"[{batch}, ...]")
        data = config.get("data", {})
        if data.get("name") == "zen" and data.get("stride", 1) < data.get("steps", 32):
            st = next(s for s in self.spec.statements if isinstance(s, ast.Data))
            self.diags.error(f"loops continue state '{first}' from batch to batch, but "
                             "zen's windows overlap", st.span,
                             f"take windows that follow each other: zen(steps="
                             f"{data.get('steps', 32)}, stride={data.get('steps', 32)})")

    def _names_state(self, init: ast.Expr | None) -> bool:
        """``from hc`` naming a declared state: the loop continues the streams it holds."""
        node = self.env.get(init.id) if isinstance(init, ast.Name) else None
        return node is not None and node.op == "state"

    def _stream_start(self, st: ast.Equation, group: list[ast.Equation],
                      step: _Step) -> Node | None:
        """A carried value started from a state (``from hc``): the state's rows, one per
        stream, checked against the batch when the module runs; this loop alone updates
        the state, with the value's last step (LANGUAGE.md, "Stateful loops")."""
        name, span = st.init.id, st.init.span
        state = self.env[name]
        owner = self.state_owner.get(name)
        if owner is not None:
            self.diags.error(f"state '{name}' is already updated elsewhere (a loop or a "
                             "batch_norm)", span,
                             "each carried value continues its own streams: declare a "
                             "state for each", [Note(f"'{name}' is first used here", owner)])
            return None
        seq = self._first_sequence(group, step.time)
        if len(state.shape) < 2 or seq is None or (
                isinstance(seq.shape[0], int) and seq.shape[0] != state.shape[0]):
            rows = seq.shape[0] if seq is not None else "N"
            self.diags.error(f"state '{name}' is {fmt_shape(state.shape)}, but a loop starts "
                             f"from a state of one row per stream of the batch, "
                             f"[{rows}, ...]", span,
                             f"declare it [B, ...], B the batch size, e.g. 'state {name} : "
                             f"[20, {state.shape[-1] if state.shape else 32}] = zeros' for "
                             "batches of 20")
            return None
        self.state_owner[name] = span
        self.streams.append(name)
        node = self.b.op("stream", state, seq, name=name)
        self.hints.setdefault(node.id, f"{st.name}_start")
        return node

    def _steps(self, group: list[ast.Equation], step: _Step) -> bool:
        """Elaborate the step equations in order (False: a problem was reported)."""
        self.loop = step
        try:
            for st in group:
                self.b.span = st.span
                node = self._expr_top(st.value)
                if node is None or not self._fits(st, node, step):
                    return False
                step.done[st.name] = node
        finally:
            self.loop = None
        return True

    def _draws(self, st: ast.Equation, node: Node) -> bool:
        """A step that draws random numbers (dropout) is reported: a loop's step is
        written once for the forward and again for the backward, which would draw its
        mask anew (True: reported)."""
        if not any(PRIMITIVES[n.op].random for n in topo_order([node])):
            return False
        span = next((e.span for e in _walk(st.value) if isinstance(e, ast.Call)
                     and e.func in ("dropout", "attention")), st.span)
        self.diags.error("a loop's step cannot use dropout: the backward pass computes "
                         "the step again, and would draw another mask", span,
                         "drop out the sequence before the loop (xd = dropout(x, 0.5), "
                         "then xd[:, t]) or the loop's result after it (dropout(h, 0.5))")
        return True

    def _start_at_zero(self, group: list[ast.Equation], step: _Step,
                       zeros: list[ast.Equation]) -> bool:
        """Carried values ``from 0`` start at zeros ``[N, d]``: ``zeros_rows(x)``, as many
        rows as the sequence ``x``, d the width their step gives them (``_zero_shapes``),
        named ``h_init`` (one array serves the values of one width: ``c_h_init``)."""
        seq = self._first_sequence(group, step.time)
        if seq is None:
            return True  # the loop reports that it reads no sequence
        shapes = self._zero_shapes(group, step, zeros, seq.shape[0])
        if shapes is None:
            self.diags.error(f"the shape of '{zeros[0].name}' could not be worked out from "
                             f"its step, so it cannot start from 0", zeros[0].init.span,
                             f"give it an initial value of its shape: from {zeros[0].name}0")
            return False
        widths: dict[tuple, list[str]] = {}  # equal zeros become one array (CSE)
        for st in zeros:
            self.b.span = st.span
            step.inits[st.name] = self.b.op("zeros_rows", seq, width=shapes[st.name][1:])
            widths.setdefault(shapes[st.name][1:], []).append(st.name)
            step.carries[st.name] = self.b.leaf(
                "input", fresh(f"{st.name}_prev", self.taken), shapes[st.name])
        for names in widths.values():
            name = fresh("_".join(names) + "_init", self.taken)
            for carried in names:
                self.hints.setdefault(step.inits[carried].id, name)
        return True

    def _zero_shapes(self, group: list[ast.Equation], step: _Step,
                     zeros: list[ast.Equation], batch) -> dict | None:
        """The shapes ``[N, d]`` of the values started from 0: the step computed with
        each width left ``Unknown`` (its operations fix it: ``h[t-1] @ Wh`` needs Wh's
        rows, ``h[t-1] + x[:, t] @ Wx`` takes Wx's columns; only met by widths 1, as an
        LSTM of width 1's gates, it is 1), then with the widths found, which it must give
        back. None when it leaves them open or cannot be computed."""
        unknown = {st.name: (batch, Unknown(f"{st.name}_width")) for st in zeros}
        found = self._trial(group, step, unknown)
        if found is None:
            return None
        found = {name: tuple(1 if isinstance(d, Unknown) and d.ones else d for d in shape)
                 for name, shape in found.items()}
        if any(isinstance(d, Unknown) for shape in found.values() for d in shape):
            return None
        return found if self._trial(group, step, found) == found else None

    def _trial(self, group, step: _Step, shapes: dict) -> dict | None:
        """The shapes the zero-started values' steps have when they start at ``shapes``
        (None if the step cannot be computed so); nothing of the trial is kept."""
        reported, taken = len(self.diags.items), set(self.taken)
        trial = _Step(step.equations, step.time, carries=dict(step.carries),
                      inits=dict(step.inits))
        for name, shape in shapes.items():
            trial.carries[name] = self.b.leaf("input", f"{name}_prev", shape)
            trial.inits[name] = trial.carries[name]
        try:
            ok = self._steps(group, trial)
        except NeedsWidth:  # a rule that needs the unknown width's value
            ok = False
        del self.diags.items[reported:]
        self.taken.clear()
        self.taken.update(taken)
        return {name: trial.done[name].shape for name in shapes} if ok else None

    def _first_sequence(self, group: list[ast.Equation], time: str) -> Node | None:
        """The first value the loop reads as ``x[:, t]``, elaborated (None if none)."""
        for st in group:
            for e in _walk(st.value):
                if isinstance(e, ast.Index) and isinstance(e.value, ast.Name) \
                        and e.value.id not in {s.name for s in group} and len(e.items) == 2 \
                        and _offset(e.items[1], time) == 0:
                    node = self.env.get(e.value.id)
                    if node is not None and len(node.shape) >= 2:
                        return node
        return None

    def _fits(self, st: ast.Equation, node: Node, step: _Step) -> bool:
        """A step value is a batch of float values; a carried one has its initial
        value's shape (the shape cannot change from step to step)."""
        if not node.shape or node.dtype in ("bool", "int", "tuple"):
            self.diags.error(f"a step of a loop is a batch of numbers [N, ...], but "
                             f"a step of '{st.name}' is {fmt_shape(node.shape)}",
                             st.value.span, "stacked over time it becomes [N, T, ...]")
            return False
        init = step.inits.get(st.name)
        if init is not None and init.shape != node.shape:
            self.diags.error(f"a step of '{st.name}' is {fmt_shape(node.shape)} but its "
                             f"initial value '{spec_text(st.init)}' is "
                             f"{fmt_shape(init.shape)}: a carried value keeps one shape "
                             "from step to step", st.value.span,
                             f"give '{st.name}' an initial value of shape "
                             f"{fmt_shape(node.shape)}")
            return False
        return True

    def _poison(self, group: list[ast.Equation]) -> None:
        for st in group:
            self.env[st.name] = None

    def _bind(self, group: list[ast.Equation], step: _Step, forward: list[Binding]) -> None:
        names = [st.name for st in group]
        carried = [name for name in names if name in step.carries]
        seqs = list(step.slices.values())
        own = {leaf.id for leaf in step.carries.values()} | {s.id for _, s in seqs}
        closed_outer, closed = self._close_over([step.done[n] for n in names], own, names)
        memo = _substitute(self.b, [step.done[n] for n in names], closed)
        body = Body(carries=tuple(step.carries[n] for n in carried),
                    slices=tuple(s for _, s in seqs),
                    closed=tuple(closed.values()),
                    steps=tuple(memo[step.done[n].id] for n in names),
                    names=tuple(names), carried=tuple(names.index(n) for n in carried),
                    time=step.time)
        self.b.span = group[0].span
        scan = self.b.op("scan", *(step.inits[n] for n in carried), *(x for x, _ in seqs),
                         *closed_outer, body=body)
        for j, st in enumerate(group):
            self.b.span = st.span
            node = self.b.op("part", scan, index=j)
            self.env[st.name] = node
            init = f" from {spec_text(st.init)}" if st.init is not None else ""
            forward.append(Binding(st.name, node, "eq", st.span,
                                   note=f"{st.name}[{step.time}] = {spec_text(st.value)}{init}"))

    def _close_over(self, steps: list[Node], own: set[int],
                    step_names: list[str]) -> tuple[list[Node], dict]:
        """The values a step reads from outside the loop (the outer nodes its own nodes
        use, constants left inside), and a leaf for each, named like the value. A step
        equation that reads nothing of the loop is one such value, the same at every
        step (``{name}_each``), computed once before the loop."""
        names = {node.id: name for name, node in self.env.items() if node is not None}
        inner: set[int] = set(own)
        outer: dict[int, Node] = {}
        for n in topo_order(steps):
            if n.id in own or any(a.id in inner for a in n.args):
                inner.add(n.id)
                outer.update((a.id, a) for a in n.args
                             if a.id not in inner and not a.is_const)
        for node, name in zip(steps, step_names):
            if node.id not in inner and not node.is_const:
                outer[node.id] = node
                names.setdefault(node.id, fresh(f"{name}_each", self.taken))
        closed = {}
        for node in outer.values():
            name = names.get(node.id) or node.attr("name") or fresh("v", self.taken)
            closed[node.id] = self.b.leaf("input", name, node.shape, node.dtype)
        return list(outer.values()), closed

    # ------------------------------------------------------------------------- reads
    def _time_read(self, e: ast.Index) -> Node | None:
        """``h[t]``, ``h[t-1]`` or ``x[:, t]`` inside a loop; None when ``e`` does not
        mention the time variable (an ordinary index)."""
        step = self.loop
        at = [k for k, item in enumerate(e.items) if _mentions(item, step.time)]
        if not at:
            return None
        if not isinstance(e.value, ast.Name):
            self._fail(e.value.span, f"only a named value is read at a time step "
                       f"('{step.time}')", f"name it first, e.g. v = ...; then v[:, {step.time}]")
        name = e.value.id
        if name in step.equations:
            return self._step_read(e, name, step)
        if at != [1] or len(e.items) != 2 or not _whole(e.items[0]):
            self._fail(e.items[at[0]].span,
                       f"a loop steps through time on axis 1 (batch first): read the "
                       f"sequence '{name}' as {name}[:, {step.time}]",
                       "a sequence is [N, T, ...]: examples on axis 0, time on axis 1")
        offset = _offset(e.items[1], step.time)
        if offset != 0:
            self._fail(e.items[1].span, f"a sequence is read at the step's own time: "
                       f"{name}[:, {step.time}]", "a shifted sequence is another input "
                       "(shift the data), or carry the value: v[t] = ... from v0")
        if name not in step.slices:
            x = self._expr(e.value)
            if len(x.shape) < 2:
                self._fail(e.value.span, f"'{name}' is {fmt_shape(x.shape)}, not a sequence "
                           "[N, T, ...]", None)
            leaf = self.b.leaf("input", fresh(f"{name}_{step.time}", self.taken),
                               (x.shape[0], *x.shape[2:]), x.dtype)
            step.slices[name] = (x, leaf)
        return step.slices[name][1]

    def _step_read(self, e: ast.Index, name: str, step: _Step) -> Node:
        item = e.items[0]
        offset = _offset(item, step.time) if len(e.items) == 1 else None
        if offset is None:
            self._fail(e.span, f"'{name}' is a step of this loop: read it as "
                       f"{name}[{step.time}] or {name}[{step.time}-1]", None)
        if offset > 0:
            self._fail(item.span, f"'{name}[{self._text(item.span)}]' reads the future: a "
                       f"step reads only its own time and the step before",
                       f"read {name}[{step.time}] (computed earlier in this step) or "
                       f"{name}[{step.time}-1]")
        if offset < -1:
            self._fail(item.span, f"'{name}' is read {-offset} steps back "
                       f"({name}[{self._text(item.span)}]); a step reads only its own time and "
                       "the step before",
                       f"carry the older value: {name}_before[{step.time}] = "
                       f"{name}[{step.time}-1] from ...")
        if offset == 0:
            if name not in step.done:
                self._fail(e.span, f"'{name}' is read at this step ({name}[{step.time}]) before "
                           "its equation computes it", f"move its equation above this one, or read "
                           f"{name}[{step.time}-1]")
            return step.done[name]
        if name not in step.carries:
            st = step.equations[name]
            self._fail(e.span, f"'{name}' is read a step back ({name}[{step.time}-1]) but "
                       "has no initial value for the first step", f"give it one: "
                       f"{name}[{step.time}] = ... from {name}0",
                       st.name_span)
        return step.carries[name]

    def _fail(self, span: Span, message: str, hint: str | None, also: Span | None = None):
        from ..errors import Note

        notes = [Note("its equation is here", also)] if also is not None else None
        self.diags.error(message, span, hint, notes)
        raise _Poisoned()


def _from_zero(st: ast.Equation) -> bool:
    """``h[t] = ... from 0``: a carried value starting at zeros of its step's shape."""
    return isinstance(st.init, ast.Num) and st.init.value == 0


def _walk(e):
    """Every expression in ``e``, ``e`` first."""
    yield e
    for value in vars(e).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (ast.Expr, ast.Kwarg)):
                yield from _walk(item)


def _mentions(e, name: str) -> bool:
    if isinstance(e, ast.Name):
        return e.id == name
    parts = [getattr(e, k, None) for k in ("left", "right", "operand", "start", "stop",
                                           "step")]
    return any(p is not None and _mentions(p, name) for p in parts)


def _whole(item) -> bool:
    return isinstance(item, ast.Slice) and item.start is None and item.stop is None \
        and item.step is None


def _offset(item, time: str) -> int | None:
    """``t`` -> 0, ``t-1`` -> -1, ``t+2`` -> 2; None for anything else."""
    if isinstance(item, ast.Name) and item.id == time:
        return 0
    if isinstance(item, ast.BinOp) and item.op in "+-" and isinstance(item.left, ast.Name) \
            and item.left.id == time and isinstance(item.right, ast.Num) \
            and float(item.right.value).is_integer():
        k = int(item.right.value)
        return k if item.op == "+" else -k
    return None


def _substitute(b, roots: list[Node], closed: dict[int, Node]) -> dict[int, Node]:
    """Every node of ``roots`` rebuilt with the outer values in ``closed`` replaced by
    their leaves: node id -> its node in the step."""
    from ..passes import rebuild

    memo: dict[int, Node] = {}
    for n in topo_order(roots):
        if n.id in closed:
            memo[n.id] = closed[n.id]
            continue
        memo[n.id] = rebuild(b, n, tuple(memo[a.id] for a in n.args))
    return memo
