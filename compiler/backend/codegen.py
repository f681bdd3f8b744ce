"""Code generation: an optimized ``Program`` -> a standalone NumPy module (source text).

The Jinja template ``templates/module.py.j2`` decides how the module looks; this module
fills it: the constants (shapes, ``CONFIG`` from ``config.py``), the helpers the
functions call, the initial values, and the functions (``functions.py``), whose bodies
(``body.py``) are the statements of ``printer.schedule`` (what is computed, in which
order, with which temporaries) written as ``buffers.plan`` says (which dead buffers are
reused in place, which large intermediates are released early). Spec text reaches the
output only as validated identifiers, numbers printed with ``repr`` (as black spells
them), ``repr``-quoted data (paths, names in dictionaries) and comments made of printable
ASCII (``printer.safe_comment``).
The result is in black's style, written directly (``pyfmt``; black lays out only a
statement of a shape pyfmt does not cover, on its own) and is byte-identical for the same
spec. Nothing read back from a file decides it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .config import config_of
from .body import _body, _wrapped
from .functions import (_Function, _data_args, _keywords, _loss_function, _mode_functions,
                        _mode_note, _needed, _numbers, _return_own, _signature, param, returns,
                        with_updates, SCALE, SCALE_NOTE)
from ..errors import Diagnostic, SpecError
from ..ir import Binding, Program
from ..ir.primitives import format_number
from .printer import Printer, safe_comment
from .pyfmt import LINE_LENGTH, Code, call, literal, needs_black, string
from .targets import TORCH, Target, check_names, target


@dataclass(frozen=True)
class GeneratedModule:
    """A module's source text; the IR binding each line of it was printed from
    (``origins``: 1-based line number -> binding name), for source maps; and the line
    each function starts at (``starts``: name -> its ``def`` line). Both empty when black
    had to lay the whole module out (its lines then move)."""
    text: str
    origins: dict[int, str]
    starts: dict[str, int]


@functools.lru_cache(maxsize=2)
def _template(name: str = "module.py.j2"):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, undefined=jinja2.StrictUndefined)
    return env.get_template(name)


def _shape_literal(shape) -> tuple:
    return tuple(shape)


STYLE_NOTES = {
    "fast": "Gradients\nmay share memory with each other or with forward values: "
            "treat them as read-only.",
    "textbook": "This is the\ntextbook style: every value is a new array, nothing is "
                "overwritten or released\n(the fast style, which bpc train runs, reuses "
                "buffers).",
}


def generate(prog: Program, source: str | None = None, fmt: bool = True,
             style: str = "fast", inference: Program | None = None,
             target_name: str = "numpy") -> str:
    """The module's source text (``generate_module``'s ``text``)."""
    return generate_module(prog, source, fmt, style, inference, target_name).text


def generate_module(prog: Program, source: str | None = None, fmt: bool = True,
                    style: str = "fast", inference: Program | None = None,
                    target_name: str = "numpy") -> GeneratedModule:
    """The module's source text and its line origins, in the ``fast`` style (buffers
    reused in place, released early) or the ``textbook`` style (one plain assignment per
    step).
    ``inference``: the program in inference mode when it differs from ``prog`` (training
    mode: dropout, batch norm). ``predict`` is written from it; ``loss`` and
    ``loss_and_grad`` take the keyword ``training`` and compute either mode: each is
    written in its default mode (``loss`` inference, ``loss_and_grad`` training), handing
    the other mode to a private function (``_loss_training``,
    ``_loss_and_grad_inference``). ``target_name``: the module's array library
    ("numpy" or "torch", ``targets.py``)."""
    if style not in STYLE_NOTES:
        raise ValueError(f"unknown code style {style!r}")
    t = target(target_name)
    from ..compilation import gc_paused

    with gc_paused():
        return _generate(prog, source, fmt, style, inference, t)


def _generate(prog: Program, source: str | None, fmt: bool, style: str,
              inference: Program | None, t: Target) -> GeneratedModule:
    for checked in filter(None, (prog, inference)):
        check_names(checked, t)
    source = safe_comment(source or prog.path).replace('"', "?").replace("\\", "?")
    output = prog.output or prog.loss
    infer = inference or prog
    modes = inference is not None
    stateful = bool(prog.states)

    # predict: the forward pass up to the output, in inference mode; like every call, it
    # continues the streams of a loop started from a state (LANGUAGE.md, "Stateful loops").
    streamed = [u for u in infer.updates if u.name in infer.config.get("streams", ())]
    pred_bindings = with_updates(infer.with_(updates=streamed), _needed(
        infer, [output] + [s for u in streamed for s in u.sources]))
    pred_args = _data_args(infer, pred_bindings, with_targets=False)
    p = Printer(infer, lets=style == "textbook", target=t.name, style=style)
    body, facts = _body(infer, p, pred_bindings, [output], pred_args, sections=False,
                        style=style, fmt=fmt)
    functions = [_Function(
        "predict", _keywords(_signature(infer, pred_args),
                             ["state"] * stateful + ["rng"] * facts.draws), "",
        [f"The model's output {output}, for the inputs.",
         *([_mode_note(prog, False, facts)] if modes else [])],
        body + [_return_own(infer, output, t)], facts)]

    loss_doc = f"The loss {prog.loss}"
    grad_doc = (f"The loss {prog.loss} and its gradient with respect to "
                f"{', '.join(prog.wrt) or 'nothing'}")
    grads_note = ("Given ``grads`` (arrays shaped like the gradients, by name), gradients "
                  "are computed into those arrays where possible, so a training loop "
                  "allocates nothing large.")
    if not modes:
        # One program: the module is as it always was. (A training program given alone,
        # as trace and graph do to check their values, draws in every function.)
        signature, body, facts = _loss_function(prog, style, False, fmt, t)
        functions.append(_Function(
            "loss", _keywords(signature, ["state"] * stateful + ["rng"] * facts.draws),
            returns(t, False), [loss_doc + "."], body, facts))
        signature, body, facts = _loss_function(prog, style, True, fmt, t)
        functions.append(_Function(
            "loss_and_grad", _keywords(signature, ["state"] * stateful
                                       + ["rng"] * facts.draws + [SCALE]
                                       + [param("grads", "None")] * facts.into_grads),
            returns(t, True),
            [grad_doc + ".", SCALE_NOTE, *[grads_note] * facts.into_grads], body, facts))
    else:
        functions += _mode_functions(prog, infer, style, loss_doc, grad_doc, grads_note,
                                     fmt, t)
    for fn in functions:
        fn.decorator = t.decorator
    helpers = sorted(_helpers_of(functions) | ({"_placement"} if t is TORCH else set()))

    init, state_init = (_initial_values(prog, prog.params, t),
                        _initial_values(prog, prog.states, t))
    constants = {
        "INPUTS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.inputs},
        "TARGETS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.targets},
        "PARAMS": {bd.name: _shape_literal(bd.node.shape) for bd in prog.params},
        **({"STATE": {bd.name: _shape_literal(bd.node.shape) for bd in prog.states}}
           if prog.states else {}),
        "DTYPE": Code(f"{t.lib}.{prog.dtype}"),
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
        "helpers": [t.helpers[h] for h in helpers],
        "init": init,
        "state_init": state_init,
        "state_doc": _state_doc(prog),
        "functions": functions,
        **(_module_facts(prog, infer, functions) if t is TORCH else {}),
    }
    text = _template(t.template).render(**context)
    laid_out = text
    if fmt and needs_black(text):  # a line of a shape pyfmt does not lay out
        text = layout.black(text)
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


def _module_facts(prog: Program, infer: Program, functions: list[_Function]) -> dict:
    """What the torch template's ``Model`` needs to know about the functions: whether
    they take ``state``, ``training`` and ``rng``."""
    return {"stateful": bool(prog.states), "modes": infer is not prog,
            "draws": any(f.facts.draws for f in functions)}


def _initial_values(prog: Program, bindings: list[Binding], t: Target) -> list[dict]:
    """The entries of ``init_params`` or ``init_state``: each value's formula and a
    comment saying which rule made it: a line per clause of the rule's note, each
    wrapped to fit (at 8 columns)."""
    entries = []
    for bd in bindings:
        init = prog.inits[bd.name]
        expr, comment = t.formula(init, bd.node.shape, prog.dtype)
        key = string(bd.name) + ": "
        lines = [f"        {key}{expr},"]
        if len(lines[0]) > LINE_LENGTH and init.kind in ("value", "array") \
                and isinstance(init.args["value"], (list, tuple)):
            # a given array too wide for one line: laid out as black lays it out
            dtype = Code("dtype=dtype" if t is TORCH else "dtype=DTYPE")
            lines = call(t.array_call, [_numbers(init.args["value"]), dtype], 8, key, ",")
        clauses = [f"{bd.name}: {comment}", *(init.note.split("; ") if init.note else ())]
        entries.append({"lines": lines, "comment": [
            line for clause in clauses
            for line in _wrapped(safe_comment(clause), LINE_LENGTH - 10)]})
    return entries


def _lets_used(prog: Program, functions: list[_Function]) -> dict[str, float]:
    """The ``let`` constants the functions' code reads by name, in spec order, with
    their values."""
    used = frozenset().union(*(f.facts.reads for f in functions))
    return {name: value for name, value in prog.lets.items() if name in used}


def _helpers_of(functions: list[_Function]) -> set[str]:
    """The module helpers the functions' code calls."""
    return set().union(*(f.facts.helpers for f in functions))


def _state_doc(prog: Program) -> str:
    """``init_state``'s docstring: what the states are (running statistics, streams)."""
    streams = set(prog.config.get("streams", ()))
    kinds = ["the running statistics training updates and inference reads"] * any(
        bd.name not in streams for bd in prog.states)
    if streams:
        kinds.append("the streams' start (zeros), which every call continues")
    return f"Initial state: {'; '.join(kinds)}."
