"""Generated modules: in sync, standalone, correct, readable, deterministic, fast paths sound."""

import ast as pyast
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bpc.compiler.backend.codegen import generate
from bpc.compiler.ir.evaluate import evaluate
from bpc.compiler.compilation import Compilation
from bpc.compiler.pipeline import (compile_text, program_from_file,
                                   program_from_text)
from conftest import REPO, SPECS, run_bpc
from bpc.runtime.gradcheck import format_table, gradcheck
from bpc.runtime.modes import fixed_masks, inference_kwargs, initial_state
from bpc.compiler.ir.evaluate import random_feeds

GENERATED = REPO / "generated"


def load_module(path, name=None):
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_from_source(source, tmp_path, name="m"):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return load_module(path, f"bpc_test_{name}_{abs(hash(source))}")


def test_generated_is_in_sync_with_specs(tmp_path):
    r = run_bpc("compile", "-q", *[p.relative_to(REPO) for p in SPECS], "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    fresh = sorted(p.name for p in tmp_path.glob("*.py"))
    committed = sorted(p.name for p in GENERATED.glob("*.py"))
    assert fresh == committed, "generated/ has stale or missing modules: run bpc compile specs/*.bp"
    for name in fresh:
        assert (tmp_path / name).read_text() == (GENERATED / name).read_text(), \
            f"generated/{name} is stale: run 'bpc compile specs/*.bp' and read the diff"


@pytest.mark.parametrize("path", sorted(GENERATED.glob("*.py")), ids=lambda p: p.stem)
def test_generated_imports_only_numpy_and_has_the_contract(path):
    tree = pyast.parse(path.read_text())
    imports = [n for n in pyast.walk(tree) if isinstance(n, (pyast.Import, pyast.ImportFrom))]
    assert [pyast.unparse(n) for n in imports] == ["import numpy as np"]
    m = load_module(path)
    for name in ("INPUTS", "TARGETS", "PARAMS", "DTYPE", "init_params", "predict", "loss",
                 "loss_and_grad"):
        assert hasattr(m, name), name
    params = m.init_params(np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == {k: tuple(s) for k, s in m.PARAMS.items()}
    assert all(v.dtype == m.DTYPE for v in params.values())


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_generated_module_gradchecks_and_matches_the_ir(spec):
    comp = Compilation.from_file(spec)
    m = load_module(GENERATED / f"{comp.name}.py")
    prog = comp.program
    rng = np.random.default_rng(1)
    data = {**{k: np.asarray(v, dtype=float) for k, v in prog.defaults.items()},
            **random_feeds(prog, rng, 5)}
    params = {k: v + 0.05 * rng.normal(size=v.shape) for k, v in m.init_params(rng).items()}
    rows = gradcheck(m, samples=8)
    assert all(r.ok for r in rows), format_table(rows)
    # Differential: the generated code and the IR evaluator agree.
    want = evaluate(prog, data, params)  # training mode, masks of seed 0
    value, grads = m.loss_and_grad(params, **data, **fixed_masks(m))
    assert value == pytest.approx(float(want[prog.loss]), rel=1e-12, abs=1e-14)
    for w in prog.wrt:
        np.testing.assert_allclose(grads[w], want[prog.grads[w]], rtol=1e-10, atol=1e-14)
    state = initial_state(m)  # batch norm's running statistics, as init_state() makes
    out = m.predict(params, **{k: v for k, v in data.items() if k in m.INPUTS},
                    **inference_kwargs(m, state))
    infer = comp.inference  # predict is inference mode
    if infer is not None:
        want = evaluate(infer, data, params, names=[m.OUTPUT], state=state)
    np.testing.assert_allclose(out, want[m.OUTPUT], rtol=1e-12, atol=1e-14)


TOY_BACKWARD = """\
dl_df3 = 2 * (f3 - y) * scale
dl_dbeta3 = dl_df3
dl_domega3 = h3 * dl_df3
dl_dh3 = omega3 * dl_df3
dl_df2 = -np.sin(f2) * dl_dh3
dl_dbeta2 = dl_df2
dl_domega2 = h2 * dl_df2
dl_dh2 = omega2 * dl_df2
dl_df1 = h2 * dl_dh2
dl_dbeta1 = dl_df1
dl_domega1 = h1 * dl_df1
dl_dh1 = omega1 * dl_df1
dl_df0 = np.cos(f0) * dl_dh1
dl_dbeta0 = dl_df0
dl_domega0 = x * dl_df0"""


def test_toy_backward_is_the_textbook_derivation():
    text = (GENERATED / "toy.py").read_text()
    body = text.split("# backward\n")[1].split("\n\n")[0]
    statements = [line.strip() for line in body.splitlines() if not line.lstrip().startswith("#")]
    assert "\n".join(statements) == TOY_BACKWARD
    # Each group of steps is headed by the forward line it differentiates.
    assert "    # h2 = exp(f1) (exp'(x) = exp(x), the output itself)\n    dl_df1 = h2 * dl_dh2\n" \
        in body
    assert body.count("# f3 = beta3 + omega3 * h3") == 1


def test_mazur_numbers():
    m = load_module(GENERATED / "mazur.py")
    params = m.init_params(np.random.default_rng(0))
    x, t = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    value, grads = m.loss_and_grad(params, x, t)
    assert value == pytest.approx(0.298371109, abs=1e-9)
    w5 = params["W2"][0, 0] - 0.5 * grads["W2"][0, 0]
    assert w5 == pytest.approx(0.35891648, abs=1e-8)
    w1 = params["W1"][0, 0] - 0.5 * grads["W1"][0, 0]
    assert w1 == pytest.approx(0.149780716, abs=1e-9)


def test_output_is_deterministic_across_hash_seeds(tmp_path):
    outs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        d = tmp_path / seed
        subprocess.run([sys.executable, "-m", "bpc", "compile", "-q", "-o", str(d),
                        *[str(p.relative_to(REPO)) for p in SPECS]], cwd=REPO, env=env,
                       check=True)
        outs.append({p.name: p.read_bytes() for p in d.glob("*.py")})
    assert outs[0] == outs[1]


def test_float32_end_to_end(tmp_path):
    text = (REPO / "specs" / "two_layer.bp").read_text().replace(
        "model two_layer", "model two_layer32\ndtype float32")
    m = module_from_source(compile_text(text, "two_layer32.bp")[1], tmp_path, "two_layer32")
    m64 = load_module(GENERATED / "two_layer.py")
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    assert all(v.dtype == np.float32 for v in params.values())
    x = rng.normal(size=(8, 784)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    value, grads = m.loss_and_grad(params, x, t)
    assert all(g.dtype == np.float32 for g in grads.values()), {k: g.dtype for k, g in grads.items()}
    assert m.predict(params, x).dtype == np.float32
    v64, g64 = m64.loss_and_grad({k: v.astype(np.float64) for k, v in params.items()}, x, t)
    assert value == pytest.approx(v64, rel=1e-5)
    for k in grads:
        np.testing.assert_allclose(grads[k], g64[k], rtol=1e-3, atol=1e-6)


def test_integer_labels_and_one_hot_agree():
    m = load_module(GENERATED / "spiral.py")
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    x = rng.normal(size=(6, 2))
    labels = rng.integers(0, 3, 6)
    value, grads = m.loss_and_grad(params, x, labels)
    onehot = compile_text((REPO / "specs" / "spiral.bp").read_text().replace(
        "target t : [N]", "target t : [N, 3]"), "spiral.bp")[1]
    ns = {}
    exec(compile(onehot, "spiral_onehot", "exec"), ns)  # noqa: S102 - our own output
    v2, g2 = ns["loss_and_grad"](params, x, np.eye(3)[labels])
    assert value == pytest.approx(v2)
    for k in grads:
        np.testing.assert_allclose(grads[k], g2[k], rtol=1e-12)


def test_no_gradient_for_inputs_unless_asked():
    text = (GENERATED / "two_layer.py").read_text()
    assert "dL_dx" not in text
    m = load_module(GENERATED / "receipt.py")
    value, grads = m.loss_and_grad({})
    assert value == pytest.approx(715.0)
    assert grads == pytest.approx({"apple": 2.2, "apple_num": 110.0, "orange": 3.3,
                                   "orange_num": 165.0, "tax": 650.0})


def test_shared_subexpressions_are_computed_once():
    text = (GENERATED / "two_layer.py").read_text()
    body = text.split("def loss_and_grad")[1]
    # the forward's exponentials are reused backward: one exponential in the whole step
    assert body.count("np.exp(") == 1 and "_logsumexp" not in body
    assert "z1.T," in body and "W2.T" in body  # transposes are views, not copies
    deep = (GENERATED / "deep_relu.py").read_text().split("def loss_and_grad")[1]
    assert deep.count("l_sub = ") == 1 and "dl_df2 = np.multiply(2 * scale, l_sub" in deep


def test_in_place_updates_and_early_release_are_used():
    body = (GENERATED / "two_layer.py").read_text().split("def loss_and_grad")[1]
    assert "a1 += b1" in body
    assert re.search(r"dL_da1 = np\.multiply\(\s*z1_mask, dL_dz1, out=dL_dz1\s*\)", body)
    # the mask is taken before the next adjoint is allocated, so z1 is released first
    assert body.index("z1_mask = z1 > 0") < body.index("del a1, z1") < body.index("dL_dz1 =")
    assert "del " in body


from hypothesis import HealthCheck, given, settings  # noqa: E402

from random_specs import plain_spec  # noqa: E402

DIFF_EXAMPLES = int(os.environ.get("BPC_PROPERTY_EXAMPLES", "80"))


@settings(max_examples=DIFF_EXAMPLES, deadline=None, derandomize=DIFF_EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(plain_spec())
def test_random_specs_generated_code_matches_ir_evaluator(spec):
    """Every in-place update and early release is checked against the plain interpreter."""
    prog = program_from_text(spec.text(), "random.bp")
    ns: dict = {}
    exec(compile(generate(prog, "random.bp"), "random_generated", "exec"), ns)  # noqa: S102
    rng = np.random.default_rng(0)
    feeds, params = spec.feeds(rng), spec.param_values(rng)
    want = evaluate(prog, feeds, params)
    copies = {k: v.copy() for k, v in {**feeds, **params}.items()}
    value, grads = ns["loss_and_grad"](params, **feeds)
    for k, v in {**feeds, **params}.items():  # inputs and parameters are never written
        np.testing.assert_array_equal(v, copies[k])
    if "grads" in ns["loss_and_grad"].__code__.co_varnames:  # computing into buffers
        buffers = {k: np.full_like(v, np.nan) for k, v in params.items()}
        value2, grads2 = ns["loss_and_grad"](params, **feeds, grads=buffers)
        assert value2 == value
        for w in prog.wrt:
            np.testing.assert_array_equal(grads2[w], grads[w])
    assert value == pytest.approx(float(want[prog.loss]), rel=1e-10, abs=1e-12)
    for w in prog.wrt:
        np.testing.assert_allclose(grads[w], want[prog.grads[w]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ns["predict"](params, **feeds), want[prog.output],
                               rtol=1e-10, atol=1e-12)


def test_inputs_with_defaults_before_required_ones_become_keyword_only(tmp_path):
    text = ("model d\ninput s = 2.0\ninput x : [N]\ntarget t : [N]\nparam w = 1.0\n"
            "h = w * s * x\nloss L = sum((h - t)^2)\n")
    m = module_from_source(compile_text(text, "d.bp")[1], tmp_path, "d")
    x, t = np.array([1.0, 2.0]), np.array([0.0, 1.0])
    assert m.loss({"w": np.array(1.0)}, x, t) == pytest.approx(4.0 + 9.0)
    assert m.loss({"w": np.array(1.0)}, x, t, s=1.0) == pytest.approx(1.0 + 1.0)
    receipt = load_module(GENERATED / "receipt.py")  # all defaults: positional order kept
    assert receipt.loss({}, 100, 2, 150, 3, 1.0) == pytest.approx(650.0)


def test_gradients_computed_into_given_buffers():
    m = load_module(GENERATED / "two_layer.py")
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    x, t = rng.normal(size=(4, 784)), np.eye(10)[[1, 2, 3, 4]]
    fresh_value, fresh = m.loss_and_grad(params, x, t)
    buffers = {k: np.zeros_like(v) for k, v in params.items()}
    value, grads = m.loss_and_grad(params, x, t, grads=buffers)
    assert value == fresh_value
    for k in params:
        assert grads[k] is buffers[k]  # written in place: no allocation
        np.testing.assert_array_equal(grads[k], fresh[k])


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_heads_adjoint_joined_back_is_copied_once(style):
    """The adjoint of a head split (``reshape`` of a transposed array: NumPy copies it)
    read by the weight's gradient and by the input's is computed once, named."""
    text = ("model heads\ninput x : [N, T, 8]\ntarget t : [N, 2, T, 4]\n"
            "param Wq : [8, 8] = xavier\n"
            "q = transpose(reshape(x @ Wq, [N, T, 2, 4]), axes=[0, 2, 1, 3])\n"
            "loss L = mse(q, t)\ngrad wrt x\n")
    comp = Compilation.from_text(text, "heads.bp", style=style)
    backward = comp.text[comp.text.index("def loss_and_grad"):].split("# backward")[1]
    assert re.sub(r"\s+", "", backward).count("np.reshape(np.transpose(") == 1, backward
    # its shape is said from the data, not read from a forward value kept for it
    assert "(x.shape[0], x.shape[1], 8)" in backward and ".shape)" not in backward
    rng = np.random.default_rng(0)
    feeds, params = random_feeds(comp.program, rng, 3), comp.module.init_params(rng)
    want = evaluate(comp.program, feeds, params)
    _, grads = comp.module.loss_and_grad(params, **feeds)
    np.testing.assert_allclose(grads["x"], want[comp.program.grads["x"]], rtol=1e-10)


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_heads_joined_back_are_copied_once_and_their_product_not_kept(style):
    """The heads joined back (``reshape`` of a transposed ``a @ v``: a copy) feed the
    output projection and its weight's gradient: copied once, named; and ``a @ v`` is
    not kept into the backward (nor computed again) for the shape of its adjoint."""
    text = ("model heads\ninput x : [N, T, 8]\ntarget t : [N, T, 8]\n"
            "param Wq : [8, 8] = xavier\nparam Wo : [8, 8] = xavier\n"
            "q = transpose(reshape(x @ Wq, [N, T, 2, 4]), axes=[0, 2, 1, 3])\n"
            "y = reshape(transpose(softmax(q @ swapaxes(q, -1, -2)) @ q, axes=[0, 2, 1, 3]),"
            " [N, T, 8]) @ Wo\nloss L = mse(y, t)\n")
    comp = Compilation.from_text(text, "heads.bp", style=style)
    body = comp.text[comp.text.index("def loss_and_grad"):]
    forward, backward = body.split("# backward")
    forward, backward = re.sub(r"\s+", "", forward), re.sub(r"\s+", "", backward)
    assert forward.count("np.reshape(np.transpose(") == 1, body
    assert "np.transpose(y_softmax@q" not in backward, body  # the heads: named, read
    assert ".shape)" not in backward, body  # a@v neither kept nor computed for its shape
    assert backward.count("Wo.T") == 1, body  # the product the heads' adjoint reshapes
    rng = np.random.default_rng(0)
    feeds, params = random_feeds(comp.program, rng, 3), comp.module.init_params(rng)
    want = evaluate(comp.program, feeds, params)
    _, grads = comp.module.loss_and_grad(params, **feeds)
    for name in ("Wq", "Wo"):
        np.testing.assert_allclose(grads[name], want[comp.program.grads[name]], rtol=1e-10)
