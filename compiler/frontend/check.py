"""Front-end semantic checks on the desugared AST.

``check(spec, diags)`` reports, without stopping at the first: sections given twice,
duplicate definitions (pointing at both), names that are reserved in generated Python,
unknown or not-yet-defined names (with "did you mean"), unknown functions / initializers /
optimizers / settings / data sets and their arguments (listing the valid ones), static
arguments that are not constants, ``grad wrt`` targets that are not inputs or
parameters, and anything but exactly one ``loss``.
"""

from __future__ import annotations

from pathlib import Path

from . import ast
from .constants import TRUTH_VALUES, NotConstant, const_value, truth_value
from .layers import LAYERS
from ..errors import Diagnostics, Note, Span, listing, suggestion_hint
from ..ir.functions import FUNCTIONS
from ..names import STATE_NAMES, model_name_reason, reserved_reason
from ..vocab import (COMMON_OPT_KEYS, DATASET_RANGES, DATASETS, DTYPES, INIT_ORDERED,
                     INIT_RANGES, INITIALIZERS, OPTIMIZER_RANGES, OPTIMIZERS, REQUIRED,
                     SCHEDULES, TRAIN_SETTINGS, Range, Signature, shown)

SECTIONS = {ast.ModelStmt: "model", ast.DtypeStmt: "dtype", ast.Optimizer: "optimizer",
            ast.Train: "train", ast.Data: "data"}
KIND_WORD = {ast.Let: "constant", ast.Input: "input", ast.Target: "target",
             ast.Param: "parameter", ast.State: "state", ast.Equation: "value"}
# Initializers a state may start from: fixed values (init_state() takes no generator).
FIXED_INITIALIZERS = ("zeros", "ones", "constant")


IN_MEMORY_NAME = "model"  # a spec given as text, without a 'model' line


def model_name(spec: ast.Spec) -> tuple[str, Span | None]:
    """The spec's ``model NAME``; else its file's stem; else, for text given in memory
    (a notebook cell, ``bpc.compile(text)``: a path such as ``<spec>``), ``model``."""
    for st in spec.statements:
        if isinstance(st, ast.ModelStmt):
            return st.name, st.name_span
    if spec.path.startswith("<") and spec.path.endswith(">"):
        return IN_MEMORY_NAME, None
    return Path(spec.path).stem, None


def check(spec: ast.Spec, diags: Diagnostics) -> None:
    _check_sections(spec, diags)
    decls = _check_declarations(spec, diags)
    _check_uses(spec, decls, diags)
    _check_config(spec, diags)
    _check_loss(spec, diags)


# ----------------------------------------------------------------------------- sections
def _check_sections(spec: ast.Spec, diags: Diagnostics) -> None:
    seen: dict[str, ast.Stmt] = {}
    for st in spec.statements:
        word = SECTIONS.get(type(st))
        if word is None:
            continue
        if word in seen:
            diags.error(f"'{word}' is given twice; a spec has at most one", st.span,
                        notes=[Note(f"the first '{word}' is here", seen[word].span)])
        else:
            seen[word] = st
    name, span = model_name(spec)
    why = model_name_reason(name)
    if why:
        if span is None:
            diags.error(f"the file name '{Path(spec.path).name}' does not give a usable model "
                        f"name ('{name}': {why})", Span.whole_file(spec.path),
                        "add a line 'model NAME' with a valid identifier")
        else:
            diags.error(f"'{name}' cannot be a model name: {why}", span)


# ----------------------------------------------------------------------------- declarations
def _check_declarations(spec: ast.Spec, diags: Diagnostics) -> dict[str, ast.Decl]:
    decls: dict[str, ast.Decl] = {}
    has_state = any(isinstance(st, ast.State) for st in spec.statements)
    for st in spec.statements:
        if not isinstance(st, ast.Decl) or (isinstance(st, ast.Equation) and st.value is None):
            continue
        why = reserved_reason(st.name)
        if why is None and has_state and st.name in STATE_NAMES:
            why = ("a spec with 'state' makes a module whose functions take the argument "
                   "'state' and define STATE and init_state")
        if why:
            diags.error(f"'{st.name}' cannot be used as a name: {why}", st.name_span,
                        f"rename it, e.g. '{st.name.lstrip('_') or 'v'}_'")
        first = decls.get(st.name)
        if first is not None:
            origin = getattr(st, "origin", None) or getattr(first, "origin", None)
            both = getattr(st, "origin", None) and getattr(first, "origin", None)
            hint = ("two layers of one kind after the same dense or conv layer k take the "
                    "same name (z{k}, p{k}, f{k}); drop one, or put a weighted layer "
                    "between them" if both else
                    "a layer stack defines W{k}, b{k}, a{k}, z{k}, p{k}, f{k}, d{k}, r{j} and, "
                    "for batchnorm, bn{j}, bn{j}_gamma, bn{j}_beta, bn{j}_running_mean and "
                    "bn{j}_running_var; rename your value" if origin else None)
            diags.error(f"'{st.name}' is defined twice", st.name_span, hint,
                        [Note(f"'{st.name}' is first defined here "
                              f"(as a {KIND_WORD[type(first)]})", first.name_span)])
            continue
        decls[st.name] = st
    return decls


def _check_uses(spec: ast.Spec, decls: dict[str, ast.Decl], diags: Diagnostics) -> None:
    constants = spec.constants
    # Declarations (lets, inputs, targets, params) are visible everywhere; an equation's
    # value only after its own line (the model is straight-line code).
    visible = {n for n, d in decls.items() if not isinstance(d, ast.Equation)}
    visible |= symbolic_dims(spec)  # a data dimension is a number too: '/ N'
    visible |= spec.refused  # a layer stack reported already
    loops = loop_groups(spec.statements)
    for st in spec.statements:
        if isinstance(st, ast.Equation) and st.time is not None:
            inside = _check_step(st, loops[id(st)], visible, decls, constants, diags)
            _check_expr(st.value, inside, decls, constants, diags)
            if decls.get(st.name) is st and st is loops[id(st)][-1]:
                visible.update(s.name for s in loops[id(st)])
        elif isinstance(st, ast.Equation):
            if st.value is None:
                if st.name not in visible:
                    _unknown(st.name, st.name_span, visible, decls, diags)
            else:
                _check_expr(st.value, visible, decls, constants, diags)
                if decls.get(st.name) is st:
                    visible.add(st.name)
        elif isinstance(st, ast.Param):
            _check_init(st, constants, diags)
        elif isinstance(st, ast.State):
            init = st.init
            name = init.id if isinstance(init, ast.Name) else \
                init.func if isinstance(init, ast.Call) else None
            if name is not None and name not in constants and name not in FIXED_INITIALIZERS:
                diags.error(f"a state starts from a fixed value, not '{name}'", init.span,
                            "use zeros, ones, constant(value=...), a number or a matrix "
                            "literal (a running mean starts at zeros, a running variance "
                            "at ones)")
            else:
                _check_init(st, constants, diags)
        elif isinstance(st, ast.Input) and st.default is not None:
            _require_constant(st.default, constants, diags, f"the default of input '{st.name}'")
        elif isinstance(st, ast.GradWrt):
            for name, span in st.names:
                d = decls.get(name)
                if d is None:
                    _unknown(name, span, visible, decls, diags)
                elif not isinstance(d, (ast.Input, ast.Param)):
                    diags.error(f"'grad wrt' takes inputs and parameters; '{name}' is a "
                                f"{KIND_WORD[type(d)]}", span,
                                "a state is not trained: batch_norm updates it from the "
                                "batch's statistics, and no gradient flows to it"
                                if isinstance(d, ast.State) else None)


def loop_groups(statements) -> dict[int, list[ast.Equation]]:
    """The loops over time: each run of consecutive step equations (``h[t] = ...``) is
    one loop; every step equation's id -> its loop's equations, in order."""
    groups: dict[int, list[ast.Equation]] = {}
    run: list[ast.Equation] = []
    for st in statements:
        if isinstance(st, ast.Equation) and st.time is not None:
            run.append(st)
            groups[id(st)] = run
        else:
            run = []
    return groups


def _check_step(st: ast.Equation, loop: list[ast.Equation], visible: set[str], decls,
                constants, diags: Diagnostics) -> set[str]:
    """A step equation's initial value (read before the loop) and time variable; the
    names its expression may read: the loop's values (now or a step back) and the time
    variable besides what is visible before the loop."""
    if st.init is not None:
        _check_expr(st.init, visible, decls, constants, diags)
    if st.time != loop[0].time:
        diags.error(f"one loop steps through one time variable: this loop's is "
                    f"'{loop[0].time}'", st.time_span,
                    f"write {st.name}[{loop[0].time}], or start another loop by putting a "
                    "plain equation between the two")
    elif reserved_reason(st.time):
        diags.error(f"'{st.time}' cannot be the time variable: {reserved_reason(st.time)}",
                    st.time_span, f"use another letter, e.g. {st.name}[s]")
    elif st.time in decls:
        diags.error(f"the time variable '{st.time}' is also the name of a "
                    f"{KIND_WORD[type(decls[st.time])]}", st.time_span,
                    f"use another letter for time, e.g. {st.name}[s], x[:, s], "
                    f"{st.name}[s-1]")
    return visible | {s.name for s in loop} | {st.time}


def _unknown(name: str, span: Span, visible: set[str], decls, diags: Diagnostics) -> None:
    d = decls.get(name)
    if d is not None:  # defined, but later in the file
        diags.error(f"'{name}' is used before it is defined", span,
                    "equations run in order; move this line below the definition",
                    [Note(f"'{name}' is defined here", d.name_span)])
        return
    if name in FUNCTIONS:
        diags.error(f"'{name}' is a function, not a value", span, f"call it: {name}(...)")
        return
    if name in TRUTH_VALUES:
        diags.error(f"'{name}' is a truth value, not a number", span,
                    "write the number itself (true and false are only for options such as "
                    "keepdims and shuffle)")
        return
    diags.error(f"unknown name '{name}'", span,
                suggestion_hint(name, visible) if not diags.full else None)


def _check_expr(e: ast.Expr, visible, decls, constants, diags: Diagnostics) -> None:
    if isinstance(e, ast.Name):
        if e.id not in visible:
            _unknown(e.id, e.span, visible, decls, diags)
    elif isinstance(e, ast.Num):
        if isinstance(e.value, float) and e.value == float("inf"):
            diags.error(f"the number {e.text} is too large to be finite", e.span)
    elif isinstance(e, ast.BinOp):
        _check_expr(e.left, visible, decls, constants, diags)
        _check_expr(e.right, visible, decls, constants, diags)
    elif isinstance(e, (ast.Neg, ast.Transpose)):
        _check_expr(e.operand, visible, decls, constants, diags)
    elif isinstance(e, ast.Matrix):
        for row in e.rows:
            for item in row:
                _check_expr(item, visible, decls, constants, diags)
    elif isinstance(e, ast.Index):  # the indices must be constants: elaboration says so
        _check_expr(e.value, visible, decls, constants, diags)
        for item in e.items:
            parts = (item.start, item.stop, item.step) if isinstance(item, ast.Slice) else (item,)
            for part in parts:
                if part is not None:
                    _check_expr(part, visible, decls, constants, diags)
    elif isinstance(e, ast.Call):
        fn = FUNCTIONS.get(e.func)
        if fn is None:
            if e.func in LAYERS:
                diags.error(f"unknown function '{e.func}'", e.func_span,
                            f"'{e.func}' is a layer; layers go inside 'layers IN -> OUT {{ … }}'")
            elif e.func in INITIALIZERS:
                diags.error(f"unknown function '{e.func}'", e.func_span,
                            f"'{e.func}' is an initializer; use it after '=' in a 'param'")
            else:
                diags.unknown(f"unknown function '{e.func}'", e.func, e.func_span, FUNCTIONS,
                              "functions are")
            for a in e.args + [k.value for k in e.kwargs]:
                _check_expr(a, visible, decls, constants, diags)
            return
        bound = _bind(e.func, fn.signature, e.args, e.kwargs, e.span, diags, "function")
        for pname, arg in bound.items():
            if pname == "shape":  # dimensions: numbers, constants, symbolic names, -1
                items = shape_items(arg)
                if items is None:
                    diags.error("'shape' must be a list of dimensions like [N, 784]", arg.span)
                for item in items or ():
                    if not isinstance(item, ast.Name):
                        _require_constant(item, constants, diags, "a dimension of 'shape'")
            elif pname in fn.static:
                default = fn.signature.defaults().get(pname, 0)
                if isinstance(default, bool):  # keepdims: true or false (or 1 or 0)
                    _require_truth(arg, default, constants, diags, f"'{pname}' of {e.func}")
                elif not means_none(arg, default):
                    _require_constant(arg, constants, diags, f"'{pname}' of {e.func}")
            else:
                _check_expr(arg, visible, decls, constants, diags)


def means_none(e: ast.Expr, default) -> bool:
    """``axis=none``: the word ``none`` where an option's default is None."""
    return default is None and isinstance(e, ast.Name) and e.id == "none"


def symbolic_dims(spec: ast.Spec) -> set[str]:
    """The symbolic dimensions (``N``) of the inputs' and targets' declared shapes."""
    return {d.value for st in spec.statements if isinstance(st, (ast.Input, ast.Target))
            and st.shape is not None for d in st.shape.dims
            if isinstance(d.value, str) and d.value not in spec.constants}


def shape_items(e: ast.Expr) -> list[ast.Expr] | None:
    """The dimensions of reshape's ``[N, 784]`` (``[]``: a scalar), None if not a list."""
    if isinstance(e, ast.Matrix) and len(e.rows) <= 1:
        return e.rows[0] if e.rows else []
    return None


def _bind(what: str, sig: Signature, args: list[ast.Expr], kwargs: list[ast.Kwarg],
          span: Span, diags: Diagnostics, kind: str) -> dict[str, ast.Expr]:
    """Match call arguments to a signature, reporting every mismatch."""
    names = sig.names
    bound: dict[str, ast.Expr] = {}
    if len(args) > len(names):
        diags.error(f"{kind} '{what}' takes {len(names)} argument(s), got {len(args)}",
                    args[len(names)].span, f"usage: {sig.usage(what)}")
    for name, arg in zip(names, args):
        bound[name] = arg
    for kw in kwargs:
        if kw.name not in names:
            options = (f"'{what}' takes: {', '.join(names)}" if names
                       else f"'{what}' takes no arguments")
            diags.error(f"{kind} '{what}' has no argument '{kw.name}'", kw.span,
                        suggestion_hint(kw.name, names) or options)
        elif kw.name in bound:
            diags.error(f"argument '{kw.name}' of '{what}' is given twice", kw.span)
        else:
            bound[kw.name] = kw.value
    missing = [n for n, d in sig.params if d is REQUIRED and n not in bound]
    if missing:
        diags.error(f"{kind} '{what}' is missing its argument(s) "
                    + ", ".join(f"'{m}'" for m in missing), span, f"usage: {sig.usage(what)}")
    return bound


def _require_truth(e: ast.Expr, default: bool, constants, diags: Diagnostics, what: str):
    """An option that is true or false (``keepdims``): those words, or 1 or 0."""
    flag = truth_value(e, default)
    if flag is not None:
        return flag
    v = _require_constant(e, constants, diags, what)
    if v is None:
        return None
    if isinstance(v, list) or v not in (0, 1):
        diags.error(f"{what} is true or false, not {shown(v)}", e.span,
                    "write true or false (1 and 0 mean the same)")
        return None
    return bool(v)


def _require_constant(e: ast.Expr, constants, diags: Diagnostics, what: str,
                      ranged: bool = False):
    """The constant's value, or None (reported). ``ranged``: the caller checks a range,
    which refuses a truth value in its own words (``'lr' must be a number > 0, not
    true``); it gets ``true`` and ``false`` as booleans."""
    if ranged and isinstance(e, ast.Name) and e.id not in constants:
        flag = truth_value(e, False)
        if flag is not None:
            return flag
    try:
        return const_value(e, constants)
    except NotConstant as err:
        diags.error(err.message(f"{what} must be a constant"), err.expr.span, err.hint)
        return None


def _check_init(st: ast.Param | ast.State, constants, diags: Diagnostics) -> None:
    init = st.init
    if isinstance(init, (ast.Name, ast.Call)) and getattr(init, "id", None) not in constants:
        name, span = (init.id, init.span) if isinstance(init, ast.Name) else \
            (init.func, init.func_span)
        sig = INITIALIZERS.get(name)
        if sig is None and isinstance(init, ast.Name) and name in TRUTH_VALUES:
            diags.error(f"'{name}' is a truth value, not an initial value", span,
                        "give a number, a matrix literal or an initializer such as zeros")
        elif sig is None:
            diags.unknown(f"unknown initializer '{name}'", name, span, INITIALIZERS,
                          "initializers are", ", a number, or a matrix literal [a, b; c, d]")
        elif isinstance(init, ast.Name):
            if any(d is REQUIRED for _, d in sig.params):
                diags.error(f"initializer '{name}' needs arguments", span,
                            f"usage: {sig.usage(name)}")
        else:
            bound = _bind(name, sig, init.args, init.kwargs, init.span, diags, "initializer")
            values = _ranged_args(name, bound, INIT_RANGES.get(name, {}), sig, constants,
                                  diags)
            ordered = INIT_ORDERED.get(name)
            if ordered:
                _check_order(name, ordered, {**sig.defaults(), **values}, init.span, diags)
    else:
        _require_constant(init, constants, diags, f"the initial value of '{st.name}'")


# ----------------------------------------------------------------------------- configuration
def _check_config(spec: ast.Spec, diags: Diagnostics) -> None:
    constants = spec.constants
    for st in spec.statements:
        if isinstance(st, ast.DtypeStmt) and st.name not in DTYPES:
            diags.unknown(f"unknown dtype '{st.name}'", st.name, st.name_span, DTYPES,
                          "dtypes are")
        elif isinstance(st, ast.Optimizer):
            _check_optimizer(st, constants, diags)
        elif isinstance(st, ast.Train):
            seen: dict[str, ast.Setting] = {}
            for s in st.settings:
                spec_ = TRAIN_SETTINGS.get(s.key)
                if spec_ is None:
                    diags.unknown(f"unknown training setting '{s.key}'", s.key, s.span,
                                  TRAIN_SETTINGS, "settings are")
                    continue
                if s.key in seen:
                    diags.error(f"training setting '{s.key}' is given twice", s.span,
                                notes=[Note("first given here", seen[s.key].span)])
                seen[s.key] = s
                setting_value(s.key, s.value, constants, diags)
            if "epochs" in seen and "iters" in seen:
                diags.error("give either 'epochs' or 'iters', not both", seen["iters"].span)
        elif isinstance(st, ast.Data) and st.name is not None:
            sig = DATASETS.get(st.name)
            if sig is None:
                diags.unknown(f"unknown data set '{st.name}'", st.name, st.name_span, DATASETS,
                              "built-in data sets are", "; or give a file: data \"train.npz\"")
                continue
            bound = _bind(st.name, sig, st.args, st.kwargs, st.span, diags, "data set")
            _ranged_args(st.name, bound, DATASET_RANGES.get(st.name, {}), sig, constants,
                         diags)


def setting_value(key: str, value: ast.Expr, constants, diags: Diagnostics):
    """The Python value of a ``train { key = value }`` setting, checked against its table."""
    spec = TRAIN_SETTINGS[key]
    if spec.kind is bool:
        if isinstance(value, ast.Name) and value.id in ("true", "false"):
            return value.id == "true"
        diags.error(f"'{key}' must be true or false", value.span)
        return None
    v = _require_constant(value, constants, diags, f"'{key}'", ranged=True)
    if v is None:
        return None
    return _in_range(v, spec.range, f"'{key}'", value.span, diags, key, spec.default)


def _in_range(v, rng: Range, what: str, span: Span, diags: Diagnostics, key: str = "",
              default=None):
    """``v`` as its kind if ``rng`` holds it, else an error at ``span`` (with the default
    as a hint) and None."""
    problem = rng.problem(v)
    if problem:
        usual = isinstance(default, (int, float)) and not isinstance(default, bool)
        diags.error(f"{what} {problem}", span, f"the default is {key}={default!r}"
                    if usual else None)
        return None
    return rng.coerce(v)


def _ranged_args(what: str, bound: dict[str, ast.Expr], ranges: dict[str, Range],
                 sig: Signature, constants, diags: Diagnostics) -> dict[str, object]:
    """The constant arguments of an initializer or data set, each checked against its range;
    only those that passed are returned."""
    values = {}
    for pname, arg in bound.items():
        v = _require_constant(arg, constants, diags, f"an argument of '{what}'",
                              ranged=pname in ranges)
        if v is not None and pname in ranges:
            v = _in_range(v, ranges[pname], f"'{pname}' of '{what}'", arg.span, diags,
                          pname, sig.defaults().get(pname))
        if v is not None:
            values[pname] = v
    return values


def _check_order(what: str, pair: tuple[str, str], values: dict, span: Span,
                 diags: Diagnostics) -> None:
    low, high = pair
    if low in values and high in values and not values[low] < values[high]:
        diags.error(f"'{low}' of '{what}' must be less than '{high}', but {low}="
                    f"{values[low]:g} and {high}={values[high]:g}", span,
                    f"e.g. {what}({low}={min(values[low], values[high]):g}, "
                    f"{high}={max(values[low], values[high]):g})"
                    if values[low] != values[high] else None)


def _check_optimizer(st: ast.Optimizer, constants, diags: Diagnostics) -> None:
    if st.name not in OPTIMIZERS:
        diags.unknown(f"unknown optimizer '{st.name}'", st.name, st.name_span, OPTIMIZERS,
                      "optimizers are")
        return
    keys = {**COMMON_OPT_KEYS, **OPTIMIZERS[st.name]}
    if st.args:
        diags.error("optimizer settings are given by name, e.g. sgd(lr=0.1)", st.args[0].span)
    seen = set()
    for kw in st.kwargs:
        if kw.name not in keys:
            diags.error(f"optimizer '{st.name}' has no setting '{kw.name}'", kw.span,
                        suggestion_hint(kw.name, keys)
                        or f"'{st.name}' takes: {', '.join(keys)}")
            continue
        if kw.name in seen:
            diags.error(f"optimizer setting '{kw.name}' is given twice", kw.span)
        seen.add(kw.name)
        if kw.name == "schedule":
            if not (isinstance(kw.value, ast.Name) and kw.value.id in SCHEDULES):
                diags.error("'schedule' must be one of: " + listing(SCHEDULES), kw.value.span)
            continue
        v = _require_constant(kw.value, constants, diags, f"optimizer setting '{kw.name}'",
                              ranged=True)
        if v is not None:
            _in_range(v, OPTIMIZER_RANGES[kw.name], f"optimizer setting '{kw.name}'",
                      kw.value.span, diags, kw.name, keys[kw.name])


def _check_loss(spec: ast.Spec, diags: Diagnostics) -> None:
    losses = [st for st in spec.statements
              if isinstance(st, ast.Equation) and st.kind == "loss"]
    if not losses:
        diags.error("the spec has no 'loss'", Span.whole_file(spec.path),
                    "add exactly one line 'loss NAME = EXPR' (a scalar)")
    for extra in losses[1:]:
        diags.error("a spec has exactly one 'loss'", extra.span,
                    "combine the terms into one scalar, e.g. 'loss L = L1 + 0.1 * L2'",
                    [Note("the first 'loss' is here", losses[0].span)])
    outputs = [st for st in spec.statements
               if isinstance(st, ast.Equation) and st.kind == "output"]
    for extra in outputs[1:]:
        diags.error("a spec has at most one 'output'", extra.span,
                    notes=[Note("the first 'output' is here", outputs[0].span)])
