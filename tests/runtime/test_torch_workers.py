"""Data parallel training on the CPU with 2 worker processes (gloo): the parameters
after every step are one process's on the same global batches (float64, 1e-12) for an
MLP whose batches split into shards of different sizes; with batch norm, the running
means are (per-shard normalization makes the parameters another run's, as documented);
a worker killed mid-run ends the whole run with a message naming it, and the checkpoint
left resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch target's tests need PyTorch: "
                            "pip install 'backprop-compiler[torch]'")

from conftest import REPO  # noqa: E402
from resume_runs import state  # noqa: E402

from bpc.runtime.loader import load_model  # noqa: E402
from bpc.runtime.train import run  # noqa: E402

SPIRAL = REPO / "specs" / "spiral.bp"
# 120 examples in batches of 25: shards of 12 and 13, and a short last batch of 20.
SETTINGS = ["--data", "spiral:n=40", "--batch", "25", "--optimizer", "adam", "--seed", "3"]
BATCH_NORM = """model bn
input x : [N, 2]
target t : [N]
layers x -> y { dense 8; batchnorm; relu; dense 3 }
loss L = softmax_cross_entropy(y, t)
"""


def bpc(*args, **popen):
    """``python -m bpc ARGS`` with one torch thread per process (two workers share
    this machine's cores)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "bpc", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, **popen)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def one_process(spec: Path, out: Path, *args) -> None:
    r = bpc("train", spec, "--target", "torch", "--out", out, "-q", *SETTINGS, *args)
    assert r.returncode == 0, r.stderr


def arrays(out: Path, prefix: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in state(out)[0].items() if k.startswith(prefix)}


def test_two_workers_train_the_one_process_run(tmp_path):
    r = bpc("train", SPIRAL, "--target", "torch", "--workers", "2", "--epochs", "2",
            "--out", tmp_path / "two", *SETTINGS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("spiral: loss") == 1  # worker 0 reports, once
    run(load_model(SPIRAL, target="torch"), "spiral:n=40",
        {"epochs": 2, "batch": 25, "optimizer": "adam", "seed": 3}, tmp_path / "one",
        quiet=True)
    two = state(tmp_path / "two")
    assert two[0].keys() == state(tmp_path / "one")[0].keys()
    for k, v in state(tmp_path / "one")[0].items():
        np.testing.assert_allclose(two[0][k], v, rtol=0, atol=1e-12, err_msg=k)
    assert two[1]["history"] == state(tmp_path / "one")[1]["history"]


def test_batch_norm_keeps_the_running_mean_of_the_global_batch(tmp_path):
    spec = tmp_path / "bn.bp"
    spec.write_text(BATCH_NORM)
    r = bpc("train", spec, "--target", "torch", "--workers", "2", "--iters", "1",
            "--out", tmp_path / "two", "-q", *SETTINGS)
    assert r.returncode == 0, r.stderr
    one_process(spec, tmp_path / "one", "--iters", "1")
    one, two = arrays(tmp_path / "one", "state/"), arrays(tmp_path / "two", "state/")
    means = [k for k in one if "mean" in k]
    assert means
    for k in means:
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-12, err_msg=k)


def test_a_killed_worker_stops_the_run_and_its_checkpoint_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", SPIRAL, "--target", "torch", "--iters", "3000", "--out", out, "-q",
            *SETTINGS]
    p = bpc(*args, "--workers", "2", "--checkpoint-every", "0", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists() and p.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    workers = [pid for pid in children(p.pid) if b"resource_tracker" not in cmdline(pid)]
    assert len(workers) == 2, "the run ended before a worker could be killed"
    os.kill(workers[-1], signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "was killed (SIGKILL), so the run stopped" in err, err
    assert f"continue with --resume --out {out}" in err
    resumed = bpc(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert state(out)[1]["step"] == 3000


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_workers_refuse_a_folder_that_holds_a_run_before_they_start(tmp_path):
    """One clear refusal from the parent, not one per worker tangled with the
    process group's errors (and no hint to resume a run that is another)."""
    from conftest import run_bpc

    spec = REPO / "specs" / "spiral.bp"
    out = tmp_path / "run"
    r = run_bpc("train", spec, "--epochs", "1", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    r = run_bpc("train", spec, "--target", "torch", "--workers", "2", "--epochs", "1",
                "--out", out, "-q")
    assert r.returncode == 1
    assert r.stderr.count("error:") == 1 and "holds a run already" in r.stderr
    assert "worker 0" not in r.stderr and "--resume --out" not in r.stderr
