"""What every op family shares: the ``Primitive`` record, its registry, examples, and the
printing, shape and vector-Jacobian helpers that the families' stanzas are built from.

An op is registered by one stanza of keyword fields, ``defop(name, shape=..., emit=...,
evaluate=..., vjp=..., rule=..., examples=...)``, or by a constructor for a common shape
of op that fills in what such ops share: ``unop`` (an elementwise function of one
argument), ``binop`` (an elementwise function of two broadcasting arguments) and
``reduction`` (over ``axis``, with ``keepdims``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .. import Builder, Node, Shape, ShapeError

# Python operator precedence, for printing with the fewest parentheses.
CMP, ADD, MUL, UNARY, POW, POSTFIX, ATOM = 5, 10, 11, 12, 13, 15, 16


# ----------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Arg:
    """An example argument other than a float array that is differentiated (which an
    example writes as its shape). ``kind``: "positive" (a float array > 0, for log and
    sqrt), "held" (a float array not differentiated), "labels" (integers below
    ``classes``), "onehot" (one-hot rows of ``classes``), "mask" (booleans), or
    "derived": ``build(b, new, *earlier_args) -> Node`` computes it from the arguments
    before it, or from new float leaves ``new(shape)`` (a log-softmax from the logits)."""

    kind: str
    shape: Shape = ()
    classes: int = 0
    build: Callable | None = None


def positive(shape: Shape) -> Arg:
    return Arg("positive", shape)


def held(shape: Shape) -> Arg:
    return Arg("held", shape)


def int_labels(shape: Shape, classes: int) -> Arg:
    return Arg("labels", shape, classes)


def onehot(shape: Shape, classes: int) -> Arg:
    return Arg("onehot", shape, classes)


def mask(shape: Shape) -> Arg:
    return Arg("mask", shape)


def derived(build: Callable) -> Arg:
    return Arg("derived", build=build)


@dataclass(frozen=True)
class Example:
    """Arguments and attributes valid for an op: what tests/compiler/ir/test_op_examples.py checks
    the op's shape rule, printed NumPy, evaluator and vjp over."""

    args: tuple
    attrs: tuple = ()


def ex(*args, **attrs) -> Example:
    """An example: each argument a shape (a float array, differentiated) or an ``Arg``."""
    return Example(tuple(args), tuple(sorted(attrs.items())))


# ----------------------------------------------------------------------------- the record
@dataclass(frozen=True, kw_only=True)
class Primitive:
    """One IR operation. ``shape(args, attrs) -> Shape`` raises ``ShapeError``;
    ``emit(args, attrs, node) -> (text, precedence)`` prints NumPy, given the arguments
    already printed as (text, precedence); ``evaluate(values, attrs) -> ndarray`` is the
    reference evaluator; ``vjp(b, node, g) -> [contribution or None per argument]``
    builds the backward pass as IR (``g`` may be smaller than ``node.shape`` but
    broadcasts to it: ``expand``); ``rule`` is the calculus fact quoted in comments of
    generated code."""

    name: str
    arity: int | None
    shape: Callable[[tuple[Node, ...], dict], Shape]
    emit: Callable[[list[tuple[str, int]], dict, Node], tuple[str, int]]
    evaluate: Callable[..., np.ndarray]
    vjp: Callable[[Builder, Node, Node], list[Node | None]] | None = None
    rule: str = ""
    examples: tuple[Example, ...] = ()
    dtype: str | None = None  # fixed result dtype ("bool", "int"), else the program's
    elementwise: bool = False
    cheap: bool = False  # a view or O(1): printed inline even when used twice
    # Distance of the operands from a point where the op is not differentiable (relu at
    # 0, max at a tie); gradient checks skip points closer than 1e-3. None: smooth.
    kink: Callable[[list[np.ndarray], dict], float] | None = None
    # How to write the result into an existing buffer: a format string over the printed
    # arguments and ``out`` ("np.exp({0}, out={out})") or a function (args, attrs, out)
    # -> text; and the augmented-assignment operator for "a = fresh; a += b" ("+="), or
    # a function (args, attrs, name) -> the lines that update ``name``, which holds the
    # first argument, with the others ("dL_dx[:, :3] += dL_dh"). Used by buffer planning.
    # An out= form calls NumPy or the op's own ``helpers``; an augmented one calls none,
    # or (a callable's lines) the op's own.
    out_form: str | Callable | None = None  # a callable: (args, attrs, out, node) -> text
    augmented: str | Callable | None = None
    # Constant folding of scalars, in plain Python (None: never folded).
    fold: Callable | None = None
    # What the op needs of its data arguments: node -> [(argument index, "labels" or
    # "onehot", number of classes)]; the runtime checks and generates data accordingly.
    data_roles: Callable[[Node], list[tuple[int, str, int]]] | None = None
    # The result has its first argument's dtype (a slice of integer labels is labels).
    keeps_dtype: bool = False
    # Draws random numbers: ``evaluate(values, attrs, rng)`` takes the generator, and the
    # generated function that computes it takes ``rng`` (training mode).
    random: bool = False
    # Read early: always a statement of its own, computed where first reached, so the
    # large value it reads may be overwritten in place after it (softmax cross-entropy's
    # label logits, taken before the exponential overwrites the shifted logits).
    early: bool = False
    # The arguments whose memory the printed result may share (NumPy returns a view of
    # them: reshape, a slice, ``.T``): argument indices, or a function of the attributes
    # giving them. Buffer planning keeps such an argument alive, and unwritten, while
    # the result is; every other op's result is a new array.
    views: tuple[int, ...] | Callable[[dict], tuple[int, ...]] = ()
    # What the printed code needs beyond "every argument, no helper": the arguments
    # ``emit`` leaves out (the fused loss prints its log-softmax, not the logits), and the
    # module helpers (``kernels``) that ``emit`` calls (argument indices, or a function
    # of the attributes giving them; helpers: or a function of the node). Codegen copies
    # in, and buffer planning keeps alive, exactly what the printed statements need.
    unprinted: tuple[int, ...] | Callable[[dict], tuple[int, ...]] = ()
    helpers: tuple[str, ...] | Callable[[Node], tuple[str, ...]] = ()
    # The PyTorch target's printer, buffer form and helpers (``torch_kernels``), as
    # ``emit``, ``out_form`` and ``helpers`` are NumPy's. The torch module computes in
    # the local ``dtype`` on the local ``device`` (what its function's inputs say).
    torch: Callable[[list[tuple[str, int]], dict, Node], tuple[str, int]] | None = None
    torch_out: str | Callable | None = None
    torch_helpers: tuple[str, ...] = ()
    # An update in place that needs the node on torch (its shapes): (args, attrs, name,
    # node) -> lines; else ``augmented`` serves both targets.
    torch_augmented: Callable | None = None
    # The fast style's form, where it differs: (field, value) pairs replacing the
    # NumPy printing fields (``emit``, ``out_form``, ``helpers``) with a cheaper form of
    # the same function (``styled``). The evaluator keeps the reference form.
    fast: tuple[tuple[str, object], ...] = ()
    # A loop over time or one of its results (``ops/recurrence``): a value made by
    # lines of a loop, not by an expression; tested in tests/compiler/ir/test_recurrence.py.
    loop: bool = False

    def result_dtype(self, args, default: str) -> str:
        if self.keeps_dtype and args:
            return args[0].dtype
        return self.dtype or default

    def viewed(self, node: Node) -> tuple[int, ...]:
        """Which arguments of ``node`` its printed value may be a view of."""
        return self.views(dict(node.attrs)) if callable(self.views) else self.views

    def printed(self, node: Node) -> list[Node]:
        """The arguments of ``node`` its printed form reads."""
        left_out = self.unprinted(dict(node.attrs)) if callable(self.unprinted) \
            else self.unprinted
        return [a for k, a in enumerate(node.args) if k not in left_out]

    def printer(self, target: str = "numpy"):
        """The function printing this op for ``target`` ("numpy" or "torch")."""
        return self.torch if target == "torch" else self.emit

    def helpers_for(self, target: str = "numpy", node: Node | None = None
                    ) -> tuple[str, ...]:
        """The helpers ``node``'s printed form calls (``helpers`` may be a function of
        the node, for a form that calls one only for some shapes)."""
        helpers = self.torch_helpers if target == "torch" else self.helpers
        return helpers(node) if callable(helpers) else helpers

    def update_lines(self, args: list[str], attrs: dict, name: str, node: Node,
                     target: str = "numpy") -> list[str]:
        """The lines of a callable ``augmented``: ``name``, holding the first argument,
        updated with the others."""
        if target == "torch" and self.torch_augmented is not None:
            return self.torch_augmented(args, attrs, name, node)
        return self.augmented(args, attrs, name)

    def write_into(self, args: list[str], attrs: dict, out: str, node: Node | None = None,
                   target: str = "numpy") -> str | None:
        """The call computing this op into the buffer ``out``, or None if it cannot. On
        torch, not with a Python number among ``node``'s arguments (torch's functions
        with ``out=`` take tensors)."""
        form = self.torch_out if target == "torch" else self.out_form
        if form is None or (target == "torch" and node is not None
                            and any(a.weak for a in node.args)):
            return None
        if callable(form):
            return form(args, attrs, out, node)
        return form.format(*args, out=out)


PRIMITIVES: dict[str, Primitive] = {}
_STYLED: dict[str, dict[str, Primitive]] = {}


def styled(style: str) -> dict[str, Primitive]:
    """The op table as a code style prints it: the fast style's forms (``Primitive.fast``)
    in the fast style, the reference forms otherwise."""
    fast = style == "fast"
    if len(_STYLED.get(style, ())) != len(PRIMITIVES):
        _STYLED[style] = {name: replace(p, **dict(p.fast)) if fast and p.fast else p
                          for name, p in PRIMITIVES.items()}
    return _STYLED[style]


def defop(name: str, **fields) -> Primitive:
    """Register the op ``name`` with its fields (``Primitive``'s, by keyword)."""
    assert name not in PRIMITIVES, name
    PRIMITIVES[name] = prim = Primitive(name=name, **fields)
    return prim


# ----------------------------------------------------------------------------- printing
def paren(arg: tuple[str, int], min_prec: int) -> str:
    text, prec = arg
    return text if prec >= min_prec else f"({text})"


def infix(sym: str, prec: int):
    """Prints ``a sym b``, left-associative at ``prec``."""
    def emit(a, attrs, node):
        return f"{paren(a[0], prec)} {sym} {paren(a[1], prec + 1)}", prec
    return emit


def call(fn: str, *keys: str):
    """Prints ``fn(args..., key=value...)`` for the attributes ``keys`` that are set."""
    def emit(a, attrs, node):
        parts = [t for t, _ in a] + [f"{k}={attrs[k]!r}" for k in keys
                                     if attrs.get(k) is not None]
        return f"{fn}({', '.join(parts)})", POSTFIX
    return emit


# ----------------------------------------------------------------------------- torch printing
PLACED = "dtype=dtype, device=device"


def as_float(arg: tuple[str, int], node: Node) -> tuple[str, int]:
    """A printed argument as a tensor of the function's dtype: a Python number made one,
    a mask or labels converted; a float tensor as it is. (Torch gives a mask times 0.1
    its default dtype, float32, where NumPy gives float64: converting first keeps the
    NumPy module's numbers.)"""
    if node.is_array:
        return arg
    if node.weak:
        return f"torch.as_tensor({arg[0]}, {PLACED})", POSTFIX
    return f"{paren(arg, POSTFIX)}.to(dtype)", POSTFIX


def promoted(a: list[tuple[str, int]], node: Node, first: int = 0) -> list[tuple[str, int]]:
    """The arguments from ``first`` on, as torch operators need them: when none is a float
    array, masks and labels made float tensors (Python numbers stay numbers)."""
    values = node.args[first:]
    if any(v.is_array for v in values):
        return a
    return a[:first] + [arg if v.weak else as_float(arg, v)
                        for arg, v in zip(a[first:], values)]


def tinfix(sym: str, prec: int):
    """``infix`` on torch: masks and labels made float first when no float array is."""
    emit = infix(sym, prec)
    return lambda a, attrs, node: emit(promoted(a, node), attrs, node)


def tcall(fn: str, *keys: str):
    """``call`` on torch: every argument a tensor of the function's dtype."""
    emit = call(fn, *keys)
    return lambda a, attrs, node: emit([as_float(x, n) for x, n in zip(a, node.args)],
                                       attrs, node)


def _dims(attrs, node: Node, always: bool) -> str | None:
    """A reduction's ``dim`` on torch: its axes; every axis when it keeps them all or the
    function needs a ``dim`` (``always``: torch.logsumexp); else None, torch's default."""
    axes = attrs.get("axis")
    if axes is None:
        return repr(tuple(range(len(node.args[0].shape)))) \
            if attrs.get("keepdims") or always else None
    return repr(axis_text(axes))


def treduce(fn: str, always_dims: bool = False):
    """Prints ``fn(x, dim=.., keepdim=True)`` on torch, leaving out defaults."""
    def emit(a, attrs, node):
        parts = [as_float(a[0], node.args[0])[0]]
        dims = _dims(attrs, node, always_dims)
        if dims is not None:
            parts.append(f"dim={dims}")
        if attrs.get("keepdims"):
            parts.append("keepdim=True")
        return f"{fn}({', '.join(parts)})", POSTFIX
    return emit


def treduce_into(fn: str):
    """A torch reduction into ``out`` (torch needs its dims for that)."""
    def form(args, attrs, out, node=None):
        axes = attrs.get("axis")
        dims = repr(axis_text(axes)) if axes is not None else "tuple(range({0}.dim()))"
        keep = ", keepdim=True" if attrs.get("keepdims") else ""
        return f"{fn}({args[0]}, dim={dims.format(args[0])}{keep}, out={out})"
    return form


def axis_text(axes):
    if axes is None:
        return None
    return axes[0] if len(axes) == 1 else tuple(axes)


def reduce_call(fn: str):
    """Prints ``fn(x, axis=..., keepdims=True)``, leaving out defaults."""
    def emit(a, attrs, node):
        return f"{fn}({', '.join(_reduce_parts(a[0][0], attrs))})", POSTFIX
    return emit


def _reduce_parts(x: str, attrs) -> list[str]:
    parts = [x]
    axis = axis_text(attrs.get("axis"))
    if axis is not None:
        parts.append(f"axis={axis!r}")
    if attrs.get("keepdims"):
        parts.append("keepdims=True")
    return parts


def reduce_into(fn: str):
    def form(args, attrs, out, node=None):
        return f"{fn}({', '.join(_reduce_parts(args[0], attrs))}, out={out})"
    return form


def format_number(value) -> str:
    """A finite number as Python text, as black writes it (``1e16``, not ``1e+16``)."""
    from ...backend.pyfmt import number

    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int):
        return number(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("non-finite constant")
    return number(value)


# ----------------------------------------------------------------------------- shapes
class NeedsWidth(TypeError):
    """A shape rule asked for the value of an ``Unknown`` width: the trial that gave it
    cannot settle the width (ir/loops.py)."""


class Unknown(str):
    """A dimension not known yet: a carried value's width while its step is worked out
    (ir/loops.py, ``from 0``). It equals every dimension, so that the step's operations
    say what it must be; broadcasting gives it the other operand's, and against a 1 it
    stays unknown but ``ones`` (1 would do: ``c * f`` with ``f : [N, 1]``)."""

    ones = False

    def __eq__(self, other) -> bool:
        return True

    def _needs_value(self, *args):
        raise NeedsWidth(f"{self} is not known yet")

    # arithmetic and order need the width's value (a str's own would repeat or join it)
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _needs_value
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __int__ = __index__ = _needs_value
    __lt__ = __le__ = __gt__ = __ge__ = _needs_value

    def __ne__(self, other) -> bool:
        return False

    __hash__ = str.__hash__

    def against(self, other):
        """The dimension broadcasting this against ``other`` gives."""
        if isinstance(other, Unknown):
            return other if other.ones and not self.ones else self
        if other != 1:
            return other
        met = Unknown(self)
        met.ones = True
        return met


def broadcast_shapes(a: Shape, b: Shape) -> Shape:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if isinstance(x, Unknown) or isinstance(y, Unknown):
            out.append(x.against(y) if isinstance(x, Unknown) else y.against(x))
        elif x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError("shapes do not broadcast")
    return tuple(reversed(out))


def same(args, attrs):
    return args[0].shape


def broadcast(args, attrs):
    shape = args[0].shape
    for other in args[1:]:
        shape = broadcast_shapes(shape, other.shape)
    return shape


def scalar(args, attrs):
    return ()


def reduced(args, attrs):
    shape, axes = args[0].shape, attrs.get("axis")
    if axes is None:
        return tuple(1 for _ in shape) if attrs.get("keepdims") else ()
    if attrs.get("keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ----------------------------------------------------------------------------- vjp helpers
def expand(b: Builder, g: Node, like: Node) -> Node:
    """``g`` at the full shape of ``like`` (adjoints may be lazily broadcast), as an array
    of the program's dtype (a Python number such as a seed 1.0 is not one)."""
    if g.shape == like.shape and g.is_array:
        return g
    return b.op("mul", g, b.op("ones_like", like))


def keep_axes(b: Builder, g: Node, node: Node) -> Node:
    """Undo a reduction's dropped axes so ``g`` broadcasts against the reduced input."""
    axes, keep = node.attr("axis"), node.attr("keepdims")
    if keep or axes is None or g.shape == ():
        return g  # a scalar adjoint broadcasts against anything as it is
    if tuple(axes) == tuple(range(len(axes))) and len(g.shape) == len(node.shape):
        return g  # leading axes: NumPy broadcasting puts them back (mean over the batch)
    if len(g.shape) < len(node.shape):
        g = expand(b, g, node)  # lazily broadcast with fewer axes: give it its own first
    return b.op("expand_dims", g, axis=axes)


def factor(derivative):
    """vjp for a unary elementwise op: the derivative (built from x and out) times g."""
    def vjp(b, node, g):
        return [b.op("mul", derivative(b, node.args[0], node), g)]
    return vjp


def no_gradient(b, node, g):
    """The vjp of an op whose value does not depend on its arguments' values."""
    return [None] * len(node.args)


# ----------------------------------------------------------------------------- kinks
def gap(x) -> float:
    """How close ``x`` comes to 0 (relu's and abs's kink)."""
    x = np.abs(np.asarray(x, dtype=float))
    return float(x.min()) if x.size else np.inf


def top_gap(x, axis) -> float:
    """How close the maximum is to the runner-up (a tie is max's kink)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return np.inf
    s = np.sort(x if axis is None else np.moveaxis(x, axis[0], -1), axis=None if axis is None
                else -1)
    if axis is None:
        return float(s[-1] - s[-2])
    if s.shape[-1] < 2:
        return np.inf
    return float(np.min(s[..., -1] - s[..., -2]))


# ----------------------------------------------------------------------------- constructors
UNARY_EXAMPLES = (ex((2, 3)), ex(()))
BROADCASTING_EXAMPLES = (ex((2, 3), (2, 3)), ex((2, 3), (3,)), ex((2, 1), (1, 3)),
                         ex((), (2, 3)))
REDUCTION_EXAMPLES = (ex((2, 3)), ex((3,), axis=(0,)), ex((2, 3), axis=(1,)),
                      ex((2, 3), axis=(0,), keepdims=True),
                      ex((2, 3, 2), axis=(0, 2)), ex((2, 3), keepdims=True))


def unop(name: str, *, rule: str, derivative=None, vjp=None, numpy: str | None = None,
         torch_fn: str | None = None, evaluate=None, examples=UNARY_EXAMPLES,
         fast: str | None = None, **fields) -> Primitive:
    """An elementwise function of one argument, printed as ``numpy(x)`` (by default
    ``np.name``, evaluated as that NumPy function) and on torch as ``torch_fn(x)`` (by
    default ``torch.name``); its vjp is ``derivative(b, x, out)`` times g, or a whole
    ``vjp`` (neither: zero). ``fast``: a NumPy helper computing the same function
    faster, ``fast(x, out=None)``, which the fast style prints instead."""
    if vjp is None:
        vjp = factor(derivative) if derivative else no_gradient
    fn = numpy or f"np.{name}"
    fields.setdefault("emit", call(fn))
    fields.setdefault("out_form", f"{fn}({{0}}, out={{out}})" if fn.startswith("np.") else None)
    fields.setdefault("helpers", () if fn.startswith("np.") else (fn,))
    tfn = torch_fn or f"torch.{name}"
    fields.setdefault("torch", tcall(tfn))
    fields.setdefault("torch_out", f"{tfn}({{0}}, out={{out}})" if tfn.startswith("torch.")
                      else None)
    fields.setdefault("torch_helpers", () if tfn.startswith("torch.") else (tfn,))
    if fast:
        fields["fast"] = (("emit", call(fast)), ("out_form", f"{fast}({{0}}, out={{out}})"),
                          ("helpers", (fast,)))
    if evaluate is None:
        evaluate = _ufunc(getattr(np, name))
    return defop(name, arity=1, shape=same, evaluate=evaluate, vjp=vjp, rule=rule,
                 examples=examples, elementwise=True, **fields)


def _ufunc(f):
    return lambda v, a: f(v[0])


def binop(name: str, *, rule: str, emit, evaluate, vjp,
          examples=BROADCASTING_EXAMPLES, **fields) -> Primitive:
    """An elementwise function of two arguments that broadcast against each other."""
    return defop(name, arity=2, shape=broadcast, emit=emit, evaluate=evaluate, vjp=vjp,
                 rule=rule, examples=examples, elementwise=True, **fields)


def reduction(name: str, *, numpy: str, torch_fn: str, evaluate, vjp, rule: str,
              examples=REDUCTION_EXAMPLES, **fields) -> Primitive:
    """A reduction over the attribute ``axis`` (a tuple; None: every axis), keeping the
    reduced axes as 1 when ``keepdims``; printed ``numpy(x, axis=.., keepdims=True)``
    (on torch ``torch_fn(x, dim=.., keepdim=True)``) and evaluated as ``evaluate(x,
    axis=.., keepdims=..)``."""
    def evaluate_attrs(v, a):
        return evaluate(v[0], axis=a.get("axis"), keepdims=bool(a.get("keepdims")))
    fields.setdefault("helpers", () if numpy.startswith("np.") else (numpy,))
    fields.setdefault("torch", treduce(torch_fn))
    return defop(name, arity=1, shape=reduced, emit=reduce_call(numpy), evaluate=evaluate_attrs,
                 vjp=vjp, rule=rule, examples=examples, **fields)


# ----------------------------------------------------------------------------- data roles
def data_roles(roots) -> dict[str, tuple[str, int]]:
    """Input/target name -> ("labels" | "onehot", classes), from every op that says."""
    from .. import topo_order

    out: dict[str, tuple[str, int]] = {}
    for n in topo_order(roots):
        roles = PRIMITIVES[n.op].data_roles
        for index, role, classes in (roles(n) if roles else ()):
            arg = n.args[index]
            if arg.op == "input":
                out.setdefault(arg.attr("name"), (role, classes))
    return out
