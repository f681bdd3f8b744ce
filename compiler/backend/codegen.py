"""Code generation: an optimized ``Program`` -> a standalone NumPy module (source text).

The Jinja template ``templates/module.py.j2`` decides how the module looks; the
statements inside come from ``printer.schedule`` (what is computed, in which order, with
which temporaries) and ``buffers.plan`` (which dead buffers are reused in place, which
large intermediates are released early). Spec text reaches the output only as validated
identifiers, numbers printed with ``repr`` (as black spells them), ``repr``-quoted data (paths, names in
dictionaries) and comments made of printable ASCII (``printer.safe_comment``).
The result is in black's style, written directly (``pyfmt``; black runs only where a line
is too wide for that) and is byte-identical for the same spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .buffers import plan
from ..errors import Diagnostic, SpecError
from ..ir.inits import formula
from ..ir import Binding, Program, topo_order
from ..ir.heads import head
from ..ir.memory import footprint
from ..names import mentioned
from ..ir.primitives import HELPERS, PRIMITIVES, data_roles, format_number
from .printer import Printer, Statement, safe_comment, schedule, source_text
from .pyfmt import LINE_LENGTH, STATEMENT_WIDTH, Code, definition, literal, needs_black, string


@dataclass
class _Function:
    name: str
    signature: list[str]
    returns: str
    doc: list[str]  # paragraphs
    body: list[str]

    @property
    def text(self) -> str:
        """The whole function, in black's layout."""
        return "\n".join(definition(self.name, self.signature, self.returns)
                         + _docstring(self.doc) + _indented(self.body))


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
    """The forward bindings the named roots depend on, in spec order."""
    by_name = {bd.name: bd for bd in prog.forward}
    live = {n.id for n in topo_order([by_name[r].node for r in roots if r in by_name])}
    return [bd for bd in prog.forward if bd.node.id in live]


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
              returns: list[str]) -> list[str]:
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
    read = set(mentioned(" ".join(s.expr for s in statements)))
    for bd in prog.states:  # read by batch_norm in inference, and by its update
        if bd.name in read:
            lines.append(f'{bd.name} = state["{bd.name}"]')
    return lines


def _comment(st: Statement, backward: dict[str, Binding], quoted,
             said: set[str] | None = None) -> str | None:
    """The comment heading a step: the forward equations it differentiates (``quoted``:
    a binding -> the spec text of its sources); with ``said`` (the textbook style),
    only those not quoted before in the function."""
    if st.kind == "temp":
        return st.comment
    bd = backward.get(st.name)
    if bd is None:
        return None
    if bd.sources:
        lines = quoted(bd)
        if said is not None:
            lines = [ln for ln in lines if ln not in said]
            if not lines:
                return None
        text = " and ".join(lines)
        if bd.note and len(bd.note) <= 60 and any(w in bd.note for w in
                                                   ("output", "fused", "mask", "itself")):
            text += f" ({bd.note})"
        return text
    return bd.note


def _body(prog: Program, printer: Printer, bindings: list[Binding], returns: list[str],
          args: list[Binding], sections: bool, into: dict[str, str] | None = None,
          style: str = "fast") -> list[str]:
    statements = schedule(prog, bindings, printer, early_masks=style == "fast")
    backward = {bd.name: bd for bd in prog.backward}
    forward = {bd.name: bd for bd in prog.forward}
    lines = _prologue(prog, args, statements, returns)
    planned = plan(statements, returns, into, style)
    if any(into and into.get(step.statement.name, "\0") in code for step in planned
           for code in step.code):
        lines.append("grads = {} if grads is None else grads  # buffers to compute into")
    in_backward = False
    if sections:
        lines.append("")
        lines.append("# forward")
    last_comment = None
    said: set[str] = set()  # textbook: each forward equation heads its steps once

    texts: dict[str, list[str]] = {}

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
        comment = _comment(st, backward, quoted, said if style == "textbook" else None)
        if comment == last_comment:
            return
        if comment and not (style == "textbook" and comment in said):
            lines.append(f"# {safe_comment(comment)}")
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
        if st.kind == "update" and (k == 0 or planned[k - 1].statement.kind != "update"):
            lines.append("# running statistics, which inference mode normalizes with")
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
                    lines.append(f"# {st.name}: {note}")
        else:
            head(st)
        lines.extend(code)
        if step.release:
            lines.append("del " + ", ".join(step.release))
    return lines


STYLE_NOTES = {
    "fast": "Gradients\nmay share memory with each other or with forward values: "
            "treat them as read-only.",
    "textbook": "This is the\ntextbook style: every value is a new array, nothing is overwritten or released\n"
                "(the fast style, which bpc train runs, reuses buffers).",
}


def generate(prog: Program, source: str | None = None, fmt: bool = True,
             style: str = "fast", inference: Program | None = None) -> str:
    """The module's source text, in the ``fast`` style (buffers reused in place,
    released early) or the ``textbook`` style (one plain assignment per step).
    ``inference``: the program in inference mode when it differs from ``prog`` (training
    mode, dropout): ``predict`` and ``loss`` are written from it, ``loss_and_grad`` from
    ``prog``, taking the generator its random masks are drawn from."""
    if style not in STYLE_NOTES:
        raise ValueError(f"unknown code style {style!r}")
    source = safe_comment(source or prog.path).replace('"', "?").replace("\\", "?")
    output = prog.output or prog.loss
    infer = inference or prog
    def mode_note(body: list[str]) -> list[str]:
        return [] if inference is None else [_mode_note(prog, False, _reads_state(body))]
    # predict: the forward pass up to the output.
    pred_bindings = _needed(infer, [output])
    pred_args = _data_args(infer, pred_bindings, with_targets=False)
    grad_order = [prog.grads[w] for w in prog.wrt]

    functions = []
    p = Printer(infer, lets=style == "textbook")
    body = _body(infer, p, pred_bindings, [output], pred_args, sections=False, style=style)
    functions.append(_Function(
        "predict", _keywords(_signature(infer, pred_args), body, bool(prog.states)), "",
        [f"The model's output {output}, for the inputs.", *mode_note(body)],
        body + [f"return {output}"]))
    p = Printer(infer, lets=style == "textbook")
    infer_loss = _needed(infer, [infer.loss])
    body = _body(infer, p, infer_loss, [infer.loss], _data_args(infer, infer_loss, True),
                 sections=False, style=style)
    signature = _signature(infer, _data_args(infer, infer_loss, True))
    functions.append(_Function(
        "loss", _keywords(signature, body, bool(prog.states)), " -> float",
        [f"The loss {prog.loss}.", *mode_note(body)], body + [f"return float({prog.loss})"]))
    loss_bindings = with_updates(prog, _needed(prog, [prog.loss] + [
        s for u in prog.updates for s in u.sources]))
    loss_args = _data_args(prog, loss_bindings, with_targets=True)
    p = Printer(prog, lets=style == "textbook")
    into = {}
    for w in prog.wrt if style == "fast" else ():
        # a gradient is computed into the caller's buffer when given one
        into.setdefault(prog.grads[w], f'grads.get("{w}")')
    body = _body(prog, p, loss_bindings + prog.backward, [prog.loss] + grad_order, loss_args,
                 sections=True, into=into, style=style)
    signature = _signature(prog, loss_args)
    doc = [f"The loss {prog.loss} and its gradient with respect to "
           f"{', '.join(prog.wrt) or 'nothing'}."]
    signature = _keywords(signature, body, bool(prog.states))
    if inference is not None:
        doc.append(_mode_note(prog, True, _reads_state(body)))
    if any(line.startswith("grads = ") for line in body):
        signature += ["grads=None"] if "*" in signature else ["*", "grads=None"]
        doc.append("Given ``grads`` (arrays shaped like the gradients, by name), gradients "
                   "are computed into those arrays where possible, so a training loop "
                   "allocates nothing large.")
    returned = {w: Code(prog.grads[w]) for w in prog.wrt}
    body += [""] + [line[4:] for line in literal(returned, 4, f"return float({prog.loss}), ")]
    functions.append(_Function(
        "loss_and_grad", signature, " -> tuple[float, dict[str, np.ndarray]]", doc, body))
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
    if fmt and needs_black(text):
        text = format_source(text)
    try:
        compile(text, f"<bpc output for {prog.name}>", "exec")  # never write invalid Python
    except SyntaxError as e:
        raise SpecError(Diagnostic(f"internal error: the code generated for '{prog.name}' "
                                   f"is not valid Python ({e.msg}, line {e.lineno})",
                                   None)) from e
    return text


def _reads_state(body: list[str]) -> bool:
    """Whether a function's body reads or updates state."""
    return any(" = state[" in line or line.startswith("state[") for line in body)


def _initial_values(prog: Program, bindings: list[Binding]) -> list[dict]:
    """The entries of ``init_params`` or ``init_state``: each value's formula and a
    comment saying which rule made it."""
    entries = []
    for bd in bindings:
        init = prog.inits[bd.name]
        expr, comment = formula(init, bd.node.shape, prog.dtype)
        entries.append({"key": string(bd.name), "expr": expr, "comment": safe_comment(
            f"{bd.name}: {comment}" + (f"; {init.note}" if init.note else ""))})
    return entries


def _keywords(signature: list[str], body: list[str], stateful: bool) -> list[str]:
    """The signature with the keyword-only arguments of modes: ``state`` in every function
    of a model with state (batch norm's running statistics; one calling convention for
    the whole module, whether or not this function reads it) and ``rng`` when the body
    draws dropout's masks from it."""
    extra = [name for name, used in (
        ("state", stateful), ("rng", any("rng.random(" in line for line in body))) if used]
    if not extra:
        return signature
    return signature + (extra if "*" in signature else ["*", *extra])


def _mode_note(prog: Program, training: bool, reads_state: bool) -> str:
    """What a function's mode means for this model (a docstring paragraph)."""
    ops = {n.op for n in topo_order([bd.node for bd in prog.forward])}
    dropout = any(PRIMITIVES[op].random for op in ops)
    parts = []
    if training:
        if dropout:
            parts.append("dropout's masks are drawn from ``rng`` (a NumPy Generator); "
                         "the backward pass reuses them")
        if prog.updates and reads_state:
            parts.append("batch_norm normalizes with the batch's own mean and variance, "
                         "and updates the running ones in ``state`` (a dict, changed in "
                         "place); its backward pass goes through each step of the "
                         "normalization (mu, xc, var, std, xn), the book's computational "
                         "graph, not a fused formula")
        return "Training mode: " + "; ".join(parts) + "."
    if dropout:
        parts.append("dropout is the identity")
    if prog.updates and reads_state:
        parts.append("batch_norm uses the running mean and variance in ``state`` "
                     "(init_state(), then as training left them)")
    elif prog.states:
        parts.append("it takes ``state`` as every function of this module does, but "
                     "computes nothing from it")
    return "Inference mode: " + "; ".join(parts) + "."


def with_updates(prog: Program, bindings: list[Binding]) -> list[Binding]:
    """The training pass's bindings with each state update right after the equation
    that computes it (``state["bn1_running_mean"] = 0.9 * ... + 0.1 * bn1_mu``)."""
    out = []
    for bd in bindings:
        out.append(bd)
        out.extend(u for u in prog.updates if u.sources == (bd.name,))
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
    if prog.backward:  # what a step holds in memory at least, checked before it runs
        cfg["memory"] = footprint(prog)
    accuracy, why_not = head(prog)
    if accuracy is not None:  # predict's output is a classifier's prediction of a target
        cfg["accuracy"] = accuracy
    elif why_not is not None:  # none, and a user might have expected one: why
        cfg["no_accuracy"] = why_not
    return cfg


def format_source(text: str) -> str:
    """``text`` formatted by black (py310 target), remembered by content and by which
    black is installed, so recompiling an unchanged spec does not even import black."""
    from ..cache import memo_text

    def run_black() -> str:
        import black

        mode = black.Mode(target_versions={black.TargetVersion.PY310})
        try:
            return black.format_str(text, mode=mode)
        except black.InvalidInput as e:  # a bug in bpc, never in the spec
            raise SpecError(Diagnostic(f"internal error: generated code does not parse "
                                       f"({e})", None)) from e

    def same_program(formatted: str) -> bool:
        """A remembered output is used only when it is the same Python program as
        ``text`` (black changes layout, never the syntax tree): the cache folder is
        writable, and whatever is read back from it becomes the generated module."""
        expected = _ast_dump(text)
        return expected is not None and _ast_dump(formatted) == expected

    return memo_text("black", f"{_black_identity()} py310\n{text}", run_black,
                     same_program)


@functools.lru_cache(maxsize=4)
def _ast_dump(source: str) -> str | None:
    import ast as pyast

    try:
        return pyast.dump(pyast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _black_identity() -> str:
    """Which black would run (its file and that file's modification time), without the
    cost of importing it or reading package metadata."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("black")
    origin = spec.origin if spec and spec.origin else "black"
    try:
        return f"{origin}:{os.stat(origin).st_mtime_ns}"
    except OSError:
        return origin
