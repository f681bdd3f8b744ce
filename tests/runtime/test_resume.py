"""Resume is exact after an interruption at any point: runs are stopped by SIGINT (in
process, at a random profiler event: inside an optimizer step, an evaluation, a checkpoint
write ...) and by SIGKILL (in a subprocess), resumed, and must end with the parameters,
optimizer state, position and history (minus the timing column) of the run that was never
interrupted. Every optimizer, with weight decay, clipping and schedules.

A few points per optimizer by default; BPC_KILL_POINTS=200 for a long run: 200 SIGINT
points and 101 SIGKILL points (POINTS // 2 + 1, each a subprocess) per optimizer, all
different (the spans are 7,000-12,000 events), and as many again for batch norm with
dropout in tests/runtime/test_state.py; BPC_KILL_SEED to draw other points.

A subprocess counts its events from its first training step (the first call of
``loss_and_grad``): before it, a fresh process spends most of its events importing, and
the in-process count of the reference run would put every SIGKILL there, before any
checkpoint exists.
"""

import json
import os
import random
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from resume_runs import (FIRST_STEP, assert_same, default_sigint,  # noqa: F401 - a fixture
                         distinct_points, finish, run, state)
from bpc.runtime import data
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings

POINTS = int(os.environ.get("BPC_KILL_POINTS", "3"))
SEED = int(os.environ.get("BPC_KILL_SEED", "0"))

CONFIGS = {
    "sgd": {"lr": 0.3, "weight_decay": 1e-3, "schedule": "cosine"},
    "momentum": {"lr": 0.1, "clip": 1.0},
    "nesterov": {"lr": 0.1, "schedule": "step", "step": 1, "gamma": 0.5},
    "adagrad": {"lr": 0.1},
    "rmsprop": {"lr": 0.01, "weight_decay": 1e-3},
    "adam": {"lr": 0.01, "clip": 0.5, "schedule": "exponential", "gamma": 0.9},
}
# 72 training examples in batches of 16: 5 steps an epoch, the last one short; a history
# row every 2 epochs and at the end (its loss spans the epochs since the last row).
SETUP = """
import sys, os, json, signal
from bpc.runtime import data
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.train import train
name, opt, out, kill_at = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
m = load_model(os.path.join({repo!r}, "generated", "spiral.py"))
ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
settings = Settings(epochs=3, batch=16, seed=0, eval_every=2, optimizer=name, opt=opt)
count, started = 0, False
def hook(frame, event, arg):
    global count, started
    if not started and event == "call" and frame.f_code.co_name == "loss_and_grad":
        started = True
    if started:
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(hook)
train(m, ds, settings, out, quiet=True, log=lambda *_: None, checkpoint_every=0)
sys.setprofile(None)
print(count)
"""


def setup(name):
    m = load_model(REPO / "generated" / "spiral.py")
    ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
    return m, ds, Settings(epochs=3, batch=16, seed=0, eval_every=2, optimizer=name,
                           opt=CONFIGS[name])


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    refs = {}
    for name in CONFIGS:
        out = tmp_path_factory.mktemp(f"ref_{name}")
        m, ds, settings = setup(name)
        events, stopped = run(m, ds, settings, out, interrupt_at=-1)
        assert not stopped
        # the events from the first step on, as a subprocess counts them
        refs[name] = (events, state(out), events - FIRST_STEP["at"] + 1)
    return refs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigint_anywhere_resumes_exactly(name, references, tmp_path, default_sigint):
    events, reference, _ = references[name]
    m, ds, settings = setup(name)
    rng = random.Random(f"{SEED}-int-{name}")
    points = distinct_points(rng, events, POINTS)
    stopped = 0
    for k in points:
        out = tmp_path / f"at{k}"
        stopped += run(m, ds, settings, out, interrupt_at=k)[1]  # a late Ctrl-C: the run
        finish(m, ds, settings, out)  # just ends
        assert_same(state(out), reference, f"{name}, SIGINT at event {k} of {events}")
    assert stopped, "no point stopped a run"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_anywhere_resumes_exactly(name, references, tmp_path):
    _, reference, events = references[name]
    m, ds, settings = setup(name)
    rng = random.Random(f"{SEED}-kill-{name}")
    script = SETUP.format(repo=str(REPO))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    points = distinct_points(rng, events, max(1, POINTS // 2 + 1))
    for k in points:
        out = tmp_path / f"at{k}"
        r = subprocess.run([sys.executable, "-c", script, name, json.dumps(CONFIGS[name]),
                            str(out), str(k)], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode in (0, -signal.SIGKILL), r.stderr
        finish(m, ds, settings, out)
        assert_same(state(out), reference, f"{name}, SIGKILL at event {k} from the first "
                                           f"step (of about {events})")
