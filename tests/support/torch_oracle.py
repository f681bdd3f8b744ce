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

DT = torch.float64


class OracleError(Exception):
    """The spec uses something the oracle does not interpret (or data of the wrong shape)."""


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


@dataclass
class _Decls:
    inputs: dict = field(default_factory=dict)  # name -> ast.Input
    targets: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)  # name -> ast.State
    equations: list = field(default_factory=list)  # ast.Equation with a value
    output: str | None = None
    loss: str | None = None
    wrt_inputs: list = field(default_factory=list)
    dtype: str = "float64"


def _deps(e, out: set):
    """Names an expression reads."""
    if isinstance(e, ast.Name):
        out.add(e.id)
    elif isinstance(e, ast.BinOp):
        _deps(e.left, out)
        _deps(e.right, out)
    elif isinstance(e, (ast.Neg, ast.Transpose)):
        _deps(e.operand, out)
    elif isinstance(e, ast.Matrix):
        for row in e.rows:
            for item in row:
                _deps(item, out)
    elif isinstance(e, ast.Index):  # the indices are constants
        _deps(e.value, out)
    elif isinstance(e, ast.Call):
        for a in e.args:
            _deps(a, out)
        for k in e.kwargs:
            _deps(k.value, out)
    return out


class Oracle:
    def __init__(self, text: str, path: str = "<spec>"):
        self.spec = load_text(text, path)
        self.constants = dict(self.spec.constants)
        d = _Decls()
        for st in self.spec.statements:
            if isinstance(st, ast.DtypeStmt):
                d.dtype = st.name
            elif isinstance(st, ast.Input):
                d.inputs[st.name] = st
            elif isinstance(st, ast.Target):
                d.targets[st.name] = st
            elif isinstance(st, ast.Param):
                d.params[st.name] = st
            elif isinstance(st, ast.State):
                d.states[st.name] = st
            elif isinstance(st, ast.Equation):
                if st.value is None:
                    d.output = st.name
                    continue
                d.equations.append(st)
                if st.kind == "loss":
                    d.loss = st.name
                elif st.kind == "output":
                    d.output = st.name
            elif isinstance(st, ast.GradWrt):
                for name, _ in st.names:
                    if name in d.inputs and name not in d.wrt_inputs:
                        d.wrt_inputs.append(name)
        self.d = d
        if d.output is None:
            d.output = self._implied_output()

    # ------------------------------------------------------------------ static facts
    @property
    def dtype(self) -> str:
        return self.d.dtype

    @property
    def has_modes(self) -> bool:
        """Whether training and inference differ: batch_norm or dropout (any p: every
        dropout site draws its mask in training mode)."""
        found = []

        def visit(e):
            if isinstance(e, ast.Call):
                if e.func == "batch_norm":
                    found.append(e)
                elif e.func == "dropout":
                    found.append(e)
                for a in e.args:
                    visit(a)
                for k in e.kwargs:
                    visit(k.value)
            elif isinstance(e, ast.BinOp):
                visit(e.left)
                visit(e.right)
            elif isinstance(e, (ast.Neg, ast.Transpose)):
                visit(e.operand)
            elif isinstance(e, ast.Index):
                visit(e.value)
            elif isinstance(e, ast.Matrix):
                for row in e.rows:
                    for item in row:
                        visit(item)

        for st in self.d.equations:
            visit(st.value)
        return bool(found)

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
                b = self._bind(init, ["value"])
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

    def _implied_output(self):
        """The model's prediction (LANGUAGE.md, "The generated functions"): among the
        equations before the loss that the loss depends on and that read no target, the
        last one of the first kind there is: computed from a data input (one without a
        default) and a parameter; from a data input; computed at all; another name for
        an input or a parameter. The loss when every such equation reads a target."""
        eqs = {st.name: st for st in self.d.equations}
        loss = eqs[self.d.loss]
        needed, todo = set(), [loss]
        while todo:
            st = todo.pop()
            for n in _deps(st.value, set()):
                if n in eqs and n not in needed and n != st.name:
                    needed.add(n)
                    todo.append(eqs[n])
        leaves: dict[str, set] = {}  # equation -> the declared names it is computed from
        for st in self.d.equations:  # in spec order: what an equation reads comes first
            leaves[st.name] = set()
            for n in _deps(st.value, set()):
                leaves[st.name] |= leaves.get(n, set()) if n in eqs else {n}
        reads = leaves.__getitem__
        data = {n for n, st in self.d.inputs.items() if st.default is None}
        best, best_rank = self.d.loss, -1
        for st in self.d.equations:
            if st.name == self.d.loss:
                break
            if st.name not in needed or reads(st.name) & set(self.d.targets):
                continue
            used = reads(st.name)
            bare = isinstance(st.value, ast.Name) and st.value.id in (
                set(self.d.inputs) | set(self.d.params))
            rank = 0 if bare else 3 if used & data and used & set(self.d.params) else \
                2 if used & data else 1
            if rank >= best_rank:
                best, best_rank = st.name, rank
        return best

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
            state: dict | None = None, mask_seed: int = 0) -> Result:
        """The loss, gradients and values at a point. ``train``: training mode (dropout's
        masks from ``np.random.default_rng(mask_seed)``, batch norm's batch statistics and
        the updated running statistics in ``Result.state``); else inference mode.
        ``state``: the running statistics (default: the declared initial values)."""
        d = self.d
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
        for st in d.equations:
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
    def _note_kink(self, gap):
        """Record the distance to a kink; exact ties (0) are counted apart: there the
        conventions decide, and both sides compute the tie exactly."""
        gap = _t(gap).detach().abs().reshape(-1)
        if gap.numel() == 0:
            return
        self.exact_ties += int((gap == 0).sum())
        nonzero = gap[gap > 0]
        if nonzero.numel():
            self.kink = min(self.kink, float(nonzero.min()))

    def expr(self, e, env):
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
                return self._matmul(a, b)
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
                return torch.pow(_t(a), b) if not isinstance(b, torch.Tensor) else \
                    torch.pow(_t(a), b)
            raise OracleError(f"operator {e.op}")
        if isinstance(e, ast.Transpose):
            return _transpose(_t(self.expr(e.operand, env)))
        if isinstance(e, ast.Matrix):
            return torch.tensor(self.const(e), dtype=DT)
        if isinstance(e, ast.Call):
            return self.call(e, env)
        if isinstance(e, ast.Index):
            return self._index(e, env)
        raise OracleError(f"unexpected expression {type(e).__name__}")

    def _index(self, e: ast.Index, env):
        """``x[...]`` with NumPy's meaning: an integer drops its axis (negative from the
        end); a slice keeps the positions Python's ``range(size)[start:stop:step]``
        keeps (torch slicing has no negative steps, so positions are gathered)."""
        x = _t(self.expr(e.value, env))
        if len(e.items) > x.ndim:
            raise OracleError("too many indices")
        axis = 0
        for item in e.items:
            if isinstance(item, ast.Slice):
                parts = [None if p is None else int(self.const(p))
                         for p in (item.start, item.stop, item.step)]
                keep = list(range(x.shape[axis])[slice(*parts)])
                if not keep:
                    raise OracleError("an empty slice")
                x = torch.index_select(x, axis, torch.tensor(keep, dtype=torch.long))
                axis += 1
            else:
                k = int(self.const(item))
                if not -x.shape[axis] <= k < x.shape[axis]:
                    raise OracleError(f"index {k} out of range")
                x = x.select(axis, k)
        return x

    def _matmul(self, a, b):
        a, b = _t(a), _t(b)
        if a.ndim not in (1, 2) or b.ndim not in (1, 2):
            raise OracleError("'@' takes 1-D and 2-D operands")
        return torch.matmul(a, b)

    def _bind(self, e: ast.Call, names, defaults=None):
        bound = dict(defaults or {})
        for n, a in zip(names, e.args):
            bound[n] = a
        for k in e.kwargs:
            bound[k.name] = k.value
        return bound

    def _axes(self, x, axis_expr):
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

    def _flag(self, e, default=False):
        if e is None:
            return default
        if isinstance(e, ast.Name) and e.id in ("true", "false"):
            return e.id == "true"
        return bool(self.const(e))

    def call(self, e: ast.Call, env):
        f = e.func
        unary = {"exp": torch.exp, "log": torch.log, "sin": torch.sin, "cos": torch.cos,
                 "tan": torch.tan, "tanh": torch.tanh, "sqrt": torch.sqrt,
                 "square": torch.square, "sigmoid": torch.sigmoid}
        if f in unary:
            return unary[f](_t(self.expr(e.args[0], env)))
        if f == "abs":
            x = _t(self.expr(e.args[0], env))
            self._note_kink(x)
            return torch.abs(x)  # d|x| = sign(x): 0 at 0
        if f == "stop_gradient":
            return _t(self.expr(e.args[0], env)).detach()  # the same value, no gradient
        if f == "sign":
            x = _t(self.expr(e.args[0], env))
            self._note_kink(x)
            return torch.sign(x)  # derivative 0 everywhere
        if f == "relu":
            x = _t(self.expr(e.args[0], env))
            self._note_kink(x)
            return torch.where(x > 0, x, torch.zeros_like(x))  # relu'(0) = 0
        if f == "leaky_relu":
            b = self._bind(e, ["x", "alpha"])
            x = _t(self.expr(b["x"], env))
            alpha = float(self.const(b["alpha"])) if "alpha" in b else 0.01
            self._note_kink(x)
            return torch.where(x > 0, x, alpha * x)  # leaky_relu'(0) = alpha
        if f == "softplus":
            x = _t(self.expr(e.args[0], env))
            return torch.logaddexp(x, torch.zeros_like(x))
        if f in ("maximum", "minimum"):
            b = self._bind(e, ["a", "b"])
            x, y = _t(self.expr(b["a"], env)), _t(self.expr(b["b"], env))
            x, y = torch.broadcast_tensors(x, y)
            self._note_kink(x - y)
            pick = x >= y if f == "maximum" else x <= y  # a tie: the gradient goes to a
            return torch.where(pick, x, y)
        if f in ("sum", "mean", "max", "logsumexp"):
            b = self._bind(e, ["x", "axis", "keepdims"])
            x = _t(self.expr(b["x"], env))
            axes = self._axes(x, b.get("axis"))
            keep = self._flag(b.get("keepdims"))
            dims = tuple(range(x.ndim)) if axes is None else axes
            if f == "sum":
                return x.sum(dim=dims, keepdim=keep) if dims else x.clone()
            if f == "mean":
                return x.mean(dim=dims, keepdim=keep) if dims else x.clone()
            if f == "max":
                if not dims:
                    return x.clone()
                self._note_top_gap(x, dims)
                return torch.amax(x, dim=dims, keepdim=keep)  # ties: split evenly
            return torch.logsumexp(x, dim=dims, keepdim=keep) if dims else x.clone()
        if f in ("softmax", "log_softmax"):
            b = self._bind(e, ["x", "axis"])
            x = _t(self.expr(b["x"], env))
            axes = self._axes(x, b.get("axis", ast.Num(e.span, -1, "-1")))
            if len(axes) != 1:
                # a list of axes: normalise over all of them together
                lse = torch.logsumexp(x, dim=axes, keepdim=True)
                return torch.exp(x - lse) if f == "softmax" else x - lse
            fn = torch.softmax if f == "softmax" else torch.log_softmax
            return fn(x, dim=axes[0])
        if f == "transpose":
            return _transpose(_t(self.expr(e.args[0], env)))
        if f == "reshape":
            b = self._bind(e, ["x", "shape"])
            x = _t(self.expr(b["x"], env))
            s = b["shape"]
            if not isinstance(s, ast.Matrix) or len(s.rows) > 1:
                raise OracleError("reshape's shape must be one list of dimensions")
            items = s.rows[0] if s.rows else []  # '[]': a scalar
            dims = []
            for item in items:
                if isinstance(item, ast.Name) and item.id not in self.constants:
                    if item.id not in self.symbols:
                        raise OracleError(f"unknown dimension {item.id}")
                    dims.append(self.symbols[item.id])
                else:
                    dims.append(int(self.const(item)))
            return x.reshape(dims)
        if f in ("concat", "stack"):
            b = self._bind(e, ["xs", "axis"])
            xs = b["xs"]
            if not isinstance(xs, ast.Matrix) or len(xs.rows) != 1:
                raise OracleError(f"{f} takes a list [a, b, ...]")
            parts = [_t(self.expr(x, env)) for x in xs.rows[0]]
            axis = int(self.const(b["axis"])) if "axis" in b else 0
            return torch.cat(parts, dim=axis) if f == "concat" else torch.stack(parts, dim=axis)
        if f in ("mse", "sse", "least_squares"):
            b = self._bind(e, ["y", "t"])
            y, t = _t(self.expr(b["y"], env)), _t(self.expr(b["t"], env))
            sq = (y - t) ** 2
            return {"mse": lambda: sq.mean(), "sse": lambda: 0.5 * sq.sum(),
                    "least_squares": lambda: sq.sum()}[f]()
        if f == "cross_entropy":
            b = self._bind(e, ["p", "t"])
            p, t = _t(self.expr(b["p"], env)), _t(self.expr(b["t"], env))
            n = math.prod(p.shape[:-1]) if p.ndim else 1
            return -(t * torch.log(p)).sum() / n
        if f == "softmax_cross_entropy":
            b = self._bind(e, ["logits", "t"])
            z, t = _t(self.expr(b["logits"], env)), _t(self.expr(b["t"], env))
            if z.ndim == 0:
                raise OracleError("softmax_cross_entropy of a scalar")
            n = math.prod(z.shape[:-1])
            logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
            if t.ndim == z.ndim - 1:  # integer labels
                idx = t.detach().round().long()
                if not torch.equal(idx.to(DT), t.detach().to(DT)):
                    raise OracleError("labels must be whole numbers")
                return -torch.gather(logp, -1, idx[..., None]).sum() / n
            if tuple(t.shape) != tuple(z.shape):
                raise OracleError("one-hot targets must have the logits' shape")
            return -(t * logp).sum() / n
        if f == "sigmoid_cross_entropy":
            b = self._bind(e, ["logits", "t"])
            z, t = _t(self.expr(b["logits"], env)), _t(self.expr(b["t"], env))
            n = z.shape[0] if z.ndim else 1
            return (torch.logaddexp(z, torch.zeros_like(z)) - t * z).sum() / n
        if f == "conv2d":
            b = self._bind(e, ["x", "W", "stride", "pad"])
            x, w = _t(self.expr(b["x"], env)), _t(self.expr(b["W"], env))
            stride = int(self.const(b["stride"])) if "stride" in b else 1
            pad = int(self.const(b["pad"])) if "pad" in b else 0
            return torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
        if f in ("max_pool", "avg_pool"):
            b = self._bind(e, ["x", "size", "stride", "pad"])
            x = _t(self.expr(b["x"], env))
            size = int(self.const(b["size"]))
            stride = size if "stride" not in b or (
                isinstance(b["stride"], ast.Name) and b["stride"].id == "none") \
                else int(self.const(b["stride"]))
            pad = int(self.const(b["pad"])) if "pad" in b else 0
            lead = x.shape[:-2]
            images = x.reshape(-1, 1, *x.shape[-2:])  # the last two axes are pooled
            # Padding as LANGUAGE.md says: -inf around the image for max (a pad is never
            # the maximum), zeros for the mean (counted in it, as torch's default).
            images = torch.nn.functional.pad(images, (pad,) * 4,
                                             value=-math.inf if f == "max_pool" else 0.0)
            if f == "max_pool":
                # The maximum of each window with torch.amax, which splits the gradient
                # evenly among tied maxima (LANGUAGE.md's convention; torch's max_pool2d
                # gives it all to one of them); overlapping windows add through unfold.
                windows = images.unfold(2, size, stride).unfold(3, size, stride)
                flat = windows.reshape(*windows.shape[:4], -1)
                if flat.shape[-1] >= 2:
                    top2 = torch.topk(flat.detach(), 2, dim=-1).values
                    self._note_kink(top2[..., 0] - top2[..., 1])
                out = torch.amax(flat, dim=-1)
                check = torch.nn.functional.max_pool2d(images.detach(), size, stride)
                if not torch.equal(out.detach(), check):
                    raise OracleError("max_pool: amax over windows != torch's max_pool2d")
            else:
                out = torch.nn.functional.avg_pool2d(images, size, stride)
            return out.reshape(*lead, *out.shape[-2:])
        if f == "flatten":
            x = _t(self.expr(e.args[0], env))
            return x.reshape(x.shape[0], -1)
        if f == "dropout":
            b = self._bind(e, ["x", "p"])
            x = _t(self.expr(b["x"], env))
            p = float(self.const(b["p"]))
            if not 0 <= p < 1:
                raise OracleError(f"dropout's p must be in [0, 1), not {p}")
            if not self.train:
                return x  # inference: the identity
            # inverted dropout with the module's mask: the next draw of the generator
            # (every site draws, in spec order, whatever its p and whether or not the
            # loss reads it)
            keep = self.mask_rng.random(tuple(x.shape)) >= p
            self.masks += 1
            return x * torch.tensor(keep, dtype=DT) / (1 - p)
        if f == "batch_norm":
            return self._batch_norm(e, env)
        raise OracleError(f"function '{f}' is not interpreted by the oracle")

    def _batch_norm(self, e: ast.Call, env):
        """batch_norm(x, gamma, beta, mean, var, momentum=0.9, eps=1e-6) with torch's own
        ``batch_norm``: statistics per feature (axis 1) over every other axis."""
        b = self._bind(e, ["x", "gamma", "beta", "mean", "var", "momentum", "eps"])
        x = _t(self.expr(b["x"], env))
        if x.ndim not in (2, 4):
            raise OracleError(f"batch_norm of rank {x.ndim}")
        c = x.shape[1]
        gamma, beta = (_t(self.expr(b[k], env)) for k in ("gamma", "beta"))
        # A scalar applies to every feature. contiguous(): torch's CPU batch_norm backward
        # misreads a weight of stride 0 (an expand()ed scalar): garbage gradients.
        gamma = (gamma.expand(c) if gamma.ndim == 0 else gamma).contiguous()
        beta = (beta.expand(c) if beta.ndim == 0 else beta).contiguous()
        names = []
        for k in ("mean", "var"):
            if not isinstance(b[k], ast.Name) or b[k].id not in self.d.states:
                raise OracleError(f"batch_norm's {k} is not a state")
            names.append(b[k].id)
        momentum = float(self.const(b["momentum"])) if "momentum" in b else 0.9
        eps = float(self.const(b["eps"])) if "eps" in b else 1e-6
        for n in names:
            if n not in self.state_in:  # sized by the value flowing in: [C]
                self.state_in[n] = np.broadcast_to(
                    np.asarray(self.state_init[n][1], dtype=float), (c,))
                self.state_out[n] = np.array(self.state_in[n], dtype=np.float64)
        running = [torch.tensor(np.asarray(self.state_in[n], dtype=np.float64), dtype=DT)
                   for n in names]
        for n, r in zip(names, running):
            if tuple(r.shape) != (c,):
                raise OracleError(f"state '{n}' has shape {tuple(r.shape)}, not ({c},)")
        F = torch.nn.functional
        if not self.train:
            return F.batch_norm(x, running[0], running[1], gamma, beta, training=False,
                                eps=eps)
        axes = [0] + list(range(2, x.ndim))
        count = x.numel() // c
        with torch.no_grad():  # the expected running statistics, computed apart
            mu = x.detach().mean(dim=axes)
            var = x.detach().var(dim=axes, unbiased=False)
            scale = x.detach().abs().amax(dim=axes) if count else torch.zeros(c)
            cond = float((scale / torch.sqrt(var + eps)).max()) if c else 1.0
            self.bn_condition *= max(cond, 1.0)  # compounds through chained sites
        for n, r, stat in zip(names, running, (mu, var)):
            if n in self.bn_updated:
                raise OracleError(f"state '{n}' updated twice")
            self.bn_updated.add(n)
            self.state_out[n] = (momentum * r + (1 - momentum) * stat).numpy().copy()
        if count > 1:
            # torch's own training-mode batch norm (biased variance for normalizing);
            # no running buffers given, so torch updates nothing
            return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
        # one value per feature (torch refuses it): x - mean is 0, the output beta, and
        # the gradient still flows through the mean (the formula, by hand)
        shape = [1, c] + [1] * (x.ndim - 2)
        xc = x - x.mean(dim=axes, keepdim=True)
        xn = xc / torch.sqrt((xc ** 2).mean(dim=axes, keepdim=True) + eps)
        return gamma.reshape(shape) * xn + beta.reshape(shape)

    def _note_top_gap(self, x, dims):
        """How close each maximum is to its runner-up (a tie is max's kink)."""
        x = x.detach()
        rest = [i for i in range(x.ndim) if i not in dims]
        y = x.permute(*rest, *dims).reshape(*[x.shape[i] for i in rest], -1)
        if y.shape[-1] < 2:
            return
        top2 = torch.topk(y, 2, dim=-1).values
        self._note_kink(top2[..., 0] - top2[..., 1])


def _t(v):
    return v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=DT)


def _transpose(x):
    return x.permute(*reversed(range(x.ndim))) if x.ndim > 1 else x
