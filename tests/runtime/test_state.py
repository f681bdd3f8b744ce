"""The runtime with state: batch norm's running statistics through training, evaluation,
checkpoints, resume, gradcheck, the command line and the Python API.

Oracles outside the runtime: the running statistics are recomputed in NumPy from the
batches the loop draws (the generator replayed by hand); inference is checked for not
depending on the batch; resume against the run never interrupted; gradcheck against a
module whose gradient was deliberately damaged.
"""

import functools
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import BN_EXAMPLE, REPO, run_bpc

import bpc
from bpc.compiler.pipeline import compile_text
from bpc.runtime import data, modes
from bpc.runtime.errors import UserError
from bpc.runtime.gradcheck import gradcheck
from bpc.runtime.settings import Settings
from bpc.runtime.evaluate import accuracy, mean_loss, predict_all
from bpc.runtime.train import train
from resume_runs import default_sigint  # noqa: F401 - a fixture

POINTS = int(os.environ.get("BPC_KILL_POINTS", "3"))
SEED = int(os.environ.get("BPC_KILL_SEED", "0"))

# Batch norm straight on the inputs: its batch statistics are those of the data alone, so
# the running ones after k steps can be recomputed by hand whatever the parameters do.
FIRST = """model bnfirst
input x : [N, 2]
target t : [N]
layers x -> y {
  batchnorm momentum=0.8
  dense 8; relu
  dropout 0.2
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""
# Batch norm between layers, with dropout: the model of the resume and inference tests.
MLP = """model bnmlp
input x : [N, 2]
target t : [N]
layers x -> y {
  dense 16; batchnorm; relu
  dropout 0.3
  dense 16; batchnorm; tanh
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""


def module(text):
    name, source = compile_text(text, "spec.bp")
    m = types.ModuleType(name)
    exec(compile(source, name, "exec"), m.__dict__)
    return m


def bpc_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bpc", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def spiral(m, n=30):
    return data.builtin("spiral", m, seed=0, n=n, classes=3)


# ----------------------------------------------------------------------------- modes
def test_modes_of_a_module_and_of_a_v1_module():
    m, v1 = module(MLP), module(MLP.replace("batchnorm; ", "").replace("  dropout 0.3\n", ""))
    assert modes.takes_state(m) and modes.takes_rng(m)
    assert not modes.takes_state(v1) and not modes.takes_rng(v1)
    assert modes.inference_kwargs(v1, None) == {} and modes.training_kwargs(v1) == {}
    state = modes.initial_state(m)
    assert set(state) == set(m.STATE) and all(v.shape == m.STATE[k] for k, v in state.items())
    assert modes.inference_kwargs(m, state)["state"] is state
    kw = modes.training_kwargs(m, state, rng=np.random.default_rng(1))
    assert kw["state"] is state and isinstance(kw["rng"], np.random.Generator)


def test_training_loss_runs_on_a_copy_and_differs_from_inference():
    m = module(MLP)
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    d = {"x": rng.normal(size=(9, 2)) * 3 + 1, "t": rng.integers(0, 3, 9)}
    state = modes.initial_state(m)
    before = {k: v.copy() for k, v in state.items()}
    a = modes.training_loss(m, params, d, state=state)
    b = modes.training_loss(m, params, d, state=state)
    assert a == b  # the same masks, the same batch statistics
    for k in state:  # the caller's state did not move
        np.testing.assert_array_equal(state[k], before[k])
    assert a != m.loss(params, **d, state=state)  # inference mode normalizes otherwise


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("iters", [1, 7, 13])
def test_running_statistics_after_k_steps_match_a_hand_computation(iters):
    """State after ``iters`` steps (across epoch ends, with evaluations between them) is
    0.8 * old + 0.2 * the batch's mean and biased variance, the batches in the order the
    loop draws them: the generator gives the initial parameters, then each epoch's
    permutation, and each step's dropout masks in between."""
    m = module(FIRST)
    ds = spiral(m)
    settings = Settings(iters=iters, batch=16, seed=3, eval_every=1, optimizer="sgd",
                        opt={"lr": 0.1})
    result = train(m, ds, settings, None, quiet=True, log=lambda *_: None)
    x = np.asarray(ds.train["x"], dtype=np.float64)
    n = len(x)
    rng = np.random.default_rng(3)
    m.init_params(rng)
    mean, var = np.zeros(2), np.ones(2)
    step = 0
    while step < iters:
        order = rng.permutation(n)
        for start in range(0, n, 16):
            if step == iters:
                break
            xb = x[order[start:start + 16]]
            mu = xb.mean(axis=0)
            mean = 0.8 * mean + 0.2 * mu
            var = 0.8 * var + 0.2 * ((xb - mu) ** 2).mean(axis=0)
            rng.random((len(xb), 8))  # the dropout mask of this step
            step += 1
    assert result.steps == iters
    np.testing.assert_allclose(result.state["bn1_running_mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.state["bn1_running_var"], var, rtol=1e-12, atol=1e-15)
    assert not np.allclose(var, 1.0)  # the statistics moved


CONV_FIRST = """model convbn
input x : [N, 2, 4, 4]
target t : [N]
layers x -> y {
  batchnorm momentum=0.7
  conv 3 size=3 pad=1; relu
  flatten
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""


def test_image_statistics_are_over_every_axis_but_the_channels():
    """[N, C, H, W]: a channel's mean and variance over examples, rows and columns."""
    m = module(CONV_FIRST)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 2, 4, 4)) * np.array([1.0, 3.0])[:, None, None] + \
        np.array([2.0, -1.0])[:, None, None]
    ds = data.Dataset(train={"x": x, "t": rng.integers(0, 3, 40)}, name="images")
    result = train(m, ds, Settings(iters=5, batch=8, seed=1, optimizer="sgd",
                                   opt={"lr": 0.05}), None, quiet=True, log=lambda *_: None)
    order = np.random.default_rng(1)
    m.init_params(order)
    mean, var = np.zeros(2), np.ones(2)
    perm = order.permutation(40)
    for i in range(5):  # one epoch
        xb = x[perm[8 * i:8 * i + 8]]
        mu = xb.mean(axis=(0, 2, 3))
        mean = 0.7 * mean + 0.3 * mu
        var = 0.7 * var + 0.3 * ((xb - mu[:, None, None]) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(result.state["bn1_running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(result.state["bn1_running_var"], var, rtol=1e-12)
    rows = gradcheck(m, samples=60, batch=4)
    assert all(r.ok for r in rows), [(r.name, r.max_rel, r.why) for r in rows]


@pytest.fixture(scope="module")
def trained():
    m = module(MLP)
    ds = spiral(m, n=60)
    settings = Settings(epochs=15, batch=20, seed=0, optimizer="adam", opt={"lr": 0.02})
    result = train(m, ds, settings, None, quiet=True, log=lambda *_: None)
    return m, ds, result


def test_inference_does_not_depend_on_the_batch(trained):
    m, ds, result = trained
    x = np.asarray(ds.test["x"]) if ds.test else np.asarray(ds.train["x"])
    params, state = result.params, result.state
    whole = m.predict(params, x, state=state)
    chunked = predict_all(m, params, {"x": x}, chunk=7, state=state)
    single = np.concatenate([m.predict(params, x[i:i + 1], state=state)
                             for i in range(len(x))])
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(single, whole, rtol=1e-12, atol=1e-12)
    # Training mode normalizes with the batch's own statistics: another loss, and one
    # that depends on which examples share the batch.
    t = np.asarray(ds.test["t"] if ds.test else ds.train["t"])
    d = {"x": x, "t": t}
    inference = m.loss(params, **d, state=state)
    training = modes.training_loss(m, params, d, state=state)
    half = modes.training_loss(m, params, {"x": x[: len(x) // 2], "t": t[: len(x) // 2]},
                               state=state)
    inference_half = m.loss(params, x[: len(x) // 2], t[: len(x) // 2], state=state)
    assert abs(training - inference) > 1e-6
    assert abs(half - inference_half) > 1e-6


def test_evaluation_reads_the_trained_state(trained):
    m, ds, result = trained
    arrays = data.conform(ds.train, m, "train")
    kind = ("labels", "t")
    trained_acc = accuracy(m, result.params, arrays, kind, result.state)
    initial_acc = accuracy(m, result.params, arrays, kind, modes.initial_state(m))
    assert trained_acc == pytest.approx(float(result.history[-1]["train_acc"]), abs=1e-6)
    assert trained_acc > 0.6 and trained_acc != initial_acc  # chance: 1/3
    assert mean_loss(m, result.params, arrays, batch=25, state=result.state) == pytest.approx(
        m.loss(result.params, **arrays, state=result.state), rel=1e-10)


# ----------------------------------------------------------------------------- resume
def setup_mlp():
    m = module(MLP)
    return m, spiral(m), Settings(epochs=3, batch=16, seed=0, eval_every=2,
                                  optimizer="adam", opt={"lr": 0.01})


# The profiler events of a run are counted from its first training step (loss_and_grad's
# call): most of a run's events come before it (imports, the loss at the start, hashing
# the data) and after its last step (the last evaluation and checkpoint), and a point
# drawn there would interrupt nothing worth resuming. The same counting in a subprocess.
COUNTER = """
def counter(at, act):
    count, started = 0, False
    def hook(frame, event, arg):
        nonlocal count, started
        if not started and event == "call" and frame.f_code.co_name == "loss_and_grad":
            started = True
        if started:
            count += 1
            if count == at:
                act()
    return hook
"""
exec(COUNTER)


def steps_span(m, ds, settings, out):
    """Train uninterrupted; the number of events from the first step's call to the end
    of the last step's (and a little beyond)."""
    calls = []
    count = 0

    def counting(frame, event, arg):
        nonlocal count
        if calls or event == "call" and frame.f_code.co_name == "loss_and_grad":
            count += 1
            if event == "call" and frame.f_code.co_name == "loss_and_grad":
                calls.append(count)
    sys.setprofile(counting)
    try:
        result = train(m, ds, settings, out, quiet=True, log=lambda *_: None,
                       checkpoint_every=0)
    finally:
        sys.setprofile(None)
    assert not result.interrupted and len(calls) == result.steps == 15
    step = calls[-1] - calls[-2]
    return calls[-1] + step  # about one step past the last one's start


def interrupted_run(m, ds, settings, out, at):
    """Train with SIGINT at event ``at`` counted from the first step; whether it stopped."""
    sys.setprofile(counter(at, lambda: signal.raise_signal(signal.SIGINT)))
    try:
        try:
            result = train(m, ds, settings, out, quiet=True, log=lambda *_: None,
                           checkpoint_every=0)
        finally:
            sys.setprofile(None)
        return result.interrupted
    except KeyboardInterrupt:  # a Ctrl-C after train's handler was gone
        return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run never interrupted: its end state, and the span of its steps in events."""
    from resume_runs import state

    out = tmp_path_factory.mktemp("bn_ref")
    m, ds, settings = setup_mlp()
    span = steps_span(m, ds, settings, out)
    ref = state(out)
    assert {"state/bn1_running_mean", "state/bn2_running_var"} <= set(ref[0])
    return span, ref


def test_sigint_anywhere_resumes_batch_norm_exactly(reference, tmp_path, default_sigint):
    from resume_runs import assert_same, distinct_points, finish, state

    span, ref = reference
    m, ds, settings = setup_mlp()
    rng = random.Random(f"{SEED}-bn-int")
    stopped = 0
    for k in distinct_points(rng, span, POINTS):
        out = tmp_path / f"at{k}"
        stopped += interrupted_run(m, ds, settings, out, k)
        finish(m, ds, settings, out)
        assert_same(state(out), ref, f"batch norm, SIGINT at event {k} of the steps' {span}")
    assert stopped == POINTS  # every point stopped the run inside its steps


KILL_SCRIPT = COUNTER + """
import os, signal, sys, types
from bpc.compiler.pipeline import compile_text
from bpc.runtime import data
from bpc.runtime.settings import Settings
from bpc.runtime.train import train
spec, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
name, source = compile_text(open(spec).read(), "spec.bp")
m = types.ModuleType(name)
exec(compile(source, name, "exec"), m.__dict__)
ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
settings = Settings(epochs=3, batch=16, seed=0, eval_every=2, optimizer="adam",
                    opt={"lr": 0.01})
sys.setprofile(counter(kill_at, lambda: os.kill(os.getpid(), signal.SIGKILL)))
train(m, ds, settings, out, quiet=True, log=lambda *_: None, checkpoint_every=0)
"""


def test_sigkill_anywhere_resumes_batch_norm_exactly(reference, tmp_path):
    from resume_runs import assert_same, distinct_points, finish, state

    span, ref = reference
    m, ds, settings = setup_mlp()
    spec = tmp_path / "bnmlp.bp"
    spec.write_text(MLP)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(f"{SEED}-bn-kill")
    for k in distinct_points(rng, span, max(1, POINTS // 2 + 1)):
        out = tmp_path / f"at{k}"
        r = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(spec), str(out), str(k)],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == -signal.SIGKILL, r.stderr  # killed inside the steps
        finish(m, ds, settings, out)
        assert_same(state(out), ref, f"batch norm, SIGKILL at event {k} of the steps' {span}")


def test_a_model_without_state_keeps_its_checkpoint_format(tmp_path):
    m = module(MLP.replace("batchnorm; ", ""))
    ds = spiral(m)
    train(m, ds, Settings(epochs=1, batch=16), tmp_path, quiet=True, log=lambda *_: None)
    with np.load(tmp_path / "checkpoint.npz") as f:
        assert not any(k.startswith("state/") for k in f.files)
        assert "state" not in json.loads(str(f["meta"]))["run"]
    assert bpc.load_checkpoint(tmp_path).state == {}


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bn_cli")
    spec = root / "bnmlp.bp"
    spec.write_text(MLP + "data spiral(n=40)\noptimizer adam(lr=0.02)\n"
                          "train { epochs = 10; batch = 20 }\n")
    r = bpc_cmd("train", spec, "--out", root / "run", "-q")
    assert r.returncode == 0, r.stderr
    return spec, root / "run"


def test_eval_predict_and_params_use_the_checkpoints_state(cli_run, tmp_path):
    spec, out = cli_run
    model = bpc.compile(spec)
    ckpt = bpc.load_checkpoint(out, model)
    assert set(ckpt.state) == set(model.STATE) and isinstance(ckpt.opt_state, dict)
    arrays = data.conform(data.load(model.CONFIG["data"], model, 0).test, model, "test")
    r = bpc_cmd("eval", spec, "--checkpoint", out)
    assert r.returncode == 0, r.stderr
    assert f"loss {mean_loss(model, ckpt.params, arrays, state=ckpt.state):.6g}" in r.stdout
    assert f"loss {mean_loss(model, ckpt.params, arrays):.6g}" not in r.stdout  # not init
    r = bpc_cmd("predict", spec, "--checkpoint", out, "-o", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    got = np.array([[float(v) for v in row.split(",")] for row in rows])[:, 2:5]  # y[0..2]
    want = model.predict(ckpt.params, arrays["x"], state=ckpt.state)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)
    r = bpc_cmd("params", out, "--full", 16)
    assert r.returncode == 0, r.stderr
    assert "4 state entries, 64 numbers (not trained)" in r.stdout.splitlines()[0]
    line = next(line for line in r.stdout.splitlines() if line.startswith("bn2_running_var"))
    assert line.startswith("bn2_running_var (16,) [state, not trained]:")
    assert f"{ckpt.state['bn2_running_var'][0]:.6g}"[:5] in r.stdout


def damage(src, dst, change):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("what, change, message", [
    ("shape", lambda a: a.__setitem__("state/bn1_running_var", np.ones(3)),
     "the state entry 'state/bn1_running_var' has shape (3,), the model's STATE says (16,)"),
    ("missing", lambda a: a.pop("state/bn2_running_mean"),
     "lacks the state entry 'state/bn2_running_mean'"),
    ("extra", lambda a: a.__setitem__("state/bn3_running_mean", np.zeros(16)),
     "has the state entry 'state/bn3_running_mean', which the model does not have"),
    ("dtype", lambda a: a.__setitem__("state/bn1_running_mean", np.zeros(16, dtype=np.int64)),
     "the state entry 'state/bn1_running_mean' is int64"),
    ("nan", lambda a: a.__setitem__("state/bn1_running_mean", np.full(16, np.nan)),
     "the state entry 'state/bn1_running_mean' has values that are not finite"),
])
def test_a_damaged_state_entry_is_a_clear_error(cli_run, tmp_path, what, change, message):
    spec, out = cli_run
    bad = tmp_path / "run"
    bad.mkdir()
    damage(out / "checkpoint.npz", bad / "checkpoint.npz", change)
    commands = [("eval", spec, "--checkpoint", bad),
                ("predict", spec, "--checkpoint", bad / "checkpoint.npz")]
    if what in ("shape", "missing"):  # (each command is a second of start-up)
        commands.append(("train", spec, "--out", bad, "--resume", "--epochs", 12))
    for args in commands:
        r = bpc_cmd(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
        first = r.stderr.splitlines()[0]
        assert first.startswith(f"bpc: error: {bad / 'checkpoint.npz'}"), first
        assert message in first, first
        assert r.stderr.splitlines()[1].startswith("hint: ")
    with pytest.raises(UserError, match="state entr"):
        bpc.load_checkpoint(bad, bpc.compile(spec))


# ----------------------------------------------------------------------------- gradcheck
def test_bpc_gradcheck_passes_on_the_example(tmp_path):
    spec = tmp_path / "bn_example.bp"
    spec.write_text(BN_EXAMPLE)
    r = bpc_cmd("gradcheck", spec, "--batch", 5)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bn1_gamma" in r.stdout and "ok: all 10 gradients match" in r.stdout


def test_bpc_gradcheck_fails_on_a_backward_without_the_mean_path(tmp_path):
    """The classic mistake, made by hand in a generated module: batch norm's backward
    without the path through the batch mean (the mean of the adjoint, in the fast
    style's closed form). ``bpc gradcheck`` of the edited file fails."""
    _, source = compile_text(MLP, "bnmlp.bp")
    line = "    bn1_grad_mean += dL_dbn1_beta / x.shape[0]\n"
    assert source.count(line) == 1
    (tmp_path / "good.py").write_text(source)
    (tmp_path / "bad.py").write_text(source.replace(line, ""))
    r = bpc_cmd("gradcheck", tmp_path / "good.py", "--batch", 6)
    assert r.returncode == 0, r.stdout + r.stderr
    r = bpc_cmd("gradcheck", tmp_path / "bad.py", "--batch", 6)
    assert r.returncode == 1, r.stdout + r.stderr
    failed = next(line for line in r.stdout.splitlines() if line.startswith("FAILED:"))
    assert "W1" in failed and "b1" in failed and "W2" not in failed, failed


def damaged_gradient(m, name, index, by):
    """``m`` whose ``loss_and_grad`` returns one gradient entry off by ``by`` (relative)."""
    bad = types.ModuleType("damaged")
    bad.__dict__.update({k: v for k, v in m.__dict__.items() if not k.startswith("__")})

    @functools.wraps(m.loss_and_grad)
    def loss_and_grad(*args, **kwargs):
        value, grads = m.loss_and_grad(*args, **kwargs)
        grads = {k: np.array(v) for k, v in grads.items()}
        grads[name][index] *= 1 + by
        return value, grads

    bad.loss_and_grad = loss_and_grad
    return bad


def test_gradcheck_is_in_training_mode_and_detects_a_wrong_gradient():
    m = module(MLP)
    state = {k: v + 0.5 for k, v in modes.initial_state(m).items()}
    before = {k: v.copy() for k, v in state.items()}
    rows = gradcheck(m, samples=400, batch=6, state=state)
    assert all(r.ok for r in rows), [(r.name, r.max_rel, r.why) for r in rows]
    assert {r.name for r in rows} >= {"bn1_gamma", "bn1_beta", "bn2_gamma", "W1"}
    for k in state:  # the caller's state is only read
        np.testing.assert_array_equal(state[k], before[k])
    for name, index in (("bn1_gamma", (3,)), ("W1", (1, 5))):
        bad = damaged_gradient(m, name, index, 1e-3)
        assert "state" in inspect.signature(bad.loss_and_grad).parameters
        rows = {r.name: r for r in gradcheck(bad, samples=400, batch=6)}
        assert not rows[name].ok and not rows[name].why, name
        assert all(r.ok for k, r in rows.items() if k != name)


# ----------------------------------------------------------------------------- the API
def test_api_trains_predicts_with_its_state_and_reads_a_checkpoints_state(tmp_path):
    model = bpc.compile(MLP + "data spiral(n=40)\noptimizer adam(lr=0.02)\n"
                              "train { epochs = 8; batch = 20 }\n")
    result = model.train(out=tmp_path, quiet=True)
    assert set(result.state) == set(model.STATE)
    assert not np.allclose(result.state["bn1_running_var"], 1.0)
    ckpt = bpc.load_checkpoint(tmp_path, model)
    for k in model.STATE:
        np.testing.assert_array_equal(ckpt.state[k], result.state[k])
    x = np.asarray(data.load(model.CONFIG["data"], model, 0).test["x"])
    y = model.predict(result.params, x, state=result.state)
    np.testing.assert_array_equal(y, model.predict(ckpt.params, x, state=ckpt.state))
    assert result.history[-1]["test_acc"] is not None


def test_batch_norm_refuses_batches_of_one_and_leaves_out_a_last_single_example(tmp_path):
    """Batch statistics over one example make every value 0: --batch 1 is an error, and
    a short last batch of one example is left out of each epoch (with a note)."""
    spec = REPO / "specs" / "batchnorm.bp"  # 1,000 training examples
    r = run_bpc("train", spec, "--batch", "1", "--iters", "2", "--out", tmp_path / "a")
    assert r.returncode == 1 and "a batch of one example makes every value 0" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_bpc("train", spec, "--batch", "333", "--epochs", "2", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert "would leave a last batch of one" in r.stdout + r.stderr
    assert "(6 steps" in r.stdout  # 3 a epoch, not 4
