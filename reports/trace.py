"""``bpc trace``: a worked example with numbers, as the textbooks print one.

Every value of the forward pass and every adjoint of the backward pass, in derivation
order, at one point (``--at x=2.3,y=2.0``, a row of the spec's data, or a seeded random
draw); for a statement whose operands are scalars, the step is written out again with
numbers in place of names (``dl_df2 = -sin(f2) × dl_dh3 = (-0.753676) × 2.23361 =
-1.68339``), built by the same primitive table that prints the code, so every operation
of the language is covered without a special case. With ``step=True`` the parameter
update of one optimizer step follows.

A model with state (batch norm) is traced in training mode, as ``loss_and_grad`` runs:
the point is a small batch (``BATCH_ROWS`` examples: statistics over one example are
zero), the batch statistics are steps of their own (``bn1_mu``, ``bn1_xc``, ``bn1_var``,
``bn1_std``, ``bn1_xn`` and their adjoints), and the running statistics' update is shown
from the state the trace starts at (``init_state()``) to the state after the step
(``bn1_running_mean+``), checked against what the module writes into its ``state``.

The statements are the textbook-style generated code's (``printer.schedule``); their
values come from the IR evaluator and are checked against the generated module before
anything is shown: the loss and every gradient must equal ``loss_and_grad``'s, or the
trace refuses to print (an internal error), so a trace never shows a wrong number.
"""

from __future__ import annotations

import ast as pyast
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..compiler.compilation import Compilation
from ..compiler.ir import Program
from ..compiler.ir.primitives import ATOM, PRIMITIVES
from ..runtime.errors import UserError
from ..runtime.loader import compiled_model
from ..runtime.modes import fixed_masks
from ..runtime.points import check_memory, check_point, contract

SMALL = 12  # values with at most this many entries are printed in full
LOOP_STEPS = 4  # the length of a random sequence a loop over time steps through
BATCH_ROWS = 4  # examples of a trace of a model with batch statistics (batch norm)


def fmt(v: float, digits: int = 6) -> str:
    """A number as the trace prints it: ``digits`` significant digits, no '+'."""
    v = float(np.asarray(v).reshape(()))
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def summarize(value, digits: int = 4) -> str:
    """A value for a label: a scalar as a number, a small tensor in full, a larger one
    as its shape, norm, min and max (never a mean alone, which is about 0 for many
    gradients that are not). A loop's results (a tuple) are named by their shapes."""
    if isinstance(value, tuple):
        return "a loop's results " + ", ".join(
            "[" + ", ".join(map(str, np.shape(v))) + "]" for v in value)
    a = np.asarray(value, dtype=float)
    if a.size == 1:
        return fmt(a.reshape(()), digits)
    if a.size <= SMALL and a.ndim <= 2:
        return np.array2string(a, precision=digits, separator=", ", max_line_width=10**6,
                               formatter={"float_kind": lambda x: fmt(x, digits)}
                               ).replace("\n", "").replace(",  ", ", ").replace(", [", ", [")
    shape = "×".join(map(str, a.shape))
    if a.size == 0:
        return f"[{shape}] empty"
    return (f"[{shape}] norm {fmt(np.linalg.norm(a), 3)}, min {fmt(np.min(a), 3)}, "
            f"max {fmt(np.max(a), 3)}")


def mathy(expr: str) -> str:
    """Generated NumPy text as a reader writes it: ``np.sin(f2)`` -> ``sin(f2)``,
    ``a * b`` -> ``a × b``."""
    expr = re.sub(r"\bnp\.", "", expr)
    expr = re.sub(r"\b_(sigmoid|logsumexp|softplus)\(", r"\1(", expr)
    return expr.replace(" * ", " × ").replace(" @ ", " @ ")


@dataclass
class Line:
    name: str
    section: str  # "point", "forward", "state", "backward", "update"
    expr: str  # the statement's right-hand side as generated (NumPy text)
    value: np.ndarray
    numeric: str | None = None  # the right-hand side with numbers for operands (Python)
    source: str | None = None  # the spec text this step comes from
    spec_line: int | None = None
    step: int | None = None  # a loop's step t this value is of

    def text(self, digits: int = 6) -> str:
        if self.value is None:  # a note: a loop's header, steps left out
            return self.name
        assign = " " if self.name.endswith("=") else " = "  # a loop's 'dL_dWh +='
        head = f"{self.name}{assign}{mathy(self.expr)}" if self.expr else self.name
        if self.numeric is not None:
            head += f" = {mathy(self.numeric)}"
        return f"{head} = {summarize(self.value, digits)}"


@dataclass
class Trace:
    model: str
    point: str  # where: "x=2.3, y=2" or "row 3 of data" or "seed 0"
    lines: list[Line] = field(default_factory=list)
    loss: float = float("nan")
    loss_name: str = ""
    optimizer: str = ""
    streams: tuple[str, ...] = ()  # states loops continue (CONFIG["streams"]), not statistics

    def section(self, name: str) -> list[Line]:
        return [ln for ln in self.lines if ln.section == name]


# -- the point ---------------------------------------------------------------------------

def parse_at(text: str) -> dict[str, object]:
    """``x=2.3,y=2.0`` or ``x=[0.05,0.1],t=[0.01,0.99]``: names to numbers or lists; a
    matrix also as a spec writes one, rows separated by ``;`` (``x=[0.1, 0.2; 0.3, 0.4]``)."""
    out: dict[str, object] = {}
    depth, start, parts = 0, 0, []
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for part in parts:
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise UserError(f"--at {text}: '{part.strip()}' is not NAME=VALUE",
                            "write e.g. --at x=2.3,y=2.0 or --at 'x=[0.05,0.1]'")
        if name in out:
            raise UserError(f"--at {text}: '{name}' is given twice")
        try:
            parsed = pyast.literal_eval(_nested(value.strip()))
            if not _numbers(parsed):  # True is not 1.0, nor "1" one
                raise TypeError
            arr = np.asarray(parsed, dtype=float)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise UserError(f"--at {text}: the value of '{name}' is not a number or a "
                            f"list of numbers: {value.strip()!r}") from None
        out[name] = arr
    return out


def _nested(value: str) -> str:
    """The spec language's matrix literal ``[1, 2; 3, 4]`` as nested lists ``[[1, 2], [3,
    4]]``; anything else as it is."""
    if value.startswith("[") and value.endswith("]") and ";" in value \
            and "[" not in value[1:-1] and "]" not in value[1:-1]:
        return "[" + ", ".join(f"[{row}]" for row in value[1:-1].split(";")) + "]"
    return value


def _numbers(value) -> bool:
    """A number (not a boolean), or nested lists of them."""
    if isinstance(value, (list, tuple)):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def batch_rows(prog: Program) -> int:
    """Examples in a trace's point: one, or ``BATCH_ROWS`` when the model normalizes with
    batch statistics (a training program that updates state: batch norm), whose
    normalized values over a single example would all be 0."""
    return BATCH_ROWS if prog.updates else 1


def point(comp: Compilation, at: dict | None = None, row: int | None = None,
          seed: int = 0) -> tuple[dict, dict, str]:
    """(feeds, params, description) for the spec compiled as ``comp``: parameters from
    their initializers (given values stay as given; random ones drawn with ``seed``),
    one data point (random N(0, 1), a row of the spec's data, or given by ``at``), then
    ``at`` overrides any of them. A model with batch statistics gets a batch of
    ``batch_rows(prog)`` examples (rows K, K+1, … of the data), or as many as the values
    ``at`` gives."""
    from ..compiler.ir.evaluate import initial_params, random_feeds
    from ..compiler.ir.ops.recurrence import time_axes

    prog = comp.ir

    leaves = {bd.name: bd for bd in prog.inputs + prog.targets + prog.params}
    rows = batch_rows(prog)
    for name, value in (at or {}).items():  # a batch given: the random rest matches it
        bd = leaves.get(name)
        shape = bd.node.shape if bd is not None and bd.kind != "param" else ()
        value = np.asarray(value)
        if shape and isinstance(shape[0], str) and value.ndim in (len(shape) - 1,
                                                                   len(shape)):
            rows = value.shape[0] if value.ndim == len(shape) else 1  # else one example
            break
    declared = contract(comp.program)  # what the module declares, for the checks below
    check_memory(declared, rows, "a worked example", "")
    rng = np.random.default_rng(seed)
    params = initial_params(prog, rng)
    feeds = random_feeds(prog, rng, rows, dict.fromkeys(time_axes(prog), LOOP_STEPS))
    random = bool(feeds) or any(prog.inits[bd.name].kind not in ("value", "array", "zeros",
                                                                   "ones", "constant")
                                for bd in prog.params)
    where = f"seed {seed}" if random else "the spec's own values"
    if feeds and rows > 1:
        where = f"a batch of {rows}, {where}"
    if row is not None:
        module = compiled_model(comp, comp.path)
        feeds, where = _row(prog, row, seed, module, batch_rows(prog))
    for name, value in (at or {}).items():
        bd = leaves.get(name)
        if bd is None:
            known = ", ".join(leaves) or "none"
            raise UserError(f"--at: '{name}' is not an input, target or parameter of "
                            f"{prog.name}", f"these are: {known}")
        shape = bd.node.shape
        value = np.asarray(value, dtype=float)
        if value.ndim == len(shape) - 1 and shape and isinstance(shape[0], str):
            value = value[None]  # one example: the batch axis is added
        concrete = tuple(value.shape[i] if isinstance(d, str) and i < value.ndim else d
                         for i, d in enumerate(shape))
        if value.shape != concrete:
            raise UserError(f"--at: '{name}' has shape {list(shape)} in the spec, the "
                            f"value given has shape {list(value.shape)}")
        (params if bd.kind == "param" else feeds)[name] = value
    if at:  # checked as bpc train checks its data: the same function, the same messages
        given = {k for k in at if leaves[k].kind != "param"}
        checked = check_point(declared, feeds,
                              {k: params[k] for k in at if k not in given})
        for name in given:
            if leaves[name].node.dtype == "int":
                feeds[name] = checked[name]
    if at:
        where = ", ".join(f"{k}={summarize(v, 6)}" for k, v in at.items()) + \
            ("" if row is None else f" ({where})")
    if prog.updates and rows == 1 and feeds:
        where += (" (one example: batch_norm's batch statistics over it normalize every "
                  "value to 0; give several rows, e.g. x=[[…],[…]])")
    return feeds, params, where


def _row(prog: Program, row: int, seed: int, module, rows: int = 1) -> tuple[dict, str]:
    """Rows ``row`` … ``row + rows - 1`` of the spec's training data, as training sees
    them (conformed to the module: labels as one-hot rows where the spec wants them,
    along each array's batch axis)."""
    from ..runtime.data import batch_axes, examples, training_examples

    config = getattr(module, "CONFIG", {}) or {}
    if not config.get("data"):
        raise UserError(f"--row: {prog.name} has no 'data' line to take a row from",
                        "give the point with --at NAME=VALUE instead")
    data, count, _ = training_examples(module, None, seed)
    axes = batch_axes(module)
    if row < 0 or row + rows > count:
        raise UserError(f"--row {row}: the data has rows 0 to {count - 1}"
                        + ("" if rows == 1 else f"; a batch of {rows} from row K "
                           f"(batch_norm normalizes over the batch) needs K from 0 "
                           f"to {count - rows}"))
    picked = examples(data, axes, slice(row, row + rows))
    feeds = {bd.name: picked[bd.name] for bd in prog.inputs + prog.targets
             if bd.name in picked}
    if rows > 1:
        return feeds, f"rows {row} to {row + rows - 1} of the spec's data"
    return feeds, f"row {row} of the spec's data"


# -- the trace ---------------------------------------------------------------------------

def _statements(prog: Program):
    """The textbook code's statements: the forward pass with each state update right
    after the equation that computes it (as ``loss_and_grad`` writes it), the backward
    pass."""
    from ..compiler.backend.functions import with_updates
    from ..compiler.backend.printer import Printer, schedule

    return schedule(prog, with_updates(prog, prog.forward) + list(prog.backward),
                    Printer(prog), early_masks=False)


def with_numbers(node, values, digits: int = 6) -> str | None:
    """The operation of ``node`` printed with its operands' numbers (Python text), when
    every operand is one number; None otherwise."""
    if not node.args or node.op in ("input", "param", "const"):
        return None
    args = []
    for a in node.args:
        v = np.asarray(values[a.id])
        if v.size != 1 or v.dtype == bool:
            return None
        text = fmt(v.reshape(()), digits)
        if not math.isfinite(float(v.reshape(()))):
            return None
        args.append((f"({text})" if text.startswith("-") else text, ATOM))
    try:
        return PRIMITIVES[node.op].emit(args, dict(node.attrs), node)[0]
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # an op whose printing needs more than its operands' text


def trace(comp: Compilation, feeds: dict, params: dict, where: str = "",
          step: bool = False, module=None, digits: int = 6,
          state: dict | None = None) -> Trace:
    """The worked example at ``feeds``/``params`` of the optimized program; a model with
    state starts from ``state`` (default: the initial state) and is traced in training
    mode. Its values are checked against ``module``, by default the textbook-style
    module of ``comp``."""
    from ..compiler.ir.evaluate import evaluate_nodes, initial_state
    from ..compiler.backend.printer import source_text
    from .trace_loops import loop_lines, loop_results

    prog = comp.program
    statements = _statements(prog)
    state = initial_state(prog) if state is None else state
    with np.errstate(all="ignore"):
        values = evaluate_nodes(prog, feeds, params, [st.node for st in statements]
                                + loop_results(prog, statements), state=state)
    module = module or comp.restyled("textbook").module
    _agree(prog, module, feeds, params, values, state)
    forward = {bd.name: bd for bd in prog.forward}
    backward = {bd.name: bd for bd in prog.backward}
    updated_by = {u.name: forward.get(u.sources[0]) for u in prog.updates if u.sources}
    out = Trace(prog.name, where, loss_name=prog.loss,
                streams=tuple(prog.config.get("streams", ())))
    for bd in prog.inputs + prog.targets + prog.params + prog.states:
        value = params[bd.name] if bd.kind == "param" else state[bd.name] \
            if bd.kind == "state" else feeds.get(bd.name, prog.defaults.get(bd.name))
        out.lines.append(Line(bd.name, "point", "", np.asarray(value, dtype=float),
                              spec_line=bd.span.line if bd.span else None))
    section = "forward"
    for st in statements:
        if st.kind == "update":  # training mode's new running statistic
            origin = updated_by.get(st.name)
            out.lines.append(Line(f"{st.name}+", "state", st.expr,
                                  np.asarray(values[st.node.id], dtype=float),
                                  None if st.alias else with_numbers(st.node, values, digits),
                                  source_text(prog, origin) if origin else None,
                                  origin.span.line if origin and origin.span else None))
            continue
        bd = forward.get(st.name) or backward.get(st.name)
        if st.name in backward:
            section = "backward"  # and every statement after it (temporaries too)
        source, line = None, None
        if st.name in forward:
            source = source_text(prog, forward[st.name])
            line = forward[st.name].span.line if forward[st.name].span else None
        elif bd is not None and bd.sources:
            first = forward.get(bd.sources[0])
            source = " and ".join(dict.fromkeys(  # batch norm's steps share one line
                source_text(prog, forward[s]) or s for s in bd.sources if s in forward))
            line = first.span.line if first is not None and first.span else None
        if st.kind == "loop":
            out.lines += loop_lines(prog, st, values, section, source, line, digits)
            continue
        numeric = None if st.alias else with_numbers(st.node, values, digits)
        out.lines.append(Line(st.name, section, st.expr,
                              np.asarray(values[st.node.id], dtype=float),
                              numeric, source, line))
    out.loss = float(np.asarray(values[forward[prog.loss].node.id]))
    if step:
        out.lines += _update(prog, module, params, values, out, digits)
    return out


def _agree(prog: Program, module, feeds: dict, params: dict, values: dict,
           state: dict | None = None) -> None:
    """The generated module's loss and gradients equal the evaluator's, or stop; for a
    model with state, also the state ``loss_and_grad`` leaves (from a copy of ``state``,
    default ``init_state()``) and the evaluator's updates."""
    from ..compiler.ir.evaluate import evaluate_nodes

    args = {k: v for k, v in feeds.items()
            if k in module.INPUTS or k in module.TARGETS}
    keywords = fixed_masks(module, state=state)  # both start from init_state() when None
    with np.errstate(all="ignore"):
        loss, grads = module.loss_and_grad({k: np.array(v) for k, v in params.items()},
                                           **args, **keywords)
    by_name = {bd.name: bd for bd in prog.forward + prog.backward}
    pairs = [(prog.loss, loss)] + [(prog.grads[w], grads[w]) for w in prog.wrt]
    if prog.updates and "state" in keywords:
        missing = [bd.node for bd in prog.updates if bd.node.id not in values]
        if missing:
            with np.errstate(all="ignore"):
                values = {**values, **evaluate_nodes(
                    prog, feeds, params, [bd.node for bd in prog.forward] + missing,
                    state=state)}
        for bd in prog.updates:
            by_name[f"{bd.name}+"] = bd
            pairs.append((f"{bd.name}+", keywords["state"][bd.name]))
    # The same operations, maybe summed in another order (a library's matmul blocking):
    # the two may differ by rounding, which scales with the machine epsilon of the
    # program's dtype and with the magnitudes a value is computed from — not with the
    # value itself, which may be rounding noise around 0 (a bias before batch norm has a
    # gradient of exactly 0 in exact arithmetic: a sum of terms of size 100 that cancel).
    eps = float(np.finfo(np.dtype(prog.dtype)).eps)
    rtol = math.sqrt(eps)  # what a chain of rounded steps may accumulate: 1.5e-8 / 3.5e-4
    exact = _in_wider_float(prog, feeds, params, [by_name[name].node for name, _ in pairs],
                        state)
    for name, got in pairs:
        node = by_name[name].node
        want = np.asarray(values[node.id], dtype=float)
        atol = ROUNDING_ULPS * eps * rounding_scale(node, values)
        if exact is not None and want.size:
            # Below float64 the evaluator's own distance from the same steps in float64
            # measures what rounding does to this value, amplification included (batch
            # norm of a small batch divides by a small std; a gradient batch norm makes
            # exactly 0 is all rounding): two computations in the program's dtype may
            # differ by several times the largest of it, a wrong step by far more.
            atol = atol + NOISE_FACTOR * float(np.nanmax(np.abs(want - exact[node.id])))
        if not np.all(np.isclose(np.asarray(got, dtype=float), want, rtol=rtol, atol=atol,
                                 equal_nan=True)):
            raise RuntimeError(f"the generated module and the IR evaluator disagree on "
                               f"{name}; the trace is not shown")


def _in_wider_float(prog: Program, feeds: dict, params: dict, nodes, state) -> dict | None:
    """``nodes``' values from the evaluator in a wider float (float64 for a float32
    program, the platform's long double for a float64 one; None where there is none or
    it cannot run): the reference the program's own rounding is measured against."""
    import dataclasses

    from ..compiler.ir.evaluate import evaluate_nodes

    wider = np.float64 if np.dtype(prog.dtype) != np.float64 else np.longdouble
    if np.finfo(wider).eps >= np.finfo(np.dtype(prog.dtype)).eps:
        return None  # no wider float here (a longdouble that is float64)
    wide = dataclasses.replace(prog, dtype=np.dtype(wider).name)

    def widened(arrays: dict) -> dict:
        return {k: (np.asarray(v, dtype=wider)
                    if np.issubdtype(np.asarray(v).dtype, np.floating) else v)
                for k, v in arrays.items()}
    try:
        with np.errstate(all="ignore"):
            return evaluate_nodes(wide, widened(feeds), widened(params), nodes,
                                  state=None if state is None else widened(state))
    except Exception:  # noqa: BLE001 - the check then falls back on the scale alone
        return None


ROUNDING_ULPS = 64  # rounding errors allowed, in units of the scale's last place
NOISE_FACTOR = 16  # below float64: times the evaluator's measured distance from float64
PRODUCTS = {"matmul", "filters_matmul", "batch_gram", "outer", "mul"}
CONTRACTIONS = {"matmul", "filters_matmul", "batch_gram"}


def rounding_scale(node, values: dict) -> float:
    """How large the rounding error of ``node``'s value may be, before the machine
    epsilon: the magnitude of what its last operation combines (the largest |argument|,
    or their product for a product) times how many terms it adds up (a sum over 4
    examples: 4; ``A @ B``: the contracted length), and never less than |value|."""
    from ..compiler.ir.primitives import PRIMITIVES

    value = np.asarray(values.get(node.id, 0.0), dtype=float)
    scale = float(np.max(np.abs(value))) if value.size else 0.0
    moved = PRIMITIVES[node.op].viewed(node) if node.op in PRIMITIVES else ()
    if moved:  # values moved, not computed (a reshape of a sum): the rounding they carry
        return max([scale] + [rounding_scale(node.args[k], values) for k in moved
                              if node.args[k].id in values])
    # A loop's results (a tuple, one array per step equation) are taken apart, not combined.
    args = [np.asarray(values[a.id], dtype=float) for a in node.args
            if a.id in values and not isinstance(values[a.id], tuple)]
    args = [a for a in args if a.size and np.all(np.isfinite(a))]
    if not args:
        return scale
    sizes = [a.size for a in args]
    biggest = [float(np.max(np.abs(a))) for a in args]
    if node.op in PRODUCTS:
        magnitude = float(np.prod(biggest))
        terms = math.sqrt(float(np.prod(sizes)) / max(value.size, 1)) \
            if node.op in CONTRACTIONS and len(args) == 2 else 1.0
    else:
        magnitude = max(biggest)
        terms = max(sizes) / max(value.size, 1)
    return max(scale, magnitude * max(terms, 1.0))


def _update(prog: Program, module, params: dict, values: dict, out: Trace,
            digits: int = 6) -> list[Line]:
    """One optimizer step from the spec's optimizer, as ``bpc train`` takes it."""
    from ..runtime.optimizers import make_optimizer

    config = dict((getattr(module, "CONFIG", {}) or {}).get("optimizer")
                  or {"name": "sgd", "lr": 0.01})
    name = config.pop("name", "sgd")
    config = {k: v for k, v in config.items()
              if k not in ("schedule", "gamma", "step", "min_lr")}
    new = {k: np.array(v, dtype=float) for k, v in params.items()}
    by_name = {bd.name: bd for bd in prog.backward}
    grads = {w: np.array(values[by_name[prog.grads[w]].node.id], dtype=float)
             for w in prog.wrt if w in new}
    if not grads:
        return []
    opt = make_optimizer(name, {k: new[k] for k in grads}, **config)
    lr = float(config.get("lr", opt.lr))
    plain = name == "sgd" and not config.get("weight_decay") and not config.get("clip")
    opt.step({k: new[k] for k in grads}, grads)
    out.optimizer = f"{name}(lr={fmt(lr)})"
    lines = []
    for w in grads:
        g, p = prog.grads[w], np.asarray(params[w], dtype=float)
        expr = f"{w} - {fmt(lr)} * {g}" if plain else f"{name} step of {w} with {g}"
        numeric = None
        if plain and p.size == 1:
            numeric = (f"{_paren(fmt(p, digits))} - {fmt(lr, digits)} * "
                       f"{_paren(fmt(grads[w], digits))}")
        lines.append(Line(f"{w}+", "update", expr, new[w], numeric))
    return lines


def _paren(text: str) -> str:
    return f"({text})" if text.startswith("-") else text


def format_trace(tr: Trace, digits: int = 6) -> str:
    titles = {"point": "the point", "forward": "forward pass",
              "state": "running statistics (state): training mode updates them, "
                       "inference mode normalizes with them; name+ is the new value",
              "backward": "backward pass (chain rule, derivation order)",
              "update": f"one {tr.optimizer} step"}
    state = tr.section("state")
    if state and all(ln.name.rstrip("+") in tr.streams for ln in state):
        titles["state"] = ("state: the loops' last steps, which the next call continues "
                           "from; name+ is the new value")
    lines = [f"{tr.model}: worked example at {tr.point}"]
    if state and titles["state"].startswith("running"):
        lines.append("training mode: batch_norm normalizes with this batch's own mean and "
                     "variance")
    last_source = None
    for section in ("point", "forward", "state", "backward", "update"):
        rows = tr.section(section)
        if not rows:
            continue
        lines += ["", f"# {titles[section]}"]
        step = None
        for ln in rows:
            if section == "backward" and ln.source and ln.source != last_source:
                lines.append(f"  # {ln.source}")
                last_source = ln.source
            indent = "    " if section == "backward" else "  "
            if ln.step is not None and ln.step != step:
                lines.append(f"{indent}  t = {ln.step}:")
            step = ln.step
            lines.append(indent + ("    " if ln.step is not None else "") + ln.text(digits))
    lines += ["", f"{tr.loss_name} = {fmt(tr.loss, max(digits, 10))}"]
    return "\n".join(lines) + "\n"


__all__ = ["BATCH_ROWS", "Line", "Trace", "batch_rows", "format_trace",
           "parse_at", "point", "summarize", "trace"]
