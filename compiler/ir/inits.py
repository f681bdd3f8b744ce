"""Initializer formulas: the Python expression ``init_params`` writes for each parameter.

One formula per initializer, used both by code generation (as text) and by the IR
evaluator (evaluated with ``rng``), so the two always draw the same numbers.
"""

from __future__ import annotations

from . import Init, Shape
from .primitives import format_number


def _size(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _literal(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return format_number(float(value))


def formula(init: Init, shape: Shape, dtype: str) -> tuple[str, str]:
    """(expression, comment) creating a parameter of ``shape`` from ``init``."""
    size = _size(shape)
    cast = "" if dtype == "float64" else ".astype(DTYPE)"
    a, k = init.args, init.kind
    fan_in, fan_out = init.fan_in, init.fan_out
    if k == "zeros":
        return f"np.zeros({size}, dtype=DTYPE)", "zeros"
    if k == "ones":
        return f"np.ones({size}, dtype=DTYPE)", "ones"
    if k == "constant":
        return f"np.full({size}, {format_number(a['value'])}, dtype=DTYPE)", "constant"
    if k == "value" and shape:  # a number fills the declared shape
        return f"np.full({size}, {format_number(a['value'])}, dtype=DTYPE)", "given value"
    if k in ("value", "array"):
        return f"np.array({_literal(a['value'])}, dtype=DTYPE)", "given value"
    if k == "normal":
        return (f"rng.normal({format_number(float(a['mean']))}, {format_number(float(a['std']))}, "
                f"size={size}){cast}", f"normal(mean={a['mean']!r}, std={a['std']!r})")
    if k == "uniform":
        return (f"rng.uniform({format_number(float(a['low']))}, "
                f"{format_number(float(a['high']))}, size={size}){cast}",
                f"uniform(low={a['low']!r}, high={a['high']!r})")
    if k in ("he", "xavier", "lecun"):
        gain = 2 if k == "he" else 1
        return (f"rng.normal(0.0, np.sqrt({gain} / {fan_in}), size={size}){cast}",
                f"{k}: std = sqrt({gain} / fan_in), fan_in = {fan_in}")
    if k == "xavier_uniform":
        return (f"rng.uniform(-np.sqrt(6 / {fan_in + fan_out}), np.sqrt(6 / {fan_in + fan_out}), "
                f"size={size}){cast}",
                f"xavier_uniform: U(+-sqrt(6 / (fan_in + fan_out))), fan_in + fan_out = "
                f"{fan_in + fan_out}")
    raise ValueError(f"unknown initializer {k}")


def sample(init: Init, shape: Shape, rng, dtype: str):
    """Draw the parameter with NumPy, evaluating exactly the formula code generation writes."""
    import numpy as np

    expr, _ = formula(init, shape, dtype)
    return np.asarray(eval(expr, {"np": np, "rng": rng, "DTYPE": np.dtype(dtype)}))  # noqa: S307
