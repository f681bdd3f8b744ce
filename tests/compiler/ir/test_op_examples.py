"""Every primitive, over the examples its stanza gives (compiler/ir/ops/).

For each example: the shape rule against the shape of the value the evaluator computes;
the printed NumPy (and its buffer forms) against the evaluator; the vjp, through
``differentiate``, against central finite differences of ``sum(op(...) * r)`` with random
weights ``r``; and, where PyTorch has the function, the evaluator against PyTorch. A
primitive without examples fails, so a new op cannot land untested (the named leaves
excepted: their values are given, they compute nothing).
"""

import numpy as np
import pytest

from bpc.compiler.ir import NAMED_LEAVES, Binding, Builder, Program, fmt_shape
from bpc.compiler.ir.evaluate import evaluate_graph
from bpc.compiler.ir.ops import ATOM, PRIMITIVES, kernels, styled
from bpc.compiler.passes.autodiff import differentiate
from gradcheck_ir import away_from_kinks, check

CASES = [(name, example) for name, prim in PRIMITIVES.items() for example in prim.examples]
IDS = [f"{name}-" + "-".join(fmt_shape(a) if isinstance(a, tuple) else a.kind
                             for a in example.args) + "".join(f"-{k}={v}" for k, v in
                                                              example.attrs)
       for name, example in CASES]
KERNELS = {name: fn for name, fn in vars(kernels).items() if callable(fn)}


def over_examples(keep=lambda name, example: True):
    """Parametrize a test over the examples that ``keep`` accepts, named readably."""
    chosen = [(case, label) for case, label in zip(CASES, IDS) if keep(*case)]
    return pytest.mark.parametrize("name, example", [c for c, _ in chosen],
                                   ids=[label for _, label in chosen])


def _draw(arg, rng):
    """A value for an example's leaf: a shape (N(0, 1)) or an ``Arg``."""
    if isinstance(arg, tuple):
        return rng.normal(size=arg)
    if arg.kind == "positive":
        return np.abs(rng.normal(size=arg.shape)) + 0.5
    if arg.kind == "labels":
        return rng.integers(0, arg.classes, size=arg.shape)
    if arg.kind == "onehot":
        return np.eye(arg.classes)[rng.integers(0, arg.classes, size=arg.shape[:-1])]
    if arg.kind == "mask":
        return rng.random(arg.shape) > 0.5
    return rng.normal(size=arg.shape)  # held


class Case:
    """An example built as IR: the op's node over leaves (and derived arguments)."""

    def __init__(self, name, example):
        self.prim, self.b = PRIMITIVES[name], Builder("float64")
        self.params, self.inputs, self.draws = [], [], {}
        self.args = []
        for arg in example.args:
            if isinstance(arg, tuple) or arg.kind != "derived":
                self.args.append(self._leaf(arg))
            else:
                self.args.append(arg.build(self.b, self._leaf, *self.args))
        self.attrs = dict(example.attrs)
        self.node = self.b.op(name, *self.args, **self.attrs)
        assert self.node.op == name, "the example must build the op itself"

    def _leaf(self, arg):
        name = f"x{len(self.draws)}"
        if isinstance(arg, tuple) or arg.kind == "positive":
            leaf = self.b.leaf("param", name, arg if isinstance(arg, tuple) else arg.shape)
            self.params.append(Binding(name, leaf, "param"))
        else:
            dtype = {"labels": "int", "mask": "bool"}.get(arg.kind)
            leaf = self.b.leaf("input", name, arg.shape, dtype=dtype)
            self.inputs.append(Binding(name, leaf, "input"))
        self.draws[name] = arg
        return leaf

    def values(self, seed=0):
        rng = np.random.default_rng(seed)
        return {name: _draw(arg, rng) for name, arg in self.draws.items()}

    def evaluate(self, values):
        """Every node's value, by id (a random op draws from a generator seeded with 0)."""
        leaves = {bd.node.id: values[bd.name] for bd in self.params + self.inputs}
        return evaluate_graph([self.node], leaves, rng=np.random.default_rng(0))

    def printed(self, computed):
        """The op's printed NumPy, and a namespace like a generated module's to run it."""
        names = [f"a{i}" for i in range(len(self.args))]
        text, _ = self.prim.emit([(n, ATOM) for n in names], self.attrs, self.node)
        scope = {"np": np, "DTYPE": np.float64, "rng": np.random.default_rng(0), **KERNELS}
        scope.update({n: computed[a.id] for n, a in zip(names, self.args)})
        return names, text, scope


def test_every_primitive_has_examples():
    """(A loop over time and its results are tested on whole loops: test_recurrence.py.)"""
    missing = [name for name, prim in PRIMITIVES.items()  # leaves compute nothing
               if not prim.examples and name not in NAMED_LEAVES | {"seed"} and not prim.loop]
    assert not missing, f"primitives without examples: {missing}"


@over_examples()
def test_shape_rule_and_printed_numpy(name, example):
    case = Case(name, example)
    computed = case.evaluate(case.values())
    want = computed[case.node.id]
    assert np.shape(want) == case.node.shape
    names, text, scope = case.printed(computed)
    got = eval(text, scope)
    assert np.shape(got) == case.node.shape, text
    kinds = {"bool": "b", "int": "iu"}.get(case.node.dtype, "f")
    assert np.asarray(got).dtype.kind in kinds, (text, np.asarray(got).dtype)
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float),
                               rtol=1e-12, atol=1e-12, err_msg=text)
    into = case.prim.write_into(names, case.attrs, "out", case.node)
    if into is not None:
        scope["out"] = np.empty(case.node.shape, dtype=np.asarray(want).dtype)
        exec(into, scope)
        np.testing.assert_allclose(scope["out"], want, rtol=1e-12, atol=1e-12, err_msg=into)
    augmented = case.prim.augmented
    if augmented is not None and case.args[0].shape == case.node.shape:
        lines = (augmented(names, case.attrs, "out") if callable(augmented)
                 else [f"out {augmented} {names[1]}"])
        scope["out"] = np.array(scope["a0"], dtype=float)
        exec("\n".join(lines), scope)
        np.testing.assert_allclose(scope["out"], want, rtol=1e-12, atol=1e-12)


@over_examples(lambda name, example: bool(PRIMITIVES[name].fast))
def test_fast_forms_compute_the_reference(name, example):
    """The fast style's form of an op (``Primitive.fast``: ``_sigmoid_tanh`` for
    ``_sigmoid``), printed and in its buffer form, against the reference evaluator."""
    case = Case(name, example)
    computed = case.evaluate(case.values())
    want = computed[case.node.id]
    fast = styled("fast")[name]
    names, _, scope = case.printed(computed)
    text, _ = fast.emit([(n, ATOM) for n in names], case.attrs, case.node)
    if text == case.printed(computed)[1]:
        pytest.skip("the fast form prints these shapes as the reference does")
    assert set(fast.helpers_for("numpy", case.node)) <= set(KERNELS)
    got = eval(text, scope)
    assert np.asarray(got).dtype == np.asarray(want).dtype, text
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=text)
    into = fast.write_into(names, case.attrs, "out", case.node)  # into a buffer of its own
    if into is not None:
        scope["out"] = np.empty(case.node.shape, dtype=np.asarray(want).dtype)
        exec(into, scope)
        np.testing.assert_allclose(scope["out"], want, rtol=1e-12, atol=1e-15, err_msg=into)
    into = fast.write_into(names, case.attrs, "a0", case.node)  # into its own argument
    if into is not None and case.args[0].shape == case.node.shape:
        exec(into, scope)
        np.testing.assert_allclose(scope["a0"], want, rtol=1e-12, atol=1e-15, err_msg=into)


@over_examples(lambda name, example: PRIMITIVES[name].vjp is not None
               and Case(name, example).params)
def test_vjp_against_finite_differences(name, example):
    case = Case(name, example)
    b, node = case.b, case.node
    r = b.leaf("input", "r", node.shape)
    loss = b.op("sum", b.op("mul", node, r), axis=None, keepdims=False)
    inputs = case.inputs + [Binding("r", r, "input")]
    prog = Program("example", "<example>", "float64", inputs, [], case.params, {},
                   [Binding("y", node, "eq"), Binding("L", loss, "loss")], "L", None,
                   [bd.name for bd in case.params])
    prog = differentiate(prog)
    for seed in range(50):
        values = case.values(seed)
        values["r"] = np.random.default_rng(seed).normal(size=node.shape)
        params = {bd.name: values.pop(bd.name) for bd in case.params}
        if away_from_kinks(prog, values, params):
            break
    else:
        pytest.fail("could not draw a point away from kinks")
    check(prog, values, params)


try:
    import torch
except ImportError:  # CI installs no PyTorch: this comparison skips, the checks above run
    torch = None
if torch is not None:
    F = torch.nn.functional
    TORCH = {"exp": torch.exp, "log": torch.log, "sin": torch.sin, "cos": torch.cos,
             "tan": torch.tan, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
             "softplus": F.softplus, "sqrt": torch.sqrt, "abs": torch.abs,
             "square": torch.square, "sign": torch.sign, "neg": torch.neg,
             "leaky_relu": lambda x, alpha: F.leaky_relu(x, alpha),
             "softmax": lambda x, axis: torch.softmax(x, dim=axis[0]),
             "sum": lambda x, axis=None, keepdims=False: torch.sum(x, dim=axis, keepdim=keepdims),
             "mean": lambda x, axis=None, keepdims=False: torch.mean(x, dim=axis, keepdim=keepdims),
             "max": lambda x, axis=None, keepdims=False: torch.amax(
                 x, dim=axis or tuple(range(x.ndim)), keepdim=keepdims),
             "logsumexp": lambda x, axis=None, keepdims=False: torch.logsumexp(
                 x, dim=axis or tuple(range(x.ndim)), keepdim=keepdims),
             "matmul": torch.matmul, "maximum": torch.maximum, "minimum": torch.minimum}
else:
    TORCH = {}


@over_examples(lambda name, example: name in TORCH)
def test_evaluator_against_torch(name, example):
    case = Case(name, example)
    values = case.values()
    want = case.evaluate(values)[case.node.id]
    tensors = [torch.as_tensor(values[a.attr("name")]) for a in case.args]
    got = TORCH[name](*tensors, **case.attrs).numpy()
    np.testing.assert_allclose(want, got, rtol=1e-12, atol=1e-12)
