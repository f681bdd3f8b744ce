"""Issue 10, derivation and shapes: one regression test per class of silent wrong result.

Every gradient here is judged outside bpc's derivation: central differences of the
*generated module's own loss* (and PyTorch in tests/oracle/test_differential.py). Every test runs
the generated code, not the IR evaluator.
"""

import subprocess
import sys

import numpy as np
import pytest

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import compile_text
from conftest import REPO


def module(text: str):
    _, source = compile_text(text, "spec.bp")
    ns: dict = {"__name__": "spec"}
    exec(compile(source, "spec.py", "exec"), ns)
    ns["SOURCE"] = source
    return ns


def params_of(m, seed=0):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(v, dtype=m["DTYPE"]) for k, v in m["init_params"](rng).items()}


def numeric_grad(m, params, data, name, eps=1e-6):
    """Central differences of the generated loss, in float64."""
    p64 = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    out = np.zeros_like(p64[name])
    for i in np.ndindex(out.shape):
        for sign in (1, -1):
            q = {k: v.copy() for k, v in p64.items()}
            q[name][i] += sign * eps
            out[i] += sign * m["loss"](q, **data)
    return out / (2 * eps)


def assert_gradients(m, data, seed=0, rtol=1e-6, atol=1e-8):
    params = params_of(m, seed)
    _, grads = m["loss_and_grad"](params, **data)
    assert set(grads) == set(m["GRADS"])
    for name, g in grads.items():
        # a NumPy array, or a NumPy scalar for a 0-d parameter; never a Python float
        assert isinstance(g, (np.ndarray, np.generic)) and g.dtype == m["DTYPE"], (name, g)
        assert g.shape == params[name].shape, name
        np.testing.assert_allclose(g, numeric_grad(m, params, data, name), rtol=rtol,
                                   atol=atol, err_msg=name)
    return grads


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        compile_text(text, "spec.bp")
    return str(info.value)


X = np.random.default_rng(7).normal(size=(5, 3))


# ----------------------------------------------------------------------------- derivation
@pytest.mark.parametrize("text", [
    "param p = 2.0\nloss L = p\n",
    "param p = 2.0\nq = p\nloss L = q\n",
    "dtype float32\nparam p = 2.0\nq = p\nloss L = q\n",
])
def test_a_loss_that_is_a_leaf_has_gradient_one(text):
    m = module(text)
    grads = assert_gradients(m, {})
    assert grads["p"] == 1.0
    assert "does not depend" not in m["SOURCE"]


@pytest.mark.parametrize("loss, target", [
    ("softmax_cross_entropy", "softmax(x @ V)"),
    ("softmax_cross_entropy", "sigmoid(x @ V)"),  # rows that do not sum to 1
    ("sigmoid_cross_entropy", "sigmoid(x @ V)"),
    ("softmax_cross_entropy", "V"),  # a parameter as the target
])
def test_fused_losses_differentiate_through_a_computed_target(loss, target):
    shape, rows = ("[5, 4]", "5") if target == "V" else ("[3, 4]", "N")
    m = module(f"input x : [{rows}, 3]\nparam W : [3, 4] = normal\nparam V : {shape} = normal\n"
               f"loss L = {loss}(x @ W, {target})\n")
    grads = assert_gradients(m, {"x": X})
    assert np.abs(grads["V"]).max() > 1e-3


@pytest.mark.parametrize("text, expected", [
    ("param p : [4] = [1, 3, 3, 2]\nloss L = max(p)\n", [0, 0.5, 0.5, 0]),
    ("param p : [5] = 2.0\nloss L = max(p)\n", [0.2] * 5),
    ("param p : [2, 3] = [1, 4, 4; 2, 2, 2]\nloss L = sum(max(p, axis=1))\n",
     [[0, 0.5, 0.5], [1 / 3] * 3]),
    ("param p : [2, 3] = [1, 4, 4; 2, 2, 2]\nloss L = sum(max(p, axis=0, keepdims=1))\n",
     [[0, 1, 1], [1, 0, 0]]),
    ("dtype float32\nparam p : [4] = [1, 3, 3, 2]\nloss L = max(p)\n", [0, 0.5, 0.5, 0]),
])
def test_max_splits_the_gradient_evenly_among_ties(text, expected):
    m = module(text)
    _, grads = m["loss_and_grad"](params_of(m), **{})
    assert grads["p"].dtype == m["DTYPE"]
    np.testing.assert_allclose(grads["p"], expected, rtol=1e-6)


def _locals_at_return(fn, *args, **kwargs):
    """Every local variable of ``fn`` when it returns (forward values and adjoints)."""
    seen = {}

    def profile(frame, event, arg):
        if event == "return" and frame.f_code is fn.__code__:
            seen.update(frame.f_locals)

    sys.setprofile(profile)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return result, seen


FLOAT32_SPECS = [
    # a mask times a number, np.log / np.sin of numbers, / N, a leaf loss term
    """dtype float32
input x : [N, 3]
param W : [3, 1] = normal
param c = 0.5
loss L = sum(relu(x @ W) * 0.5) + sum(sin(0.1) * W) + log(2) * sum(W) + c + log(N) * c
""",
    """dtype float32
input x : [N, 3]
target t : [N]
param W : [3, 4] = normal
v = reshape(x @ W, [-1, 2, 2])
m = max(v, axis=2)
loss L = softmax_cross_entropy(reshape(m, [N, 2]) @ [1, 2; 3, 4], t) + mean(abs(W)) / N
""",
    """dtype float32
input x : [N, 3]
target y : [N, 1]
param W : [3, 1] = 0.5
param k = 2.0
f = leaky_relu(x @ W, alpha=0.1) * 3
loss L = mse(f, y) + k
""",
]


@pytest.mark.parametrize("text", FLOAT32_SPECS)
def test_float32_models_compute_and_return_float32(text):
    m = module(text)
    params = params_of(m)
    data = {"x": X.astype(np.float32)}
    if "target t" in text:
        data["t"] = np.array([0, 1, 1, 0, 1])
    if "target y" in text:
        data["y"] = np.ones((5, 1), np.float32)
    (loss, grads), values = _locals_at_return(m["loss_and_grad"], params, **data)
    for name, g in grads.items():
        assert isinstance(g, (np.ndarray, np.generic)) and g.dtype == np.float32, (name, g)
    floats = {k: v for k, v in values.items() if isinstance(v, (np.ndarray, np.generic))
              and np.issubdtype(np.asarray(v).dtype, np.floating)}
    wrong = {k: np.asarray(v).dtype for k, v in floats.items() if np.asarray(v).dtype
             != np.float32}
    assert not wrong, wrong
    assert not [k for k, v in values.items() if isinstance(v, float) and k in grads]
    out = m["predict"](params, **{k: v for k, v in data.items() if k in m["INPUTS"]})
    assert np.asarray(out).dtype == np.float32
    # and the float32 gradient is right (to float32 precision)
    m64 = module(text.replace("dtype float32\n", ""))
    _, g64 = m64["loss_and_grad"]({k: v.astype(np.float64) for k, v in params.items()},
                                  **{k: np.asarray(v, dtype=np.float64) if v.dtype.kind == "f"
                                     else v for k, v in data.items()})
    for name in grads:
        np.testing.assert_allclose(grads[name], g64[name], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("text", [
    "param p = 2.0\nloss L = sum(p * 1.0.T)\n",
    "param p : [3] = 2.0\nloss L = sum(sin(p.T * transpose(p)))\n",
    "input x : [N, 2]\nloss L = sum(sin(x @ W1.T))\nparam W1 : [2, 2] = normal\n",
    "loss L = sum(sin(W1.T @ x))\ninput x : [2] = [1, 2]\nparam W1 : [2, 2] = normal\n",
    "input x : [N, 2]\ny = tanh(x @ W0)\nlayers y -> z {\n  dense 2\n}\nloss L = sum(z)\n"
    "param W0 : [2, 2] = normal\n",
])
def test_transposes_and_declarations_used_above_their_line(text):
    m = module(text)
    data = {"x": X[:, :2]} if "x : [N" in text else {}
    assert_gradients(m, data)
    for name in ("W1", "W0"):
        if f"param {name}" in text:
            assert name in m["PARAMS"]


def test_a_layer_weight_used_above_its_stack_is_a_located_error():
    msg = spec_error("input x : [N, 2]\ny = tanh(x @ W1)\nlayers y -> z {\n  dense 2\n}\n"
                     "loss L = sum(z)\n")
    assert "spec.bp:2:14: error: 'W1' is used before its shape is known" in msg


def test_softmax_cross_entropy_needs_a_fixed_class_count():
    msg = spec_error("input x : [N, M]\ntarget t : [N, M]\nloss L = softmax_cross_entropy(x, t)\n"
                     "param p = 1.0\n")
    assert "spec.bp:3:10: error:" in msg and "symbolic dimension M" in msg


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape, written", [
    ("[N, 6]", "(-1, 6)"), ("[-1, 6]", "(-1, 6)"), ("[N, -1]", "(x.shape[0], -1)"),
    ("[N, 3, 2]", "(-1, 3, 2)"), ("[N, 2, 3]", None),
])
def test_reshape_of_batched_values(shape, written):
    m = module(f"input x : [N, 2, 3]\nparam W : [6, 1] = normal\nv = reshape(x, {shape})\n"
               "loss L = sum(sin(reshape(reshape(v, [N, 6]) @ W, [-1])))\n")
    if written is None:  # to the shape it has: no reshape at all (v = x)
        assert "v = x\n" in m["SOURCE"]
    else:
        assert f"np.reshape(x, {written})" in m["SOURCE"]
    assert_gradients(m, {"x": np.random.default_rng(1).normal(size=(4, 2, 3))})


@pytest.mark.parametrize("text", [
    "param p : [1] = 2.0\nloss L = sin(reshape(p, []))\n",
    "param p = 2.0\nloss L = sum(sin(reshape(p, [1, 1])))\n",
    "param p : [2, 3] = normal\nloss L = sum(sin(reshape(p.T, [6]) * [1, 2, 3, 4, 5, 6]))\n",
    "input x : [N, 3]\nparam W : [3, 1] = normal\nloss L = sum(sin(reshape(x @ W, [-1])))\n",
])
def test_reshape_of_parameters_and_vectors(text):
    assert_gradients(module(text), {"x": X} if "input x" in text else {})


@pytest.mark.parametrize("text, message", [
    ("input x : [N, 2, 3]\nloss L = sum(reshape(x, [-1]))\nparam p = 1.0\n",
     "-1 would be 6 * N"),
    ("input x : [N, 2]\nloss L = sum(reshape(x, [N, 3]))\nparam p = 1.0\n",
     "changes the number of elements"),
    ("input x : [N, 2]\nloss L = sum(reshape(x, [-1, -1]))\nparam p = 1.0\n", "at most one"),
    ("input x : [N, 2]\ninput y : [M]\nloss L = sum(reshape(x, [M, 2]))\nparam p = 1.0\n",
     "needs dimension M"),
])
def test_reshape_errors_are_located(text, message):
    msg = spec_error(text)
    assert "spec.bp:" in msg and message in msg


def test_symbolic_dimensions_are_numbers_bound_from_the_data():
    m = module("input x : [N, 3]\nparam W : [3, 1] = normal\n"
               "loss L = sum(x @ W) / N + log(N) * sum(W)\n")
    assert "/ x.shape[0]" in m["SOURCE"]
    params = params_of(m)
    for n in (2, 5):
        x = X[:n]
        loss = m["loss"](params, x)
        assert np.isclose(loss, np.sum(x @ params["W"]) / n + np.log(n) * params["W"].sum())
    assert_gradients(m, {"x": X})


def test_axis_none_is_the_default_spelled_out():
    m = module("param p : [2, 3] = normal\n"
               "loss L = sum(p, axis=none) + sum(mean(sin(p), axis=none, keepdims=true))\n")
    assert_gradients(m, {})
    assert "'axis' of softmax must be a constant" in spec_error(
        "param p : [2, 3] = normal\nloss L = sum(softmax(p, axis=none))\n")


@pytest.mark.parametrize("fn", ["mse", "sse", "least_squares", "cross_entropy",
                                "sigmoid_cross_entropy"])
def test_losses_require_operands_of_one_shape(fn):
    msg = spec_error(f"input x : [N, 3]\ntarget y : [N]\nparam W : [3, 1] = normal\n"
                     f"loss L = {fn}(sigmoid(x @ W), y)\n")
    assert "spec.bp:4:10: error:" in msg and "must have the same shape" in msg
    assert "[N, 1]" in msg and "'y' is [N]" in msg and "hint:" in msg


def test_a_scalar_operand_of_a_loss_is_fine():
    assert_gradients(module("param w : [3] = normal\nloss L = mse(w, 0)\n"), {})


BROADCAST = "input x : [N, 3]\ntarget y : [N]\nparam W : [3, 1] = normal\n" \
            "f = x @ W\nloss L = mean((f - y)^2)\n"


def test_outer_broadcast_of_the_batch_dimension_is_a_located_warning(tmp_path):
    warnings = []
    from bpc.compiler.pipeline import program_from_text

    program_from_text(BROADCAST, "b.bp", stage="ir") if False else None
    from bpc.compiler.frontend.load import load_text
    from bpc.compiler.pipeline import program

    program(load_text(BROADCAST, "b.bp"), "ir", warn=warnings.append)
    assert len(warnings) == 1
    assert warnings[0].startswith("b.bp:5:16: warning: broadcasting 'f' [N, 1] against 'y' "
                                  "[N] gives [N, N]")
    assert "^~~~~" in warnings[0] and "hint:" in warnings[0]
    # same-shape operands, and an outer product the spec really writes, do not warn
    for text in (BROADCAST.replace("[N]", "[N, 1]"),
                 "input x : [N, 3]\nparam w : [3] = normal\nloss L = sum(x @ w * x.T)\n"):
        quiet = []
        program(load_text(text, "b.bp"), "ir", warn=quiet.append)
        assert not quiet, quiet


@pytest.mark.parametrize("command", ["check", "compile", "train"])
def test_check_compile_and_train_show_the_warning(tmp_path, command):
    spec = tmp_path / "b.bp"
    spec.write_text(BROADCAST + 'data "b.npz"\ntrain { epochs = 1 }\n')
    np.savez(tmp_path / "b.npz", x=X, y=np.ones(5))
    extra = {"compile": ["-o", str(tmp_path)], "train": ["--out", str(tmp_path / "run")],
             "check": []}[command]
    r = subprocess.run([sys.executable, "-m", "bpc", command, str(spec), *extra],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "warning: broadcasting 'f' [N, 1] against 'y' [N] gives [N, N]" in r.stderr


def test_a_number_initializer_fills_the_declared_shape():
    m = module("param w : [2, 3] = 0.3\nloss L = sum(w)\n")
    params = params_of(m)
    assert params["w"].shape == (2, 3) and np.all(params["w"] == 0.3)
    assert m["loss"](params) == pytest.approx(1.8)


@pytest.mark.parametrize("decl", ["input x : [2] = [1, 2]", "input x = [1, 2]",
                                  "input x : [2, 2] = [1, 2; 3, 4]"])
def test_an_input_default_may_be_an_array(decl):
    m = module(f"{decl}\nparam p = 2.0\nloss L = sum(p * x)\n")
    params = params_of(m)
    x = np.array([[1, 2], [3, 4]] if "[2, 2]" in decl else [1, 2], dtype=float)
    assert m["loss"](params) == pytest.approx(2.0 * x.sum())
    assert m["loss"](params, x=2 * x) == pytest.approx(4.0 * x.sum())


# ----------------------------------------------------------------------------- runnable
@pytest.mark.parametrize("expr, message", [
    ("(1/0)", "divides by zero"), ("0^-1", "divides by zero"),
    ("(-1)^0.5", "not a finite real number"), ("9^9^9", "too large"),
    ("10^400", "too large"),
])
def test_constants_that_cannot_be_computed_are_located_errors(expr, message):
    msg = spec_error(f"input x : [N, 3]\nparam W : [3, 1] = normal\nloss L = sum(x @ W) * {expr}\n")
    assert "spec.bp:3:" in msg and message in msg


def test_an_output_naming_a_parameter_is_returned_by_predict():
    m = module("input x : [N, 3]\nparam W : [3, 1] = normal\noutput W\nloss L = sum(x @ W)\n")
    params = params_of(m)
    np.testing.assert_array_equal(m["predict"](params, X), params["W"])


# ----------------------------------------------------------------------------- property
import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402

from random_specs import plain_spec  # noqa: E402

F32_EXAMPLES = int(os.environ.get("BPC_PROPERTY_EXAMPLES", "60"))


@settings(max_examples=F32_EXAMPLES, deadline=None, derandomize=F32_EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(plain_spec())
def test_random_float32_specs_keep_float32_in_every_value_and_gradient(spec):
    m = module("dtype float32\n" + spec.text())
    rng = np.random.default_rng(0)
    feeds = {k: v.astype(np.float32) for k, v in spec.feeds(rng).items()}
    params = {k: np.asarray(v, dtype=np.float32) for k, v in spec.param_values(rng).items()}
    with np.errstate(all="ignore"):
        (_, grads), values = _locals_at_return(m["loss_and_grad"], params, **feeds)
        out = m["predict"](params, **feeds)
    for name, g in grads.items():
        assert isinstance(g, (np.ndarray, np.generic)) and g.dtype == np.float32, (name, g)
        assert np.shape(g) == params.get(name, feeds.get(name)).shape
    wrong = {k: np.asarray(v).dtype for k, v in values.items()
             if isinstance(v, (np.ndarray, np.generic)) and np.asarray(v).dtype.kind == "f"
             and np.asarray(v).dtype != np.float32}
    assert not wrong, (wrong, m["SOURCE"])
    assert np.asarray(out).dtype == np.float32


def test_a_long_chain_of_scalar_equations_is_not_nested():
    """Checking constants walks Python numbers only: a chain of 3,000 flat equations on a
    parameter compiles (it once recursed through every earlier equation)."""
    lines = ["param p = 0.5", "h0 = p * 2"] + [f"h{i} = h{i - 1} * 1.001"
                                               for i in range(1, 3000)]
    m = module("\n".join(lines + ["loss L = h2999"]) + "\n")
    assert m["loss"]({"p": np.asarray(0.5)}) == pytest.approx(1.001 ** 2999)
