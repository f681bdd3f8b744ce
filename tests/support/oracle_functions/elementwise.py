"""The oracle's elementwise functions: the smooth ones, the kinked ones with the documented
derivatives at their kinks (relu, leaky_relu, abs, sign, maximum, minimum) and
stop_gradient."""

from __future__ import annotations

import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import tensor

_UNARY = {"exp": torch.exp, "log": torch.log, "sin": torch.sin, "cos": torch.cos,
         "tan": torch.tan, "tanh": torch.tanh, "sqrt": torch.sqrt,
         "square": torch.square, "sigmoid": torch.sigmoid}


def _unary(o, e: ast.Call, env):
    return _UNARY[e.func](tensor(o.expr(e.args[0], env)))


def _abs(o, e: ast.Call, env):
    x = tensor(o.expr(e.args[0], env))
    o.note_kink(x)
    return torch.abs(x)  # d|x| = sign(x): 0 at 0


def _stop_gradient(o, e: ast.Call, env):
    return tensor(o.expr(e.args[0], env)).detach()  # the same value, no gradient


def _sign(o, e: ast.Call, env):
    x = tensor(o.expr(e.args[0], env))
    o.note_kink(x)
    return torch.sign(x)  # derivative 0 everywhere


def _relu(o, e: ast.Call, env):
    x = tensor(o.expr(e.args[0], env))
    o.note_kink(x)
    return torch.where(x > 0, x, torch.zeros_like(x))  # relu'(0) = 0


def _leaky_relu(o, e: ast.Call, env):
    b = o.bind(e, ["x", "alpha"])
    x = tensor(o.expr(b["x"], env))
    alpha = float(o.const(b["alpha"])) if "alpha" in b else 0.01
    o.note_kink(x)
    return torch.where(x > 0, x, alpha * x)  # leaky_relu'(0) = alpha


def _softplus(o, e: ast.Call, env):
    x = tensor(o.expr(e.args[0], env))
    return torch.logaddexp(x, torch.zeros_like(x))


def _maximum_minimum(o, e: ast.Call, env):
    f = e.func
    b = o.bind(e, ["a", "b"])
    x, y = tensor(o.expr(b["a"], env)), tensor(o.expr(b["b"], env))
    x, y = torch.broadcast_tensors(x, y)
    o.note_kink(x - y)
    pick = x >= y if f == "maximum" else x <= y  # a tie: the gradient goes to a
    return torch.where(pick, x, y)


FUNCTIONS = {
    **{name: _unary for name in _UNARY},
    "abs": _abs,
    "stop_gradient": _stop_gradient,
    "sign": _sign,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "softplus": _softplus,
    "maximum": _maximum_minimum,
    "minimum": _maximum_minimum,
}
