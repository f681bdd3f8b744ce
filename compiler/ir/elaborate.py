"""Elaboration: the checked, desugared AST -> an IR ``Program`` with every shape known.

Resolves ``let`` constants, inputs (with defaults), targets, parameters (shapes, ``fan_in``
found from how each weight is used, initializers), equations, ``output``, ``loss`` and
``grad wrt``; collects the training configuration. Every shape rule failure becomes a
``SpecError`` located at the offending expression and naming the operands' shapes; an
equation that fails poisons its name so later uses do not report the same problem again.
"""

from __future__ import annotations

import dataclasses
import math

from ..frontend import ast
from ..frontend.check import means_none, model_name, setting_value, shape_items
from ..frontend.constants import NotConstant, const_value, truth_value
from ..errors import Diagnostics, Note, Span
from .functions import FUNCTIONS, normalize_index
from ..names import fresh
from . import (NAMED_LEAVES, Binding, Builder, Init, Node, Program, ShapeError, fmt_shape,
               literal_shape, literal_values, topo_order)
from .primitives import ATOM, PRIMITIVES, data_roles, take
from ..vocab import INIT_ALIASES, FAN_INITIALIZERS, INITIALIZERS, optimizer_defaults

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow"}


class _Poisoned(Exception):
    """An operand already failed; its error has been reported."""


def elaborate(spec: ast.Spec, diags: Diagnostics, train: bool = True,
              dtype: str | None = None) -> Program | None:
    """The spec's IR in training mode (what the gradient is of) or in inference mode
    (``train=False``: dropout is the identity); ``dtype`` overrides the spec's (``bpc
    train --dtype``)."""
    return _Elaborator(spec, diags, train, dtype).run()


class _Elaborator:
    def __init__(self, spec: ast.Spec, diags: Diagnostics, train: bool = True,
                 dtype: str | None = None):
        self.spec, self.diags = spec, diags
        self.lines = spec.source.splitlines()
        dtype = dtype or next((s.name for s in spec.statements
                               if isinstance(s, ast.DtypeStmt)), "float64")
        self.b = Builder(dtype)
        self.b.train = train
        self.env: dict[str, Node | None] = {}  # None: poisoned by an earlier error
        self.hints: dict[int, str] = {}
        self.symbols: dict[str, tuple[str, int]] = {}  # N -> (input, axis) it is read from
        self.symbol_from_target: dict[str, bool] = {}
        self.state_owner: dict[str, Span] = {}  # state -> the argument that updates it
        self.variances: list[str] = []  # states read as a variance: never negative
        self.declared: dict[str, tuple] = {}  # parameter or state -> (statement, Init)
        self.reported_layers: set = set()  # batchnorm layers whose input was reported
        # Every name the spec defines: a function's named steps (h_xn) take others.
        self.taken = {st.name for st in spec.statements if isinstance(st, ast.Decl)}

    # ------------------------------------------------------------------------- driver
    def run(self) -> Program | None:
        spec = self.spec
        inputs, targets, params, forward, states, updates = [], [], [], [], [], []
        inits: dict[str, Init] = {}
        defaults: dict[str, object] = {}
        loss = output = None
        wrt_inputs: list[str] = []
        config: dict[str, object] = {}
        # Inputs, targets and parameters may be used anywhere, also above their own
        # line: elaborate them first (all but a dense layer's weight, whose shape comes
        # from the value flowing in and is known when its line is reached).
        early: dict[int, object] = {}
        for st in spec.statements:
            self.b.span = st.span
            if isinstance(st, (ast.Input, ast.Target)) or (
                    isinstance(st, (ast.Param, ast.State)) and not _sized_by_flow(st)):
                early[id(st)] = self._declare(st)
        for st in spec.statements:
            self.b.span = st.span
            if isinstance(st, ast.Input):
                node, default = early[id(st)]
                if node is not None:
                    inputs.append(Binding(st.name, node, "input", st.span))
                    if default is not None:
                        defaults[st.name] = default
            elif isinstance(st, ast.Target):
                node = early[id(st)]
                if node is not None:
                    targets.append(Binding(st.name, node, "target", st.span))
            elif isinstance(st, (ast.Param, ast.State)):
                result = early[id(st)] if id(st) in early else self._declare(st)
                if result is not None:
                    node, init = result
                    (params if node.op == "param" else states).append(
                        Binding(st.name, node, node.op, st.span))
                    inits[st.name] = init
            elif isinstance(st, ast.Equation):
                if st.value is None:  # 'output NAME' names an existing value
                    output = st.name
                    continue
                self.b.hints.clear()
                self.b.updates.clear()
                self.b.steps.clear()
                node = self._expr_top(st.value)
                for node_id, hint in self.b.hints.items():
                    self.hints.setdefault(node_id, f"{st.name}_{hint}")
                from ..frontend.astprint import expr as spec_text

                word = "loss " if st.kind == "loss" else ""
                note = f"{word}{st.name} = {spec_text(st.value)}"
                for step, name in self.b.steps if node is not None else ():
                    # headed, like the equation, by the equation's line
                    forward.append(Binding(fresh(f"{st.name}_{name}", self.taken), step,
                                           "eq", st.span, sources=(st.name,), note=note))
                for leaf, value in self.b.updates:
                    updates.append(Binding(leaf.attr("name"), value, "update", st.span,
                                           sources=(st.name,)))
                self.env[st.name] = node
                if node is None:
                    continue
                forward.append(Binding(st.name, node, st.kind, st.span, note=note))
                if st.kind == "loss":
                    loss = st.name
                    if node.shape != ():
                        self.diags.error(
                            f"the loss must be a scalar, but '{st.name}' has shape "
                            f"{fmt_shape(node.shape)}", st.value.span,
                            "reduce it, e.g. mean(...) or sum(...)")
                elif st.kind == "output":
                    output = st.name
            elif isinstance(st, ast.GradWrt):
                for name, _ in st.names:
                    if any(i.name == name for i in inputs) and name not in wrt_inputs:
                        wrt_inputs.append(name)
            elif isinstance(st, ast.Optimizer):
                config["optimizer"] = self._optimizer(st)
            elif isinstance(st, ast.Train):
                config["train"] = {s.key: setting_value(s.key, s.value, spec.constants,
                                                        self.diags) for s in st.settings}
            elif isinstance(st, ast.Data):
                config["data"] = self._data(st)
        if self.diags.items or loss is None:
            return None
        for bd in states:
            if bd.name not in self.state_owner:
                self.diags.warning(f"state '{bd.name}' is never used: no batch_norm reads "
                                   "or updates it", bd.span,
                                   "pass it to batch_norm as its mean or var, or remove it")
        self._mark_label_targets(forward)
        uses = _matmul_uses([b.node for b in forward],
                            {b.node.id: b.name for b in [*inputs, *targets, *params, *forward]})
        self.filters = _conv_filters([b.node for b in forward])
        for bd in params:
            self._fan(bd.name, bd.node, inits[bd.name], uses.get(bd.node.id))
        if self.diags.items:
            return None
        if output is None:
            output = self._implied_output(forward, loss, inputs, targets, defaults,
                                          _as_written(spec, loss, [*inputs, *params]))
        name, _ = model_name(spec)
        if self.variances:  # a checkpoint's value for them is checked (bpc train, eval)
            config["nonnegative"] = sorted(self.variances)
        return Program(
            name=name, path=spec.path, dtype=self.b.dtype, inputs=inputs, targets=targets,
            params=params, inits=inits, forward=forward, loss=loss, output=output,
            wrt=[p.name for p in params] + wrt_inputs, defaults=defaults,
            symbols=self.symbols, config=config, hints=self.hints,
            lets={k: v for k, v in spec.constants.items() if isinstance(v, (int, float))},
            warnings=[d.render(self.diags.source) for d in self.diags.warnings],
            states=states, updates=updates,
            source_lines={i + 1: line for i, line in enumerate(self.lines)})

    # ------------------------------------------------------------------------- leaves
    def _declare(self, st):
        if isinstance(st, ast.Input):
            result = self._input(st)
        elif isinstance(st, ast.Target):
            result = self._data_leaf(st.name, st.shape, target=True)
        else:
            result = self._param(st)  # a parameter or a state
        self.env.setdefault(st.name, None)  # a failed declaration poisons its uses
        return result

    def _shape(self, shape: ast.Shape, owner: str, fixed: bool,
               word: str = "parameter") -> tuple | None:
        dims = []
        for axis, d in enumerate(shape.dims):
            v = d.value
            if isinstance(v, ast.FanIn):
                src = self.env.get(v.of)
                if src is None:
                    return None
                if v.features and len(src.shape) not in (2, 4):
                    if d.span not in self.reported_layers:  # once, not per parameter
                        self.reported_layers.add(d.span)
                        self.diags.error(
                            f"a batchnorm layer normalizes [N, D] or [N, C, H, W] values, "
                            f"but '{v.of}' is {fmt_shape(src.shape)}", d.span,
                            "it normalizes each feature over a batch: declare the input "
                            "with a batch axis, e.g. [N, 64] or [N, 1, 28, 28], or "
                            "flatten first")
                    return None
                if v.axis == 1 and len(src.shape) != 4 and not v.features:
                    self.diags.error(f"a conv layer needs an image batch [N, C, H, W], but "
                                     f"'{v.of}' is {fmt_shape(src.shape)}", d.span,
                                     "declare the input as [N, C, H, W], e.g. [N, 1, 28, 28]")
                    return None
                if not src.shape:
                    self.diags.error(f"a dense layer needs a vector or matrix input, but "
                                     f"'{v.of}' is a scalar", d.span)
                    return None
                if v.axis == -1 and len(src.shape) > 2:
                    self.diags.error(f"a dense layer needs a vector or matrix input, but "
                                     f"'{v.of}' is {fmt_shape(src.shape)}", d.span,
                                     "put a 'flatten' layer before it")
                    return None
                conv = v.axis == 1
                v = src.shape[v.axis]
                if not isinstance(v, int):
                    what = "channel count" if conv else "last dimension"
                    layer = "batchnorm" if d.value.features else "conv" if conv else "dense"
                    self.diags.error(f"the {what} of '{d.value.of}' must be a number to size "
                                     f"a {layer} layer", d.span)
                    return None
            if isinstance(v, str):
                if fixed:
                    self.diags.error(f"{word} '{owner}' needs fixed dimensions; '{v}' is "
                                     "symbolic", d.span,
                                     f"use a number or a 'let' constant (let {v} = ...)")
                    return None
            dims.append(v)
        return tuple(dims)

    def _data_leaf(self, name: str, shape: ast.Shape, target: bool = False,
                   **attrs) -> Node | None:
        dims = self._shape(shape, name, fixed=False)
        if dims is None:
            return None
        node = self.b.leaf("input", name, dims, **attrs)
        self.env[name] = node
        for axis, d in enumerate(dims):
            # A symbolic size (N) is read from the first input that declares it, and
            # from a target only when no input does: predict takes no targets.
            if isinstance(d, str) and (d not in self.symbols or (
                    self.symbol_from_target.get(d) and not target)):
                self.symbols[d] = (name, axis)
                self.symbol_from_target[d] = target
                self.b.symbols[d] = (node, axis)
        return node

    def _input(self, st: ast.Input):
        default = None
        if st.default is not None:
            default = const_value(st.default, self.spec.constants)
            dshape = literal_shape(default)
            if st.shape is None:
                node = self.b.leaf("input", st.name, dshape, default=True)
                self.env[st.name] = node
                return node, default
            declared = self._shape(st.shape, st.name, fixed=False)
            if declared is not None and tuple(declared) != dshape:
                self.diags.error(f"the default of '{st.name}' has shape {fmt_shape(dshape)}, "
                                 f"but it is declared {fmt_shape(declared)}", st.default.span)
                return None, None
        if default is not None:  # not data: the runtime does not check its values
            return self._data_leaf(st.name, st.shape, default=True), default
        return self._data_leaf(st.name, st.shape), default

    def _param(self, st: ast.Param | ast.State):
        op = "state" if isinstance(st, ast.State) else "param"
        init_expr = st.init
        constants = self.spec.constants
        literal = None
        if not isinstance(init_expr, (ast.Name, ast.Call)) or (
                isinstance(init_expr, ast.Name) and init_expr.id in constants):
            literal = const_value(init_expr, constants)
        if st.shape is None:
            shape = literal_shape(literal) if literal is not None else ()
            if literal is None:
                self.diags.error(f"parameter '{st.name}' needs a shape for initializer "
                                 f"'{getattr(init_expr, 'id', getattr(init_expr, 'func', ''))}'",
                                 st.name_span, f"e.g. 'param {st.name} : [3, 4] = ...'")
                return None
        else:
            shape = self._shape(st.shape, st.name, fixed=True, word=op if op == "state"
                                else "parameter")
            if shape is None:
                return None
        if literal is not None:
            lshape = literal_shape(literal)
            if lshape and tuple(lshape) != tuple(shape):
                self.diags.error(f"the initial value of '{st.name}' has shape "
                                 f"{fmt_shape(lshape)}, but '{st.name}' is declared "
                                 f"{fmt_shape(shape)}", init_expr.span)
                return None
            init = Init("array" if lshape else "value", {"value": literal})
        else:
            name = init_expr.id if isinstance(init_expr, ast.Name) else init_expr.func
            args = dict(INITIALIZERS[name].defaults())
            if isinstance(init_expr, ast.Call):
                sig = INITIALIZERS[name]
                for pname, arg in zip(sig.names, init_expr.args):
                    args[pname] = const_value(arg, constants)
                for kw in init_expr.kwargs:
                    args[kw.name] = const_value(kw.value, constants)
            init = Init(INIT_ALIASES.get(name, name), args, note=st.origin)
            if init.kind == "normal" and args.get("std", 1) < 0:
                self.diags.error("'std' must not be negative", init_expr.span)
        node = self.b.leaf(op, st.name, shape)
        self.env[st.name] = node
        self.declared[st.name] = (st, init)
        return node, init

    def _fan(self, name: str, node: Node, init: Init,
             use: tuple[bool, bool, str] | None) -> None:
        """fan_in/fan_out from the weight's first matmul use ((is right operand, is .T,
        the other operand as the spec names it))."""
        shape = node.shape
        fan_in = fan_out = how = None
        if use is not None and len(shape) == 2:
            is_right, transposed, other = use
            row = is_right != transposed  # x @ W, or W.T @ h
            fan_in, fan_out = (shape[0], shape[1]) if row else (shape[1], shape[0])
            how = (f"{name} is used as {other} @ {name}{'.T' if transposed else ''}, so "
                   f"fan_in is its {'first' if row else 'second'} dimension" if is_right else
                   f"{name} is used as {name}{'.T' if transposed else ''} @ {other}, so "
                   f"fan_in is its {'second' if not row else 'first'} dimension")
        if how is None and node.id in self.filters and len(shape) == 4:
            fan_in, fan_out = shape[1] * shape[2] * shape[3], shape[0] * shape[2] * shape[3]
            how = (f"{name} holds conv2d filters [F, C, KH, KW], so fan_in is C*KH*KW = "
                   f"{fan_in}")
        if how is None:
            fan_in = shape[0] if shape else 1
            fan_out = shape[1] if len(shape) > 1 else fan_in
            how = (f"{name} is not used in a matmul; fan_in is taken as its first dimension"
                   if shape else f"{name} is a scalar; fan_in is 1")
        init.fan_in, init.fan_out = int(fan_in), int(fan_out)
        if init.kind in FAN_INITIALIZERS:
            init.note = "; ".join(x for x in (init.note, how) if x)

    # ------------------------------------------------------------------------- expressions
    def _expr_top(self, e: ast.Expr) -> Node | None:
        try:
            return self._expr(e)
        except _Poisoned:
            return None

    def _text(self, span: Span) -> str:
        if span.line != span.end_line or not 1 <= span.line <= len(self.lines):
            return "this expression"
        return self.lines[span.line - 1][span.col - 1:span.end_col - 1]

    def _apply(self, e: ast.Expr, described: list[tuple[ast.Expr, Node]], build):
        """Run ``build()`` (which creates nodes), turning a shape failure into a diagnostic."""
        saved = self.b.span
        self.b.span = e.span
        try:
            return build()
        except ShapeError as err:
            parts = []
            nodes = getattr(err, "nodes", ())
            for i in err.operands:
                if i < len(nodes):
                    n = nodes[i]
                    src = next((a for a, an in described if an is n), None)
                    who = f"'{self._text(src.span)}'" if src is not None else "an operand"
                    parts.append(f"{who} is {fmt_shape(n.shape)}")
            msg = err.message + (": " + ", ".join(parts) if parts else "")
            span = e.span
            at = getattr(err, "at", None)  # the argument at fault (concat's third value)
            if at is not None and at < len(nodes):
                span = next((a.span for a, an in described if an is nodes[at]), span)
            self.diags.error(msg, span, err.hint)
            raise _Poisoned() from None
        finally:
            self.b.span = saved

    def _expr(self, e: ast.Expr) -> Node:
        b = self.b
        if isinstance(e, ast.Num):
            return self._apply(e, [], lambda: b.const(e.value))
        if isinstance(e, ast.Name):
            if e.id in self.spec.constants:
                return self._apply(e, [], lambda: b.const(self.spec.constants[e.id],
                                                          let=(e.id, ATOM)))
            if e.id not in self.env and e.id in self.b.symbols:  # N: the size from the data
                return self._apply(e, [], lambda: b.size([e.id]))
            if e.id not in self.env:  # a dense layer's weight, used above its stack
                self.diags.error(f"'{e.id}' is used before its shape is known", e.span,
                                 f"'{e.id}' is sized by the value flowing into its layer "
                                 "stack: use it below the stack")
                raise _Poisoned()
            node = self.env[e.id]
            if node is None:  # its definition failed and was reported
                raise _Poisoned()
            if node.op == "state":
                self.diags.error(f"'{e.id}' is a state: only batch_norm reads it, as its "
                                 "running mean or variance", e.span,
                                 f"e.g. batch_norm(h, gamma, beta, {e.id}, v1); use a "
                                 "param or an input for a value equations read")
                raise _Poisoned()
            return node
        if isinstance(e, ast.BinOp):
            left, right = self._expr(e.left), self._expr(e.right)
            described = [(e.left, left), (e.right, right)]
            if e.same_shape and left.shape != right.shape:
                self.diags.error(
                    f"a residual block adds its input to its output, so they must have one "
                    f"shape: its layers make {fmt_shape(right.shape)} into "
                    f"{fmt_shape(left.shape)}", e.span,
                    f"end the block with a layer of the input's size, e.g. "
                    f"'dense {right.shape[-1] if right.shape else 1}'")
                raise _Poisoned()
            self._check_constant(e, _BINOPS[e.op], left, right)
            node = self._apply(e, described, lambda: b.op(_BINOPS[e.op], left, right))
            self._warn_outer_broadcast(e, node, described)
            return node
        if isinstance(e, ast.Neg):
            x = self._expr(e.operand)
            self._check_constant(e, "neg", x)
            return self._apply(e, [(e.operand, x)], lambda: b.op("neg", x))
        if isinstance(e, ast.Transpose):
            x = self._expr(e.operand)
            return self._apply(e, [(e.operand, x)], lambda: b.transpose(x))
        if isinstance(e, ast.Matrix):
            try:
                value = const_value(e, self.spec.constants)
            except NotConstant as err:
                self.diags.error(err.message("a matrix literal holds constants"), err.expr.span,
                                 err.hint)
                raise _Poisoned() from None
            return self._apply(e, [], lambda: b.const(value))
        if isinstance(e, ast.Call):
            return self._call(e)
        if isinstance(e, ast.Index):
            return self._index(e)
        raise AssertionError(f"unexpected expression {e!r}")

    def _index(self, e: ast.Index) -> Node:
        """``x[i, a:b:s, ...]``: constant indices, checked against x's shape here, each
        problem located at its subscript (LANGUAGE.md, "Indexing, slicing and joining")."""
        x = self._expr(e.value)
        items = []
        for item in e.items:
            parts = (item.start, item.stop, item.step) if isinstance(item, ast.Slice) \
                else (item,)
            values = []
            for part in parts:
                if part is None:
                    values.append(None)
                    continue
                try:
                    values.append(const_value(part, self.spec.constants))
                except NotConstant as err:
                    self.diags.error(err.message("an index must be a constant"),
                                     err.expr.span,
                                     err.hint or "indices are numbers or 'let' constants, "
                                                 "known when the spec compiles")
                    raise _Poisoned() from None
                if isinstance(values[-1], list):
                    self.diags.error("an index must be a single number, not a matrix",
                                     part.span)
                    raise _Poisoned()
            items.append(tuple(values) if isinstance(item, ast.Slice) else values[0])
        try:
            index = normalize_index(x.shape, items, f"'{self._text(e.value.span)}'")
        except ShapeError as err:
            k = getattr(err, "item", 0)
            self.diags.error(err.message, e.items[min(k, len(e.items) - 1)].span, err.hint)
            raise _Poisoned() from None
        return self._apply(e, [(e.value, x)], lambda: take(self.b, x, index))

    def _check_constant(self, e: ast.Expr, op: str, *args: Node) -> None:
        """Arithmetic on numbers alone runs as Python arithmetic in the module: a value
        Python cannot compute (1 / 0, 0 ^ -1, (-1) ^ 0.5) is an error here, not there."""
        values = [_number(a) for a in args]
        if PRIMITIVES[op].fold is None or None in values:
            return
        try:  # in floats: exact integer powers such as 9 ^ 9 ^ 9 would take minutes
            value = PRIMITIVES[op].fold(*values)
            problem = None if not isinstance(value, complex) and math.isfinite(value) else \
                "its value is not a finite real number"
        except ZeroDivisionError:
            problem = "it divides by zero"
        except OverflowError:
            problem = "it is too large for a floating-point number"
        if problem:
            self.diags.error(f"'{self._text(e.span)}' is a constant, but {problem}", e.span)
            raise _Poisoned()

    def _warn_outer_broadcast(self, e: ast.Expr, node: Node, described) -> None:
        """NumPy lets ``f : [N, 1]`` minus ``y : [N]`` become ``[N, N]``: every example
        paired with every other. Legal, and almost never meant: say so."""
        if len(described) < 2 or not PRIMITIVES[node.op].elementwise:
            return
        for dim in dict.fromkeys(d for d in node.shape if isinstance(d, str)):
            if node.shape.count(dim) > max(n.shape.count(dim) for _, n in described):
                parts = [f"'{self._text(x.span)}' {fmt_shape(n.shape)}" for x, n in described]
                self.diags.warning(
                    f"broadcasting {' against '.join(parts)} gives {fmt_shape(node.shape)}: "
                    f"every one of the {dim} rows meets every other", e.span,
                    "give both operands the same shape (declare the target as "
                    f"[{dim}, 1], or reshape(y, [{dim}, 1])) unless you mean all pairs")
                return

    def _call(self, e: ast.Call) -> Node:
        fn = FUNCTIONS[e.func]
        names = fn.signature.names
        bound: dict[str, ast.Expr] = dict(zip(names, e.args))
        bound.update({k.name: k.value for k in e.kwargs})
        args: dict[str, Node] = {}
        static: dict[str, object] = dict(fn.signature.defaults())
        described = []
        for pname, expr in bound.items():
            if pname in fn.static:
                try:
                    default = static.get(pname, 0)
                    if means_none(expr, default):
                        static[pname] = None
                        continue
                    flag = truth_value(expr, default)
                    static[pname] = self._static(pname, expr) if flag is None else flag
                except NotConstant as err:
                    self.diags.error(err.message(f"'{pname}' of {e.func} must be a constant"),
                                     err.expr.span, err.hint)
                    raise _Poisoned() from None
            elif pname in fn.listed:
                args[pname] = tuple(self._listed(e, pname, expr, described))
            elif pname in fn.states:
                node = self._state(e, pname, expr)
                args[pname] = node
                described.append((expr, node))
            else:
                node = self._expr(expr)
                args[pname] = node
                described.append((expr, node))
        node = self._apply(e, described, lambda: fn.lower(self.b, args, static))
        self._warn_outer_broadcast(e, node, described)
        return node

    def _state(self, call: ast.Call, pname: str, expr: ast.Expr) -> Node:
        """A state argument (batch_norm's running mean and variance): the name of a
        declared state, which this call alone updates in training."""
        node = self.env.get(expr.id) if isinstance(expr, ast.Name) else None
        if node is None or node.op != "state":
            if node is None and isinstance(expr, ast.Name) and expr.id in self.env:
                raise _Poisoned()  # its declaration failed and was reported
            what = {"param": "a parameter", "input": "an input or a target"}.get(
                node.op, "a computed value") if node is not None else None
            self.diags.error(f"'{pname}' of {call.func} must name a state, which holds the "
                             f"running statistic between steps"
                             + (f"; '{self._text(expr.span)}' is {what}" if what else ""),
                             expr.span,
                             f"declare one, e.g. 'state {pname}1 : [64] = "
                             f"{'ones' if pname == 'var' else 'zeros'}', and pass its name")
            raise _Poisoned()
        owner = self.state_owner.get(expr.id)
        if owner is not None and call.span.line <= owner.line <= call.span.end_line and (
                owner.line, owner.col) >= (call.span.line, call.span.col):
            self.diags.error(f"state '{expr.id}' is both the running mean and the running "
                             f"variance of this {call.func}", expr.span,
                             "give each its own state, e.g. 'state m1 : [..] = zeros' and "
                             "'state v1 : [..] = ones'")
            raise _Poisoned()
        if owner is not None:
            self.diags.error(f"state '{expr.id}' is already updated by another batch_norm",
                             expr.span, "each batch_norm keeps its own running mean and "
                                        "variance: declare a state for each",
                             [Note(f"'{expr.id}' is first used here", owner)])
            raise _Poisoned()
        self.state_owner[expr.id] = expr.span
        if pname == "var":
            self.variances.append(expr.id)
        st, init = self.declared[expr.id]
        values = init.args.get("value") if init.kind in ("value", "array", "constant") else 1
        if pname == "var" and any(v < 0 for v in literal_values(values)):
            self.diags.error(f"state '{expr.id}' starts with a negative value, but it is "
                             f"{call.func}'s running variance: inference would take the "
                             "square root of a negative number", expr.span,
                             "start a running variance at ones",
                             [Note(f"'{expr.id}' is declared here", st.init.span)])
            raise _Poisoned()
        return node

    def _listed(self, call: ast.Call, pname: str, expr: ast.Expr, described) -> list[Node]:
        """A list argument, written [a, b, ...] (it parses as a one-row matrix literal)."""
        if isinstance(expr, ast.Matrix) and not expr.rows:
            self.diags.error(f"{call.func} needs at least one value in its list", expr.span,
                             f"e.g. {call.func}([a, b], axis=0)")
            raise _Poisoned()
        if not isinstance(expr, ast.Matrix) or len(expr.rows) != 1:
            self.diags.error(f"'{pname}' of {call.func} is a list of values, written "
                             "[a, b, ...]", expr.span,
                             f"e.g. {call.func}([a, b], axis=0); separate the values with "
                             "',' (';' starts a matrix row)")
            raise _Poisoned()
        nodes = []
        for item in expr.rows[0]:
            node = self._expr(item)
            nodes.append(node)
            described.append((item, node))
        return nodes

    def _static(self, pname: str, expr: ast.Expr):
        constants = self.spec.constants
        if pname == "shape":  # reshape's target: numbers, lets, symbolic dims, one -1
            items = shape_items(expr)
            dims = []
            for item in items:
                if isinstance(item, ast.Name) and item.id not in constants:
                    if item.id not in self.symbols:
                        self.diags.error(f"'{item.id}' is not a dimension of any input", item.span)
                        raise _Poisoned()
                    dims.append(item.id)
                else:
                    dims.append(const_value(item, constants))
            return dims
        value = const_value(expr, constants)
        if pname == "axis" and isinstance(value, float) and value.is_integer():
            value = int(value)
        return value

    # ------------------------------------------------------------------------- after the equations
    def _mark_label_targets(self, forward) -> None:
        """Targets that an op reads as class labels hold integers."""
        roles = data_roles([b.node for b in forward])
        for n in topo_order([b.node for b in forward]):
            if n.op == "input" and roles.get(n.attr("name"), ("",))[0] == "labels":
                n.dtype = "int"

    def _implied_output(self, forward: list[Binding], loss: str, inputs: list[Binding],
                        targets: list[Binding], defaults: dict,
                        written: tuple[set[str], set[str], set[str]]) -> str | None:
        """Without 'output': the model's prediction, computed from the data and never
        from a target (predict takes no targets). Among the equations before the loss
        that the loss depends on and that read no target, the last one of the first
        kind there is: computed from a data input (one without a default) and a
        parameter; from a data input; computed at all; only another name for an input
        or a parameter. Dependence and aliases are judged as the spec is written
        (``written``, from ``_as_written``): 'v = x[:, :]' is computed from x, though its
        value is x's, and the loss depends on it only if the loss names it. None (the loss
        is the output) when every such equation reads a target."""
        equations, needed, bare = written
        loss_node = next(b.node for b in forward if b.name == loss)
        kinds = {b.node.id: TARGET for b in targets}
        kinds.update({b.node.id: DATA for b in inputs if b.name not in defaults})
        reads: dict[int, int] = {}  # node id -> the kinds of leaf it is computed from
        for n in topo_order([loss_node]):
            if n.op in NAMED_LEAVES:
                reads[n.id] = PARAM if n.op == "param" else kinds.get(n.id, 0)
            else:
                flags = 0
                for a in n.args:
                    flags |= reads[a.id]
                reads[n.id] = flags
        best, best_rank = None, -1
        for b in forward:
            flags = reads.get(b.node.id)
            if b.name == loss or flags is None or flags & TARGET or \
                    b.name in equations and b.name not in needed:
                continue
            rank = 0 if b.name in bare else \
                3 if flags & DATA and flags & PARAM else 2 if flags & DATA else 1
            if rank >= best_rank:
                best, best_rank = b.name, rank
        return best

    def _optimizer(self, st: ast.Optimizer) -> dict:
        settings = optimizer_defaults(st.name)
        for kw in st.kwargs:
            if kw.name == "schedule":
                settings[kw.name] = kw.value.id
            else:
                settings[kw.name] = const_value(kw.value, self.spec.constants)
        return {"name": st.name, **settings}

    def _data(self, st: ast.Data) -> dict:
        if st.path is not None:
            return {"path": st.path}
        from ..vocab import DATASETS

        sig = DATASETS[st.name]
        args = dict(sig.defaults())
        for pname, arg in zip(sig.names, st.args):
            args[pname] = const_value(arg, self.spec.constants)
        for kw in st.kwargs:
            args[kw.name] = const_value(kw.value, self.spec.constants)
        return {"name": st.name, **args}


def _as_written(spec: ast.Spec, loss: str, leaves: list[Binding]):
    """(the spec's equation names, those the loss names directly or through other
    equations, those written as a bare name of an input or parameter: 'a = W')."""
    equations = {st.name: st for st in spec.statements if isinstance(st, ast.Equation)
                 and st.value is not None}
    needed, todo = set(), [loss]
    while todo:
        st = equations.get(todo.pop())
        for name in _names_in(st.value) if st is not None else ():
            if name in equations and name not in needed:
                needed.add(name)
                todo.append(name)
    names = {b.name for b in leaves}
    bare = {n for n, st in equations.items()
            if isinstance(st.value, ast.Name) and st.value.id in names}
    return set(equations), needed, bare


def _names_in(expr) -> set[str]:
    """Every name an AST expression reads."""
    found, todo = set(), [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, ast.Name):
            found.add(e.id)
        elif isinstance(e, (list, tuple)):
            todo.extend(e)
        elif dataclasses.is_dataclass(e) and not isinstance(e, type):
            todo.extend(getattr(e, f.name) for f in dataclasses.fields(e))
    return found


def _matmul_uses(roots, names: dict[int, str] | None = None
                 ) -> dict[int, tuple[bool, bool, str]]:
    """For each node used as a matmul operand (possibly through .T): the first such use,
    as (is the right operand, is transposed, the other operand's name in the spec or
    '(...)' when it has none). One pass over the forward graph. (LANGUAGE.md defines
    fan_in by how a weight meets '@', so this one rule is about matmul itself.)"""
    names = names or {}
    uses: dict[int, tuple[bool, bool, str]] = {}
    for n in topo_order(roots):
        if n.op != "matmul":
            continue
        left, right = n.args
        for operand, is_right, other in ((right, True, left), (left, False, right)):
            transposed = operand.op == "transpose"
            base = operand.args[0] if transposed else operand
            other_t = other.op == "transpose"
            other_base = other.args[0] if other_t else other
            other_name = names.get(other_base.id)
            other_text = f"{other_name}{'.T' if other_t else ''}" if other_name else "(...)"
            uses.setdefault(base.id, (is_right, transposed, other_text))
    return uses


def _conv_filters(roots) -> set[int]:
    """The nodes used as conv2d filters (reshaped into the rows of a ``filters_matmul``):
    their fan_in is C*KH*KW, the size of one filter, as LANGUAGE.md says."""
    out: set[int] = set()
    for n in topo_order(roots):
        if n.op == "filters_matmul" and n.args[0].op == "reshape":
            out.add(n.args[0].args[0].id)
    return out


DATA, PARAM, TARGET = 1, 2, 4  # what a value is computed from (_implied_output)


def _sized_by_flow(st: ast.Param | ast.State) -> bool:
    """Whether a parameter's shape depends on an equation (a dense layer's fan-in)."""
    return st.shape is not None and any(isinstance(d.value, ast.FanIn) for d in st.shape.dims)


def _number(node: Node) -> float | None:
    """The value of a scalar made of number literals and arithmetic, as a float (None if
    it is anything else). Only Python numbers can be: the walk never leaves them, so it
    costs nothing on a long chain of equations."""
    if not node.weak:
        return None
    if node.is_const:
        return None if isinstance(node.value, tuple) else float(node.value)
    fold = PRIMITIVES[node.op].fold
    if fold is None or not node.args or node.shape != ():
        return None
    values = [_number(a) for a in node.args]
    if None in values:
        return None
    try:
        value = fold(*values)
    except (ArithmeticError, ValueError):
        return None
    return value if not isinstance(value, complex) and math.isfinite(value) else None
