"""The primitive table: every IR operation in one entry.

Each ``Primitive`` has
- a **shape rule** ``shape(args, attrs) -> Shape`` (raises ``ShapeError``);
- a **NumPy printer** ``emit(args, attrs, node) -> (text, precedence)``, given its
  arguments already printed as ``(text, precedence)``;
- a **reference evaluator** ``evaluate(values, attrs) -> ndarray`` in plain NumPy (the
  IR interpreter used by tests and ``bpc show --stage``-level checks);
- a **vector-Jacobian rule** ``vjp(b, node, g) -> [contribution or None per argument]``,
  written with the IR builder ``b`` so the backward pass is IR like the forward. ``g`` is
  the adjoint of ``node``; it may be smaller than ``node.shape`` but broadcasts to it
  (adjoints stay lazily broadcast until a rule needs the full shape: ``expand``).
  Contributions are reduced back to each argument's shape by ``unbroadcast`` in
  ``autodiff``, the one place that handles broadcasting for every binary op alike.
- ``rule``: the calculus fact, quoted in comments of generated code.

Nothing else in the compiler switches on operation names.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

from . import Builder, Node, Shape, ShapeError, fmt_shape, literal_shape


class _LazyNumpy:
    """NumPy, imported on first use: compiling a spec never needs it, evaluating does."""

    def __getattr__(self, name):
        import numpy

        globals()["np"] = numpy
        return getattr(numpy, name)


np = _LazyNumpy()

# Python operator precedence, for printing with the fewest parentheses.
CMP, ADD, MUL, UNARY, POW, POSTFIX, ATOM = 5, 10, 11, 12, 13, 15, 16


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int | None
    shape: Callable[[tuple[Node, ...], dict], Shape]
    emit: Callable[[list[tuple[str, int]], dict, Node], tuple[str, int]]
    evaluate: Callable[[list[np.ndarray], dict], np.ndarray]
    vjp: Callable[[Builder, Node, Node], list[Node | None]] | None = None
    rule: str = ""
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
    out_form: str | Callable | None = None
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
    # The arguments whose memory the printed result may share (NumPy returns a view of
    # them: reshape, a slice, ``.T``): argument indices, or a function of the attributes
    # giving them. Buffer planning keeps such an argument alive, and unwritten, while
    # the result is; every other op's result is a new array.
    views: tuple[int, ...] | Callable[[dict], tuple[int, ...]] = ()

    def result_dtype(self, args, default: str) -> str:
        if self.keeps_dtype and args:
            return args[0].dtype
        return self.dtype or default

    def viewed(self, node: Node) -> tuple[int, ...]:
        """Which arguments of ``node`` its printed value may be a view of."""
        return self.views(dict(node.attrs)) if callable(self.views) else self.views

    def write_into(self, args: list[str], attrs: dict, out: str) -> str | None:
        """The call computing this op into the buffer ``out``, or None if it cannot."""
        if self.out_form is None:
            return None
        if callable(self.out_form):
            return self.out_form(args, attrs, out)
        return self.out_form.format(*args, out=out)


PRIMITIVES: dict[str, Primitive] = {}


def _register(p: Primitive) -> Primitive:
    assert p.name not in PRIMITIVES, p.name
    PRIMITIVES[p.name] = p
    return p


# ----------------------------------------------------------------------------- printing helpers
def paren(arg: tuple[str, int], min_prec: int) -> str:
    text, prec = arg
    return text if prec >= min_prec else f"({text})"


def _binary(sym: str, prec: int):
    def emit(a, attrs, node):
        return f"{paren(a[0], prec)} {sym} {paren(a[1], prec + 1)}", prec
    return emit


def _call(fn: str, *keys: str):
    def emit(a, attrs, node):
        parts = [t for t, _ in a] + [f"{k}={attrs[k]!r}" for k in keys if attrs.get(k) is not None]
        return f"{fn}({', '.join(parts)})", POSTFIX
    return emit


def _axis_text(axes):
    if axes is None:
        return None
    return axes[0] if len(axes) == 1 else tuple(axes)


def _reduce_call(fn: str):
    def emit(a, attrs, node):
        return f"{fn}({', '.join(_reduce_parts(a[0][0], attrs))})", POSTFIX
    return emit


def _reduce_parts(x: str, attrs) -> list[str]:
    parts = [x]
    axis = _axis_text(attrs.get("axis"))
    if axis is not None:
        parts.append(f"axis={axis!r}")
    if attrs.get("keepdims"):
        parts.append("keepdims=True")
    return parts


def _reduce_into(fn: str):
    return lambda args, attrs, out: f"{fn}({', '.join(_reduce_parts(args[0], attrs))}, out={out})"


def format_number(value) -> str:
    """A finite number as Python text, as black writes it (``1e16``, not ``1e+16``)."""
    from ..backend.pyfmt import number

    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int):
        return number(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("non-finite constant")
    return number(value)


def _emit_const(a, attrs, node):
    value = attrs["value"]
    if isinstance(value, tuple):
        def lit(v):
            return "[" + ", ".join(lit(x) for x in v) + "]" if isinstance(v, tuple) \
                else format_number(float(v))
        return f"np.array({lit(value)}, dtype=DTYPE)", POSTFIX
    text = format_number(value)
    return text, (UNARY if text.startswith("-") else ATOM)


# ----------------------------------------------------------------------------- shape helpers
def broadcast_shapes(a: Shape, b: Shape) -> Shape:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError("shapes do not broadcast")
    return tuple(reversed(out))


def _same(args, attrs):
    return args[0].shape


def _broadcast(args, attrs):
    shape = args[0].shape
    for other in args[1:]:
        shape = broadcast_shapes(shape, other.shape)
    return shape


def _scalar(args, attrs):
    return ()


def _reduced(args, attrs):
    shape, axes = args[0].shape, attrs.get("axis")
    if axes is None:
        return tuple(1 for _ in shape) if attrs.get("keepdims") else ()
    if attrs.get("keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _matmul_shape(args, attrs):
    a, b = args[0].shape, args[1].shape
    if len(a) == 0 or len(b) == 0:
        raise ShapeError("'@' needs vectors or matrices, not scalars",
                         hint="use '*' to multiply by a scalar")
    if len(a) > 2 or len(b) > 2:
        raise ShapeError("'@' supports 1-D and 2-D operands only")
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError("matmul inner dimensions differ",
                         hint="the last dimension on the left of '@' must equal the first "
                              "dimension of a matrix on its right")
    return a[:-1] + b[1:]


def _transpose_shape(args, attrs):
    return tuple(reversed(args[0].shape))


def _size_split(shape):
    fixed, symbols = 1, []
    for d in shape:
        if isinstance(d, int):
            fixed *= d
        else:
            symbols.append(d)
    return fixed, sorted(symbols)


def _reshape_shape(args, attrs):
    """Numbers, symbolic dimensions (``N``, each also passed as a ``count`` argument) and
    at most one ``-1``, which takes the size left over: a number, or the one symbolic
    dimension the other dimensions do not account for."""
    src, want = args[0].shape, list(attrs["shape"])
    if sum(1 for d in want if d == -1) > 1:
        raise ShapeError("reshape can infer (-1) at most one dimension", (0,))
    for d in want:
        if isinstance(d, int) and d < 1 and d != -1:
            raise ShapeError("reshape dimensions must be positive (or one -1)", (0,))
    fixed_src, sym_src = _size_split(src)
    fixed_w, sym_w = _size_split([d for d in want if d != -1])
    rest = list(sym_src)
    for s in sym_w:
        if s not in rest:
            raise ShapeError(f"reshape to {fmt_shape(tuple(want))} needs dimension {s}, "
                             "which the value does not have", (0,))
        rest.remove(s)
    if -1 in want:
        if fixed_src % fixed_w or len(rest) > 1 or (rest and fixed_src != fixed_w):
            left = " * ".join([str(fixed_src // fixed_w)] * (fixed_src % fixed_w == 0) + rest)
            raise ShapeError(f"reshape to {fmt_shape(tuple(want))} cannot keep the size"
                             + (f" (-1 would be {left})" if left and not fixed_src % fixed_w
                                else ""), (0,),
                             hint="-1 must come out as a whole number or one symbolic "
                                  "dimension such as N")
        want[want.index(-1)] = rest[0] if rest else fixed_src // fixed_w
    elif fixed_w != fixed_src or rest:
        raise ShapeError(f"reshape to {fmt_shape(tuple(want))} changes the number of elements",
                         (0,))
    return tuple(want)


def _xent_shape(args, attrs):
    """softmax_xent(logits, log_p, t, n): log_p = logits - logsumexp(logits)."""
    logits, t = args[0].shape, args[2].shape
    if len(logits) == 0:
        raise ShapeError("softmax_cross_entropy needs logits with a class axis, not a scalar",
                         (0,))
    if not isinstance(logits[-1], int):
        raise ShapeError("softmax_cross_entropy needs a fixed number of classes (the logits' "
                         f"last axis), not the symbolic dimension {logits[-1]}", (0,),
                         hint="declare the number of classes as a number or a 'let'")
    if t != logits and t != logits[:-1]:
        raise ShapeError("targets must be one-hot with the logits' shape, or integer labels "
                         "with the shape of all but the last axis", (0, 2))
    return ()


def _sigmoid_xent_shape(args, attrs):
    broadcast_shapes(args[0].shape, args[1].shape)
    if args[0].shape != broadcast_shapes(args[0].shape, args[1].shape):
        raise ShapeError("targets must broadcast to the logits' shape", (0, 1))
    return ()


def labels(t: Node, logits: Node) -> bool:
    """True when ``t`` holds integer class labels for ``logits`` (not one-hot)."""
    return len(t.shape) == len(logits.shape) - 1


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


def _factor(derivative):
    """vjp for a unary elementwise op: the derivative (built from x and out) times g."""
    def vjp(b, node, g):
        return [b.op("mul", derivative(b, node.args[0], node), g)]
    return vjp


def _unary(name, fn, derivative, rule, numpy=None, vjp=None):
    """An elementwise function; ``derivative(b, x, out)`` or a whole ``vjp`` (None: zero)."""
    if vjp is None:
        vjp = _factor(derivative) if derivative else (lambda b, n, g: [None])
    fn_name = numpy or f"np.{name}"
    out_form = f"{fn_name}({{0}}, out={{out}})" if fn_name.startswith("np.") else None
    if isinstance(fn, str):  # a NumPy function, looked up when first evaluated
        evaluate = (lambda attr: lambda v, a: getattr(np, attr)(v[0]))(fn)
    else:
        evaluate = (lambda f: lambda v, a: f(v[0]))(fn)
    return _register(Primitive(name, 1, _same, _call(fn_name), evaluate, vjp,
                               rule, elementwise=True, out_form=out_form))


def _gap(x) -> float:
    x = np.abs(np.asarray(x, dtype=float))
    return float(x.min()) if x.size else np.inf


def _top_gap(x, axis) -> float:
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


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


# ----------------------------------------------------------------------------- leaves
for _leaf in ("input", "param", "state"):
    _register(Primitive(_leaf, 0, lambda a, t: (), lambda a, t, n: (t["name"], ATOM),
                        lambda v, a: None, None, "", cheap=True))
_register(Primitive("const", 0, lambda args, attrs: literal_shape(attrs["value"]), _emit_const,
                    lambda v, a: np.asarray(a["value"], dtype=float), None, "", cheap=True))

# ----------------------------------------------------------------------------- arithmetic
_register(Primitive("add", 2, _broadcast, _binary("+", ADD), lambda v, a: v[0] + v[1],
                    lambda b, n, g: [g, g], "d(a + b) = da + db", elementwise=True,
                    out_form="np.add({0}, {1}, out={out})", augmented="+=", fold=operator.add))
_register(Primitive("sub", 2, _broadcast, _binary("-", ADD), lambda v, a: v[0] - v[1],
                    lambda b, n, g: [g, b.op("neg", g)], "d(a - b) = da - db",
                    elementwise=True, out_form="np.subtract({0}, {1}, out={out})",
                    augmented="-=", fold=operator.sub))
_register(Primitive("mul", 2, _broadcast, _binary("*", MUL), lambda v, a: v[0] * v[1],
                    lambda b, n, g: [b.op("mul", n.args[1], g), b.op("mul", n.args[0], g)],
                    "d(a * b) = b da + a db", elementwise=True,
                    out_form="np.multiply({0}, {1}, out={out})", augmented="*=",
                    fold=operator.mul))
_register(Primitive("div", 2, _broadcast, _binary("/", MUL), lambda v, a: v[0] / v[1],
                    lambda b, n, g: [b.op("div", g, n.args[1]),
                                     b.op("mul", b.op("neg", b.op("div", n, n.args[1])), g)],
                    "d(a / b) = da / b - (a / b) db / b", elementwise=True,
                    out_form="np.divide({0}, {1}, out={out})", augmented="/=",
                    fold=operator.truediv))


def _emit_neg(a, attrs, node):
    text, prec = a[0]
    if prec < POSTFIX or text.startswith("-"):
        text = f"({text})"
    return f"-{text}", UNARY


_register(Primitive("neg", 1, _same, _emit_neg, lambda v, a: -v[0],
                    lambda b, n, g: [b.op("neg", g)], "d(-a) = -da", elementwise=True,
                    out_form="np.negative({0}, out={out})", fold=operator.neg))


def _emit_pow(a, attrs, node):
    from ..backend.pyfmt import power

    return power(paren(a[0], POSTFIX), paren(a[1], UNARY)), POW


def _pow_vjp(b, n, g):
    x, c = n.args
    dx = b.op("mul", b.op("mul", c, b.op("pow", x, b.op("sub", c, b.const(1)))), g)
    dc = b.op("mul", b.op("mul", n, b.op("log", x)), g)
    return [dx, dc]


_register(Primitive("pow", 2, _broadcast, _emit_pow, lambda v, a: np.power(v[0], v[1]),
                    _pow_vjp, "d(a^c) = c a^(c-1) da + a^c log(a) dc", elementwise=True,
                    fold=operator.pow))


def _minmax_vjp(first, second):
    def vjp(b, n, g):
        a, c = n.args
        return [b.op("mul", b.op(first, a, c), g), b.op("mul", b.op(second, a, c), g)]
    return vjp


_register(Primitive("maximum", 2, _broadcast, _call("np.maximum"),
                    lambda v, a: np.maximum(v[0], v[1]), _minmax_vjp("ge", "lt"),
                    "d max(a, b) = [a >= b] da + [a < b] db", elementwise=True,
                    out_form="np.maximum({0}, {1}, out={out})",
                    kink=lambda v, a: _gap(np.subtract(v[0], v[1]))))
_register(Primitive("minimum", 2, _broadcast, _call("np.minimum"),
                    lambda v, a: np.minimum(v[0], v[1]), _minmax_vjp("le", "gt"),
                    "d min(a, b) = [a <= b] da + [a > b] db", elementwise=True,
                    out_form="np.minimum({0}, {1}, out={out})",
                    kink=lambda v, a: _gap(np.subtract(v[0], v[1]))))

# ----------------------------------------------------------------------------- elementwise functions
_unary("exp", "exp", lambda b, x, out: out, "exp'(x) = exp(x), the output itself")
_unary("log", "log", None, "log'(x) = 1 / x",
       vjp=lambda b, n, g: [b.op("div", g, n.args[0])])
_unary("sin", "sin", lambda b, x, out: b.op("cos", x), "sin'(x) = cos(x)")
_unary("cos", "cos", lambda b, x, out: b.op("neg", b.op("sin", x)), "cos'(x) = -sin(x)")
_unary("tan", "tan", lambda b, x, out: b.op("add", b.const(1), b.op("pow", out, b.const(2))),
       "tan'(x) = 1 + tan(x)^2")
_unary("tanh", "tanh", lambda b, x, out: b.op("sub", b.const(1), b.op("pow", out, b.const(2))),
       "tanh'(x) = 1 - tanh(x)^2, from the output")
_unary("sigmoid", _sigmoid,
       lambda b, x, out: b.op("mul", out, b.op("sub", b.const(1), out)),
       "sigmoid'(x) = s (1 - s), from the output s", numpy="_sigmoid")
_register(Primitive(
    "relu", 1, _same, lambda a, attrs, n: (f"np.maximum({a[0][0]}, 0)", POSTFIX),
    lambda v, a: np.maximum(v[0], 0), _factor(lambda b, x, out: b.op("gt", out, b.const(0))),
    "relu'(x) = [relu(x) > 0], a mask from the output", elementwise=True,
    kink=lambda v, a: _gap(v[0]), out_form="np.maximum({0}, 0, out={out})"))
_unary("softplus", lambda x: np.logaddexp(0.0, x), lambda b, x, out: b.op("sigmoid", x),
       "softplus'(x) = sigmoid(x)", numpy="_softplus")
_unary("sqrt", "sqrt", None, "sqrt'(x) = 1 / (2 sqrt(x)), from the output",
       vjp=lambda b, n, g: [b.op("div", g, b.op("mul", b.const(2), n))])
_register(Primitive("abs", 1, _same, _call("np.abs"), lambda v, a: np.abs(v[0]),
                    _factor(lambda b, x, out: b.op("sign", x)), "abs'(x) = sign(x)",
                    elementwise=True, kink=lambda v, a: _gap(v[0]),
                    out_form="np.abs({0}, out={out})"))
_unary("square", "square", lambda b, x, out: b.op("mul", b.const(2), x), "square'(x) = 2 x")
_register(Primitive("sign", 1, _same, _call("np.sign"), lambda v, a: np.sign(v[0]),
                    lambda b, n, g: [None], "sign'(x) = 0 (almost everywhere)",
                    elementwise=True, kink=lambda v, a: _gap(v[0]),
                    out_form="np.sign({0}, out={out})"))

_register(Primitive(
    "leaky_relu", 1, _same,
    lambda a, attrs, n: (f"_leaky_relu({a[0][0]}, {attrs['alpha']!r})", POSTFIX),
    lambda v, a: np.where(v[0] > 0, v[0], a["alpha"] * v[0]),
    lambda b, n, g: [b.op("where", b.op("gt", n.args[0], b.const(0)), g,
                          b.op("mul", b.const(n.attr("alpha")), g))],
    "leaky_relu'(x) = 1 where x > 0, else alpha", elementwise=True,
    kink=lambda v, a: _gap(v[0])))

# ----------------------------------------------------------------------------- comparisons and masks
for _name, _sym, _fn in (("gt", ">", "greater"), ("ge", ">=", "greater_equal"),
                         ("lt", "<", "less"), ("le", "<=", "less_equal"),
                         ("eq", "==", "equal")):
    _register(Primitive(_name, 2, _broadcast, _binary(_sym, CMP),
                        (lambda f: lambda v, a: getattr(np, f)(v[0], v[1]))(_fn),
                        lambda b, n, g: [None, None], "comparisons have zero derivative",
                        dtype="bool", elementwise=True))

_register(Primitive("where", 3, _broadcast, _call("np.where"),
                    lambda v, a: np.where(v[0], v[1], v[2]), None, "", elementwise=True))


def _like(fn: str):
    """np.zeros_like / np.ones_like, given the model's dtype when the argument is not
    already an array of it (a mask, labels or a Python number)."""
    def emit(a, attrs, node):
        extra = "" if node.args[0].is_array else ", dtype=DTYPE"
        return f"{fn}({a[0][0]}{extra})", POSTFIX
    return emit


_register(Primitive("zeros_like", 1, _same, _like("np.zeros_like"),
                    lambda v, a: np.zeros_like(v[0]), lambda b, n, g: [None],
                    "zeros_like(x) does not depend on the values of x"))
_register(Primitive("ones_like", 1, _same, _like("np.ones_like"),
                    lambda v, a: np.ones_like(v[0]), lambda b, n, g: [None],
                    "ones_like(x) does not depend on the values of x"))
_register(Primitive("stop_gradient", 1, _same, lambda a, attrs, n: a[0],
                    lambda v, a: v[0], lambda b, n, g: [None],
                    "stop_gradient(x) = x forward; no adjoint flows back through it",
                    elementwise=True, cheap=True, views=(0,)))
_register(Primitive(
    "keep_mask", 1, _same,
    lambda a, attrs, n: (f"rng.random({paren(a[0], POSTFIX)}.shape) >= {attrs['p']!r}", CMP),
    lambda v, a, rng: rng.random(np.shape(v[0])) >= a["p"], lambda b, n, g: [None],
    "a random mask does not depend on the values of x", dtype="bool", random=True))
_register(Primitive("cast", 1, _same,
                    lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}.astype(DTYPE)", POSTFIX),
                    lambda v, a: np.asarray(v[0], dtype=float), lambda b, n, g: [g],
                    "a cast to the model's dtype passes the adjoint through",
                    elementwise=True))

# ----------------------------------------------------------------------------- linear algebra
def _matmul_vjp(b, n, g):
    x, w = n.args
    g = expand(b, g, n)
    rx, rw = len(x.shape), len(w.shape)
    if rx == 2 and rw == 2:
        return [b.op("matmul", g, b.op("transpose", w)), b.op("matmul", b.op("transpose", x), g)]
    if rx == 1 and rw == 2:
        return [b.op("matmul", w, g), b.op("outer", x, g)]
    if rx == 2 and rw == 1:
        return [b.op("outer", g, w), b.op("matmul", b.op("transpose", x), g)]
    return [b.op("mul", g, w), b.op("mul", g, x)]


_register(Primitive("matmul", 2, _matmul_shape, _binary("@", MUL),
                    lambda v, a: np.matmul(v[0], v[1]), _matmul_vjp,
                    "d(X @ W) = dX @ W + X @ dW, so dX = G @ W.T and dW = X.T @ G",
                    out_form="np.matmul({0}, {1}, out={out})"))
_register(Primitive("outer", 2, lambda args, attrs: args[0].shape + args[1].shape,
                    _call("np.outer"), lambda v, a: np.outer(v[0], v[1]), None, ""))
_register(Primitive(
    "transpose", 1, _transpose_shape, lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}.T", POSTFIX),
    lambda v, a: np.transpose(v[0]),
    lambda b, n, g: [b.op("transpose", expand(b, g, n))], "d(X.T) = (dX).T", cheap=True,
    views=(0,)))


def _emit_reshape(a, attrs, n):
    """``np.reshape(x, (-1, 6))``: a symbolic dimension prints as -1 when it is the only
    one left to infer, else as its size from the data (``x.shape[0]``)."""
    want, sizes = attrs["shape"], iter(a[1:])
    free = sum(1 for d in want if not isinstance(d, int) or d == -1)
    dims = []
    for d in want:
        if isinstance(d, int):
            dims.append(str(d))
        else:
            size = next(sizes)[0]
            dims.append("-1" if free == 1 else size)
    return f"np.reshape({a[0][0]}, ({', '.join(dims)}{',' if len(dims) == 1 else ''}))", POSTFIX


def _eval_reshape(v, a):
    sizes = iter(v[1:])
    return np.reshape(v[0], tuple(d if isinstance(d, int) else int(next(sizes))
                                  for d in a["shape"]))


_register(Primitive(
    "reshape", None, _reshape_shape, _emit_reshape, _eval_reshape,
    lambda b, n, g: [b.op("reshape_like", expand(b, g, n), n.args[0])] + [None] * (
        len(n.args) - 1),
    "reshape moves elements without changing them", cheap=True, views=(0,)))
_register(Primitive(
    "reshape_like", 2, lambda args, attrs: args[1].shape,
    lambda a, attrs, n: (f"np.reshape({a[0][0]}, {paren(a[1], POSTFIX)}.shape)", POSTFIX),
    lambda v, a: np.reshape(v[0], np.shape(v[1])), None, "", cheap=True, views=(0,)))
_register(Primitive(
    "expand_dims", 1,
    lambda args, attrs: _expand_shape(args[0].shape, attrs["axis"]),
    lambda a, attrs, n: (f"np.expand_dims({a[0][0]}, {_axis_text(attrs['axis'])!r})", POSTFIX),
    lambda v, a: np.expand_dims(v[0], a["axis"]), None, "", cheap=True, views=(0,)))


def _expand_shape(shape, axes):
    out = list(shape)
    for ax in sorted(axes):
        out.insert(ax, 1)
    return tuple(out)


# ----------------------------------------------------------------------------- indexing and joining
# An index (attribute ``index``) has one item per leading axis: None for a whole axis
# (``:``), an integer (the axis is dropped), or a slice (start, stop, step) whose start
# and stop are None where they are the default bounds for the step's direction, so the
# text is written without knowing the shape (``::-1``, ``1:``). Trailing whole axes are
# left out. ``functions.normalize_index`` turns what a spec writes into this form.
def index_text(index) -> str:
    def item(it):
        if it is None:
            return ":"
        if isinstance(it, int):
            return str(it)
        start, stop, step = it
        text = f"{'' if start is None else start}:{'' if stop is None else stop}"
        return text + ("" if step == 1 else f":{step}")
    return ", ".join(item(it) for it in index)


def _py_index(index) -> tuple:
    return tuple(slice(None) if it is None else it if isinstance(it, int) else slice(*it)
                 for it in index)


def indexed_shape(shape: Shape, index) -> Shape:
    if len(index) > len(shape):
        raise ShapeError(f"too many indices ({len(index)}) for a value of shape "
                         f"{fmt_shape(shape)}", (0,))
    out = []
    for axis, d in enumerate(shape):
        it = index[axis] if axis < len(index) else None
        if it is None:
            out.append(d)
        elif not isinstance(d, int):
            raise ShapeError(f"only ':' may index the symbolic axis {axis} ({d})", (0,))
        elif isinstance(it, tuple):
            out.append(len(range(d)[slice(*it)]))
    return tuple(out)


def take(b: Builder, x: Node, index) -> Node:
    """``x[index]``; ``x`` itself when every axis is taken whole."""
    index = tuple(index)
    while index and index[-1] is None:
        index = index[:-1]
    return b.op("slice", x, index=index) if index else x


def _slice_vjp(b, n, g):
    x = n.args[0]
    return [b.op("index_add", b.op("zeros_like", x), g, index=(n.attr("index"),))]


_register(Primitive(
    "slice", 1, lambda args, attrs: indexed_shape(args[0].shape, attrs["index"]),
    lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}[{index_text(attrs['index'])}]", POSTFIX),
    lambda v, a: np.array(np.asarray(v[0])[_py_index(a["index"])]), _slice_vjp,
    "d x[i] = dx[i]: the adjoint goes back into the positions taken, zeros elsewhere",
    cheap=True, keeps_dtype=True, views=(0,)))


def _index_add_shape(args, attrs):
    base = args[0].shape
    for k, (g, index) in enumerate(zip(args[1:], attrs["index"])):
        part = indexed_shape(base, index)
        if broadcast_shapes(g.shape, part) != part:
            raise ShapeError(f"index_add: a value of shape {fmt_shape(g.shape)} does not fit "
                             f"[{index_text(index)}] of {fmt_shape(base)}", (0, k + 1))
    return base


def _emit_index_add(a, attrs, n):
    parts = [a[0][0]]
    for g, index in zip(a[1:], attrs["index"]):
        parts += [f"np.s_[{index_text(index)}]", g[0]]
    return f"_index_add({', '.join(parts)})", POSTFIX


def _eval_index_add(v, a):
    out = np.array(v[0], dtype=float)
    for g, index in zip(v[1:], a["index"]):
        out[_py_index(index)] += g
    return out


def _index_add_vjp(b, n, g):
    g = expand(b, g, n)
    return [g] + [take(b, g, index) for index in n.attr("index")]


_register(Primitive(
    "index_add", None, _index_add_shape, _emit_index_add, _eval_index_add, _index_add_vjp,
    "x with g added into positions [i]: the adjoint of a slice",
    augmented=lambda args, attrs, name: [f"{name}[{index_text(index)}] += {g}"
                                         for g, index in zip(args[1:], attrs["index"])]))


def _joined(a, attrs, n, fn: str):
    """``np.concatenate([a, b], axis=1)``, given the model's dtype when an argument is not
    already an array of it (a Python number, labels)."""
    extra = "" if all(x.is_array for x in n.args) else ", dtype=DTYPE"
    return f"{fn}([{', '.join(t for t, _ in a)}], axis={attrs['axis']}{extra})", POSTFIX


def _concat_shape(args, attrs):
    axis, first = attrs["axis"], args[0].shape
    total = 0
    for i, x in enumerate(args):
        shape = x.shape
        if len(shape) != len(first) or any(d != e for k, (d, e) in
                                           enumerate(zip(shape, first)) if k != axis):
            err = ShapeError(f"concat along axis {axis} needs the other axes equal", (0, i),
                             hint="every value must have the same shape except along the "
                                  "joined axis")
            err.at = i
            raise err
        if not isinstance(shape[axis], int):
            err = ShapeError(f"concat cannot join along the symbolic axis {axis} "
                             f"({shape[axis]}): the result's size would not be known", (i,),
                             hint="join along an axis of fixed size")
            err.at = i
            raise err
        total += shape[axis]
    return first[:axis] + (total,) + first[axis + 1:]


def _concat_vjp(b, n, g):
    g, axis, start, out = expand(b, g, n), n.attr("axis"), 0, []
    for x in n.args:
        stop = start + x.shape[axis]
        item = (start or None, None if stop == n.shape[axis] else stop, 1)
        out.append(take(b, g, (None,) * axis + (item,)))
        start = stop
    return out


_register(Primitive(
    "concat", None, _concat_shape, lambda a, attrs, n: _joined(a, attrs, n, "np.concatenate"),
    lambda v, a: np.concatenate([np.asarray(x, dtype=float) for x in v], axis=a["axis"]),
    _concat_vjp, "d concat(a, b) = concat(da, db): each part's adjoint is its slice"))


def _stack_shape(args, attrs):
    first = args[0].shape
    for i, x in enumerate(args):
        if x.shape != first:
            err = ShapeError("stack needs values of one shape", (0, i))
            err.at = i
            raise err
    return first[:attrs["axis"]] + (len(args),) + first[attrs["axis"]:]


_register(Primitive(
    "stack", None, _stack_shape, lambda a, attrs, n: _joined(a, attrs, n, "np.stack"),
    lambda v, a: np.stack([np.asarray(x, dtype=float) for x in v], axis=a["axis"]),
    lambda b, n, g: [take(b, expand(b, g, n), (None,) * n.attr("axis") + (i,))
                     for i in range(len(n.args))],
    "d stack(a, b) = stack(da, db): each part's adjoint is its index along the new axis"))


# ----------------------------------------------------------------------------- reductions
def _sum_vjp(b, n, g):
    return [keep_axes(b, g, n)]


def _mean_vjp(b, n, g):
    x = n.args[0]
    return [keep_axes(b, b.op("div", g, b.count(x, n.attr("axis"))), n)]


def _max_vjp(b, n, g):
    """The adjoint is split evenly among tied maximal elements (as PyTorch's amax and
    JAX do), so the gradient's total stays g whatever the number of ties."""
    x = n.args[0]
    mask = b.op("cast", b.op("eq", x, keep_axes(b, n, n)))
    ties = b.op("sum", mask, axis=n.attr("axis"), keepdims=n.attr("axis") is not None)
    return [b.op("mul", b.op("div", mask, ties), keep_axes(b, g, n))]


def _logsumexp_vjp(b, n, g):
    x = n.args[0]
    return [b.op("mul", b.op("exp", b.op("sub", x, keep_axes(b, n, n))), keep_axes(b, g, n))]


def _np_reduce(fn):
    """Evaluate a reduction; ``fn`` is a NumPy function's name or a function."""
    def evaluate(v, a):
        f = getattr(np, fn) if isinstance(fn, str) else fn
        return f(v[0], axis=a.get("axis"), keepdims=bool(a.get("keepdims")))
    return evaluate


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


_register(Primitive("sum", 1, _reduced, _reduce_call("np.sum"), _np_reduce("sum"), _sum_vjp,
                    "d sum(x) = sum(dx): the adjoint is copied to every element",
                    out_form=_reduce_into("np.sum")))
_register(Primitive("mean", 1, _reduced, _reduce_call("np.mean"), _np_reduce("mean"),
                    _mean_vjp, "d mean(x) = mean(dx): the adjoint / count to every element",
                    out_form=_reduce_into("np.mean")))
_register(Primitive("max", 1, _reduced, _reduce_call("np.max"), _np_reduce("max"), _max_vjp,
                    "d max(x) flows to the maximal element, split evenly among ties",
                    kink=lambda v, a: _top_gap(v[0], a.get("axis"))))
_register(Primitive("logsumexp", 1, _reduced, _reduce_call("_logsumexp"),
                    _np_reduce(_np_logsumexp), _logsumexp_vjp,
                    "d logsumexp(x) = softmax(x) . dx"))
_register(Primitive(
    "count", 1, _scalar,
    lambda a, attrs, n: _emit_count(a[0], attrs.get("axis"), n.args[0].shape),
    lambda v, a: np.asarray(np.prod([np.shape(v[0])[i] for i in (a["axis"] if a.get("axis")
                                                              is not None else
                                                              range(np.ndim(v[0])))]) * 1.0),
    lambda b, n, g: [None], "a count does not depend on the values", dtype="int", cheap=True))


def _emit_count(arg, axes, shape):
    base = paren(arg, POSTFIX)
    if axes is None:
        return f"{base}.size", POSTFIX
    parts = [f"{base}.shape[{i}]" for i in axes]
    return (parts[0], POSTFIX) if len(parts) == 1 else (" * ".join(parts), MUL)


# ----------------------------------------------------------------------------- normalisers
def _softmax_vjp(b, n, g):
    axis = n.attr("axis")
    inner = b.op("sum", b.op("mul", g, n), axis=axis, keepdims=True)
    return [b.op("mul", n, b.op("sub", g, inner))]


def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


_register(Primitive("softmax", 1, _same, _reduce_call("_softmax"),
                    lambda v, a: _np_softmax(v[0], a["axis"]), _softmax_vjp,
                    "softmax's Jacobian-vector product from its output p: p (g - sum(g p))"))

# ----------------------------------------------------------------------------- convolution and pooling
# A convolution is written as the textbook's Convolution layer (Deep Learning from
# Scratch, ch. 7): the patch matrix of the input (``im2col``), a matrix product with the
# filters reshaped into rows, and the result moved to [N, F, OH, OW]. Each step is its
# own primitive below, so the backward pass reads step by step: the filters' gradient is
# a product with the kept patch matrix, the patches' gradient is folded back onto the
# input (``col2im``). Pooling works on the last two axes of any value of rank >= 2.
def out_size(size, kernel: int, stride: int, pad: int, what: str, axis: str) -> int:
    """(size + 2 pad - kernel) / stride + 1 along the image's ``axis`` (height or
    width), which must be a whole number >= 1."""
    if not isinstance(size, int):
        raise ShapeError(f"{what} needs fixed image sizes, not the symbolic dimension "
                         f"{size}", (0,), hint="declare the height and width as numbers")
    span = size + 2 * pad - kernel
    if span < 0:
        raise ShapeError(f"the {what} window's {axis} ({kernel}) is larger than the padded "
                         f"input's ({size} + 2*{pad} = {size + 2 * pad})",
                         hint="use a smaller kernel or more padding")
    if span % stride:
        raise ShapeError(f"the {what} windows do not tile the input's {axis}: (size + 2*pad "
                         f"- kernel) / stride + 1 = ({size} + 2*{pad} - {kernel}) / {stride} "
                         "+ 1 is not a whole number",
                         hint=f"choose stride and pad so that stride divides "
                              f"{size} + 2*pad - {kernel}")
    return span // stride + 1


def _im2col_shape(args, attrs):
    n, c, h, w = args[0].shape
    kh, kw, s, p = attrs["kh"], attrs["kw"], attrs["stride"], attrs["pad"]
    oh = out_size(h, kh, s, p, "convolution", "height")
    return (n, c * kh * kw, oh * out_size(w, kw, s, p, "convolution", "width"))


def _window_args(attrs) -> str:
    return f"{attrs['kh']}, {attrs['kw']}, stride={attrs['stride']}, pad={attrs['pad']}"


def _np_windows(x, kh, kw, stride, pad, fill=0.0):
    """[..., OH, OW, kh, kw]: every window over the last two axes (reference code)."""
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2
        x = np.pad(x, edges, constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(-2, -1))
    return view[..., ::stride, ::stride, :, :]


def _im2col_is_reshape(attrs) -> bool:
    """A 1x1 kernel at stride 1 without padding: every pixel is a patch of its own, and
    ``_im2col`` returns the input reshaped (a view of it where NumPy can make one)."""
    return (attrs["kh"], attrs["kw"], attrs["stride"], attrs["pad"]) == (1, 1, 1, 0)


def _np_im2col(v, a):
    """[N, C*kh*kw, OH*OW]: column (i, j) holds the pixels of window (i, j) (reference)."""
    win = _np_windows(v[0], a["kh"], a["kw"], a["stride"], a["pad"])  # [N, C, OH, OW, ., .]
    n, c, oh, ow = win.shape[:4]
    return np.stack([win[:, :, i, j].reshape(n, -1) for i in range(oh) for j in range(ow)],
                    axis=-1)


def _np_col2im(v, a):
    """Every patch entry added back onto the input pixel it came from (reference)."""
    col, like = v
    kh, kw, s, p = a["kh"], a["kw"], a["stride"], a["pad"]
    n, c, h, w = np.shape(like)
    ow = (w + 2 * p - kw) // s + 1
    out = np.zeros((n, c, h + 2 * p, w + 2 * p))
    for q in range(col.shape[-1]):
        i, j = divmod(q, ow)
        out[:, :, i * s:i * s + kh, j * s:j * s + kw] += col[:, :, q].reshape(n, c, kh, kw)
    return out[:, :, p:p + h, p:p + w]


_register(Primitive(
    "im2col", 1, _im2col_shape,
    lambda a, attrs, n: (f"_im2col({a[0][0]}, {_window_args(attrs)})", POSTFIX), _np_im2col,
    lambda b, n, g: [b.op("col2im", expand(b, g, n), n.args[0], **dict(n.attrs))],
    "im2col copies input pixels into patches: its adjoint adds each patch back (col2im)",
    views=lambda attrs: (0,) if _im2col_is_reshape(attrs) else ()))
_register(Primitive(
    "col2im", 2, lambda args, attrs: args[1].shape,
    lambda a, attrs, n: (f"_col2im({a[0][0]}, {paren(a[1], POSTFIX)}.shape, "
                         f"{_window_args(attrs)})", POSTFIX), _np_col2im,
    lambda b, n, g: [b.op("im2col", expand(b, g, n), **dict(n.attrs)), None],
    "col2im adds patches onto the image: its adjoint copies the image into patches"))


def _filters_matmul_shape(args, attrs):
    m, x = args[0].shape, args[1].shape
    if len(m) != 2 or len(x) != 3 or m[1] != x[1]:
        raise ShapeError("filters [A, B] need patches [N, B, P]", (0, 1))
    image = attrs.get("image")
    if image is None:
        return (x[0], m[0], x[2])
    if image[0] * image[1] != x[2]:
        raise ShapeError(f"{x[2]} output pixels do not make a {image[0]}x{image[1]} image",
                         (1,))
    return (x[0], m[0]) + tuple(image)


def _emit_filters_matmul(a, attrs, node):
    product = f"{paren(a[0], MUL)} @ {paren(a[1], MUL + 1)}"
    image = attrs.get("image")
    if image is None:
        return product, MUL
    return f"np.reshape({product}, (-1, {node.shape[1]}, {image[0]}, {image[1]}))", POSTFIX


def _filters_matmul_vjp(b, n, g):
    """Y_n = M @ X_n for every example n (M [A, B], X [N, B, P]; with ``image`` Y_n is
    then reshaped to [A, OH, OW]): dX_n = M.T @ G_n, dM = the sum over n of
    G_n @ X_n.T."""
    m, x = n.args
    g = expand(b, g, n)
    if n.attr("image") is not None:
        g = b.hint(b.op("reshape_each", g, dims=(m.shape[0], x.shape[2])), "rows")
    return [b.hint(b.op("batch_gram", g, x), "filters"),
            b.hint(b.op("filters_matmul", b.transpose(m), g), "col")]


def _np_filters_matmul(v, a):
    out = np.matmul(v[0], v[1])
    image = a.get("image")
    return out if image is None else out.reshape(out.shape[:2] + tuple(image))


_register(Primitive(
    "filters_matmul", 2, _filters_matmul_shape, _emit_filters_matmul, _np_filters_matmul,
    _filters_matmul_vjp, "Y_n = M @ X_n: dX_n = M.T @ G_n, dM = sum over n of G_n @ X_n.T"))


def _batch_gram_shape(args, attrs):
    g, x = args[0].shape, args[1].shape
    if len(g) != 3 or len(x) != 3 or g[0] != x[0] or g[2] != x[2]:
        raise ShapeError("both stacks must be [N, ., P] with the same N and P", (0, 1))
    return (g[1], x[1])


_register(Primitive(
    "batch_gram", 2, _batch_gram_shape,
    lambda a, attrs, n: (f"np.sum({paren(a[0], MUL)} @ np.swapaxes({a[1][0]}, 1, 2), axis=0)",
                         POSTFIX),
    lambda v, a: np.einsum("nap,nbp->ab", v[0], v[1]), None,
    "the sum over examples n of G_n @ X_n.T"))


def _reshape_each_shape(args, attrs):
    shape, dims = args[0].shape, tuple(attrs["dims"])
    if not shape:
        raise ShapeError("a scalar has no first axis to keep", (0,))
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise ShapeError("the sizes after the first axis must be fixed numbers", (0,))
    size = 1
    for d in rest:
        size *= d
    want = 1
    for d in dims:
        want *= d
    if size != want:
        raise ShapeError(f"cannot reshape {fmt_shape(rest)} to {fmt_shape(dims)} for each "
                         "example", (0,))
    return (shape[0],) + dims


def _emit_reshape_each(a, attrs, n):
    dims = ", ".join(str(d) for d in attrs["dims"])
    return f"np.reshape({a[0][0]}, (-1, {dims}))", POSTFIX


_register(Primitive(
    "reshape_each", 1, _reshape_each_shape, _emit_reshape_each,
    lambda v, a: np.reshape(v[0], (np.shape(v[0])[0],) + tuple(a["dims"])),
    lambda b, n, g: [b.op("reshape_each", expand(b, g, n),
                          dims=tuple(n.args[0].shape[1:]))],
    "reshaping each example moves elements without changing them", cheap=True,
    views=(0,)))


def _pool_shape(args, attrs):
    shape = args[0].shape
    if len(shape) < 2:
        raise ShapeError("pooling needs a value with at least two axes (the last two are "
                         "pooled)", (0,))
    k, s, p = attrs["size"], attrs["stride"], attrs["pad"]
    return shape[:-2] + (out_size(shape[-2], k, s, p, "pooling", "height"),
                         out_size(shape[-1], k, s, p, "pooling", "width"))


def _pool_args(attrs) -> str:
    return f"{attrs['size']}, stride={attrs['stride']}, pad={attrs['pad']}"


def _np_pool(reduce, fill):
    def evaluate(v, a):
        k = a["size"]
        return reduce(_np_windows(v[0], k, k, a["stride"], a["pad"], fill), axis=(-2, -1))
    return evaluate


def _pool_gap(v, a):
    """How close each window's maximum is to its runner-up (a tie is max_pool's kink)."""
    k = a["size"]
    win = _np_windows(np.asarray(v[0], dtype=float), k, k, a["stride"], a["pad"], -np.inf)
    flat = np.sort(win.reshape(win.shape[:-2] + (k * k,)), axis=-1)
    if k * k < 2 or not flat.size:
        return np.inf
    return float(np.min(flat[..., -1] - flat[..., -2]))


def _np_spread(patches, x, a):
    """Adds [..., OH, OW, k, k] window values back onto the pixels they cover (reference)."""
    k, s, p = a["size"], a["stride"], a["pad"]
    h, w = np.shape(x)[-2:]
    dx = np.zeros(np.shape(x)[:-2] + (h + 2 * p, w + 2 * p))
    for i in range(patches.shape[-4]):
        for j in range(patches.shape[-3]):
            dx[..., i * s:i * s + k, j * s:j * s + k] += patches[..., i, j, :, :]
    return dx[..., p:p + h, p:p + w]


def _np_avg_pool_grad(v, a):
    g, x = v
    k = a["size"]
    return _np_spread(np.broadcast_to(np.asarray(g)[..., None, None] / (k * k),
                                      np.shape(g) + (k, k)), x, a)


def _max_pool_vjp(b, n, g):
    """The adjoint from a boolean argmax mask, one per offset in the window and window
    (the textbook's ``arg_max``, with ties kept), which the backward can take as soon as
    the forward is done: the pooled input itself need not be kept."""
    attrs = dict(n.attrs)
    mask = b.hint(b.op("max_pool_mask", n.args[0], n, **attrs), "argmax")
    return b.op("max_pool_grad", expand(b, g, n), mask, **attrs)


def _np_max_pool_mask(v, a):
    x, out = v
    k = a["size"]
    win = _np_windows(x, k, k, a["stride"], a["pad"], -np.inf)  # [..., OH, OW, k, k]
    hit = win == np.asarray(out)[..., None, None]
    return np.moveaxis(hit.reshape(hit.shape[:-2] + (k * k,)), -1, 0)


def _np_max_pool_grad(v, a):
    g, mask = v  # mask [k*k, ..., OH, OW]: which offsets of each window hold its maximum
    k, s, p = a["size"], a["stride"], a["pad"]
    share = np.asarray(mask, dtype=float) / np.sum(mask, axis=0)  # ties share evenly
    patches = np.moveaxis(share * np.asarray(g), 0, -1)
    patches = patches.reshape(patches.shape[:-1] + (k, k))
    oh, ow = np.shape(g)[-2:]
    like = np.empty(np.shape(g)[:-2] + ((oh - 1) * s + k - 2 * p, (ow - 1) * s + k - 2 * p))
    return _np_spread(patches, like, a)


_register(Primitive(
    "max_pool_mask", 2,
    lambda args, attrs: (attrs["size"] * attrs["size"],) + args[1].shape,
    lambda a, attrs, n: (f"_max_pool_mask({a[0][0]}, {a[1][0]}, {_pool_args(attrs)})",
                         POSTFIX), _np_max_pool_mask, None, "", dtype="bool"))
_register(Primitive(
    "max_pool", 1, _pool_shape,
    lambda a, attrs, n: (f"_max_pool({a[0][0]}, {_pool_args(attrs)})", POSTFIX),
    _np_pool(lambda w, axis: np.max(w, axis=axis), -np.inf),
    lambda b, n, g: [_max_pool_vjp(b, n, g)],
    "max pooling passes each window's adjoint to its maximum (split evenly among ties)",
    kink=_pool_gap))
def _max_pool_grad_shape(args, attrs):
    k, s, p = attrs["size"], attrs["stride"], attrs["pad"]
    shape = args[0].shape
    return shape[:-2] + tuple((d - 1) * s + k - 2 * p for d in shape[-2:])


_register(Primitive(
    "max_pool_grad", 2, _max_pool_grad_shape,
    lambda a, attrs, n: (f"_max_pool_grad({a[0][0]}, {a[1][0]}, {_pool_args(attrs)})",
                         POSTFIX), _np_max_pool_grad, None, ""))
_register(Primitive(
    "avg_pool", 1, _pool_shape,
    lambda a, attrs, n: (f"_avg_pool({a[0][0]}, {_pool_args(attrs)})", POSTFIX),
    _np_pool(lambda w, axis: np.mean(w, axis=axis), 0.0),
    lambda b, n, g: [b.op("avg_pool_grad", expand(b, g, n), n.args[0], **dict(n.attrs))],
    "average pooling spreads each window's adjoint evenly over its size x size pixels"))
_register(Primitive(
    "avg_pool_grad", 2, lambda args, attrs: args[1].shape,
    lambda a, attrs, n: (f"_avg_pool_grad({a[0][0]}, {paren(a[1], POSTFIX)}.shape, "
                         f"{_pool_args(attrs)})", POSTFIX), _np_avg_pool_grad, None, ""))


# ----------------------------------------------------------------------------- fused losses


def _xent_emit(a, attrs, node):
    _, log_p, t, n = a
    if labels(node.args[2], node.args[0]):
        picked = f"np.take_along_axis({log_p[0]}, {paren(t, POSTFIX)}[..., None], axis=-1)"
        return f"-np.sum({picked}) / {paren(n, MUL + 1)}", MUL
    return f"-np.sum({paren(t, MUL)} * {paren(log_p, MUL + 1)}) / {paren(n, MUL + 1)}", MUL


def _xent_eval(v, attrs):
    logits, log_p, t, n = v
    if np.ndim(t) == np.ndim(logits) - 1:
        return -np.sum(np.take_along_axis(log_p, np.asarray(t)[..., None].astype(int),
                                          axis=-1)) / n
    return -np.sum(t * log_p) / n


def _xent_vjp(b, node, g):
    logits, log_p, t, n = node.args
    p = b.op("exp", log_p)  # softmax(logits), from the forward's log-softmax
    if labels(t, logits):  # integer labels: not differentiable
        onehot = b.op("one_hot", t, classes=logits.shape[-1])
        return [b.op("mul", b.op("div", b.op("sub", p, onehot), n), g), None, None, None]
    if t.op != "input" or t.attr("default"):
        # A computed target (or an input's default) need not sum to 1 over classes: the
        # exact gradient is (p * sum(t) - t) / N, which the fused rule shortens only for
        # data the runtime checks.
        p = b.op("mul", p, b.op("sum", t, axis=(len(t.shape) - 1,), keepdims=True))
    # The fused rule covers log_p's own dependence on the logits: nothing flows to it.
    d_logits = b.op("mul", b.op("div", b.op("sub", p, t), n), g)
    d_t = b.op("mul", b.op("neg", b.op("div", log_p, n)), g)  # -log_softmax(logits) / N
    return [d_logits, None, d_t, None]


def _xent_roles(node: Node) -> list[tuple[int, str, int]]:
    logits, _, t, _ = node.args
    return [(2, "labels" if labels(t, logits) else "onehot", int(logits.shape[-1]))]


_register(Primitive(
    "softmax_xent", 4, lambda args, attrs: _xent_shape(args, attrs), _xent_emit, _xent_eval,
    _xent_vjp, "softmax + cross-entropy fused: dL/dlogits = (softmax - onehot) / N",
    data_roles=_xent_roles))


def data_roles(roots) -> dict[str, tuple[str, int]]:
    """Input/target name -> ("labels" | "onehot", classes), from every op that says."""
    from . import topo_order

    out: dict[str, tuple[str, int]] = {}
    for n in topo_order(roots):
        roles = PRIMITIVES[n.op].data_roles
        for index, role, classes in (roles(n) if roles else ()):
            arg = n.args[index]
            if arg.op == "input":
                out.setdefault(arg.attr("name"), (role, classes))
    return out
_register(Primitive(
    "one_hot", 1, lambda args, attrs: args[0].shape + (attrs["classes"],),
    lambda a, attrs, n: (f"np.eye({attrs['classes']}, dtype=DTYPE)[{a[0][0]}]", POSTFIX),
    lambda v, a: np.eye(a["classes"])[np.asarray(v[0]).astype(int)], None, ""))


def _sig_xent_emit(a, attrs, node):
    logits, t, n = a
    return (f"np.sum(np.logaddexp(0, {logits[0]}) - {paren(t, MUL)} * {paren(logits, MUL + 1)})"
            f" / {paren(n, MUL + 1)}", MUL)


_register(Primitive(
    "sigmoid_xent", 3, lambda args, attrs: _sigmoid_xent_shape(args, attrs), _sig_xent_emit,
    lambda v, a: np.sum(np.logaddexp(0.0, v[0]) - v[1] * v[0]) / v[2],
    lambda b, n, g: [b.op("mul", b.op("div", b.op("sub", b.op("sigmoid", n.args[0]),
                                                    n.args[1]), n.args[2]), g),
                     b.op("mul", b.op("neg", b.op("div", n.args[0], n.args[2])), g), None],
    "sigmoid + cross-entropy fused: dL/dlogits = (sigmoid - t) / N, dL/dt = -logits / N"))


# Helpers the printed code may call, defined once at the top of a generated module.
HELPERS = {
    "_sigmoid": '''def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return np.exp(-np.logaddexp(0, -x))''',
    "_softplus": '''def _softplus(x):
    """log(1 + exp(x)), without overflow."""
    return np.logaddexp(0, x)''',
    "_leaky_relu": '''def _leaky_relu(x, alpha):
    return np.where(x > 0, x, alpha * x)''',
    "_softmax": '''def _softmax(x, axis=-1):
    """exp(x) / sum(exp(x)), shifted by the maximum for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)''',
    "_index_add": '''def _index_add(x, *updates):
    """A copy of x with each value added into its positions: out[index] += value."""
    out = x.copy()
    for index, value in zip(updates[::2], updates[1::2]):
        out[index] += value
    return out''',
    "_logsumexp": '''def _logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), shifted by the maximum for stability."""
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)''',
    "_im2col": '''def _im2col(x, kh, kw, stride=1, pad=0):
    """The patch matrix of a convolution, one column per output pixel.

    x is [N, C, H, W]; the result is [N, C*kh*kw, OH*OW]: column (i*OW + j) of example
    n holds the C*kh*kw input values that the filter at output pixel (i, j) covers, in
    the filters' own order (channel, row, column), so the filters reshaped to rows
    [F, C*kh*kw] times it are the convolution. A copy, kept for the backward pass,
    except for a 1x1 kernel at stride 1 without padding: each pixel is then a patch of
    its own, and the result is x reshaped (a view of x, which must then stay unchanged
    while the result is kept)."""
    n, c, h, w = x.shape
    if kh == kw == stride == 1 and not pad:
        return x.reshape(n, c, h * w)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # [N, C, OH, OW, kh, kw], a view
    oh, ow = windows.shape[2:4]
    col = windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)
    # A kernel as tall or as wide as the image can leave that reshape a view of x.
    return col.copy() if np.may_share_memory(col, x) else col''',
    "_col2im": '''def _col2im(col, shape, kh, kw, stride=1, pad=0):
    """The adjoint of _im2col: every entry of the patch matrix [N, C*kh*kw, OH*OW]
    added back onto the pixel of the [N, C, H, W] image it was copied from (a pixel
    that several patches cover collects several terms). One loop step per kernel
    offset (kh*kw steps), none per example or pixel."""
    n, c, h, w = shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    col = col.reshape(n, c, kh, kw, oh, ow)
    x = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            x[:, :, rows, cols] += col[:, :, i, j]
    return x[:, :, pad : pad + h, pad : pad + w]''',
    "_max_pool": '''def _max_pool(x, size, stride=1, pad=0):
    """The maximum of every size x size window of the last two axes (windows stride
    apart, the image surrounded by pad rows and columns of -inf)."""
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2
        x = np.pad(x, edges, constant_values=-np.inf)
    oh = (x.shape[-2] - size) // stride + 1
    ow = (x.shape[-1] - size) // stride + 1
    out = x[..., : stride * oh : stride, : stride * ow : stride].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                rows = slice(i, i + stride * oh, stride)
                cols = slice(j, j + stride * ow, stride)
                np.maximum(out, x[..., rows, cols], out=out)
    return out''',
    "_max_pool_mask": '''def _max_pool_mask(x, out, size, stride=1, pad=0):
    """Where each window of _max_pool took its maximum, one boolean array per offset
    in the window: [size*size, ..., OH, OW] (the argmax mask, ties kept). What the
    backward keeps instead of x."""
    oh, ow = out.shape[-2:]
    if pad:
        edges = [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2
        x = np.pad(x, edges, constant_values=-np.inf)
    mask = np.empty((size * size,) + out.shape, dtype=bool)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            np.equal(x[..., rows, cols], out, out=mask[i * size + j])
    return mask''',
    "_max_pool_grad": '''def _max_pool_grad(g, mask, size, stride=1, pad=0):
    """The adjoint of _max_pool: each window's adjoint g goes to the pixel holding the
    window's maximum (mask from _max_pool_mask), split evenly among tied pixels. One
    loop step per offset in the window (size*size steps)."""
    oh, ow = g.shape[-2:]
    h = (oh - 1) * stride + size  # the padded image (the windows tile it exactly)
    w = (ow - 1) * stride + size
    share = mask[0].astype(g.dtype)
    for ties in mask[1:]:
        share += ties
    np.divide(g, share, out=share)
    # Windows side by side (stride == size) cover every pixel once: nothing to clear.
    empty = np.empty if stride == size else np.zeros
    dx = empty(g.shape[:-2] + (h, w), dtype=g.dtype)
    for i in range(size):
        for j in range(size):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            if stride >= size:  # windows do not overlap: each pixel is written once
                np.multiply(mask[i * size + j], share, out=dx[..., rows, cols])
            else:
                dx[..., rows, cols] += mask[i * size + j] * share
    return dx[..., pad : h - pad, pad : w - pad]''',
    "_avg_pool": '''def _avg_pool(x, size, stride=1, pad=0):
    """The mean of every size x size window of the last two axes (windows stride apart;
    pad rows and columns of zeros around the image count in every mean)."""
    if pad:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2)
    oh = (x.shape[-2] - size) // stride + 1
    ow = (x.shape[-1] - size) // stride + 1
    out = x[..., : stride * oh : stride, : stride * ow : stride].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                rows = slice(i, i + stride * oh, stride)
                cols = slice(j, j + stride * ow, stride)
                out += x[..., rows, cols]
    out /= size * size
    return out''',
    "_avg_pool_grad": '''def _avg_pool_grad(g, shape, size, stride=1, pad=0):
    """The adjoint of _avg_pool: each window's adjoint spread evenly, g / size^2, over
    the size x size pixels of the window."""
    h, w = shape[-2:]
    dx = np.zeros(tuple(shape[:-2]) + (h + 2 * pad, w + 2 * pad), dtype=g.dtype)
    share = g / (size * size)
    oh, ow = g.shape[-2:]
    for i in range(size):
        for j in range(size):
            dx[..., i : i + stride * oh : stride, j : j + stride * ow : stride] += share
    return dx[..., pad : pad + h, pad : pad + w]''',
}
