"""A function's body: its statements in order with the comments that head them.

``printer.schedule`` decides the statements and ``buffers.plan`` how each is written;
this module lays them out as lines: the prologue reading inputs and parameters, the
``# forward`` / ``# backward`` sections, each backward group headed by the forward
equations it differentiates and their rules, ``del`` lines releasing buffers. Each line
a binding printed is a ``Line`` that remembers it (the source map's raw material), and
the function's ``Facts`` (draws, reads or updates state, computes into ``grads``) are
read from the IR and the plan, never from the text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import layout
from .buffers import plan
from ..errors import Diagnostic, SpecError
from ..ir import Binding, Program, random_sites, topo_order
from ..ir.primitives import PRIMITIVES
from ..passes.autodiff import adjoint_name
from .printer import Printer, Statement, safe_comment, schedule, source_text
from .pyfmt import STATEMENT_WIDTH
from .targets import TORCH, placement, read_input, target as target_named


class Line(str):
    """A line of a function's body that knows the IR binding it was printed from: the
    statement it computes, the step a heading or a temporary belongs to. What a source
    map is made of (``Compilation.spec_lines``)."""

    origin: str | None = None


def _line(text: str, origin: str | None) -> str:
    if origin is None:
        return text
    line = Line(text)
    line.origin = origin
    return line


def _prologue(prog: Program, args: list[Binding], reads: frozenset[str],
              statements: list[Statement], returns: list[str],
              states_read: set[str], target: str = "numpy") -> list[str]:
    """Inputs as arrays, and every parameter the function reads (also one it returns as
    it is: 'output W'). A scalar (0-d) input is read as a NumPy scalar of the model's
    dtype, ``DTYPE(x)``, and a 0-d parameter as a NumPy scalar of its own dtype,
    ``params["b"][()]`` (parameters are used as given, as arrays are): arithmetic on NumPy
    scalars skips the array machinery that every operation on a 0-d array goes through
    (the toy's gradient: 24 us -> 6 us), and gives the same numbers. On torch every
    value is a tensor on the device, in the dtype, that the parameters (else the first
    input) are on and in."""
    t = target_named(target)
    lines = [placement(args)] if t is TORCH else []
    lines += [read_input(bd, t) for bd in args]
    used = reads.union((s.name for s in statements), returns)
    scalar_note = "# 0-d parameters as NumPy scalars ([()]): faster arithmetic than 0-d arrays"
    for bd in prog.params:
        if bd.name in used:
            if bd.node.shape == () and scalar_note and t is not TORCH:
                lines.append(scalar_note)
                scalar_note = ""
            index = "[()]" if bd.node.shape == () and t is not TORCH else ""
            lines.append(f'{bd.name} = params["{bd.name}"]{index}')
    for bd in prog.states:  # read by batch_norm in inference, and by its update
        if bd.name in states_read:
            lines.append(f'{bd.name} = state["{bd.name}"]')
    return lines


def _comment(st: Statement, backward: dict[str, Binding], quoted, rules: dict[str, list[str]],
             said: set[str] | None = None) -> tuple[str, ...] | None:
    """The comment heading a step: the forward equations it differentiates (``quoted``:
    a binding -> the spec text of its sources) and the rules their backward steps apply
    (``rules``: a spec text -> its rules), on one line when it fits, else the rules on
    the lines after it; with ``said`` (the textbook style), only equations not quoted
    before in the function."""
    bd = backward.get(st.name)
    if bd is None:
        return None
    if not bd.sources:
        return (bd.note,) if bd.note else None
    lines = quoted(bd)
    if said is not None:
        lines = [ln for ln in lines if ln not in said]
        if not lines:
            return None
    text, shown = _listed(lines, STATEMENT_WIDTH - 2)
    said_rules = "; ".join(dict.fromkeys(r for ln in lines[:shown] for r in rules.get(ln, ())))
    if not said_rules:
        return (text,)
    if len(text) + len(said_rules) + 3 <= STATEMENT_WIDTH - 2:
        return (f"{text} ({said_rules})",)
    return (text, *_wrapped(said_rules, STATEMENT_WIDTH - 4))


def _wrapped(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, break_on_hyphens=False)


def _equation_rules(prog: Program) -> dict[str, list[str]]:
    """Each forward equation's spec text -> the calculus rules its backward steps apply,
    as a heading quotes them: for an equation computed in named steps (batch norm), the
    steps the chain rule goes back through; else, on each path from the equation's
    result towards a differentiated value, the first operation whose rule says more
    than the equation shows (``_says_more``: ``relu``, ``@``, a fused loss, pooling)."""
    wrt = {bd.node.id for bd in prog.leaves if bd.name in prog.wrt}
    named = {bd.node.id for bd in prog.leaves + prog.forward}
    needs: set[int] = set()  # nodes an adjoint flows through: they depend on a wrt leaf
    for n in topo_order([bd.node for bd in prog.forward]):
        if n.id in wrt or any(a.id in needs for a in n.args):
            needs.add(n.id)
    steps: dict[str, list[str]] = {}
    differentiated = differentiated_steps(prog)
    for bd in prog.forward:
        if bd.name in differentiated:
            steps.setdefault(bd.sources[0], []).append(bd.name)
    rules: dict[str, list[str]] = {}
    for bd in prog.forward:
        text = source_text(prog, bd) or bd.name
        if bd.name in steps:
            names = steps[bd.name][::-1]  # in the order the backward pass takes them
            rules[text] = [f"the chain rule back through its step{'s' * (len(names) > 1)} "
                           f"{', '.join(names)}"]
            continue
        if bd.sources:  # a step: its equation's heading speaks for it
            continue
        found, stack, seen = rules.setdefault(text, []), [bd.node], set()
        while stack:
            n = stack.pop()
            if n.id in seen or n.id not in needs:
                continue
            seen.add(n.id)
            if _says_more(PRIMITIVES[n.op]):
                found.append(PRIMITIVES[n.op].rule)
                continue
            stack.extend(a for a in reversed(n.args) if a.id not in named)
    return {text: list(dict.fromkeys(found)) for text, found in rules.items() if found}


def differentiated_steps(prog: Program) -> frozenset[str]:
    """The named steps of equations (batch norm's ``mu, xc, var, std, xn``) that the
    backward pass goes back through: those with an adjoint. The fast style's closed form
    (``batch_norm_scale``) goes round them."""
    adjoints = {bd.name for bd in prog.backward}
    return frozenset(bd.name for bd in prog.forward
                     if bd.sources and adjoint_name(prog.loss, bd.name) in adjoints)


def _says_more(prim) -> bool:
    """Whether an operation's rule says more than the equation shows: not arithmetic
    (``a * b``: the spec writes it), not a view or a count, not a draw or a comparison
    (no adjoint flows through those)."""
    return bool(prim.rule) and prim.vjp is not None and prim.fold is None \
        and not prim.cheap and not prim.random and prim.dtype is None


@dataclass(frozen=True)
class Facts:
    """What a function's statements do, read from the IR and the buffer plan (never from
    the printed text): its keyword arguments and its docstring's notes follow from them."""
    draws: bool = False  # draws dropout's masks from ``rng``
    reads_state: bool = False  # reads a state entry (batch norm's running statistics)
    updates_state: bool = False  # assigns new values into ``state``
    into_grads: bool = False  # computes a gradient into the caller's ``grads`` buffers
    reads: frozenset[str] = frozenset()  # the names its statements' code reads
    helpers: frozenset[str] = frozenset()  # the module helpers its code calls


def _facts(prog: Program, statements: list[Statement], planned) -> tuple[Facts, set[str]]:
    """The function's facts, and the states it reads. A function that draws must draw
    every site of the program, each once, in site order (``random_sites``: the order the
    IR evaluator and the documentation give); anything else is a bug in bpc."""
    nodes = topo_order([st.node for st in statements])
    states_read = {n.attr("name") for n in nodes if n.op == "state"}
    sites = [st.node.attr("site") for st in statements if PRIMITIVES[st.node.op].random]
    if sites and sites != [n.attr("site") for n in random_sites(prog)]:
        raise SpecError(Diagnostic(f"internal error: the code generated for '{prog.name}' "
                                   f"would draw dropout's masks in the order {sites}", None))
    facts = Facts(draws=bool(sites), reads_state=bool(states_read),
                  updates_state=any(st.kind == "update" for st in statements),
                  into_grads=any(step.into for step in planned),
                  reads=frozenset().union(*(st.reads for st in statements)),
                  helpers=frozenset().union(*(step.helpers for step in planned)))
    return facts, states_read


def _body(prog: Program, printer: Printer, bindings: list[Binding], returns: list[str],
          args: list[Binding], sections: bool, into: dict[str, str] | None = None,
          style: str = "fast", fmt: bool = True) -> tuple[list[str], Facts]:
    statements = schedule(prog, bindings, printer, early_masks=style == "fast")
    backward = {bd.name: bd for bd in prog.backward}
    forward = {bd.name: bd for bd in prog.forward}
    planned = plan(statements, returns, into, style, printer)
    facts, states_read = _facts(prog, statements, planned)
    lines = _prologue(prog, args, facts.reads, statements, returns, states_read,
                      printer.target)
    if facts.into_grads:
        lines.append("grads = {} if grads is None else grads  # buffers to compute into")
    in_backward = False
    if sections:
        lines.append("")
        lines.append("# forward")
    last_comment = None
    said: set = set()  # textbook: each forward equation heads its steps once

    texts: dict[str, list[str]] = {}
    rules = _equation_rules(prog) if backward else {}

    def quoted(bd: Binding) -> list[str]:
        """The spec text of the forward equations a backward binding differentiates
        (once per binding: a weight shared thousands of times has that many)."""
        if bd.name not in texts:
            texts[bd.name] = list(dict.fromkeys(source_text(prog, forward[s]) or s
                                                for s in bd.sources if s in forward))
        return texts[bd.name]

    def head(st: Statement) -> None:
        """The forward line a step differentiates, above it, when it changes."""
        nonlocal last_comment
        comment = _comment(st, backward, quoted, rules,
                           said if style == "textbook" else None)
        if comment == last_comment:
            return
        if comment and not (style == "textbook" and comment in said):
            lines.extend(_line(("# " if k == 0 else "#   ") + safe_comment(text), st.name)
                         for k, text in enumerate(comment))
            said.add(comment)
            bd = backward.get(st.name)
            if bd is not None:
                said.update(quoted(bd))
        last_comment = comment

    # A temporary is a step of the statement after it: that statement's header comes
    # first (else it would land a line late). The next non-temporary, in one pass.
    headed_by: list[Statement | None] = [None] * len(planned)
    following = None
    for k in range(len(planned) - 1, -1, -1):
        headed_by[k] = following
        if planned[k].statement.kind != "temp":
            following = planned[k].statement
    for k, step in enumerate(planned):
        st = step.statement
        if sections and not in_backward and st.name in backward:
            in_backward = True
            lines.append("")
            lines.append("# backward")
        code = list(step.code)
        # A temporary's lines belong to the statement it is a step of.
        owner = headed_by[k] if st.kind == "temp" and headed_by[k] is not None else st
        if st.kind == "update" and (k == 0 or planned[k - 1].statement.kind != "update"):
            lines.append(_line("# the last step, which the next call's loop continues from"
                               if st.name in prog.config.get("streams", ()) else
                               "# running statistics, which inference mode normalizes with",
                               st.name))
            last_comment = None
        if st.kind == "temp":
            if in_backward and headed_by[k] is not None:
                head(headed_by[k])
            if st.comment:
                # A note on a temporary: after its line when it fits there, else above it.
                note = safe_comment(st.comment)
                if len(code) == 1 and len(code[0]) + len(note) + 4 <= STATEMENT_WIDTH:
                    code[0] += f"  # {note}"
                else:
                    lines.append(_line(f"# {st.name}: {note}", owner.name))
        else:
            head(_heading_of(st, backward, headed_by[k]))
        lines.extend(_line(line, owner.name) for statement in code
                     for line in (layout.laid_out(statement) if fmt else [statement]))
        if step.release:
            lines.extend(_deletions(step.release))
    return lines, facts


def _heading_of(st: Statement, backward: dict[str, Binding],
                following: Statement | None) -> Statement:
    """The statement whose heading a statement takes: its own; for a backward loop,
    its first result that is a backward binding (``dL_dWh``), else (it computes only a
    hoisted sequence's adjoint, ``dL_da_x``) the statement after it, as a temporary."""
    if st.kind != "loop" or st.name in backward:
        return st
    bound = next((name for name in st.defines if name in backward), None)
    if bound is not None:
        return replace(st, name=bound)
    return following if following is not None else st


def _listed(equations: list[str], width: int) -> tuple[str, int]:
    """Equations joined by "and" for a comment: as many as fit in ``width`` columns,
    then how many more (a weight shared by a thousand equations heads its gradient with
    one line, not a thousand equations); one equation is given whole. And how many are
    shown."""
    if len(equations) == 1 or sum(len(eq) + 5 for eq in equations) - 5 <= width:
        return " and ".join(equations), len(equations)
    shown, size = 0, 0
    for k, eq in enumerate(equations):
        more = f" and {len(equations) - k - 1} more" if k + 1 < len(equations) else ""
        size += len(eq) + (5 if k else 0)
        if k and size + len(more) > width:
            break
        shown = k + 1
    rest = len(equations) - shown
    return " and ".join(equations[:shown]) + (f" and {rest} more" if rest else ""), shown


def _deletions(names: list[str]) -> list[str]:
    """``del`` statements releasing ``names``, as many names to a line as fit (a chain of
    thousands of steps may release thousands at once)."""
    lines, current = [], []
    for name in names:
        if current and len("del " + ", ".join(current + [name])) > STATEMENT_WIDTH:
            lines.append("del " + ", ".join(current))
            current = []
        current.append(name)
    return lines + ["del " + ", ".join(current)]
