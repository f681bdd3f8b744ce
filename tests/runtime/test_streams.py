"""Stateful training (truncated BPTT, DLFS2's ``time_idx`` batching): a loop started from
a state continues its streams from batch to batch, the streams reset at each epoch and
before each evaluation, and a run killed anywhere resumes bit-exactly.

The oracle is outside bpc: the same tanh-RNN language model on ``zen`` written as a plain
NumPy loop that carries ``h`` from batch to batch (forward, BPTT by hand, SGD), its
batches cut from the windows by hand. Both code styles, the training loop of ``bpc
train`` and the evaluation are compared with it to 1e-12.
"""

import os
import random
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import REPO
from bpc.compiler.pipeline import compile_text
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.evaluate import accuracy, mean_loss
from bpc.runtime.settings import Settings
from bpc.runtime.train import train
from resume_runs import default_sigint  # noqa: F401 - a fixture

B, STEPS, LR = 4, 8, 0.5
SPEC = f"""model srnn
input x : [N, T]
target t : [N, T]
param E : [45, 6] = normal(std=0.3)
param Wx : [6, 8] = xavier
param Wh : [8, 8] = xavier
param b : [8] = zeros
param Wo : [8, 45] = xavier
param bo : [45] = zeros
state hs : [{B}, 8] = zeros
e = embed(x, E)
h[k] = tanh(e[:, k] @ Wx + h[k-1] @ Wh + b) from hs
y = h @ Wo + bo
loss L = softmax_cross_entropy(y, t)
"""


def module(text=SPEC, style="fast"):
    name, source = compile_text(text, "srnn.bp", style=style)
    m = types.ModuleType(name)
    exec(compile(source, name, "exec"), m.__dict__)
    return m


def zen(m):
    return data.builtin("zen", m, seed=0, steps=STEPS, stride=STEPS)


def by_hand(p, x, t, h0):
    """The loss, its gradient and the last step, written out: DLFS2's TimeRNN with the
    softmax cross-entropy over every step."""
    e = p["E"][x]
    hs, h = [], h0
    for k in range(x.shape[1]):
        h = np.tanh(e[:, k] @ p["Wx"] + h @ p["Wh"] + p["b"])
        hs.append(h)
    hh = np.stack(hs, 1)
    y = hh @ p["Wo"] + p["bo"]
    m = y.max(-1, keepdims=True)
    logp = y - m - np.log(np.exp(y - m).sum(-1, keepdims=True))
    count = x.size
    loss = -np.take_along_axis(logp, t[..., None], -1).sum() / count
    dy = np.exp(logp)
    np.put_along_axis(dy, t[..., None], np.take_along_axis(dy, t[..., None], -1) - 1, -1)
    dy /= count
    g = {"Wo": hh.reshape(-1, 8).T @ dy.reshape(-1, 45), "bo": dy.sum((0, 1))}
    dhh = dy @ p["Wo"].T
    g.update(Wx=np.zeros_like(p["Wx"]), Wh=np.zeros_like(p["Wh"]), b=np.zeros_like(p["b"]))
    de, carried = np.zeros_like(e), np.zeros_like(h0)
    for k in reversed(range(x.shape[1])):
        da = (1 - hh[:, k] ** 2) * (dhh[:, k] + carried)
        g["b"] += da.sum(0)
        g["Wh"] += (hh[:, k - 1] if k else h0).T @ da
        g["Wx"] += e[:, k].T @ da
        de[:, k] = da @ p["Wx"].T
        carried = da @ p["Wh"].T
    g["E"] = np.zeros_like(p["E"])
    np.add.at(g["E"], x, de)
    return loss, g, hh[:, -1]


def stream_batches(arrays):
    """Batch k holds window i * S + k in row i (S windows per stream, the rest left out)."""
    x, t = arrays["x"], arrays["t"]
    per = len(x) // B
    for k in range(per):
        rows = [i * per + k for i in range(B)]
        yield x[rows], t[rows]


def test_each_batch_continues_the_last_one_as_the_hand_written_loop_does():
    fast, textbook = module(), module(style="textbook")
    ds = zen(fast)
    params = fast.init_params(np.random.default_rng(0))
    hand = {k: v.copy() for k, v in params.items()}
    runs = {m: ({k: v.copy() for k, v in params.items()}, m.init_state())
            for m in (fast, textbook)}
    h = np.zeros((B, 8))
    for k, (x, t) in enumerate(stream_batches(ds.train)):
        if k == 3:
            break
        want, g, h = by_hand(hand, x, t, h)
        for name in hand:
            hand[name] -= LR * g[name]
        for m, (p, state) in runs.items():
            loss, grads = m.loss_and_grad(p, x, t, state=state)
            assert loss == pytest.approx(want, rel=1e-12, abs=1e-12), f"batch {k}"
            np.testing.assert_allclose(state["hs"], h, rtol=1e-12, atol=1e-13)
            for name in p:
                p[name] = p[name] - LR * grads[name]
    for m, (p, _) in runs.items():
        for name in hand:
            np.testing.assert_allclose(p[name], hand[name], rtol=1e-12, atol=1e-13)


def test_bpc_train_runs_the_streams_and_resets_them_each_epoch():
    m = module()
    ds = zen(m)
    result = train(m, ds, Settings(epochs=2, batch=B, seed=0, shuffle=False,
                                   optimizer="sgd", opt={"lr": LR}),
                   None, quiet=True, log=lambda *_: None)
    hand = m.init_params(np.random.default_rng(0))
    for _ in range(2):
        h = np.zeros((B, 8))  # each epoch from reset streams
        for x, t in stream_batches(ds.train):
            _, g, h = by_hand(hand, x, t, h)
            for name in hand:
                hand[name] -= LR * g[name]
    assert result.steps == 2 * (len(ds.train["x"]) // B)
    for name in hand:
        np.testing.assert_allclose(result.params[name], hand[name], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(result.state["hs"], h, rtol=1e-11, atol=1e-12)
    # Evaluation: the test windows run through from reset streams, in order.
    h, losses = np.zeros((B, 8)), []
    for x, t in stream_batches(ds.test if len(ds.test["x"]) >= B else ds.train):
        loss, _, h = by_hand(result.params, x, t, h)
        losses.append(loss)
    split = ds.test if len(ds.test["x"]) >= B else ds.train
    before = {k: v.copy() for k, v in result.state.items()}
    assert mean_loss(m, result.params, split, state=result.state) == pytest.approx(
        np.mean(losses), rel=1e-12)
    assert 0 <= accuracy(m, result.params, split, ("labels", "t"), result.state) <= 1
    np.testing.assert_array_equal(result.state["hs"], before["hs"])  # the caller's, kept


def test_a_batch_of_another_size_is_an_error_naming_the_state():
    m = module()
    x = np.zeros((3, STEPS), dtype=np.int64)
    with pytest.raises(ValueError, match=r"state 'hs' carries 4 streams but this batch has "
                                         r"3 rows"):
        m.loss(m.init_params(np.random.default_rng(0)), x, x, state=m.init_state())


@pytest.mark.parametrize("settings,message", [
    (dict(shuffle=True), "batches must come in order"),
    (dict(batch=8), "state 'hs' carries 4 streams, but batches have 8 rows"),
    (dict(validation=0.2), "a validation split would cut its streams"),
])
def test_settings_that_would_cut_the_streams_are_refused(settings, message):
    m = module()
    values = {**dict(epochs=1, batch=B, shuffle=False), **settings}
    with pytest.raises(UserError, match=message):
        train(m, zen(m), Settings(**values), None, quiet=True, log=lambda *_: None)


def test_a_stateful_model_trains_in_order_by_default():
    s = Settings.from_module(module(), {})
    assert (s.shuffle, s.batch) == (False, B)


# ----------------------------------------------------------------------------- resume
POINTS = int(os.environ.get("BPC_KILL_POINTS", "3"))
SEED = int(os.environ.get("BPC_KILL_SEED", "0"))
LAYERS = f"""model zlm
input x : [N, T]
target t : [N, T]
layers x -> y {{ embedding 45 8; lstm 8 stateful={B}; dense 45 }}
loss L = softmax_cross_entropy(y, t)
"""


RESUMED = Settings(epochs=3, batch=B, seed=0, shuffle=False, eval_every=2,
                   optimizer="adam", opt={"lr": 0.01})
KILL = f"""
import os, signal, sys, types
from bpc.compiler.pipeline import compile_text
from bpc.runtime import data
from bpc.runtime.settings import Settings
from bpc.runtime.train import train
out, kill_at = sys.argv[1], int(sys.argv[2])
name, source = compile_text({LAYERS!r}, "zlm.bp")
m = types.ModuleType(name)
exec(compile(source, name, "exec"), m.__dict__)
ds = data.builtin("zen", m, seed=0, steps={STEPS}, stride={STEPS})
settings = Settings(epochs=3, batch={B}, seed=0, shuffle=False, eval_every=2,
                    optimizer="adam", opt={{"lr": 0.01}})
count, started = 0, False
def hook(frame, event, arg):
    global count, started
    started = started or event == "call" and frame.f_code.co_name == "loss_and_grad"
    count += started
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(hook)
train(m, ds, settings, out, quiet=True, log=lambda *_: None, checkpoint_every=0)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The stateful run never interrupted: its end state, its events, the first step's."""
    from resume_runs import FIRST_STEP, run, state

    m = module(LAYERS)
    out = tmp_path_factory.mktemp("streams_ref")
    events, stopped = run(m, zen(m), RESUMED, out, interrupt_at=-1)
    assert not stopped
    ref = state(out)
    assert {"state/h2_state", "state/c2_state"} <= set(ref[0])
    return ref, events, FIRST_STEP["at"]


def test_sigint_anywhere_resumes_a_stateful_run_exactly(reference, tmp_path,
                                                        default_sigint):
    from resume_runs import assert_same, distinct_points, finish, run, state

    ref, events, first = reference
    m = module(LAYERS)
    ds = zen(m)
    rng = random.Random(f"{SEED}-streams-int")
    for k in distinct_points(rng, events - first + 1, POINTS):
        at = first + k - 1  # from the first step on: where the streams are carried
        out = tmp_path / f"at{at}"
        run(m, ds, RESUMED, out, interrupt_at=at)
        finish(m, ds, RESUMED, out)
        assert_same(state(out), ref, f"stateful LSTM, SIGINT at event {at} of {events}")


def test_sigkill_anywhere_resumes_a_stateful_run_exactly(reference, tmp_path):
    from resume_runs import assert_same, distinct_points, finish, state

    ref, events, first = reference
    m = module(LAYERS)
    ds = zen(m)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(f"{SEED}-streams-kill")
    for k in distinct_points(rng, events - first + 1, max(1, POINTS // 2 + 1)):
        out = tmp_path / f"at{k}"
        r = subprocess.run([sys.executable, "-c", KILL, str(out), str(k)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, -signal.SIGKILL), r.stderr
        finish(m, ds, RESUMED, out)
        assert_same(state(out), ref, f"stateful LSTM, SIGKILL at event {k} from the first "
                                     "step")


def test_the_torch_target_trains_the_streams_as_numpy_does(tmp_path):
    pytest.importorskip("torch", reason="the torch target's tests need PyTorch")
    from bpc.runtime.loader import load_model
    from bpc.runtime.train import run

    spec = tmp_path / "zlm.bp"
    spec.write_text(LAYERS)
    results = {}
    for target in ("numpy", "torch"):
        m = load_model(spec, target=target)
        results[target], _, _ = run(m, zen(m), {"epochs": 2, "optimizer": "adam"}, None,
                                    quiet=True, log=lambda *_: None)
    numpy_run, torch_run = results["numpy"], results["torch"]
    for name, value in numpy_run.params.items():
        np.testing.assert_allclose(np.asarray(torch_run.params[name]), value, rtol=1e-9,
                                   atol=1e-12)
    for name, value in numpy_run.state.items():
        np.testing.assert_allclose(np.asarray(torch_run.state[name]), value, rtol=1e-9,
                                   atol=1e-12)
    assert torch_run.history[-1]["test_loss"] == pytest.approx(
        numpy_run.history[-1]["test_loss"], rel=1e-9)
