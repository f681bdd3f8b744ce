"""Elaborating expressions: AST expressions and calls -> IR nodes, shapes checked.

Each shape-rule failure becomes a ``SpecError`` located at the offending expression and
naming its operands' shapes; a call's arguments are bound to its signature (constants,
lists, states); arithmetic on numbers alone is checked here, where it can be located;
a broadcast that pairs every example with every other draws a warning. A failure
raises ``_Poisoned`` once it is reported, so the equation yields no node.
"""

from __future__ import annotations

import math

from ..frontend import ast
from ..frontend.check import means_none, shape_items
from ..frontend.constants import NotConstant, const_value, truth_value
from ..errors import Note, Span
from .functions import FUNCTIONS, normalize_index
from . import Node, ShapeError, fmt_shape, literal_values
from .primitives import ATOM, PRIMITIVES, take

_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow"}


class _Poisoned(Exception):
    """An operand already failed; its error has been reported."""


class Expressions:
    """Elaborating expressions, a mixin of ``elaborate._Elaborator``: reads its ``spec``,
    ``lines``, ``diags``, builder ``b``, ``env``, ``symbols`` and ``declared``; fills
    ``state_owner`` and ``variances``."""

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
            node = build()
            for message, hint, operand in self.b.warnings:
                self.diags.warning(message.format(
                    f"{self._who(operand, described)} {fmt_shape(operand.shape)}"), e.span, hint)
            return node
        except ShapeError as err:
            nodes = getattr(err, "nodes", ())
            parts = [f"{self._who(nodes[i], described)} is {fmt_shape(nodes[i].shape)}"
                     for i in err.operands if i < len(nodes)]
            msg = err.message + (": " + ", ".join(parts) if parts else "")
            span = e.span
            at = getattr(err, "at", None)  # the argument at fault (concat's third value)
            if at is not None and at < len(nodes):
                span = next((a.span for a, an in described if an is nodes[at]), span)
            self.diags.error(msg, span, err.hint)
            raise _Poisoned() from None
        finally:
            self.b.span = saved
            self.b.warnings.clear()

    def _who(self, node: Node, described: list[tuple[ast.Expr, Node]]) -> str:
        """An operand as the spec writes it ('x'), for a message about its shape."""
        src = next((a for a, an in described if an is node), None)
        return f"'{self._text(src.span)}'" if src is not None else "an operand"

    def _expr(self, e: ast.Expr) -> Node:
        b = self.b
        if isinstance(e, ast.Num):
            return self._apply(e, [], lambda: b.const(e.value))
        if isinstance(e, ast.Name):
            if self.loop is not None and e.id in (*self.loop.equations, self.loop.time):
                self._fail(e.span, f"'{e.id}' is "
                           + ("the time variable: it indexes values, x[:, t]"
                              if e.id == self.loop.time else
                              f"a step of this loop: read it as {e.id}[{self.loop.time}] "
                              f"or {e.id}[{self.loop.time}-1]"), None)
            if e.id in self.spec.constants:
                return self._apply(e, [], lambda: b.const(self.spec.constants[e.id],
                                                          let=(e.id, ATOM),
                                                          let_names=(e.id,)))
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
            read = self._time_read(e) if self.loop is not None else None
            return read if read is not None else self._index(e)
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
