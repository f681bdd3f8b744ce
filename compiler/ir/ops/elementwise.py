"""Elementwise functions of one value (``exp``, ``tanh``, ``relu``, ...), and the ops that
keep a value's shape but not its values or its gradient (``zeros_like``, ``cast``,
``stop_gradient``)."""

from __future__ import annotations

import numpy as np

from . import kernels
from .core import (PLACED, POSTFIX, as_float, defop, ex, gap, held, int_labels, mask,
                   no_gradient, paren, positive, same, unop)

POSITIVE_EXAMPLES = (ex(positive((2, 3))), ex(positive(())))


def _kink_at_zero(v, a):
    return gap(v[0])


# ----------------------------------------------------------------------------- functions
unop("exp", derivative=lambda b, x, out: out,
     rule="exp'(x) = exp(x), the output itself")

unop("log", vjp=lambda b, n, g: [b.op("div", g, n.args[0])],
     rule="log'(x) = 1 / x",
     examples=POSITIVE_EXAMPLES)

unop("sin", derivative=lambda b, x, out: b.op("cos", x),
     rule="sin'(x) = cos(x)")

unop("cos", derivative=lambda b, x, out: b.op("neg", b.op("sin", x)),
     rule="cos'(x) = -sin(x)")

unop("tan", derivative=lambda b, x, out: b.op("add", b.const(1), b.op("pow", out, b.const(2))),
     rule="tan'(x) = 1 + tan(x)^2")

unop("tanh", derivative=lambda b, x, out: b.op("sub", b.const(1), b.op("pow", out, b.const(2))),
     rule="tanh'(x) = 1 - tanh(x)^2, from the output")

unop("sigmoid", numpy="_sigmoid", torch_fn="torch.sigmoid", fast="_sigmoid_tanh",
     evaluate=lambda v, a: kernels._sigmoid(v[0]),
     derivative=lambda b, x, out: b.op("mul", out, b.op("sub", b.const(1), out)),
     rule="sigmoid'(x) = s (1 - s), from the output s")

unop("relu", emit=lambda a, attrs, n: (f"np.maximum({a[0][0]}, 0)", POSTFIX),
     torch_out="torch.clamp({0}, min=0, out={out})",
     evaluate=lambda v, a: np.maximum(v[0], 0),
     derivative=lambda b, x, out: b.op("gt", out, b.const(0)),
     rule="relu'(x) = [relu(x) > 0], a mask from the output",
     kink=_kink_at_zero, out_form="np.maximum({0}, 0, out={out})")

unop("softplus", numpy="_softplus", torch_fn="_softplus", fast="_softplus_log1p",
     evaluate=lambda v, a: kernels._softplus(v[0]),
     derivative=lambda b, x, out: b.op("sigmoid", x),
     rule="softplus'(x) = sigmoid(x)")

unop("sqrt", vjp=lambda b, n, g: [b.op("div", g, b.op("mul", b.const(2), n))],
     rule="sqrt'(x) = 1 / (2 sqrt(x)), from the output",
     examples=POSITIVE_EXAMPLES)

unop("abs", derivative=lambda b, x, out: b.op("sign", x),
     rule="abs'(x) = sign(x)",
     kink=_kink_at_zero)

unop("square", derivative=lambda b, x, out: b.op("mul", b.const(2), x),
     rule="square'(x) = 2 x")

unop("sign", rule="sign'(x) = 0 (almost everywhere)",
     kink=_kink_at_zero)

unop("leaky_relu", numpy="_leaky_relu", torch_fn="_leaky_relu",
     emit=lambda a, attrs, n: (f"_leaky_relu({a[0][0]}, {attrs['alpha']!r})", POSTFIX),
     torch=lambda a, attrs, n: (f"_leaky_relu({as_float(a[0], n.args[0])[0]}, "
                                f"{attrs['alpha']!r})", POSTFIX),
     evaluate=lambda v, a: kernels._leaky_relu(v[0], a["alpha"]),
     vjp=lambda b, n, g: [b.op("where", b.op("gt", n.args[0], b.const(0)), g,
                               b.op("mul", b.const(n.attr("alpha")), g))],
     rule="leaky_relu'(x) = 1 where x > 0, else alpha",
     kink=_kink_at_zero,
     examples=(ex((2, 3), alpha=0.2), ex((), alpha=0.01)))


# ----------------------------------------------------------------------------- shape only
def _like(fn: str):
    """np.zeros_like / np.ones_like, given the model's dtype when the argument is not
    already an array of it (a mask, labels or a Python number)."""
    def emit(a, attrs, node):
        extra = "" if node.args[0].is_array else ", dtype=DTYPE"
        return f"{fn}({a[0][0]}{extra})", POSTFIX
    return emit


def _tlike(fn: str):
    """torch.zeros_like / torch.ones_like, of the function's dtype: a Python number has
    no tensor to be like (``torch.zeros((), ...)``)."""
    def emit(a, attrs, node):
        x = node.args[0]
        if x.weak:
            return f"{fn[:-5]}((), {PLACED})", POSTFIX
        return f"{fn}({a[0][0]}{'' if x.is_array else ', dtype=dtype'})", POSTFIX
    return emit


LIKE_EXAMPLES = (ex((2, 3)), ex(int_labels((3,), 4)), ex(mask((2, 2))))

defop("zeros_like", arity=1, shape=same, emit=_like("np.zeros_like"),
      torch=_tlike("torch.zeros_like"),
      evaluate=lambda v, a: np.zeros_like(v[0]),
      vjp=no_gradient,
      rule="zeros_like(x) does not depend on the values of x",
      examples=LIKE_EXAMPLES)

defop("ones_like", arity=1, shape=same, emit=_like("np.ones_like"),
      torch=_tlike("torch.ones_like"),
      evaluate=lambda v, a: np.ones_like(v[0]),
      vjp=no_gradient,
      rule="ones_like(x) does not depend on the values of x",
      examples=LIKE_EXAMPLES)

def _zeros_rows_text(lib: str, extra: str):
    def emit(a, attrs, node):
        dims = ", ".join([f"{a[0][0]}.shape[0]"] + [str(d) for d in attrs["width"]])
        return f"{lib}.zeros(({dims}), {extra})", POSTFIX
    return emit


# A carried value's zero start (``h[t] = ... from 0``): as many rows as the sequence x.
defop("zeros_rows", arity=1,
      shape=lambda args, attrs: (args[0].shape[0], *attrs["width"]),
      emit=_zeros_rows_text("np", "dtype=DTYPE"),
      torch=_zeros_rows_text("torch", PLACED),
      evaluate=lambda v, a: np.zeros((np.shape(v[0])[0], *a["width"])),
      vjp=no_gradient,
      rule="zeros_rows(x) does not depend on the values of x",
      examples=(ex((2, 3, 4), width=(5,)), ex((3, 2), width=(2, 2))))

# A carried value's start read from a state (``h[t] = ... from hc``): the state's rows,
# checked against the sequence's batch when the module runs (its rows are a fixed number).
def _stream_text(a, attrs, node):
    return f'_stream({a[0][0]}, {a[1][0]}, "{attrs["name"]}")', POSTFIX


defop("stream", arity=2,
      shape=lambda args, attrs: (args[1].shape[0], *args[0].shape[1:]),
      emit=_stream_text, torch=_stream_text,
      evaluate=lambda v, a: kernels._stream(np.asarray(v[0], dtype=float),
                                            np.asarray(v[1]), a["name"]),
      vjp=no_gradient, helpers=("_stream",), torch_helpers=("_stream",),
      rule="stream(state, x) is the state: no adjoint flows into the state or the batch",
      examples=(ex(held((2, 3)), (2, 4, 5), name="hc"),))  # held: no gradient by rule

defop("stop_gradient", arity=1, shape=same, emit=lambda a, attrs, n: a[0],
      torch=lambda a, attrs, n: a[0],
      evaluate=lambda v, a: v[0],
      vjp=no_gradient,
      rule="stop_gradient(x) = x forward; no adjoint flows back through it",
      elementwise=True, cheap=True, views=(0,),
      # held: its derivative is not zero, its rule is (tests/compiler/ir/test_primitives.py)
      examples=(ex(held((2, 3))),))

defop("cast", arity=1, shape=same,
      emit=lambda a, attrs, n: (f"{paren(a[0], POSTFIX)}.astype(DTYPE)", POSTFIX),
      torch=lambda a, attrs, n: (as_float(a[0], n.args[0]) if n.args[0].weak
                                 else (f"{paren(a[0], POSTFIX)}.to(dtype)", POSTFIX)),
      evaluate=lambda v, a: np.asarray(v[0], dtype=float),
      vjp=lambda b, n, g: [g],
      rule="a cast to the model's dtype passes the adjoint through",
      elementwise=True,
      examples=(ex(mask((2, 3))), ex(int_labels((3,), 4)), ex((2, 3))))
