"""A loop over time written out: the lines of a ``scan`` (forward) or ``scan_grad``
(backpropagation through time) statement, as DLFS2's ``TimeRNN.forward``/``backward``.

The forward preallocates each stacked result (``h = np.empty((N, T, 4))``), starts each
carried value from its initial value and runs ``for t in range(T):`` over the step's
statements (scheduled and printed by the usual printer, on the step's own program),
storing ``h[:, t] = h_t`` and carrying ``h_prev = h_t``. The backward zeroes the
gradients it accumulates and the carried adjoints (``dL_dh_next``) and runs ``for t in
reversed(range(T)):`` over the step's derivative: the adjoint into each step equation is
the loss's at t plus the carried one (``dL_dh_t = dL_dh[:, t] + dL_dh_next``), the
closed-over values' gradients are summed (``dL_dWh += ...``), the sequences' written per
step (``dL_dx[:, t] = ...``) and the carried adjoint replaced (``dL_dh_next = ...``).
Each step's saved values are read from the stacked results, nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import Binding, Node, Program, topo_order
from ..ir.ops.recurrence import Body, BodyGrad
from ..names import fresh
from ..passes.autodiff import adjoint_name
from .printer import Printer, Statement, schedule

_INDENT = "    "


def loop_statement(p: Printer, node: Node, names: dict[int, str], taken: set[str],
                   ) -> Statement:
    """The statement computing the loop ``node``: its results ``names`` (result index ->
    the name it is given; results nobody reads are left out)."""
    written, seeds = {}, {}
    if node.op == "scan":
        lines, helpers, steps = _forward(p, node, names, taken)
    else:
        lines, helpers, steps = _backward(p, node, names, taken, written, seeds)
    # The stacked results' sizes print the inputs that declare their dimensions too.
    sizes = {p.prog.symbols[d][0] for d in _stacked_dims(node) if d in p.prog.symbols}
    reads = frozenset().union(*(p.reads(a) for a in node.args), sizes)
    first = names[min(names)]
    return Statement(first, f"loop over {_body(node).time}", node, "loop",
                     reads=reads, helpers=frozenset(helpers), lines=tuple(lines),
                     defines=tuple(names[i] for i in sorted(names)), steps=tuple(steps),
                     written_as=tuple(written.items()), seeded_from=tuple(seeds.items()))


def _stacked_dims(node: Node) -> set:
    """The symbolic dimensions a forward loop's stacked results are allocated with, or
    a backward loop's gradients of the sequences it is not given (``_passed_as_0``)."""
    body = _body(node)
    if node.op != "scan":
        shapes = node.attr("shapes")
        return {d for i in _passed_as_0(node) for d in shapes[i] if isinstance(d, str)}
    return {d for j in range(len(body.steps)) for d in body.stacked(j, None)
            if isinstance(d, str)}


def _passed_as_0(node: Node) -> list[int]:
    """The sequences a backward loop does not read, passed as 0 (``_scan_vjp``)."""
    k = len(_body(node).carries)
    return [i for i in range(k, k + len(_body(node).slices)) if node.args[i].is_const]


def _body(node: Node) -> Body:
    return node.attr("body") or node.attr("grad").body


def _split(body: Body, items: list) -> tuple[list, list, list]:
    k, m = len(body.carries), len(body.slices)
    return items[:k], items[k:k + m], items[k + m:]


def _size(p: Printer, dim) -> str:
    if isinstance(dim, int):
        return str(dim)
    source, axis = p.prog.symbols[dim]
    return f"{source}.shape[{axis}]"


def _library(p: Printer) -> tuple[str, str]:
    """(the array library's name, the keywords placing a new array)."""
    if p.target == "torch":
        return "torch", "dtype=dtype, device=device"
    return "np", "dtype=DTYPE"


def _step_lines(p: Printer, program: Program, bindings: list[Binding], named: dict[int, str],
                taken: set[str]) -> tuple[list[Statement], set[str]]:
    """The statements of one step: ``program``'s ``bindings`` printed with its leaves
    named as ``named`` says (``x[:, t]``, ``h_prev``, ``Wh``)."""
    step = Printer(program, lets=p.lets, target=p.target, style=p.style)
    step.names.update(named)
    statements = schedule(program, bindings, step, taken=taken, early_masks=False)
    return statements, set().union(*(st.helpers for st in statements))


def _leaf_names(p: Printer, body: Body, args: list[Node], time: str, lines: list[str],
                taken: set[str]) -> dict[int, str]:
    """How the step reads its sequences (``x[:, t]``) and closed-over values (by their
    names; one that is an expression is named before the loop)."""
    _, seqs, closed = _split(body, args)
    named = {leaf.id: f"{p.text(x)}[:, {time}]" for leaf, x in zip(body.slices, seqs)
             if not x.is_const}
    for leaf, value in zip(body.closed, closed):
        text = p.text(value)
        if not text.isidentifier():
            name = fresh(leaf.attr("name"), taken)
            lines.append(f"{name} = {text}")
            text = name
        named[leaf.id] = text
    return named


def _forward(p: Printer, node: Node, names: dict[int, str], taken: set[str]):
    body: Body = node.attr("body")
    args = list(node.args)
    inits, seqs, _ = _split(body, args)
    lib, placed = _library(p)
    time, length = body.time, f"{p.text(seqs[0])}.shape[1]"
    lines: list[str] = []
    for j, name in sorted(names.items()):
        shape = body.stacked(j, length)
        dims = ", ".join(_size(p, d) if d != length else d for d in shape)
        lines.append(f"{name} = {lib}.empty(({dims}), {placed})")
    named = _leaf_names(p, body, args, time, lines, taken)
    for carry, init in zip(body.carries, inits):
        named[carry.id] = carry.attr("name")
        lines.append(f"{carry.attr('name')} = {p.text(init)}")
    steps = [fresh(f"{name}_t", taken) for name in body.names]
    # A step equation hoisted whole (passes/hoist.py: a GRU's gx in a loop that draws)
    # neither stacked nor carried is read as the sequence's slice: no line of its own.
    hoisted = {leaf.id for leaf in body.slices[len(body.slices) - body.hoisted:]}
    computed = [Binding(n, s, "eq") for j, (n, s) in enumerate(zip(steps, body.steps))
                if s.id not in hoisted or j in names or j in body.carried]
    program = Program(name="step", path="", dtype=p.prog.dtype, targets=[], params=[],
                      inputs=[Binding(named[leaf.id], leaf, "input") for leaf in body.leaves],
                      inits={}, forward=computed,
                      loss=steps[-1], output=None, wrt=[], symbols=p.prog.symbols)
    statements, helpers = _step_lines(p, program, program.forward, named, taken)
    # An empty sequence would leave the stacked steps empty and fail later, obscurely.
    # The message names the sequence when the line stays within black's 88 columns.
    named = f"'{body.reads or p.text(seqs[0])}' has length 0: a loop over time needs a step"
    message = named if len(named) <= 60 else "a sequence has length 0: a loop needs a step"
    lines += [f"if {length} == 0:", _INDENT + f'raise ValueError("{message}")']
    lines.append(f"for {time} in range({length}):")
    lines += [_INDENT + f"{st.target} = {st.expr}" for st in statements]
    lines += [_INDENT + f"{name}[:, {time}] = {steps[j]}" for j, name in sorted(names.items())]
    lines += [_INDENT + f"{carry.attr('name')} = {steps[j]}"
              for carry, j in zip(body.carries, body.carried)]
    return lines, helpers, statements


def _backward(p: Printer, node: Node, names: dict[int, str], taken: set[str],
              written: dict[str, str], seeds: dict[str, str]):
    """The reversed loop's lines; ``written`` and ``seeds`` are filled as
    ``Statement.written_as`` and ``Statement.seeded_from`` describe."""
    grad: BodyGrad = node.attr("grad")
    body, program = grad.body, grad.program
    n_args, n_steps = len(body.leaves), len(body.steps)
    args = list(node.args[:n_args])
    stacked = [p.text(a) for a in node.args[n_args:n_args + n_steps]]
    given = iter(p.text(a) for a in node.args[n_args + n_steps:])
    inits, seqs, _ = _split(body, args)
    lib, placed = _library(p)
    # as long as the sequences: one given (not passed as 0), or the stacked steps
    time = body.time
    sized = next(a for a in seqs + list(node.args[n_args:]) if not a.is_const)
    length = f"{p.text(sized)}.shape[1]"
    lines: list[str] = []
    carried_next = [fresh(adjoint_name(program.loss, f"{body.names[j]}_next"), taken)
                    for j in body.carried]
    for i in sorted(names):
        if i in _passed_as_0(node):
            dims = ", ".join(length if n == 1 else _size(p, d)
                             for n, d in enumerate(node.attr("shapes")[i]))
            lines.append(f"{names[i]} = {lib}.empty(({dims}), {placed})")
        elif i >= len(body.carries):  # a gradient summed (closed) or written per step
            lines.append(f"{names[i]} = {lib}.zeros_like({p.text(args[i])})")
    lines += [f"{nxt} = {lib}.zeros_like({p.text(init)})"
              for nxt, init in zip(carried_next, inits)]
    named = _leaf_names(p, body, args, time, lines, taken)
    named.update({leaf.id: f"{text}[:, {time}]" for leaf, text in zip(grad.saved, stacked)})
    # What the step must compute: the used results' gradients and the carried adjoints.
    wanted = {i for i in names if i >= len(body.carries)} | set(range(len(body.carries)))
    roots = [grad.grads[i] for i in sorted(wanted) if grad.grads[i] is not None]
    needed = {n.id for n in topo_order(roots)}
    loop: list[str] = []
    for k, (carry, init) in enumerate(zip(body.carries, inits)):
        named[carry.id] = carry.attr("name")
        if carry.id in needed:
            loop.append(f"{carry.attr('name')} = {stacked[body.carried[k]]}[:, {time} - 1] "
                        f"if {time} > 0 else {p.text(init)}")
    carry_of = {j: k for k, j in enumerate(body.carried)}
    for j, seed in enumerate(grad.seeds):
        outer = next(given) if grad.given[j] else None
        if seed is None or seed.id not in needed:
            continue
        parts = ([f"{outer}[:, {time}]"] if outer else []) + (
            [carried_next[carry_of[j]]] if j in carry_of else [])
        named[seed.id] = seed.attr("name")
        seeds[seed.attr("name")] = " + ".join(parts)
        loop.append(f"{seed.attr('name')} = {seeds[seed.attr('name')]}")
    # (an adjoint that is a seed is read by the seed's name: no alias line)
    # A leaf's gradient at t is named apart from the sums the loop keeps (dL_dWh_t).
    per_step = {bd.name: fresh(f"{bd.name}_t", taken) for bd in program.backward
                if bd.kind == "grad"}
    bindings = [replace(bd, name=per_step.get(bd.name, bd.name)) for bd in program.backward
                if bd.node.id in needed and (bd.kind == "grad" or bd.node.op != "input")]
    statements, helpers = _step_lines(p, program, bindings, named, taken)
    loop += _accumulated(statements, program, body, grad, names, carried_next, wanted, time,
                         per_step, written)
    lines.append(f"for {time} in reversed(range({length})):")
    lines += [_INDENT + line for line in loop]
    lines += [f"{names[k]} = {nxt}" for k, nxt in enumerate(carried_next) if k in names]
    return lines, helpers, statements


def _accumulated(statements: list[Statement], program: Program, body: Body, grad: BodyGrad,
                 names: dict[int, str], carried_next: list[str], wanted: set[int],
                 time: str, per_step: dict[str, str], written: dict[str, str]) -> list[str]:
    """The step's statements, each leaf's gradient written where it goes: added to a
    closed-over value's gradient, into the sequence's gradient at t, or as the carried
    adjoint for the step before. One that later lines of the step read is named first.
    ``written`` gets where each statement of the step is written (its name, or where it
    goes: ``dL_dWh +=``)."""
    k, m = len(body.carries), len(body.slices)
    role: dict[str, str] = {}
    for i, leaf in enumerate(body.leaves):
        if i not in wanted or grad.grads[i] is None:
            continue
        bound = per_step[program.grads[leaf.attr("name")]]
        role[bound] = (carried_next[i] + " =" if i < k else
                       f"{names[i]}[:, {time}] =" if i < k + m else f"{names[i]} +=")
    lines = []
    for n, st in enumerate(statements):
        read_later = any(st.name in later.reads for later in statements[n + 1:])
        if st.name not in role or read_later:
            lines.append(f"{st.target} = {st.expr}")
            written[st.name] = st.target
        if st.name in role:
            lines.append(f"{role[st.name]} {st.name if read_later else st.expr}")
            written.setdefault(st.name, role[st.name].removesuffix(" ="))
    return lines
