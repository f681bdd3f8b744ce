"""An independent oracle for bpc: the spec language interpreted in PyTorch (float64, CPU).

Only bpc's front end is shared (``bpc.compiler.frontend.load.load_text``: parse, desugar — which
expands ``layers`` stacks and evaluates ``let`` constants — and check). Everything after
that is written here from docs/LANGUAGE.md, without bpc's IR, elaborator, shape rules,
vector-Jacobian rules or evaluator: the equations are evaluated with torch ops and
``torch.autograd`` differentiates the loss. A generated module is then judged against
what the spec *means*, not against another view of bpc's own reasoning.

Conventions at non-differentiable points (LANGUAGE.md):
- ``relu'(0) = 0``, ``leaky_relu'(0) = alpha``, ``abs'(0) = sign(0) = 0``, ``sign' = 0``;
- ``maximum(a, b)`` / ``minimum(a, b)``: a tie sends the gradient to ``a``;
- ``max(x, axis)``: the gradient is split evenly among tied elements (``torch.amax``);
- ``max_pool``: a window's gradient is split evenly among its tied maxima (``torch.amax``
  over the unfolded windows; torch's ``max_pool2d``, which gives it to one of them, only
  cross-checks the values). Tied zeros after a ``relu`` are common, so the convention
  matters; ``kink`` measures near ties (the gap between each window's largest and
  second-largest values).
``Result.kink`` is the smallest distance to any of these points met while evaluating, so
a caller can keep test points away from ties.

    o = Oracle(text)
    r = o.run(params, data)      # numpy arrays in; r.loss, r.grads, r.output out

The language's functions are in ``oracle_functions`` (a table per family, each function
given the oracle, the call and the values in scope), what is read from the spec's
declarations in ``oracle_spec``; this module is the one users import.

Modes (LANGUAGE.md, "Modes"; DLFS 6.3 for batch norm). ``run(..., train=True)`` is
what ``loss_and_grad`` computes: ``dropout`` draws its masks from a NumPy generator seeded
``mask_seed`` (``rng.random(shape) >= p``, once per dropout site in forward order, as a
generated module does with the ``rng`` it is given), and ``batch_norm`` normalizes with
the batch's mean and *biased* variance (``torch.nn.functional.batch_norm(training=True)``)
and moves the running statistics: ``r.state`` holds ``momentum * old + (1 - momentum) *
batch statistic``, the statistic computed here with ``mean`` and ``var(unbiased=False)``.
``train=False`` is inference (``predict``/``loss``): dropout is the identity and batch
norm uses the running statistics in ``state`` (``torch.nn.functional.batch_norm(
training=False)``). ``state`` defaults to each state's initializer (``Oracle.init_state``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bpc.compiler.frontend import ast
from bpc.compiler.frontend.load import load_text
from oracle_functions import FUNCTIONS
from oracle_functions.arrays import index, matmul
from oracle_functions.tensors import DT, OracleError, reverse_axes, tensor
import oracle_loops
from oracle_spec import declarations, has_modes, implied_output


@dataclass
class Result:
    loss: float
    grads: dict  # name -> np.ndarray (float64): every parameter and every 'grad wrt' input
    output: np.ndarray | float | None  # predict's value (None when there is none)
    output_name: str | None
    values: dict  # every equation's value (np.ndarray)
    kink: float  # distance to the nearest non-differentiable point met (inf if none),
    # exact ties aside
    exact_ties: int = 0  # how many elements sat exactly on a kink
    state: dict = field(default_factory=dict)  # the state after the call (updated in
    # training mode; as given in inference)
    # Batch norm in training mode: max|x| / std over features bounds the cancellation in
    # x - mean (rounding of x relative to the normalized value) at one site; the product
    # over the sites bounds it through batch norms feeding each other (float32 seed 1784
    # of the survey: four sites of 3.5 to 23, together 4,300, gave dbn1_gamma off by
    # 3e-4 while each site alone was well conditioned).
    bn_condition: float = 1.0
    masks: int = 0  # dropout masks drawn (training mode): one per site


class _RoundedAdjoint(torch.autograd.Function):
    """The identity, whose adjoint comes back off by a random relative amount up to
    ``size`` per element (``Oracle.run``'s ``rounding``)."""

    @staticmethod
    def forward(ctx, x, size, gen):
        ctx.size, ctx.gen = size, gen
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        wiggle = 2 * torch.rand(g.shape, generator=ctx.gen, dtype=g.dtype) - 1
        return g * (1 + ctx.size * wiggle), None, None


class Oracle:
    rounding = 0.0  # run() sets it

    def __init__(self, text: str, path: str = "<spec>"):
        self.spec = load_text(text, path)
        self.constants = dict(self.spec.constants)
        d = declarations(self.spec)
        self.d = d
        if d.output is None:
            d.output = implied_output(d)

    # ------------------------------------------------------------------ static facts
    @property
    def dtype(self) -> str:
        return self.d.dtype

    @property
    def has_modes(self) -> bool:
        """Whether training and inference differ: batch_norm or dropout (any p: every
        dropout site draws its mask in training mode)."""
        return has_modes(self.d)

    def init_state(self) -> dict:
        """Each state's starting value from its declaration (LANGUAGE.md): ``zeros``,
        ``ones``, ``constant(value=v)``, a number (filling the shape) or a literal."""
        out = {}
        for name, st in self.d.states.items():
            shape = tuple(int(self.constants.get(d.value, d.value)) if not isinstance(
                d.value, ast.FanIn) else -1 for d in st.shape.dims)
            init = st.init
            if isinstance(init, ast.Name) and init.id == "zeros":
                value = 0.0
            elif isinstance(init, ast.Name) and init.id == "ones":
                value = 1.0
            elif isinstance(init, ast.Call) and init.func == "constant":
                b = self.bind(init, ["value"])
                value = float(self.const(b["value"])) if "value" in b else 0.0
            else:
                value = np.asarray(self.const(init), dtype=float)
            if -1 in shape:  # a batchnorm layer's: sized by the value flowing in
                shape = None
            out[name] = (shape, value)
        return out

    @property
    def wrt(self) -> list[str]:
        return list(self.d.params) + list(self.d.wrt_inputs)

    def const(self, e):
        """A compile-time constant (numbers, lets, + - * / ^, unary minus, matrix rows)."""
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.constants:
                return self.constants[e.id]
            raise OracleError(f"'{e.id}' is not a constant")
        if isinstance(e, ast.Neg):
            return -self.const(e.operand)
        if isinstance(e, ast.BinOp) and e.op != "@":
            a, b = self.const(e.left), self.const(e.right)
            return {"+": a + b, "-": a - b, "*": a * b}.get(e.op) if e.op in "+-*" else (
                a / b if e.op == "/" else a ** b)
        if isinstance(e, ast.Matrix):
            rows = [[self.const(x) for x in row] for row in e.rows]
            return rows[0] if len(rows) == 1 else rows
        raise OracleError(f"not a constant: {type(e).__name__}")

    def literal_shape(self, e) -> tuple:
        return tuple(np.shape(np.asarray(self.const(e), dtype=float)))

    def declared_shape(self, decl) -> tuple | None:
        """A declaration's shape as written (ints, symbol names; a dense layer's fan_in as
        the string '<fan_in of h>'); for 'param p = VALUE' / 'input x = VALUE' the value's."""
        shape = getattr(decl, "shape", None)
        if shape is None:
            value = decl.init if isinstance(decl, ast.Param) else decl.default
            return self.literal_shape(value)
        out = []
        for dim in shape.dims:
            v = dim.value
            out.append(f"<fan_in of {v.of}>" if isinstance(v, ast.FanIn) else v)
        return tuple(out)

    # ------------------------------------------------------------------ evaluation
    def run(self, params: dict, data: dict, need_grad: bool = True, *, train: bool = True,
            state: dict | None = None, mask_seed: int = 0, rounding: float = 0.0,
            rounding_seed: int = 0) -> Result:
        """The loss, gradients and values at a point. ``train``: training mode (dropout's
        masks from ``np.random.default_rng(mask_seed)``, batch norm's batch statistics and
        the updated running statistics in ``Result.state``); else inference mode.
        ``state``: the running statistics (default: the declared initial values).
        ``rounding``: every adjoint passed back through a value the spec computes is off
        by a random relative amount up to this (seeded ``rounding_seed``): rounding in
        the backward pass, simulated, so that gradients whose terms cancel show how far
        rounding moves them (diffharness's float32 tolerance)."""
        d = self.d
        self.rounding = rounding
        self.rounding_gen = torch.Generator().manual_seed(rounding_seed)
        env: dict[str, torch.Tensor] = {}
        self.symbols: dict[str, int] = {}
        self.kink = math.inf
        self.exact_ties = 0
        self.train = train
        self.mask_rng = np.random.default_rng(mask_seed)
        self.masks = 0
        self.bn_condition = 1.0
        self.state_in = {} if state is None else dict(state)
        self.state_out: dict[str, np.ndarray] = {}
        self.bn_updated: set = set()
        leaves = {}
        for name, st in list(d.inputs.items()) + list(d.targets.items()):
            if name in data:
                value = np.asarray(data[name])
            elif isinstance(st, ast.Input) and st.default is not None:
                value = np.asarray(self.const(st.default), dtype=float)
            else:
                raise OracleError(f"no value for '{name}'")
            shape = getattr(st, "shape", None)
            if shape is not None:
                if len(shape.dims) != value.ndim:
                    raise OracleError(f"'{name}' should have rank {len(shape.dims)}, "
                                      f"got shape {value.shape}")
                for dim, n in zip(shape.dims, value.shape):
                    if isinstance(dim.value, str):
                        if self.symbols.setdefault(dim.value, n) != n:
                            raise OracleError(f"symbol {dim.value} is both "
                                              f"{self.symbols[dim.value]} and {n}")
                    elif dim.value != n:
                        raise OracleError(f"'{name}' has shape {value.shape}, declared "
                                          f"{self.declared_shape(st)}")
            if np.issubdtype(value.dtype, np.integer):
                t = torch.tensor(value, dtype=torch.long)
            else:
                t = torch.tensor(value, dtype=DT)
            if name in d.wrt_inputs:
                t = t.clone().requires_grad_(True)
                leaves[name] = t
            env[name] = t
        for name in d.params:
            if name not in params:
                raise OracleError(f"no value for parameter '{name}'")
            t = torch.tensor(np.asarray(params[name], dtype=np.float64), dtype=DT)
            t.requires_grad_(True)
            leaves[name] = t
            env[name] = t
        self.state_init = self.init_state()
        for name, st in d.states.items():
            if name not in self.state_in:
                shape, value = self.state_init[name]
                if shape is None:  # a batchnorm layer's: sized when batch_norm runs
                    continue
                self.state_in[name] = np.broadcast_to(np.asarray(value, dtype=float), shape)
            self.state_out[name] = np.array(self.state_in[name], dtype=np.float64)
        values = {}
        # Every equation in spec order: in training mode every dropout site draws its
        # mask in that order (LANGUAGE.md, "Modes"), whether the loss reads it or not.
        for group in oracle_loops.groups(d.equations):
            if group[0].time is not None:
                env.update(oracle_loops.run(self, group, env))
                values.update((st.name, env[st.name]) for st in group)
                continue
            st, = group
            v = self.expr(st.value, env)
            if not isinstance(v, torch.Tensor):
                v = torch.tensor(v, dtype=DT)
            env[st.name] = v
            values[st.name] = v
        loss = values[d.loss]
        if loss.ndim != 0:
            raise OracleError(f"the loss has shape {tuple(loss.shape)}")
        grads = {}
        if need_grad:
            names = [n for n in self.wrt if n in leaves]
            gs = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True) \
                if loss.requires_grad else [None] * len(names)
            for n, g in zip(names, gs):
                grads[n] = (np.zeros(tuple(leaves[n].shape)) if g is None
                            else g.detach().numpy().copy())
        out_name = d.output
        output = env[out_name].detach().numpy().copy() if out_name in env else None
        return Result(float(loss.detach()), grads, output, out_name,
                      {k: v.detach().numpy().copy() for k, v in values.items()}, self.kink,
                      self.exact_ties, state=self.state_out, bn_condition=self.bn_condition,
                      masks=self.masks)

    # ------------------------------------------------------------------ expressions
    def note_kink(self, gap):
        """Record the distance to a kink; exact ties (0) are counted apart: there the
        conventions decide, and both sides compute the tie exactly."""
        gap = tensor(gap).detach().abs().reshape(-1)
        if gap.numel() == 0:
            return
        self.exact_ties += int((gap == 0).sum())
        nonzero = gap[gap > 0]
        if nonzero.numel():
            self.kink = min(self.kink, float(nonzero.min()))

    def expr(self, e, env):
        value = self._expr(e, env)
        if self.rounding and isinstance(value, torch.Tensor) and value.requires_grad:
            return _RoundedAdjoint.apply(value, self.rounding, self.rounding_gen)
        return value

    def _expr(self, e, env):
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in self.constants:
                return self.constants[e.id]
            return env[e.id]
        if isinstance(e, ast.Neg):
            return -self.expr(e.operand, env)
        if isinstance(e, ast.BinOp):
            a, b = self.expr(e.left, env), self.expr(e.right, env)
            if e.op == "@":
                return matmul(a, b)
            if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
                return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                        "/": lambda: a / b, "^": lambda: a ** b}[e.op]()
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b
            if e.op == "/":
                return a / b
            if e.op == "^":
                return torch.pow(tensor(a), b) if not isinstance(b, torch.Tensor) else \
                    torch.pow(tensor(a), b)
            raise OracleError(f"operator {e.op}")
        if isinstance(e, ast.Transpose):
            return reverse_axes(tensor(self.expr(e.operand, env)))
        if isinstance(e, ast.Matrix):
            return torch.tensor(self.const(e), dtype=DT)
        if isinstance(e, ast.Call):
            return self.call(e, env)
        if isinstance(e, ast.Index):
            return index(self, e, env)
        raise OracleError(f"unexpected expression {type(e).__name__}")

    def bind(self, e: ast.Call, names, defaults=None):
        bound = dict(defaults or {})
        for n, a in zip(names, e.args):
            bound[n] = a
        for k in e.kwargs:
            bound[k.name] = k.value
        return bound

    def axes(self, x, axis_expr):
        if axis_expr is None or (isinstance(axis_expr, ast.Name) and axis_expr.id == "none"
                                 and "none" not in self.constants):
            return None  # 'axis=none' spells out the default: all axes
        v = self.const(axis_expr)
        items = v if isinstance(v, list) else [v]
        out = []
        for a in items:
            a = int(a)
            if not -x.ndim <= a < x.ndim:
                raise OracleError(f"axis {a} out of range for rank {x.ndim}")
            out.append(a % x.ndim)
        return tuple(out)

    def flag(self, e, default=False):
        if e is None:
            return default
        if isinstance(e, ast.Name) and e.id in ("true", "false"):
            return e.id == "true"
        return bool(self.const(e))

    def call(self, e: ast.Call, env):
        fn = FUNCTIONS.get(e.func)
        if fn is None:
            raise OracleError(f"function '{e.func}' is not interpreted by the oracle")
        return fn(self, e, env)
