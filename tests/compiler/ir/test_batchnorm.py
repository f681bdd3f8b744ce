"""Batch normalization and state, checked from outside bpc.

- Gradients of the training-mode loss (``loss_and_grad``: batch statistics) against central
  finite differences of that loss, over a grid of shapes, scalar gamma/beta, float32, a
  batchnorm layer in a residual block and after a conv layer. Each evaluation gets its own
  copy of the state, so the running statistics it updates never leak into the next.
- The same inputs through ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (float64): the
  training output, the running mean, the running variance (bpc updates it with the
  *biased* batch variance, DLFS 6.3; torch with the unbiased one, so the two are related
  by N/(N-1), asserted), and the inference output at the same running statistics.
- ``state`` as a name: allowed in a spec without state declarations (v1 specs), rejected
  with a located error in a spec that declares state.
- The differential harness notices a wrong running-statistics update (a mutation of the
  generated code), so a passing differential test means something.
- The IR evaluator takes and updates state as the generated module does, and runs the
  inference program with a given state.
"""

from __future__ import annotations

import numpy as np
import pytest

import bpc
from batchnorm_specs import specs  # noqa: F401 - a fixture
from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.ir.evaluate import (evaluate, initial_params, initial_state, new_state,
                                      random_feeds)
from bpc.compiler.pipeline import check_text, compile_text
from diffharness import build


def _spec(x_shape, affine="vector", dtype="float64", extra="", momentum=None, eps=None):
    """loss L = sum(sin(h) * t) with h = batch_norm(x, g, be, m, v): t weighs each output
    (a plain sum of a batch norm's output has a zero gradient with respect to x)."""
    c = x_shape[1]
    dims = ", ".join(["N"] + [str(d) for d in x_shape[1:]])
    gamma = {"vector": f"param g : [{c}] = normal", "scalar": "param g = 1.3"}[affine]
    beta = {"vector": f"param be : [{c}] = normal", "scalar": "param be = -0.4"}[affine]
    opts = "".join([f", momentum={momentum}" if momentum is not None else "",
                    f", eps={eps}" if eps is not None else ""])
    return f"""model bn
dtype {dtype}
input x : [{dims}]
input t : [{dims}]
{gamma}
{beta}
state m : [{c}] = zeros
state v : [{c}] = ones
h = batch_norm(x, g, be, m, v{opts})
{extra}loss L = sum(sin(h) * t)
grad wrt x, t
"""


def _point(mod, x_shape, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(mod.DTYPE)
    params = {n: np.asarray(rng.normal(size=s), dtype=dtype) for n, s in mod.PARAMS.items()}
    data = {"x": np.asarray(scale * rng.normal(size=x_shape) + 0.3, dtype=dtype),
            "t": np.asarray(rng.normal(size=x_shape), dtype=dtype)}
    return params, data


def _fresh_state(mod):
    """A non-trivial state (not the initial one): running statistics away from 0 and 1."""
    rng = np.random.default_rng(7)
    return {n: np.asarray(0.5 * rng.normal(size=s) if n.endswith(("m", "mean"))
                          else rng.uniform(0.5, 2.0, size=s), dtype=mod.DTYPE)
            for n, s in mod.STATE.items()}


def _train(mod, params, data, state):
    """One training-mode call on a copy of ``state``: (loss, grads, the state after)."""
    st = {k: np.array(v, copy=True) for k, v in state.items()}
    loss, grads = mod.loss_and_grad(params, **data, state=st)
    return loss, grads, st


def _check_fd(mod, params, data, state, step, rtol, atol):
    _, grads, _ = _train(mod, params, data, state)
    assert set(grads) == set(mod.PARAMS) | {"x", "t"}
    checked = 0
    for name, g in grads.items():
        src = params if name in params else data
        base = np.asarray(src[name], dtype=np.float64)
        fd = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            for sign in (1, -1):
                bumped = base.copy()
                bumped[i] += sign * step
                new = {**src, name: bumped.astype(mod.DTYPE)}
                args = (new, data) if src is params else (params, new)
                fd[i] += sign * _train(mod, *args, state)[0] / (2 * step)
        assert np.asarray(g).dtype == np.dtype(mod.DTYPE), name
        np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol, err_msg=name)
        checked += base.size
    assert checked > 0


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("d", [1, 4])
def test_gradients_dense_by_finite_differences(n, d):
    mod = build(_spec((n, d)))
    params, data = _point(mod, (n, d), seed=n * 10 + d)
    _check_fd(mod, params, data, _fresh_state(mod), 1e-6, 1e-5, 1e-7)


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (3, 1, 2, 3), (1, 2, 3, 2)],
                         ids=lambda s: "x".join(map(str, s)))
def test_gradients_images_by_finite_differences(shape):
    mod = build(_spec(shape, momentum=0.7))
    params, data = _point(mod, shape, seed=sum(shape))
    _check_fd(mod, params, data, _fresh_state(mod), 1e-6, 1e-5, 1e-7)


@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 2)], ids=["NxD", "NxCxHxW"])
def test_gradients_scalar_gamma_beta(shape):
    mod = build(_spec(shape, affine="scalar", eps=1e-3))
    assert mod.PARAMS["g"] == () and mod.PARAMS["be"] == ()
    params, data = _point(mod, shape, seed=3)
    _check_fd(mod, params, data, _fresh_state(mod), 1e-6, 1e-5, 1e-7)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 2)], ids=["NxD", "NxCxHxW"])
def test_gradients_float32_loosely(shape):
    mod = build(_spec(shape, dtype="float32"))
    params, data = _point(mod, shape, seed=5)
    _check_fd(mod, params, data, _fresh_state(mod), 1e-2, 3e-2, 3e-3)
    # and close to the float64 module's at the same point
    mod64 = build(_spec(shape))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    d64 = {k: v.astype(np.float64) for k, v in data.items()}
    st = _fresh_state(mod64)
    _, g64, s64 = _train(mod64, p64, d64, st)
    _, g32, s32 = _train(mod, params, data, {k: v.astype(np.float32) for k, v in st.items()})
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-3, atol=2e-4, err_msg=k)
    for k in s64:
        assert s32[k].dtype == np.float32
        np.testing.assert_allclose(s32[k], s64[k], rtol=1e-5, atol=1e-6, err_msg=k)


LAYER_SPECS = {
    "residual-dense": """model bnres
input x : [N, 3]
input t : [N, 2]
layers x -> y {
  dense 4; tanh
  residual { dense 4; batchnorm; tanh; dense 4; batchnorm momentum=0.5 }
  dense 2
}
loss L = sum(sin(y) * t)
grad wrt x
""",
    "after-conv": """model bnconv
input x : [N, 2, 4, 3]
input t : [N, 3]
layers x -> y {
  conv 3 size=2 pad=1; batchnorm eps=1e-4; tanh
  residual { conv 3 size=3 pad=1; batchnorm; sigmoid; conv 3 size=1 }
  avgpool 2 stride=1
  flatten
  dense 3
}
loss L = sum(sin(y) * t)
grad wrt x
""",
}


@pytest.mark.parametrize("name", sorted(LAYER_SPECS))
def test_gradients_of_batchnorm_layers(name):
    mod = build(LAYER_SPECS[name])
    assert any(k.endswith("_running_var") for k in mod.STATE)
    rng = np.random.default_rng(11)
    params = {k: v + 0.1 * rng.normal(size=np.shape(v))
              for k, v in mod.init_params(rng).items()}
    x_shape = tuple(3 if d == "N" else d for d in mod.INPUTS["x"])
    t_shape = tuple(3 if d == "N" else d for d in mod.INPUTS["t"])
    data = {"x": rng.normal(size=x_shape), "t": rng.normal(size=t_shape)}
    state = mod.init_state()
    _, grads, _ = _train(mod, params, data, state)
    for name_, g in grads.items():
        src = params if name_ in params else data
        base = np.asarray(src[name_], dtype=np.float64)
        fd = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            for sign in (1, -1):
                bumped = base.copy()
                bumped[i] += sign * 1e-6
                new = {**src, name_: bumped}
                args = (new, data) if src is params else (params, new)
                fd[i] += sign * _train(mod, *args, state)[0] / 2e-6
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7, err_msg=name_)


# ----------------------------------------------------------------------------- torch
@pytest.fixture
def torch_mod():
    return pytest.importorskip("torch", reason="comparing with torch needs PyTorch")


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 3, 2), (8, 1)], ids=lambda s: str(len(s)))
def test_equals_torch_batchnorm(shape, torch_mod):
    """The training output, running statistics and inference output against torch's
    BatchNorm module (momentum 0.1 there is 0.9 here: the share kept of the old value)."""
    tt = torch_mod
    momentum, eps = 0.8, 1e-5
    mod = build(_spec(shape, momentum=momentum, eps=eps))
    params, data = _point(mod, shape, seed=1)
    state = _fresh_state(mod)
    # dL/dt = sin(h): the training-mode output of batch_norm read off a gradient
    _, grads, after = _train(mod, params, data, state)
    h_train = np.arcsin(np.clip(grads["t"], -1, 1))
    c = shape[1]
    bn = (tt.nn.BatchNorm1d if len(shape) == 2 else tt.nn.BatchNorm2d)(
        c, eps=eps, momentum=1 - momentum).double()
    with tt.no_grad():
        bn.weight.copy_(tt.tensor(params["g"]))
        bn.bias.copy_(tt.tensor(params["be"]))
        bn.running_mean.copy_(tt.tensor(state["m"]))
        bn.running_var.copy_(tt.tensor(state["v"]))
    bn.train()
    x = tt.tensor(data["x"])
    with tt.no_grad():
        want = bn(x).numpy()
    ok = np.abs(want) < 1.4  # arcsin recovers h where |h| < pi/2
    assert ok.mean() > 0.5
    np.testing.assert_allclose(h_train[ok], want[ok], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(after["m"], bn.running_mean.numpy(), rtol=1e-12, atol=1e-12)
    count = data["x"].size // c
    axes = (0,) + tuple(range(2, len(shape)))
    biased = data["x"].var(axis=axes)
    np.testing.assert_allclose(after["v"], momentum * state["v"] + (1 - momentum) * biased,
                               rtol=1e-12)
    # torch's running variance takes the unbiased variance: count/(count-1) times larger
    torch_var = bn.running_var.numpy()
    np.testing.assert_allclose(
        (torch_var - momentum * state["v"]) / (1 - momentum) * (count - 1) / count,
        biased, rtol=1e-10)
    # inference at the same running statistics
    bn.eval()
    with tt.no_grad():
        bn.running_var.copy_(tt.tensor(after["v"]))
        want_inf = bn(x).numpy()
    L_inf = mod.loss(params, **data, state=after)
    np.testing.assert_allclose(L_inf, float(np.sum(np.sin(want_inf) * data["t"])), rtol=1e-12)


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 3, 2), (5, 3)], ids=lambda s: str(s))
def test_gradients_equal_torch_autograd(shape, style, torch_mod):
    """The gradients of both styles (the fast style's closed form, the textbook's steps)
    against autograd through torch's BatchNorm module, gamma and beta vectors or scalars
    (the (5, 3) case), and the running statistics the call leaves."""
    tt = torch_mod
    affine = "scalar" if shape == (5, 3) else "vector"
    mod = build(_spec(shape, affine=affine, momentum=0.8, eps=1e-5), style=style)
    params, data = _point(mod, shape, seed=2)
    state = _fresh_state(mod)
    _, grads, after = _train(mod, params, data, state)
    bn = (tt.nn.BatchNorm1d if len(shape) == 2 else tt.nn.BatchNorm2d)(
        shape[1], eps=1e-5, momentum=0.2, affine=False).double()
    with tt.no_grad():
        bn.running_mean.copy_(tt.tensor(state["m"]))
        bn.running_var.copy_(tt.tensor(state["v"]))
    x, t = (tt.tensor(data[k], requires_grad=True) for k in ("x", "t"))
    g, be = (tt.tensor(np.asarray(params[k]), requires_grad=True) for k in ("g", "be"))
    frame = (1, -1) + (1,) * (len(shape) - 2)
    h = bn(x) * (g if affine == "scalar" else g.reshape(frame)) + \
        (be if affine == "scalar" else be.reshape(frame))
    tt.sum(tt.sin(h) * t).backward()
    for name, leaf in (("x", x), ("t", t), ("g", g), ("be", be)):
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=1e-9, atol=1e-10,
                                   err_msg=name)
    np.testing.assert_allclose(after["m"], bn.running_mean.numpy(), rtol=1e-12, atol=1e-12)


def test_the_fast_style_updates_the_callers_running_statistics_in_place():
    mod = build(_spec((5, 3)))
    params, data = _point(mod, (5, 3))
    state = _fresh_state(mod)
    arrays = dict(state)
    _, _, want = _train(build(_spec((5, 3)), style="textbook"), params, data, state)
    mod.loss_and_grad(params, **data, state=state)
    for k in state:
        assert state[k] is arrays[k]
        np.testing.assert_allclose(state[k], want[k], rtol=1e-14)


def test_inference_is_independent_of_the_batch_and_leaves_state_alone():
    mod = build(_spec((5, 3)).replace("loss L", "output h\nloss L"))
    params, data = _point(mod, (5, 3))
    state = _fresh_state(mod)
    keep = {k: v.copy() for k, v in state.items()}
    full = mod.predict(params, data["x"], data["t"], state=state)
    one = mod.predict(params, data["x"][2:3], data["t"][2:3], state=state)
    np.testing.assert_allclose(one[0], full[2], rtol=1e-14)
    want = params["g"] * (data["x"] - state["m"]) / np.sqrt(state["v"] + 1e-6) + params["be"]
    np.testing.assert_allclose(full, want, rtol=1e-12)
    assert all(np.array_equal(state[k], keep[k]) for k in keep) and set(state) == set(keep)


# ----------------------------------------------------------------------------- 'state'
def test_state_is_a_name_in_a_spec_without_state():
    """v1 compatibility: 'state' is a keyword only before a name at a statement's start."""
    text = """model v1
input x : [N, 3]
param W : [3, 2] = normal
state = x @ W
output state
loss L = sum(sin(state))
"""
    mod = build(text)
    assert not hasattr(mod, "STATE") and not hasattr(mod, "init_state")
    rng = np.random.default_rng(0)
    params = mod.init_params(rng)
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(mod.predict(params, x), x @ params["W"])
    loss, grads = mod.loss_and_grad(params, x)
    np.testing.assert_allclose(loss, np.sum(np.sin(x @ params["W"])))
    np.testing.assert_allclose(grads["W"], x.T @ np.cos(x @ params["W"]))


@pytest.mark.parametrize("line", ["state = x * 2", "param state : [3] = zeros",
                                  "input state : [N, 3]", "STATE = x * 2",
                                  "init_state = x * 2"])
def test_state_names_are_rejected_in_a_spec_with_state(line):
    text = f"""model s
input x : [N, 3]
param g : [3] = ones
param be : [3] = zeros
state m : [3] = zeros
state v : [3] = ones
{line}
h = batch_norm(x, g, be, m, v)
loss L = sum(h * h)
"""
    with pytest.raises(SpecError) as info:
        check_text(text, "s.bp")
    msg = info.value.render()
    name = line.split()[1] if line.startswith(("param", "input")) else line.split()[0]
    assert "s.bp:7:" in msg and f"'{name}' cannot be used as a name" in msg, msg
    assert "hint:" in msg
    # the same line without any state declaration compiles
    plain = "\n".join(ln for ln in text.splitlines()
                      if not ln.startswith("state ") and "batch_norm" not in ln)
    plain = plain.replace("sum(h * h)", "sum(x * x)") + "\n"
    compile_text(plain, "plain.bp")


# ----------------------------------------------------------------------------- harness power
@pytest.mark.parametrize("mutation", [
    ("m += 0.1 * (h_mu - m)", "m += 0.2 * (h_mu - m)"),
    ("0.1 * (h_var - v)", "0.1 * (h_var * 1.0001 - v)"),
    ("h_var = np.mean(h_xc**2, axis=0)",
     "h_var = np.mean(h_xc**2, axis=0) * x.shape[0] / (x.shape[0] - 1)")],
    ids=["momentum", "variance-update", "unbiased-variance"])
def test_differential_notices_a_wrong_update(mutation, monkeypatch, torch_mod):
    """A generated module with a wrong running-statistics update (or the unbiased
    variance) fails the differential test: the harness compares the state."""
    import diffharness

    text = _spec((4, 3))
    name, source = compile_text(text, "diff.bp")
    assert mutation[0] in source, source
    bad = source.replace(mutation[0], mutation[1])
    monkeypatch.setattr(diffharness, "compile_text", lambda *a, **k: (name, bad))
    with pytest.raises(diffharness.Mismatch) as info:
        diffharness.differential(text, 0)
    assert any("state" in p or "loss" in p or "dx" in p for p in info.value.problems)
    # and the unmutated module passes
    monkeypatch.setattr(diffharness, "compile_text", lambda *a, **k: (name, source))
    diffharness.differential(text, 0)


def test_a_state_no_batch_norm_uses_is_a_located_warning():
    from bpc.compiler.pipeline import program_from_text

    prog = program_from_text("input x : [N, 3]\nstate m : [3] = zeros\nloss L = sum(x)\n",
                             "unused.bp", stage="ir")
    assert len(prog.warnings) == 1
    assert "unused.bp:2:1: warning: state 'm' is never used" in prog.warnings[0]


def test_every_function_of_a_model_with_state_takes_state():
    """One calling convention for a module with state, also where predict reads none
    (its docstring says so): the runtime calls predict, loss and loss_and_grad alike."""
    import inspect

    text = ("model cls\ninput x : [N, 4]\ntarget t : [N, 2]\nparam W : [4, 2] = normal\n"
            "param g : [4] = ones\nparam be : [4] = zeros\nstate m : [4] = zeros\n"
            "state v : [4] = ones\noutput y = x @ W\nh = batch_norm(x, g, be, m, v)\n"
            "loss L = softmax_cross_entropy(y, t) + 0.001 * mean(h * h)\n")
    mod = build(text)
    for fn in (mod.predict, mod.loss, mod.loss_and_grad):
        assert inspect.signature(fn).parameters["state"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "computes nothing from it" in mod.predict.__doc__
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    state = mod.init_state()
    params = mod.init_params(rng)
    np.testing.assert_allclose(mod.predict(params, x, state=state), x @ params["W"])


def test_two_uses_of_one_state_in_one_call_and_a_float32_eps_of_zero_are_errors():
    head = ("input x : [N, 3]\nparam g : [3] = ones\nparam b : [3] = zeros\n"
            "state m : [3] = zeros\nstate v : [3] = ones\n")
    with pytest.raises(SpecError) as e:
        check_text(head + "y = batch_norm(x, g, b, m, m)\nloss L = sum(y)\n", "mm.bp")
    assert "mm.bp:6:28: error: state 'm' is both the running mean and the running " \
           "variance of this batch_norm" in str(e.value)
    with pytest.raises(SpecError) as e:
        check_text("dtype float32\n" + head + "y = batch_norm(x, g, b, m, v, eps=1e-50)\n"
                   "loss L = sum(y)\n", "eps.bp")
    assert "eps.bp:7:5: error: batch_norm's eps 1e-50 is 0 in float32" in str(e.value)


def test_a_running_variance_starting_negative_is_an_error():
    """Inference would take sqrt(var + eps) of it: NaN before training, silently."""
    with pytest.raises(SpecError) as e:
        check_text("input x : [N, 2]\nparam g : [2] = ones\nparam b : [2] = zeros\n"
                   "state m : [2] = zeros\nstate v : [2] = [1, -2]\n"
                   "y = batch_norm(x, g, b, m, v)\nloss L = sum(y)\n", "negv.bp")
    text = str(e.value)
    assert "negv.bp:6:28: error: state 'v' starts with a negative value" in text
    assert "negv.bp:5:17: note: 'v' is declared here" in text
    check_text("input x : [N, 2]\nparam g : [2] = ones\nparam b : [2] = zeros\n"
               "state m : [2] = -1\nstate v : [2] = 0.5\n"
               "y = batch_norm(x, g, b, m, v)\nloss L = sum(y)\n", "fine.bp")  # a mean may


# ----------------------------------------------------------------------------- the IR evaluator
def test_evaluator_state_defaults_to_init_state_and_updates_like_the_module(specs):
    comp = Compilation.from_file(specs["bn_example"])
    prog = comp.program
    module = bpc.compile(specs["bn_example"])
    init = initial_state(prog)
    want = module.init_state()
    assert init.keys() == want.keys() == module.STATE.keys()
    for k in init:
        assert init[k].dtype == want[k].dtype and np.array_equal(init[k], want[k]), k
    rng = np.random.default_rng(3)
    params, feeds = initial_params(prog, rng), random_feeds(prog, rng, 7)
    after = new_state(prog, feeds, params)  # from the initial state, masks of seed 0
    state = module.init_state()
    module.loss_and_grad(params, **feeds, state=state, rng=np.random.default_rng(0))
    for k in state:
        assert np.allclose(after[k], state[k], rtol=1e-12, atol=1e-15), k
        assert not np.array_equal(after[k], init[k]), k  # it moved
    # from another state: the update reads the old value
    again = new_state(prog, feeds, params, state=after)
    state2 = {k: np.array(v) for k, v in after.items()}
    module.loss_and_grad(params, **feeds, state=state2, rng=np.random.default_rng(0))
    assert all(np.allclose(again[k], state2[k], rtol=1e-12) for k in state2)


def test_evaluator_runs_the_inference_program_with_a_given_state(specs):
    comp = Compilation.from_file(specs["bn_example"])
    prog, infer = comp.program, comp.inference
    assert not infer.updates and [b.name for b in infer.states] == list(initial_state(prog))
    module = bpc.compile(specs["bn_example"])
    rng = np.random.default_rng(1)
    params, feeds = initial_params(prog, rng), random_feeds(prog, rng, 5)
    trained = new_state(prog, feeds, params)
    for state in (None, trained):
        got = evaluate(infer, feeds, params, names=["y"], state=state)["y"]
        want = module.predict(params, feeds["x"], state=state or module.init_state())
        assert np.allclose(got, want, rtol=1e-12, atol=1e-14)
    # inference normalizes with the running statistics: one example alone is not zeroed
    one = evaluate(infer, {"x": feeds["x"][:1], "t": feeds["t"][:1]}, params,
                   names=["y"], state=trained)["y"]
    assert np.allclose(one, module.predict(params, feeds["x"][:1], state=trained))
    with pytest.raises(ValueError, match="state 'bn1_running_mean' is \\[3\\]"):
        evaluate(infer, feeds, params, state={**trained, "bn1_running_mean": np.zeros(3)})


def test_state_initializers_constant_and_number(tmp_path):
    spec = tmp_path / "init.bp"
    spec.write_text("model init\ninput x : [N, 3]\nparam g : [3] = ones\nparam b : [3] = zeros\n"
                    "state m : [3] = 0.5\nstate v : [3] = constant(value=4.0)\n"
                    "h = batch_norm(x, g, b, m, v)\nloss L = sum(h^2)\n")
    comp = Compilation.from_file(spec)
    prog = comp.program
    got = initial_state(prog)
    want = bpc.compile(spec).init_state()
    assert np.array_equal(got["m"], [0.5] * 3) and np.array_equal(got["v"], [4.0] * 3)
    assert all(np.array_equal(got[k], want[k]) for k in want)
