"""Plain random specs (Hypothesis): mixed elementwise, broadcasting, matmul, reduction,
normaliser and transpose steps on one input ``x : [N, 3]``, values used several times,
operands drawn from earlier values or fresh parameters of a compatible shape, the loss
``sum(sin(v_last)) + …``. A plain spec carries its data (``feeds``, ``param_values``,
``grad_x``), so a test can run one through the IR evaluator without the module's tables.
random_specs.py imports ``plain_spec`` for its users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from bpc.compiler.ir.primitives import broadcast_shapes
from spec_steps import fmt_shape

PLAIN_N = 4  # the symbolic batch dimension's value when a plain spec runs


@dataclass
class PlainSpec:
    lines: list = field(default_factory=list)
    values: list = field(default_factory=list)  # (name, shape)
    params: dict = field(default_factory=dict)  # name -> shape
    grad_x: bool = False

    def text(self):
        return "\n".join(self.lines) + "\n"

    def feeds(self, rng):
        return {"x": 0.7 * rng.normal(size=(PLAIN_N, 3))}

    def param_values(self, rng):
        return {n: 0.7 * rng.normal(size=tuple(PLAIN_N if d == "N" else d for d in s))
                for n, s in self.params.items()}


def _plain_partners(shape):
    out = {shape, ()}
    if shape:
        out.add(shape[-1:])
    if len(shape) == 2:
        out.add((1, shape[1]))
        out.add((shape[0], 1))
    return [s for s in out if "N" not in s or s == shape]


@st.composite
def plain_spec(draw, max_depth=6):
    """A plain spec: steps on ``x : [N, 3]`` and parameters, drawn with Hypothesis."""
    spec = PlainSpec()
    spec.lines.append("model randspec")
    spec.lines.append("input x : [N, 3]")
    spec.values.append(("x", ("N", 3)))
    count = [0]

    def new_param(shape):
        name = f"p{len(spec.params)}"
        spec.params[name] = shape
        spec.lines.append(f"param {name} : {fmt_shape(shape)} = zeros")
        return name

    def operand(shape_options):
        candidates = [(n, s) for n, s in spec.values if s in shape_options]
        fixed = [s for s in shape_options if "N" not in s]
        if candidates and (not fixed or draw(st.booleans())):
            return draw(st.sampled_from(candidates))
        shape = draw(st.sampled_from(fixed))
        return new_param(shape), shape

    depth = draw(st.integers(1, max_depth))
    for _ in range(depth):
        a, sa = draw(st.sampled_from(spec.values[-3:] + spec.values[:1]))
        kind = draw(st.sampled_from(["unary", "binary", "matmul", "reduce", "normalise",
                                     "power", "transpose", "divide"]))
        if kind == "unary":
            fn = draw(st.sampled_from(["sin", "cos", "tanh", "sigmoid", "softplus", "square",
                                       "relu", "abs", "leaky_relu", "-", "exp(tanh"]))
            expr = {"-": f"-{a}", "exp(tanh": f"exp(tanh({a}))"}.get(fn, f"{fn}({a})")
            shape = sa
        elif kind in ("binary", "divide"):
            b, sb = operand(_plain_partners(sa))
            if kind == "divide":
                expr = f"{a} / (1 + square({b}))"
            else:
                op = draw(st.sampled_from(["+", "-", "*", "maximum", "minimum"]))
                expr = f"{op}({a}, {b})" if op.isalpha() else f"{a} {op} {b}"
            shape = broadcast_shapes(sa, sb)
        elif kind == "matmul" and sa and len(sa) <= 2:
            m = draw(st.sampled_from([1, 2, 3]))
            if isinstance(sa[-1], int) and (len(sa) == 1 or draw(st.booleans())
                                            or not isinstance(sa[0], int)):
                w = new_param((sa[-1], m))
                expr, shape = f"{a} @ {w}", sa[:-1] + (m,)
            elif len(sa) == 2 and isinstance(sa[0], int):
                w = new_param((m, sa[0]))
                expr, shape = f"{w} @ {a}", (m, sa[1])
            else:
                expr, shape = f"{a}.T", tuple(reversed(sa))
        elif kind == "reduce" and sa:
            fn = draw(st.sampled_from(["sum", "mean", "max", "logsumexp"]))
            axis = draw(st.integers(-len(sa), len(sa) - 1))
            keep = draw(st.booleans())
            expr = f"{fn}({a}, axis={axis}{', keepdims=1' if keep else ''})"
            ax = axis % len(sa)
            shape = tuple(1 if i == ax else d for i, d in enumerate(sa)) if keep else \
                tuple(d for i, d in enumerate(sa) if i != ax)
        elif kind == "normalise" and sa:
            fn = draw(st.sampled_from(["softmax", "log_softmax"]))
            axis = draw(st.integers(-len(sa), len(sa) - 1))
            expr, shape = f"{fn}({a}, axis={axis})", sa
        elif kind == "power":
            expr, shape = f"{a}^{draw(st.sampled_from([2, 3]))}", sa
        elif kind == "transpose":
            expr, shape = f"{a}.T", tuple(reversed(sa))
        else:
            expr, shape = f"tanh({a})", sa
        count[0] += 1
        name = f"v{count[0]}"
        spec.lines.append(f"{name} = {expr}")
        spec.values.append((name, shape))
    last, _ = spec.values[-1]
    extra = draw(st.sampled_from([""] + [f" + 0.5 * mean({n})" for n, _ in spec.values[1:-1]]))
    spec.lines.append(f"loss L = sum(sin({last})){extra}")
    if draw(st.booleans()):
        spec.lines.append("grad wrt x")
        spec.grad_x = True
    if not spec.params:
        spec.lines.append("param p_extra = 0.5")
        spec.params["p_extra"] = ()
    return spec
