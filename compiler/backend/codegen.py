"""Code generation: an optimized ``Program`` -> a standalone NumPy module (source text).

The Jinja template ``templates/module.py.j2`` decides how the module looks; the
statements inside come from ``printer.schedule`` (what is computed, in which order, with
which temporaries) and ``buffers.plan`` (which dead buffers are reused in place, which
large intermediates are released early). Spec text reaches the output only as validated
identifiers, numbers printed with ``repr`` (as black spells them), ``repr``-quoted data (paths, names in
dictionaries) and comments made of printable ASCII (``printer.safe_comment``).
The result is in black's style, written directly (``pyfmt``; black lays out only a
statement of a shape pyfmt does not cover, on its own) and is byte-identical for the same
spec. Nothing read back from a file decides it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .buffers import plan
from ..errors import Diagnostic, SpecError
from ..ir.inits import formula
from ..ir import NAMED_LEAVES, Binding, Program, random_sites, topo_order
from ..ir.heads import head
from ..ir.memory import footprint
from ..names import mentioned
from ..ir.primitives import HELPERS, PRIMITIVES, data_roles, format_number
from .printer import Printer, Statement, safe_comment, schedule, source_text
from .pyfmt import (LINE_LENGTH, STATEMENT_WIDTH, Code, call, call_statement, definition,
                    literal, needs_black, operator_statement, string)


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


@dataclass
class _Function:
    name: str
    signature: list[str]
    returns: str
    doc: list[str]  # paragraphs
    body: list[str]  # ``Line`` where a binding printed it

    @property
    def head(self) -> list[str]:
        """The ``def`` line(s) and the docstring."""
        return definition(self.name, self.signature, self.returns) + _docstring(self.doc)

    @property
    def text(self) -> str:
        """The whole function, in black's layout."""
        return "\n".join(self.head + _indented(self.body))

    def origins(self) -> list[str | None]:
        """The binding each line of ``text`` was printed from (None: none)."""
        return [None] * len(self.head) + [getattr(line, "origin", None) for line in self.body]


@dataclass(frozen=True)
class GeneratedModule:
    """A module's source text; the IR binding each line of it was printed from
    (``origins``: 1-based line number -> binding name), for source maps; and the line
    each function starts at (``starts``: name -> its ``def`` line). Both empty when black
    had to lay the whole module out (its lines then move)."""
    text: str
    origins: dict[int, str]
    starts: dict[str, int]


def _docstring(paragraphs: list[str]) -> list[str]:
    """A docstring wrapped to fit black's 88 columns, closing quotes included."""
    import textwrap

    lines: list[str] = []
    for i, paragraph in enumerate(paragraphs):
        if i:
            lines.append("")
        lines += textwrap.wrap(paragraph, width=LINE_LENGTH - 3,
                               initial_indent='    """' if i == 0 else "    ",
                               subsequent_indent="    ", break_on_hyphens=False)
    lines[-1] += '"""'
    return lines


def _indented(lines: list[str]) -> list[str]:
    return ["    " + line if line else "" for line in lines]


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, undefined=jinja2.StrictUndefined)
    return env.get_template("module.py.j2")


def _shape_literal(shape) -> tuple:
    return tuple(shape)


def _needed(prog: Program, roots: list[str]) -> list[Binding]:
    """The forward bindings the named roots depend on, in spec order; in training mode
    also every equation that draws a mask, whole (every dropout site draws once per
    call, in spec order, whether or not the roots read it: ``random_sites``)."""
    by_name = {bd.name: bd for bd in prog.forward}
    live = {n.id for n in topo_order([by_name[r].node for r in roots if r in by_name]
                                     + [bd.node for bd in _drawing(prog)])}
    # Another name for an input or a parameter ('a = W') is needed only as a root: the
    # code reads the leaf by its own name.
    return [bd for bd in prog.forward if bd.node.id in live
            and (bd.name in roots or bd.node.op not in NAMED_LEAVES)]


def _drawing(prog: Program) -> list[Binding]:
    """The forward bindings that first compute a random draw (a dropout's mask), in spec
    order: one walk over the forward pass, each node visited once."""
    sites = {n.id for n in random_sites(prog)}
    seen: set[int] = set()
    out = []
    for bd in prog.forward if sites else ():
        stack, draws = [bd.node], False
        while stack:
            n = stack.pop()
            if n.id in seen:
                continue
            seen.add(n.id)
            draws = draws or n.id in sites
            stack.extend(n.args)
        if draws:
            out.append(bd)
    return out


def _data_args(prog: Program, bindings: list[Binding], with_targets: bool) -> list[Binding]:
    used = {n.id for n in topo_order([bd.node for bd in bindings])}
    args = list(prog.inputs)
    if with_targets:
        args += prog.targets
    else:
        args += [t for t in prog.targets if t.node.id in used]
    return args


def _signature(prog: Program, args: list[Binding]) -> list[str]:
    """``params`` and the data arguments in declaration order (inputs, then targets).

    Python needs defaults last: when an input with a default would precede one without,
    the inputs with defaults become keyword-only (``*, tax=1.1``) instead."""
    names = [bd.name for bd in args]
    required = [n for n in names if n not in prog.defaults]
    defaulted = [f"{n}={_default_text(prog.defaults[n])}" for n in names if n in prog.defaults]
    in_order = all(n in prog.defaults for n in names[len(required):]) and \
        names[:len(required)] == required
    if in_order:
        return ["params", *required, *defaulted]
    return ["params", *required, "*", *defaulted]


def _default_text(value) -> str:
    """A default argument as Python text: a number, or an array as nested tuples of
    floats (immutable, unlike a list; ``np.asarray`` in the body makes it an array)."""
    from .pyfmt import _flat

    def tuples(v):
        return tuple(tuples(x) for x in v) if isinstance(v, (list, tuple)) else float(v)

    if isinstance(value, (list, tuple)):
        return _flat(tuples(value))
    return format_number(value)


def _prologue(prog: Program, args: list[Binding], statements: list[Statement],
              returns: list[str], states_read: set[str]) -> list[str]:
    """Inputs as arrays, and every parameter the function reads (also one it returns as
    it is: 'output W'). A scalar (0-d) input is read as a NumPy scalar of the model's
    dtype, ``DTYPE(x)``, and a 0-d parameter as a NumPy scalar of its own dtype,
    ``params["b"][()]`` (parameters are used as given, as arrays are): arithmetic on NumPy
    scalars skips the array machinery that every operation on a 0-d array goes through
    (the toy's gradient: 24 us -> 6 us), and gives the same numbers."""
    text = " ".join([s.expr for s in statements] + [s.name for s in statements] + returns)
    lines = []
    for bd in args:
        if bd.node.dtype == "int":
            conv = "np.asarray({0})"
        else:
            conv = "DTYPE({0})" if bd.node.shape == () else "np.asarray({0}, dtype=DTYPE)"
        lines.append(f"{bd.name} = " + conv.format(bd.name))
    used = set(mentioned(text))  # one scan of the text, not one per parameter
    scalar_note = "# 0-d parameters as NumPy scalars ([()]): faster arithmetic than 0-d arrays"
    for bd in prog.params:
        if bd.name in used:
            if bd.node.shape == () and scalar_note:
                lines.append(scalar_note)
                scalar_note = ""
            index = "[()]" if bd.node.shape == () else ""
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
    for bd in prog.forward:
        if bd.sources and bd.node.id in needs:
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
                  into_grads=any(step.into for step in planned))
    return facts, states_read


def _body(prog: Program, printer: Printer, bindings: list[Binding], returns: list[str],
          args: list[Binding], sections: bool, into: dict[str, str] | None = None,
          style: str = "fast", fmt: bool = True) -> tuple[list[str], Facts]:
    statements = schedule(prog, bindings, printer, early_masks=style == "fast")
    backward = {bd.name: bd for bd in prog.backward}
    forward = {bd.name: bd for bd in prog.forward}
    planned = plan(statements, returns, into, style)
    facts, states_read = _facts(prog, statements, planned)
    lines = _prologue(prog, args, statements, returns, states_read)
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
            lines.append(_line("# running statistics, which inference mode normalizes with",
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
            head(st)
        lines.extend(_line(line, owner.name) for statement in code
                     for line in (_laid_out(statement) if fmt else [statement]))
        if step.release:
            lines.extend(_deletions(step.release))
    return lines, facts


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


STYLE_NOTES = {
    "fast": "Gradients\nmay share memory with each other or with forward values: "
            "treat them as read-only.",
    "textbook": "This is the\ntextbook style: every value is a new array, nothing is overwritten or released\n"
                "(the fast style, which bpc train runs, reuses buffers).",
}


def generate(prog: Program, source: str | None = None, fmt: bool = True,
             style: str = "fast", inference: Program | None = None) -> str:
    """The module's source text (``generate_module``'s ``text``)."""
    return generate_module(prog, source, fmt, style, inference).text


def generate_module(prog: Program, source: str | None = None, fmt: bool = True,
                    style: str = "fast", inference: Program | None = None) -> GeneratedModule:
    """The module's source text and its line origins, in the ``fast`` style (buffers reused in place,
    released early) or the ``textbook`` style (one plain assignment per step).
    ``inference``: the program in inference mode when it differs from ``prog`` (training
    mode: dropout, batch norm). ``predict`` is written from it; ``loss`` and
    ``loss_and_grad`` take the keyword ``training`` and compute either mode: each is
    written in its default mode (``loss`` inference, ``loss_and_grad`` training), handing
    the other mode to a private function (``_loss_training``,
    ``_loss_and_grad_inference``)."""
    if style not in STYLE_NOTES:
        raise ValueError(f"unknown code style {style!r}")
    from ..compilation import gc_paused

    with gc_paused():
        return _generate(prog, source, fmt, style, inference)


def _generate(prog: Program, source: str | None, fmt: bool, style: str,
              inference: Program | None) -> GeneratedModule:
    source = safe_comment(source or prog.path).replace('"', "?").replace("\\", "?")
    output = prog.output or prog.loss
    infer = inference or prog
    modes = inference is not None
    stateful = bool(prog.states)

    # predict: the forward pass up to the output, in inference mode.
    pred_bindings = _needed(infer, [output])
    pred_args = _data_args(infer, pred_bindings, with_targets=False)
    p = Printer(infer, lets=style == "textbook")
    body, facts = _body(infer, p, pred_bindings, [output], pred_args, sections=False,
                        style=style, fmt=fmt)
    functions = [_Function(
        "predict", _keywords(_signature(infer, pred_args),
                             ["state"] * stateful + ["rng"] * facts.draws), "",
        [f"The model's output {output}, for the inputs.",
         *([_mode_note(prog, False, facts)] if modes else [])],
        body + [_return_own(infer, output)])]

    loss_doc = f"The loss {prog.loss}"
    grad_doc = (f"The loss {prog.loss} and its gradient with respect to "
                f"{', '.join(prog.wrt) or 'nothing'}")
    grads_note = ("Given ``grads`` (arrays shaped like the gradients, by name), gradients "
                  "are computed into those arrays where possible, so a training loop "
                  "allocates nothing large.")
    if not modes:
        # One program: the module is as it always was. (A training program given alone,
        # as trace and graph do to check their values, draws in every function.)
        signature, body, facts = _loss_function(prog, style, gradient=False, fmt=fmt)
        functions.append(_Function(
            "loss", _keywords(signature, ["state"] * stateful + ["rng"] * facts.draws),
            " -> float", [loss_doc + "."], body))
        signature, body, facts = _loss_function(prog, style, gradient=True, fmt=fmt)
        functions.append(_Function(
            "loss_and_grad", _keywords(signature, ["state"] * stateful
                                       + ["rng"] * facts.draws
                                       + ["grads=None"] * facts.into_grads),
            " -> tuple[float, dict[str, np.ndarray]]",
            [grad_doc + ".", *[grads_note] * facts.into_grads], body))
    else:
        functions += _mode_functions(prog, infer, style, loss_doc, grad_doc, grads_note,
                                     fmt)
    helpers = sorted(_helpers_of(functions))

    init, state_init = _initial_values(prog, prog.params), _initial_values(prog, prog.states)
    constants = {
        "INPUTS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.inputs},
        "TARGETS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.targets},
        "PARAMS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.params},
        **({"STATE": {bd.name: _shape_literal(bd.node.shape) for bd in prog.states}}
           if prog.states else {}),
        "DTYPE": Code(f"np.{prog.dtype}"),
        "OUTPUT": output,
        "LOSS": prog.loss,
        "GRADS": list(prog.wrt),
        "DEFAULTS": dict(prog.defaults),
        "CONFIG": config_of(prog),
    }
    lets = _lets_used(prog, functions) if style == "textbook" else {}
    constants_text = "\n".join(line for name, value in constants.items()
                               for line in literal(value, 0, f"{name} = "))
    if lets:  # the spec's 'let' constants, by name, as the textbook style prints them
        constants_text += "\n\n# let constants of the spec\n" + "\n".join(
            f"{name} = {format_number(value)}" for name, value in lets.items())
    context = {
        "model": prog.name,
        "source": source,
        "style_flag": "" if style == "fast" else f" --style {style}",
        "style_note": STYLE_NOTES[style],
        "constants": constants_text,
        "helpers": [HELPERS[h] for h in helpers],
        "init": init,
        "state_init": state_init,
        "functions": functions,
    }
    text = _template().render(**context)
    laid_out = text
    if fmt and needs_black(text):  # a line of a shape pyfmt does not lay out
        text = _black(text)
    try:
        compile(text, f"<bpc output for {prog.name}>", "exec")  # never write invalid Python
    except SyntaxError as e:
        raise SpecError(Diagnostic(f"internal error: the code generated for '{prog.name}' "
                                   f"is not valid Python ({e.msg}, line {e.lineno})",
                                   None)) from e
    # Black moves lines (rarely: a statement shape pyfmt does not lay out): no map then.
    if text != laid_out:
        return GeneratedModule(text, {}, {})
    return GeneratedModule(text, *_origins(prog, text, functions))


def _origins(prog: Program, text: str, functions: list[_Function]
             ) -> tuple[dict[int, str], dict[str, int]]:
    """Module line -> the binding it was printed from, and function -> its first line.
    The template writes the functions last, each after two blank lines, and the module
    ends with a newline: counted from the end, and checked line by line (a template
    changed otherwise is a bug here)."""
    lines = text.split("\n")
    end = len(lines) - 1  # the empty string after the last newline
    out: dict[int, str] = {}
    starts: dict[str, int] = {}
    for fn in reversed(functions):
        own = fn.text.split("\n")
        start = end - len(own)
        if lines[start:end] != own or any(lines[start - 2:start]):
            raise SpecError(Diagnostic(f"internal error: the module written for "
                                       f"'{prog.name}' does not end with its functions, "
                                       f"so its lines cannot be mapped", None))
        out.update((start + 1 + i, origin) for i, origin in enumerate(fn.origins())
                   if origin is not None)
        starts[fn.name] = start + 1
        end = start - 2
    return out, starts


def _initial_values(prog: Program, bindings: list[Binding]) -> list[dict]:
    """The entries of ``init_params`` or ``init_state``: each value's formula and a
    comment saying which rule made it: a line per clause of the rule's note, each
    wrapped to fit (at 8 columns)."""
    entries = []
    for bd in bindings:
        init = prog.inits[bd.name]
        expr, comment = formula(init, bd.node.shape, prog.dtype)
        key = string(bd.name) + ": "
        lines = [f"        {key}{expr},"]
        if len(lines[0]) > LINE_LENGTH and init.kind in ("value", "array") \
                and isinstance(init.args["value"], (list, tuple)):
            # a given array too wide for one line: laid out as black lays it out
            lines = call("np.array", [_numbers(init.args["value"]), Code("dtype=DTYPE")],
                         8, key, ",")
        clauses = [f"{bd.name}: {comment}", *(init.note.split("; ") if init.note else ())]
        entries.append({"lines": lines, "comment": [
            line for clause in clauses
            for line in _wrapped(safe_comment(clause), LINE_LENGTH - 10)]})
    return entries


def _return_own(prog: Program, name: str) -> str:
    """``return name``, as a copy when the value may be the caller's own memory (``output
    x``, a parameter, or a view of one such as ``x.T.T``, or what inference mode's dropout
    leaves of it): what predict returns is the caller's to keep and change, never a
    window onto their inputs or parameters."""
    bindings = {bd.name: bd.node for bd in (*prog.inputs, *prog.params, *prog.states,
                                            *prog.forward)}
    todo, seen = [bindings[name]] if name in bindings else [], set()
    while todo:
        node = todo.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        if node.op in NAMED_LEAVES:
            return f"return np.copy({name})  # the caller's own array otherwise"
        todo.extend(node.args[k] for k in PRIMITIVES[node.op].viewed(node))
    return f"return {name}"


def _numbers(value):
    """A nested list of numbers as ``Code``, each written as ``formula`` writes it."""
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    return Code(format_number(float(value)))


def _keywords(signature: list[str], keywords: list[str]) -> list[str]:
    """The signature with keyword-only arguments added (after a ``*``)."""
    if not keywords:
        return signature
    return signature + (keywords if "*" in signature else ["*", *keywords])


def _call(name: str, signature: list[str]) -> str:
    """A call passing a function's own arguments on to ``name``, whose signature is
    ``signature`` (keyword-only arguments by keyword)."""
    parts, keyword = [], False
    for item in signature:
        if item == "*":
            keyword = True
            continue
        arg = item.split("=")[0]
        parts.append(f"{arg}={arg}" if keyword else arg)
    return f"{name}({', '.join(parts)})"


def _loss_function(prog: Program, style: str, gradient: bool, fmt: bool = True):
    """(data signature, body, facts) of the loss, or of the loss and its gradient, as
    ``prog`` computes them: what the loss needs, every equation that updates state or
    draws a mask (whole, in spec order), and with ``gradient`` the backward pass."""
    bindings = with_updates(prog, _needed(prog, [prog.loss] + [
        s for u in prog.updates for s in u.sources]))
    args = _data_args(prog, bindings, with_targets=True)
    p = Printer(prog, lets=style == "textbook")
    if not gradient:
        body, facts = _body(prog, p, bindings, [prog.loss], args, sections=False,
                            style=style, fmt=fmt)
        return _signature(prog, args), body + [f"return float({prog.loss})"], facts
    into = {}
    for w in prog.wrt if style == "fast" else ():
        # a gradient is computed into the caller's buffer when given one
        into.setdefault(prog.grads[w], f'grads.get("{w}")')
    grad_order = [prog.grads[w] for w in prog.wrt]
    body, facts = _body(prog, p, bindings + prog.backward, [prog.loss] + grad_order, args,
                        sections=True, into=into, style=style, fmt=fmt)
    returned = {w: Code(prog.grads[w]) for w in prog.wrt}
    body += [""] + [line[4:] for line in literal(returned, 4, f"return float({prog.loss}), ")]
    return _signature(prog, args), body, facts


RNG_GUARD = ["if rng is None:",
             '    raise TypeError("training mode needs rng (a NumPy Generator)")']


def _mode_functions(prog: Program, infer: Program, style: str, loss_doc: str,
                    grad_doc: str, grads_note: str, fmt: bool = True) -> list[_Function]:
    """``loss`` and ``loss_and_grad`` of a module with modes, each taking ``training``:
    ``loss`` written in inference mode, ``loss_and_grad`` in training mode, each handing
    the other mode to a private function written from the other program."""
    state = ["state"] * bool(prog.states)
    sig_infer, body_infer, f_infer = _loss_function(infer, style, gradient=False, fmt=fmt)
    sig_train, body_train, f_train = _loss_function(prog, style, gradient=False, fmt=fmt)
    gsig_train, gbody_train, g_train = _loss_function(prog, style, gradient=True, fmt=fmt)
    gsig_infer, gbody_infer, g_infer = _loss_function(infer, style, gradient=True, fmt=fmt)
    draws = f_train.draws or g_train.draws
    rng_public = ["rng=None"] * draws
    guard = RNG_GUARD if draws else []
    grads = ["grads=None"] * (g_train.into_grads or g_infer.into_grads)

    training_loss = _keywords(sig_train, state + ["rng"] * f_train.draws)
    inference_grad = _keywords(gsig_infer, state + ["grads=None"] * g_infer.into_grads)
    training_doc = _mode_note(prog, True, g_train)
    training_loss_doc = _mode_note(prog, True, f_train, gradient=False)
    inference_doc = _mode_note(prog, False, f_infer)
    return [
        _Function("loss", _keywords(sig_infer, state + ["training=False", *rng_public]),
                  " -> float",
                  [loss_doc + ".",
                   f"By default (``training=False``) {_lower(inference_doc)}",
                   f"With ``training=True``: the loss ``loss_and_grad`` differentiates "
                   f"by default. {training_loss_doc}"],
                  ["if training:", f"    return {_call('_loss_training', training_loss)}",
                   *body_infer]),
        _Function("loss_and_grad",
                  _keywords(gsig_train, state + ["training=True", *rng_public, *grads]),
                  " -> tuple[float, dict[str, np.ndarray]]",
                  [grad_doc + ".", f"By default (``training=True``) {_lower(training_doc)}",
                   f"With ``training=False``: the gradient of ``loss()``. "
                   f"{_mode_note(prog, False, g_infer)}", *[grads_note] * bool(grads)],
                  ["if not training:",
                   f"    return {_call('_loss_and_grad_inference', inference_grad)}",
                   *guard, *gbody_train]),
        _Function("_loss_training", training_loss, " -> float",
                  [f"{loss_doc} in training mode: ``loss(..., training=True)``.",
                   training_loss_doc], guard + body_train),
        _Function("_loss_and_grad_inference", inference_grad,
                  " -> tuple[float, dict[str, np.ndarray]]",
                  [f"{grad_doc} in inference mode: ``loss_and_grad(..., "
                   f"training=False)``, the gradient of ``loss()``.",
                   _mode_note(prog, False, g_infer)], gbody_infer),
    ]


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _mode_note(prog: Program, training: bool, facts: Facts, gradient: bool = True) -> str:
    """What a function's mode means for this model (a docstring paragraph); ``gradient``:
    the function has a backward pass."""
    dropout = bool(random_sites(prog))
    parts = []
    if training:
        if dropout:
            parts.append("dropout's masks are drawn from ``rng`` (a NumPy Generator)"
                         + ("; the backward pass reuses them" if gradient else ""))
        if facts.updates_state:
            parts.append("batch_norm normalizes with the batch's own mean and variance, "
                         "and updates the running ones in ``state`` (a dict, changed in "
                         "place)" + ("; its backward pass goes through each step of the "
                                     "normalization (mu, xc, var, std, xn), the book's "
                                     "computational graph, not a fused formula"
                                     if gradient else ""))
        return "Training mode: " + "; ".join(parts) + "."
    if dropout:
        parts.append("dropout is the identity")
    if prog.updates and facts.reads_state:
        parts.append("batch_norm uses the running mean and variance in ``state`` "
                     "(init_state(), then as training left them)")
    elif prog.states:
        parts.append("it takes ``state`` as every function of this module does, but "
                     "computes nothing from it")
    return "Inference mode: " + "; ".join(parts) + "."


def with_updates(prog: Program, bindings: list[Binding]) -> list[Binding]:
    """The training pass's bindings with each state update right after the equation
    that computes it (``state["bn1_running_mean"] = 0.9 * ... + 0.1 * bn1_mu``)."""
    after: dict[tuple, list[Binding]] = {}  # one pass over the updates, not one per binding
    for u in prog.updates:
        after.setdefault(u.sources, []).append(u)
    out = []
    for bd in bindings:
        out.append(bd)
        out.extend(after.get((bd.name,), ()))
    return out


def _lets_used(prog: Program, functions: list[_Function]) -> dict[str, float]:
    """The ``let`` constants the functions' text reads by name, in spec order, with
    their values."""
    values = prog.lets
    text = "\n".join("\n".join(f.body) for f in functions)
    used = set(mentioned(text))
    return {name: value for name, value in values.items() if name in used}


def _helpers_of(functions: list[_Function]) -> set[str]:
    text = "\n".join("\n".join(f.body) for f in functions)
    return set(mentioned(text)) & HELPERS.keys()


def config_of(prog: Program) -> dict:
    """The module's ``CONFIG``: training configuration and the facts the runtime needs
    about the data and the output, as plain data (numbers and strings only)."""
    cfg = {}
    for key in ("optimizer", "train", "data"):
        if key in prog.config:
            cfg[key] = {k: v for k, v in prog.config[key].items()}
    labels, onehot = {}, {}
    for name, (role, classes) in data_roles([bd.node for bd in prog.forward]).items():
        (labels if role == "labels" else onehot)[name] = classes
    if labels:
        cfg["labels"] = labels  # integer-label targets -> number of classes
    if onehot:
        cfg["onehot"] = onehot  # targets whose rows must be distributions (sum to 1)
    output = {bd.name: bd.node for bd in prog.forward}.get(prog.output or prog.loss)
    if output is not None:  # where predict's batch axis is, to evaluate it in chunks
        cfg["output_shape"] = tuple(output.shape)
    if prog.config.get("nonnegative"):  # states that are variances: never negative
        cfg["nonnegative"] = list(prog.config["nonnegative"])
    if prog.backward:  # what a step holds in memory at least, checked before it runs
        cfg["memory"] = footprint(prog)
    accuracy, why_not = head(prog)
    if accuracy is not None:  # predict's output is a classifier's prediction of a target
        cfg["accuracy"] = accuracy
    elif why_not is not None:  # none, and a user might have expected one: why
        cfg["no_accuracy"] = why_not
    return cfg


def _laid_out(line: str) -> list[str]:
    """A statement of a function body (written at 4 columns) in black's layout: as it is
    when it fits, ``pyfmt.call_statement``'s layout for a call (what buffer planning
    writes), ``pyfmt.operator_statement``'s for a chain of operators (a long fused loss),
    else black's own layout of that one statement."""
    if len(line) + 4 <= LINE_LENGTH:
        return [line]
    laid = call_statement(line, 4) or operator_statement(line, 4) or _black_statement(line)
    return [text[4:] for text in laid]


@functools.lru_cache(maxsize=1024)
def _black_statement(line: str) -> list[str]:
    """Black's layout of one statement of a function body. Black lays out each logical
    line on its own, so this is what it writes for that statement in the whole module,
    at a cost that grows with the statement, not with the module."""
    formatted = _black("def _():\n    " + line + "\n")
    return formatted.splitlines()[1:]


def _black(text: str) -> str:
    """``text`` formatted by black (py310 target). Only for code shapes ``pyfmt`` does not
    lay out itself; computed here every time, never read back from a file."""
    import black

    mode = black.Mode(target_versions={black.TargetVersion.PY310})
    try:
        return black.format_str(text, mode=mode)
    except black.InvalidInput as e:  # a bug in bpc, never in the spec
        raise SpecError(Diagnostic(f"internal error: generated code does not parse "
                                   f"({e})", None)) from e
