"""The IR: a straight-line SSA graph of primitive operations with shapes and spans.

A ``Node`` is one primitive application (``op`` names an entry of the primitive table).
Nodes are immutable and refer to their arguments directly, so the graph is a DAG in
creation (= topological) order. Names live in ``Binding`` s: a spec equation, a parameter,
an adjoint ``dL_dW1`` … each binds a name to a node. Two names may bind the same node
(``dl_dbeta3 = dl_df3``); the printer writes the second as an alias.

A ``Program`` is the whole model: leaves (inputs, targets, parameters with their
initializers), forward bindings, the loss and output, and after differentiation the
backward bindings and which of them are the gradients.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import Span

Dim = int | str  # a fixed size, or a symbolic dimension such as "N"
Shape = tuple[Dim, ...]


def batch_sized(shape: Shape) -> bool:
    """Whether a value grows with the data (has a symbolic dimension such as N)."""
    return any(isinstance(d, str) for d in shape)


def literal_shape(value: Any) -> Shape:
    """The shape of a number or of nested lists/tuples of numbers (no NumPy needed)."""
    shape = []
    while isinstance(value, (list, tuple)):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def literal_values(value: Any):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from literal_values(v)
    else:
        yield value


def fmt_shape(shape: Shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(str(d) for d in shape) + "]"


class ShapeError(Exception):
    """A shape rule failed. ``operands`` are the argument indices the message is about."""

    def __init__(self, message: str, operands: tuple[int, ...] = (0, 1), hint: str | None = None):
        super().__init__(message)
        self.message, self.operands, self.hint = message, operands, hint


_ids = itertools.count()


# Leaves that stand for a named value given to a generated function: an input or
# target, a parameter, a state (batch norm's running statistics). Never written.
NAMED_LEAVES = frozenset({"input", "param", "state"})

# Operations printed as Python arithmetic: on Python numbers they give Python numbers.
PYTHON_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "neg", "pow"})


class Node:
    __slots__ = ("id", "op", "args", "attrs", "shape", "dtype", "span", "weak")

    def __init__(self, op: str, args: tuple[Node, ...], attrs: tuple, shape: Shape,
                 dtype: str, span: Span | None):
        self.id = next(_ids)
        self.op, self.args, self.attrs = op, args, attrs
        self.shape, self.dtype, self.span = shape, dtype, span
        # Whether generated code computes it as a plain Python number: a scalar constant,
        # a count (``x.shape[0]``, ``max(np.count_nonzero(keep), 1)``) or Python
        # arithmetic on those. NumPy treats such
        # numbers as "weak": they take the dtype of the array they meet.
        self.weak = shape == () and (op in ("const", "count", "count_kept", "seed") or (
            op in PYTHON_ARITHMETIC and all(a.weak for a in args)))

    @property
    def is_array(self) -> bool:
        """Whether generated code computes it as a NumPy value of the program's float
        dtype (not a Python number, a boolean mask or integer labels)."""
        return self.dtype not in ("bool", "int") and not self.weak

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def key(self) -> tuple:
        """Structural identity, for common-subexpression elimination."""
        if self.op in NAMED_LEAVES:
            return (self.op, self.attr("name"))
        return (self.op, tuple(a.id for a in self.args), self.attrs)

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    @property
    def value(self) -> Any:
        return self.attr("value")

    def __repr__(self) -> str:
        return f"<{self.op}#{self.id} {fmt_shape(self.shape)}>"


def freeze(value: Any) -> Any:
    """Make attribute values hashable (lists become tuples)."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


class Builder:
    """Creates nodes through the primitive table, inferring shape and dtype."""

    def __init__(self, dtype: str = "float64", span: Span | None = None,
                 symbols: dict[str, tuple[Node, int]] | None = None):
        self.dtype = dtype
        self.span = span  # the span given to nodes built now (set per spec expression)
        # Symbolic dimension -> (the input leaf that defines it, its axis), so a size is
        # printed as ``x.shape[0]`` and never recomputes an expression.
        self.symbols = symbols if symbols is not None else {}
        self.hints: dict[int, str] = {}  # node id -> what to call it if it needs a name
        # Training or inference: what 'dropout' computes (LANGUAGE.md, "Modes").
        self.train = True
        self.random_sites = 0  # random draws so far: each is its own node, never shared
        # State updates made in training mode: (state leaf, its new value), in order.
        self.updates: list[tuple[Node, Node]] = []
        # Steps a function names as equations of their own (batch norm's mu, xc, …):
        # (node, step name), bound as "{equation}_{step}" before the equation.
        self.steps: list[tuple[Node, str]] = []
        # The loss being differentiated (autodiff): a loop's step adjoints are named by it.
        self.loss: str | None = None
        # Warnings a function gives while it is built (pixels a pooling window never
        # reads): (message, hint, the operand it is about), its '{}' the operand's
        # description; the caller reports them at the call.
        self.warnings: list[tuple[str, str | None, Node]] = []

    def warn(self, message: str, hint: str | None, operand: Node) -> None:
        self.warnings.append((message, hint, operand))

    def step(self, node: Node, name: str) -> Node:
        """Bind ``node`` as a named step of the equation being built, so the derivation
        shows it and its adjoint (``h_xn``, ``dL_dh_xn``) like any equation."""
        self.steps.append((node, name))
        return node

    def hint(self, node: Node, name: str) -> Node:
        """Suggest a name for ``node`` should it become a temporary (``log_softmax``)."""
        self.hints.setdefault(node.id, name)
        return node

    def op(self, op: str, *args: Node, **attrs: Any) -> Node:
        from .primitives import PRIMITIVES

        prim = PRIMITIVES[op]
        if prim.arity is not None and len(args) != prim.arity:
            raise TypeError(f"{op} takes {prim.arity} arguments, got {len(args)}")
        frozen = tuple(sorted((k, freeze(v)) for k, v in attrs.items()))
        try:
            shape = prim.shape(args, dict(frozen))
        except ShapeError as err:
            err.nodes = args  # so the caller can name the operands in its message
            raise
        dtype = prim.result_dtype(args, self.dtype)
        if op == "cast" and (args[0].op == "cast" or args[0].weak):
            return args[0]  # already cast, or a Python number, which takes any dtype
        node = Node(op, tuple(args), frozen, tuple(shape), dtype, self.span)
        if prim.elementwise and prim.dtype is None and op != "cast" and \
                not any(a.is_array for a in args):
            # NumPy would not give an array of the program's dtype here: a mask times a
            # number is float64 (or int64), and np.sin of a number is a float64 scalar.
            if any(not a.weak for a in args) or (op not in PYTHON_ARITHMETIC
                                                 and self.dtype != "float64"):
                return self.op("cast", node)
        return node

    def transpose(self, x: Node) -> Node:
        """``x.T``: reverses the axes, so a scalar or a vector is itself (as in NumPy)."""
        return x if len(x.shape) < 2 else self.op("transpose", x)

    def const(self, value: Any, let: tuple[str, int] | None = None,
              let_names: tuple[str, ...] = ()) -> Node:
        """A constant; ``let``: how the spec names it, as (text, precedence): ``("lam",
        ATOM)`` for ``let lam = 1e-4``, ``("2 * lam", MUL)`` once folding multiplied it.
        The textbook code style prints that text instead of the number; ``let_names``
        are the 'let' names it reads (``("lam",)``), so the module defines them."""
        if not all(math.isfinite(float(v)) for v in literal_values(value)):
            raise ShapeError("constants must be finite numbers", ())
        if let is not None:
            return self.op("const", value=freeze(value), let=let,
                           let_names=tuple(sorted(set(let_names))))
        return self.op("const", value=freeze(value))

    def leaf(self, op: str, name: str, shape: Shape, dtype: str | None = None, **attrs) -> Node:
        frozen = tuple(sorted((("name", name),) + tuple((k, freeze(v)) for k, v in
                                                     attrs.items())))
        return Node(op, (), frozen, tuple(shape), dtype or self.dtype, self.span)

    def axes(self, x: Node, axis: Any) -> tuple[int, ...] | None:
        """Normalise a spec ``axis`` (None, int or list, negatives allowed) for ``x``."""
        if axis is None:
            return None
        items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        rank = len(x.shape)
        out = []
        for a in items:
            if not isinstance(a, int) or isinstance(a, bool):
                raise ShapeError(f"axis must be a whole number, not {a!r}", ())
            if not -rank <= a < rank:
                raise ShapeError(f"axis {a} is out of range for a value of shape "
                                 f"{fmt_shape(x.shape)}", (0,))
            out.append(a % rank)
        if len(set(out)) != len(out):
            raise ShapeError("an axis is repeated", ())
        return tuple(sorted(out))

    def size(self, dims) -> Node:
        """The product of ``dims``: a constant when all are known, else ``x.shape[i] * …``."""
        fixed, node = 1, None
        for d in dims:
            if isinstance(d, int):
                fixed *= d
                continue
            leaf, axis = self.symbols[d]
            part = self.op("count", leaf, axis=(axis,))
            node = part if node is None else self.op("mul", node, part)
        if node is None:
            return self.const(fixed)
        return node if fixed == 1 else self.op("mul", self.const(fixed), node)

    def count(self, x: Node, axes: tuple[int, ...] | None) -> Node:
        """How many elements a reduction over ``axes`` combines (a constant when known)."""
        return self.size(x.shape if axes is None else tuple(x.shape[a] for a in axes))

    def symbol_table(self, leaves, symbols: dict[str, tuple[str, int]]) -> None:
        by_name = {b.name: b.node for b in leaves}
        self.symbols = {s: (by_name[n], a) for s, (n, a) in symbols.items() if n in by_name}

    def rows(self, x: Node) -> Node:
        """The number of examples: every axis but the last (1 for a vector or scalar)."""
        return self.count(x, tuple(range(len(x.shape) - 1)))


@dataclass
class Init:
    """How a parameter starts: ``kind`` is an initializer name, "value" or "array"."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    fan_in: int | None = None
    fan_out: int | None = None
    note: str | None = None  # how fan_in was found / why this default


@dataclass
class Binding:
    name: str
    node: Node
    kind: str  # input target param eq output loss seed adjoint
    span: Span | None = None
    # For backward bindings: the forward equations this adjoint differentiates; for a
    # function's named step (batch norm's bn1_xn): the equation it is a step of.
    sources: tuple[str, ...] = ()
    note: str | None = None


@dataclass
class Program:
    name: str
    path: str
    dtype: str
    inputs: list[Binding]
    targets: list[Binding]
    params: list[Binding]
    inits: dict[str, Init]  # parameters' and states' initializers, by name
    forward: list[Binding]
    loss: str
    output: str | None
    wrt: list[str]  # what is differentiated: parameters, then 'grad wrt' inputs
    defaults: dict[str, Any] = field(default_factory=dict)  # input name -> default value
    symbols: dict[str, tuple[str, int]] = field(default_factory=dict)  # N -> (input, axis)
    config: dict[str, Any] = field(default_factory=dict)
    backward: list[Binding] = field(default_factory=list)
    grads: dict[str, str] = field(default_factory=dict)  # wrt name -> backward binding
    source_lines: dict[int, str] = field(default_factory=dict)
    stage: str = "ir"
    # Readable names for values that may become temporaries (node id -> name), e.g.
    # "dE_dy_in" for the adjoint of the input of y's outermost operation.
    hints: dict[int, str] = field(default_factory=dict)
    lets: dict[str, Any] = field(default_factory=dict)  # 'let' name -> value, by name
    # Located warnings, rendered with their source line (the spec compiles all the same).
    warnings: list[str] = field(default_factory=list)
    # Non-trainable state ('state NAME : SHAPE = INIT'), and in training mode the new
    # value of each state the forward pass updates: a binding of kind "update" named
    # after the state, with ``sources`` = (the equation that computes it,).
    states: list[Binding] = field(default_factory=list)
    updates: list[Binding] = field(default_factory=list)

    @property
    def leaves(self) -> list[Binding]:
        return self.inputs + self.targets + self.params + self.states

    def all_bindings(self) -> list[Binding]:
        return self.leaves + self.forward + self.updates + self.backward

    def with_(self, **changes) -> "Program":
        return replace(self, **changes)


def random_sites(prog: "Program") -> list[Node]:
    """The program's random draws (dropout's masks, in training mode), in site order:
    the order of the ``dropout`` calls in the spec (after ``layers`` are written out).
    Every site draws once per training-mode call, in this order, whatever its ``p`` and
    whether or not a loss or output reads it (LANGUAGE.md, "Modes"): the module and the
    IR evaluator both draw from this list, so they see the same masks."""
    from .primitives import PRIMITIVES

    roots = [bd.node for bd in prog.forward + prog.updates]
    sites = [n for n in topo_order(roots) if PRIMITIVES[n.op].random]
    return sorted(sites, key=lambda n: n.attr("site"))


def topo_order(roots) -> list[Node]:
    """Every node reachable from ``roots``, arguments before users."""
    seen: set[int] = set()
    order: list[Node] = []
    stack = [(r, False) for r in reversed(list(roots))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.id in seen:
            continue
        seen.add(node.id)
        stack.append((node, True))
        for a in reversed(node.args):
            if a.id not in seen:
                stack.append((a, False))
    return order
