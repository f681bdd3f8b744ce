"""The module's functions: ``predict``, ``loss``, ``loss_and_grad`` (and, for a model
whose training and inference differ, the private functions of the other mode), each as a
signature, a docstring and a body (``body.py``).

What each function computes (the bindings it needs, its data arguments), how its
signature is written (defaults, keyword-only arguments, ``state``, ``rng``, ``grads``,
``training``) and what its docstring says about the modes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .body import Facts, _body, differentiated_steps
from ..ir import NAMED_LEAVES, Binding, Program, random_sites, topo_order
from ..ir.primitives import PRIMITIVES, format_number
from .printer import Printer
from .pyfmt import LINE_LENGTH, Code, call_statement, definition, literal
from .targets import NUMPY, TORCH, Target


@dataclass
class _Function:
    name: str
    signature: list[str]
    returns: str
    doc: list[str]  # paragraphs
    body: list[str]  # ``Line`` where a binding printed it
    facts: Facts  # what its statements do, read and call
    decorator: str | None = None  # the target's (torch: ``@torch.no_grad()``)

    @functools.cached_property
    def head(self) -> list[str]:
        """The decorator, the ``def`` line(s) and the docstring."""
        return [self.decorator] * bool(self.decorator) + definition(
            self.name, self.signature, self.returns) + _docstring(self.doc)

    @functools.cached_property
    def text(self) -> str:
        """The whole function, in black's layout (written once: the template and the
        line map both read it)."""
        return "\n".join(self.head + _indented(self.body))

    def origins(self) -> list[str | None]:
        """The binding each line of ``text`` was printed from (None: none)."""
        return [None] * len(self.head) + [getattr(line, "origin", None) for line in self.body]


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


class Param(str):
    """A parameter with a default, as the signature prints it (``tax=1.1``), that knows
    its ``name``: a call passing it on is made from the name, not from the text."""

    name: str


def param(name: str, default: str) -> Param:
    item = Param(f"{name}={default}")
    item.name = name
    return item


# ``loss_and_grad``'s seed of the backward pass, dL/dL (``ops.arithmetic.SEED_NAME``):
# every gradient comes out multiplied by it. A training loop passes -lr and adds them.
SCALE = param("scale", "1.0")
SCALE_NOTE = ("``scale`` multiplies every gradient (the backward pass starts from dL/dL = "
              "scale): an SGD step passes ``-lr`` and adds them to the parameters.")


def _signature(prog: Program, args: list[Binding]) -> list[str]:
    """``params`` and the data arguments in declaration order (inputs, then targets).

    Python needs defaults last: when an input with a default would precede one without,
    the inputs with defaults become keyword-only (``*, tax=1.1``) instead."""
    names = [bd.name for bd in args]
    required = [n for n in names if n not in prog.defaults]
    defaulted = [param(n, _default_text(prog.defaults[n])) for n in names if n in prog.defaults]
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


def _return_own(prog: Program, name: str, t: Target = NUMPY) -> str:
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
            if t is TORCH:
                return f"return {name}.clone()  # the caller's own tensor otherwise"
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
        arg = item.name if isinstance(item, Param) else item
        parts.append(f"{arg}={arg}" if keyword else arg)
    return f"{name}({', '.join(parts)})"


def _handed_on(name: str, signature: list[str]) -> list[str]:
    """``return name(...)`` under a mode's ``if`` (8 columns), passing the function's own
    arguments on, laid out as black would (lines relative to the body's 4 columns)."""
    line = f"return {_call(name, signature)}"
    return [text[4:] for text in call_statement(line, 8) or [" " * 8 + line]]


def _returned_loss(prog: Program, t: Target) -> str:
    """How a function returns the loss: a Python float from NumPy, a 0-d tensor (in the
    dtype, on the device) from torch, which need not wait for the device to finish."""
    if t is NUMPY:
        return f"float({prog.loss})"
    node = next(bd.node for bd in prog.forward if bd.name == prog.loss)
    return prog.loss if node.is_array else \
        f"torch.as_tensor({prog.loss}, dtype=dtype, device=device)"


def _loss_function(prog: Program, style: str, gradient: bool, fmt: bool = True,
                   t: Target = NUMPY):
    """(data signature, body, facts) of the loss, or of the loss and its gradient, as
    ``prog`` computes them: what the loss needs, every equation that updates state or
    draws a mask (whole, in spec order), and with ``gradient`` the backward pass."""
    bindings = with_updates(prog, _needed(prog, [prog.loss] + [
        s for u in prog.updates for s in u.sources]))
    args = _data_args(prog, bindings, with_targets=True)
    p = Printer(prog, lets=style == "textbook", target=t.name, style=style)
    if not gradient:
        body, facts = _body(prog, p, bindings, [prog.loss], args, sections=False,
                            style=style, fmt=fmt)
        return _signature(prog, args), body + [f"return {_returned_loss(prog, t)}"], facts
    into = {}
    for w in prog.wrt if style == "fast" else ():
        # a gradient is computed into the caller's buffer when given one
        into.setdefault(prog.grads[w], f'grads.get("{w}")')
    grad_order = [prog.grads[w] for w in prog.wrt]
    body, facts = _body(prog, p, bindings + prog.backward, [prog.loss] + grad_order, args,
                        sections=True, into=into, style=style, fmt=fmt)
    returned = {w: Code(prog.grads[w]) for w in prog.wrt}
    body += [""] + [line[4:] for line in literal(returned, 4,
                                                 f"return {_returned_loss(prog, t)}, ")]
    return _signature(prog, args), body, facts


def rng_guard(t: Target) -> list[str]:
    return ["if rng is None:",
            f'    raise TypeError("training mode needs rng ({t.generator})")']


def returns(t: Target, gradient: bool) -> str:
    """A loss function's return annotation."""
    return f" -> tuple[{t.scalar}, dict[str, {t.array}]]" if gradient else f" -> {t.scalar}"


def _mode_functions(prog: Program, infer: Program, style: str, loss_doc: str,
                    grad_doc: str, grads_note: str, fmt: bool = True,
                    t: Target = NUMPY) -> list[_Function]:
    """``loss`` and ``loss_and_grad`` of a module with modes, each taking ``training``:
    ``loss`` written in inference mode, ``loss_and_grad`` in training mode, each handing
    the other mode to a private function written from the other program."""
    state = ["state"] * bool(prog.states)
    sig_infer, body_infer, f_infer = _loss_function(infer, style, False, fmt, t)
    sig_train, body_train, f_train = _loss_function(prog, style, False, fmt, t)
    gsig_train, gbody_train, g_train = _loss_function(prog, style, True, fmt, t)
    gsig_infer, gbody_infer, g_infer = _loss_function(infer, style, True, fmt, t)
    draws = f_train.draws or g_train.draws
    rng_public = [param("rng", "None")] * draws
    guard = rng_guard(t) if draws else []
    grads = [param("grads", "None")] * (g_train.into_grads or g_infer.into_grads)
    seed = [SCALE]

    training_loss = _keywords(sig_train, state + ["rng"] * f_train.draws)
    inference_grad = _keywords(gsig_infer, state + seed
                               + [param("grads", "None")] * g_infer.into_grads)
    training_doc = _mode_note(prog, True, g_train, t=t)
    training_loss_doc = _mode_note(prog, True, f_train, gradient=False, t=t)
    inference_doc = _mode_note(prog, False, f_infer)
    return [
        _Function("loss", _keywords(sig_infer, state + [param("training", "False"),
                                                        *rng_public]),
                  returns(t, False),
                  [loss_doc + ".",
                   f"By default (``training=False``) {_lower(inference_doc)}",
                   f"With ``training=True``: the loss ``loss_and_grad`` differentiates "
                   f"by default. {training_loss_doc}"],
                  ["if training:", *_handed_on("_loss_training", training_loss),
                   *body_infer], f_infer),
        _Function("loss_and_grad",
                  _keywords(gsig_train, state + [param("training", "True"), *rng_public,
                                                 *seed, *grads]),
                  returns(t, True),
                  [grad_doc + ".", f"By default (``training=True``) {_lower(training_doc)}",
                   f"With ``training=False``: the gradient of ``loss()``. "
                   f"{_mode_note(prog, False, g_infer)}", SCALE_NOTE,
                   *[grads_note] * bool(grads)],
                  ["if not training:", *_handed_on("_loss_and_grad_inference", inference_grad),
                   *guard, *gbody_train], g_train),
        _Function("_loss_training", training_loss, returns(t, False),
                  [f"{loss_doc} in training mode: ``loss(..., training=True)``.",
                   training_loss_doc], guard + body_train, f_train),
        _Function("_loss_and_grad_inference", inference_grad, returns(t, True),
                  [f"{grad_doc} in inference mode: ``loss_and_grad(..., "
                   f"training=False)``, the gradient of ``loss()``.",
                   _mode_note(prog, False, g_infer)], gbody_infer, g_infer),
    ]


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _mode_note(prog: Program, training: bool, facts: Facts, gradient: bool = True,
               t: Target = NUMPY) -> str:
    """What a function's mode means for this model (a docstring paragraph); ``gradient``:
    the function has a backward pass."""
    dropout = bool(random_sites(prog))
    streams = prog.config.get("streams", ())
    statistics = any(u.name not in streams for u in prog.updates)
    parts = []
    if streams and facts.reads_state:
        parts.append("its loops continue the streams in ``state`` and leave their last "
                     "steps there")
    if training:
        if dropout:
            parts.append(f"dropout's masks are drawn from ``rng`` ({t.generator})"
                         + ("; the backward pass reuses them" if gradient else ""))
        if facts.updates_state and statistics:
            parts.append("batch_norm normalizes with the batch's own mean and variance, "
                         "and updates the running ones in ``state`` (a dict, changed in "
                         "place)" + (_batch_norm_backward(prog) if gradient else ""))
        return "Training mode: " + "; ".join(parts) + "."
    if dropout:
        parts.append("dropout is the identity")
    if statistics and facts.reads_state:
        parts.append("batch_norm uses the running mean and variance in ``state`` "
                     "(init_state(), then as training left them)")
    elif prog.states and not (streams and facts.reads_state):
        parts.append("it takes ``state`` as every function of this module does, but "
                     "computes nothing from it")
    return "Inference mode: " + "; ".join(parts) + "."


def _batch_norm_backward(prog: Program) -> str:
    if differentiated_steps(prog):
        return ("; its backward pass goes through each step of the normalization (mu, xc, "
                "var, std, xn), the book's computational graph, not a fused formula")
    return ("; its backward pass is the closed form, dx = gamma / std * (g - mean(g) - xn * "
            "mean(g * xn)), from xn and std alone")


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
