"""Leaves, constants and arithmetic: the operators a spec writes (``+ - * / ^``, unary
minus), ``maximum``/``minimum``, comparisons, ``where`` and ``causal`` masks."""

from __future__ import annotations

import operator

import numpy as np

from .. import ShapeError, literal_shape
from .core import (ADD, ATOM, CMP, MUL, PLACED, POSTFIX, POW, UNARY, as_float, binop,
                   broadcast, call, defop, derived, ex, format_number, gap, infix, mask,
                   no_gradient,
                   paren, positive, promoted, tcall, tinfix, unop)

# ----------------------------------------------------------------------------- leaves
# A leaf's value is given (an input, a parameter, a state): it has no computation to check.
def _emit_leaf(args, attrs, node):
    return attrs["name"], ATOM


for _leaf in ("input", "param", "state"):
    defop(_leaf, arity=0, shape=lambda args, attrs: (),
          emit=_emit_leaf, torch=_emit_leaf,
          evaluate=lambda v, a: None, cheap=True)


# The loss's adjoint seed, dL/dL: ``loss_and_grad``'s argument ``scale`` (default 1), a
# Python number. A training loop passes ``-lr`` and adds the gradients it gets (one pass
# over the parameters, not two); any other caller gets the plain gradient.
SEED_NAME = "scale"


def _emit_seed(args, attrs, node):
    return SEED_NAME, ATOM


defop("seed", arity=0, shape=lambda args, attrs: (),
      emit=_emit_seed, torch=_emit_seed,
      evaluate=lambda v, a: np.asarray(1.0), cheap=True)


def _const(array: str):
    """Prints a constant: a number as itself, an array as ``array`` of its nested list."""
    def emit(a, attrs, node):
        value = attrs["value"]
        if isinstance(value, tuple):
            def lit(v):
                return "[" + ", ".join(lit(x) for x in v) + "]" if isinstance(v, tuple) \
                    else format_number(float(v))
            return array.format(lit(value)), POSTFIX
        text = format_number(value)
        return text, (UNARY if text.startswith("-") else ATOM)
    return emit


defop("const", arity=0,
      shape=lambda args, attrs: literal_shape(attrs["value"]),
      emit=_const("np.array({}, dtype=DTYPE)"),
      torch=_const(f"torch.tensor({{}}, {PLACED})"),
      evaluate=lambda v, a: np.asarray(a["value"], dtype=float),
      cheap=True,
      examples=(ex(value=2.5), ex(value=-1e16), ex(value=((1.0, -2.0), (0.5, 3.0)))))

# ----------------------------------------------------------------------------- arithmetic
binop("add", emit=infix("+", ADD), torch=tinfix("+", ADD),
      torch_out="torch.add({0}, {1}, out={out})",
      evaluate=lambda v, a: v[0] + v[1],
      vjp=lambda b, n, g: [g, g],
      rule="d(a + b) = da + db",
      out_form="np.add({0}, {1}, out={out})", augmented="+=", fold=operator.add)

binop("sub", emit=infix("-", ADD), torch=tinfix("-", ADD),
      torch_out="torch.sub({0}, {1}, out={out})",
      evaluate=lambda v, a: v[0] - v[1],
      vjp=lambda b, n, g: [g, b.op("neg", g)],
      rule="d(a - b) = da - db",
      out_form="np.subtract({0}, {1}, out={out})", augmented="-=", fold=operator.sub)

binop("mul", emit=infix("*", MUL), torch=tinfix("*", MUL),
      torch_out="torch.mul({0}, {1}, out={out})",
      evaluate=lambda v, a: v[0] * v[1],
      vjp=lambda b, n, g: [b.op("mul", n.args[1], g), b.op("mul", n.args[0], g)],
      rule="d(a * b) = b da + a db",
      out_form="np.multiply({0}, {1}, out={out})", augmented="*=", fold=operator.mul)

binop("div", emit=infix("/", MUL), torch=tinfix("/", MUL),
      torch_out="torch.div({0}, {1}, out={out})",
      evaluate=lambda v, a: v[0] / v[1],
      vjp=lambda b, n, g: [b.op("div", g, n.args[1]),
                           b.op("mul", b.op("neg", b.op("div", n, n.args[1])), g)],
      rule="d(a / b) = da / b - (a / b) db / b",
      out_form="np.divide({0}, {1}, out={out})", augmented="/=", fold=operator.truediv,
      examples=(ex((2, 3), positive((3,))), ex((), positive((2, 1)))))


def _emit_neg(a, attrs, node):
    text, prec = a[0]
    if prec < POSTFIX or text.startswith("-"):
        text = f"({text})"
    return f"-{text}", UNARY


unop("neg", emit=_emit_neg,
     torch=lambda a, attrs, node: _emit_neg(promoted(a, node), attrs, node),
     torch_out="torch.neg({0}, out={out})",
     evaluate=lambda v, a: -v[0],
     vjp=lambda b, n, g: [b.op("neg", g)],
     rule="d(-a) = -da",
     out_form="np.negative({0}, out={out})", fold=operator.neg)


def _emit_pow(a, attrs, node):
    from ...backend.pyfmt import power

    return power(paren(a[0], POSTFIX), paren(a[1], UNARY)), POW


def _pow_vjp(b, n, g):
    x, c = n.args
    dx = b.op("mul", b.op("mul", c, b.op("pow", x, b.op("sub", c, b.const(1)))), g)
    dc = b.op("mul", b.op("mul", n, b.op("log", x)), g)
    return [dx, dc]


binop("pow", emit=_emit_pow,
      torch=lambda a, attrs, node: _emit_pow(promoted(a, node), attrs, node),
      evaluate=lambda v, a: np.power(v[0], v[1]),
      vjp=_pow_vjp,
      rule="d(a^c) = c a^(c-1) da + a^c log(a) dc",
      fold=operator.pow,
      examples=(ex(positive((2, 3)), (3,)), ex(positive((2, 1)), ())))


def _select(first: str, second: str):
    """vjp of maximum/minimum: the adjoint goes to the argument that was chosen."""
    def vjp(b, n, g):
        a, c = n.args
        return [b.op("mul", b.op(first, a, c), g), b.op("mul", b.op(second, a, c), g)]
    return vjp


def _extreme(fn: str, bound: str):
    """torch.maximum / torch.minimum, which take tensors only: against a Python number,
    ``torch.clamp(x, min=c)`` (max=c), the same values."""
    both = tcall(fn)

    def emit(a, attrs, node):
        weak = [n.weak for n in node.args]
        if weak.count(True) == 1:
            k = weak.index(True)
            x = as_float(a[1 - k], node.args[1 - k])
            return f"torch.clamp({x[0]}, {bound}={a[k][0]})", POSTFIX
        return both(a, attrs, node)
    return emit


def _tie_gap(v, a):
    return gap(np.subtract(v[0], v[1]))


binop("maximum", emit=call("np.maximum"), torch=_extreme("torch.maximum", "min"),
      torch_out="torch.maximum({0}, {1}, out={out})",
      evaluate=lambda v, a: np.maximum(v[0], v[1]),
      vjp=_select("ge", "lt"),
      rule="d max(a, b) = [a >= b] da + [a < b] db",
      out_form="np.maximum({0}, {1}, out={out})", kink=_tie_gap)

binop("minimum", emit=call("np.minimum"), torch=_extreme("torch.minimum", "max"),
      torch_out="torch.minimum({0}, {1}, out={out})",
      evaluate=lambda v, a: np.minimum(v[0], v[1]),
      vjp=_select("le", "gt"),
      rule="d min(a, b) = [a <= b] da + [a > b] db",
      out_form="np.minimum({0}, {1}, out={out})", kink=_tie_gap)

def _causal_shape(args, attrs):
    """[T, T] for causal(T): T a number, or a symbolic dimension (a count of one axis)."""
    n = args[0]
    if n.op == "const" and isinstance(n.attr("value"), int) and n.attr("value") > 0:
        return (n.attr("value"),) * 2
    if n.op == "count" and n.attr("axis") is not None and len(n.attr("axis")) == 1:
        return (n.args[0].shape[n.attr("axis")[0]],) * 2
    raise ShapeError("causal takes a length: a whole number or a dimension such as T", (0,))


defop("causal", arity=1, shape=_causal_shape,
      emit=lambda a, attrs, n: (f"np.tri({a[0][0]}, dtype=bool)", POSTFIX),
      torch=lambda a, attrs, n: (f"torch.ones({a[0][0]}, {a[0][0]}, dtype=torch.bool, "
                                 "device=device).tril()", POSTFIX),
      evaluate=lambda v, a: np.tri(int(v[0]), dtype=bool),
      vjp=no_gradient, rule="a mask does not depend on the values", dtype="bool",
      examples=(ex(derived(lambda b, new: b.const(4))),))


# ----------------------------------------------------------------------------- comparisons
for _name, _sym, _ufunc in (("gt", ">", np.greater), ("ge", ">=", np.greater_equal),
                            ("lt", "<", np.less), ("le", "<=", np.less_equal),
                            ("eq", "==", np.equal), ("ne", "!=", np.not_equal)):
    binop(_name, emit=infix(_sym, CMP), torch=infix(_sym, CMP),
          evaluate=(lambda f: lambda v, a: f(v[0], v[1]))(_ufunc),
          vjp=no_gradient,
          rule="comparisons have zero derivative",
          dtype="bool")


def _where_values(a, node):
    """torch.where's arguments: the values as tensors of the dtype when neither is a
    float array (torch.where(c, 1.0, 2.0) is float32); the condition as it is."""
    if any(v.is_array for v in node.args[1:]):
        return a
    return a[:1] + [as_float(x, v) for x, v in zip(a[1:], node.args[1:])]


def _where_vjp(b, n, g):
    """The adjoint goes to the value each position takes: where(c, g, 0) to the first,
    where(c, 0, g) to the second; none to the condition."""
    c, zero = n.args[0], b.const(0)
    return [None, b.op("where", c, g, zero), b.op("where", c, zero, g)]


defop("where", arity=3, shape=broadcast,
      emit=call("np.where"),
      torch=lambda a, attrs, node: call("torch.where")(_where_values(a, node), attrs, node),
      evaluate=lambda v, a: np.where(v[0], v[1], v[2]),
      vjp=_where_vjp,
      rule="d where(c, a, b) = where(c, da, db): each position's adjoint goes to the value "
           "it took",
      elementwise=True,
      examples=(ex(mask((2, 3)), (2, 3), (3,)), ex(mask((2, 1)), (), (1, 3))))


