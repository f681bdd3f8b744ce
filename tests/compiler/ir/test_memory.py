"""Memory is estimated before it is spent (issue 22): the compiler records what a step
holds at least (CONFIG "memory", compiler/ir/memory.py: the forward values the backward
reads, and the largest operations with their operands, as bytes per example), and every
command that runs a step — train, stats, gradcheck, trace, graph, explain, and eval /
predict's forward — refuses one that cannot fit, naming the value, its shape and bytes
and what to change, before allocating it (it was `internal error: MemoryError`, or the
kernel's OOM killer)."""

import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from conftest import REPO
from bpc.runtime.datasets import synthetic
from bpc.runtime.errors import UserError
from bpc.runtime.loader import load_model
from bpc.runtime.modes import initial_state, takes_state, training_kwargs
from bpc.runtime.points import available_memory, check_memory, eval_chunk, memory_needed

# An 8x8 image padded by 20000 on every side: the patch matrix of its 3x3 convolution is
# [N, 9, 1600480036], 115 GB an example; the data (digits) is small.
HUGE = """model hugeconv
input  x : [N, 1, 8, 8]
target t : [N]
param W1 : [8, 1, 3, 3] = he
param b1 : [8, 1, 1] = zeros
a1 = conv2d(x, W1, stride=1, pad=20000) + b1
p1 = max_pool(relu(a1), 40006, stride=40006)
y = flatten(p1) @ W2
param W2 : [8, 10] = xavier
loss L = softmax_cross_entropy(y, t)
data digits
"""
GB = 10 ** 9


def bpc_limited(*args, cwd, available=GB):
    """The command line in a process that cannot allocate more than 8 GB (an attempt to
    allocate the patch matrix would fail with MemoryError, not pass unnoticed), told
    that ``available`` bytes are free (BPC_MEMORY_AVAILABLE: the same figures on every
    machine)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 * GB, 8 * GB))

    env = dict(os.environ, PYTHONPATH=str(REPO), BPC_MEMORY_AVAILABLE=str(available))
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "bpc", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=120, env=env,
                       preexec_fn=limit)
    return r, time.perf_counter() - start


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("huge")
    (folder / "hugeconv.bp").write_text(HUGE)
    return folder


@pytest.mark.parametrize("command", [
    ["train", "hugeconv.bp", "--out", "run"], ["stats", "hugeconv.bp"],
    ["gradcheck", "hugeconv.bp"], ["trace", "hugeconv.bp"],
    ["graph", "hugeconv.bp", "--values"], ["explain", "hugeconv.bp", "-o", "page.html"],
], ids=lambda c: c[0])
def test_a_patch_matrix_that_cannot_fit_is_refused_up_front(huge, command):
    r, seconds = bpc_limited(*command, cwd=huge)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "internal error" not in r.stderr and "MemoryError" not in r.stderr
    first, hint = r.stderr.splitlines()[:2]
    assert "needs at least" in first and "and 1.0 GB is available" in first
    assert "'a1_col', the patch matrix of a convolution, has shape [" in first
    assert ", 9, 1600480036] of float64 (" in first and "GB" in first
    assert hint.startswith("hint: ") and "stride" in hint
    assert seconds < 20  # a process start and a compile; nothing allocated
    assert not (huge / "page.html").exists()


def test_the_refusal_itself_takes_no_time_and_no_memory(huge):
    m = load_model(huge / "hugeconv.bp")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        check_memory(m, 100, "a training step", "use a smaller --batch")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 0.05 and peak < 1_000_000
    assert "a training step over 100 examples needs at least 21.8 TB" in e.value.message


def test_a_batch_too_large_is_told_the_batch_that_fits(tmp_path):
    r, _ = bpc_limited("stats", REPO / "specs" / "simple_convnet.bp", "--batch", "10000",
                       cwd=tmp_path, available=GB)
    assert r.returncode == 1
    assert r.stderr.startswith("bpc: error: the statistics' batch over 10000 examples needs "
                               "at least 2.5 GB of memory, and 1.0 GB is available: "), r.stderr
    assert "hint: use a smaller --batch (at most about 3945 fits now)\n" \
        in r.stderr


def test_a_generated_data_set_that_cannot_fit_is_refused_before_it_is_made(tmp_path):
    r, seconds = bpc_limited("train", REPO / "specs" / "spiral.bp", "--data",
                             "spiral:n=10000000000", "--out", tmp_path / "o", cwd=tmp_path)
    assert r.returncode == 1 and "MemoryError" not in r.stderr
    assert r.stderr.startswith("bpc: error: data spiral(n=10000000000): 30000000000 "
                               "examples would take about 1.4 TB of memory, and 1.0 GB "
                               "is available"), r.stderr
    assert "hint: use a smaller n (at most about 6944444 fits)" in r.stderr


def test_evaluation_chunks_shrink_to_what_fits(monkeypatch):
    m = load_model(REPO / "generated" / "simple_convnet.py")
    assert eval_chunk(m) == 2048 or available_memory() < 2 * GB
    monkeypatch.setenv("BPC_MEMORY_AVAILABLE", str(100_000_000))
    chunk = eval_chunk(m)
    assert memory_needed(m, 2 * chunk, forward_only=True)[0] <= 100_000_000 < \
        memory_needed(m, 4 * chunk, forward_only=True)[0]


def test_a_sequence_model_is_checked_at_its_data_s_length(tmp_path, monkeypatch):
    """A language model's record is per example and step ("N*T"): the training step and
    the evaluation chunks are checked at the data's T (they had been evaluated at no T,
    as 0 bytes, and every batch passed)."""
    r, _ = bpc_limited("train", REPO / "specs" / "charlm.bp", "--batch", "32", "--out",
                       tmp_path / "o", cwd=tmp_path, available=100_000)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("bpc: error: a training step over 32 examples needs at "
                               "least "), r.stderr
    for args in (["--steps", "5000"], ["--data"]):  # the statistics' batch, at its T
        r, _ = bpc_limited("stats", REPO / "specs" / "charlm.bp", *args, cwd=tmp_path,
                           available=100_000)
        assert r.returncode == 1 and r.stderr.startswith(
            "bpc: error: the statistics' batch over 100 examples needs at least "), r.stderr
    m = load_model(REPO / "generated" / "charlm.py")
    ids = np.zeros((5, 32), dtype=np.int64)
    assert memory_needed(m, 32, sizes={"T": 32})[0] > 0 == memory_needed(m, 32)[0]
    monkeypatch.setenv("BPC_MEMORY_AVAILABLE", str(memory_needed(m, 64, True, {"T": 32})[0]))
    assert eval_chunk(m, {"ids": ids, "t": ids}) == 32
    assert eval_chunk(m) == 2048  # no data: no T to evaluate the record at


@pytest.mark.parametrize("name", ["simple_convnet", "convnet_digits", "digits", "batchnorm",
                                  "dropout", "deep50", "resnet_udl", "spiral", "xor",
                                  "two_layer", "deep_relu", "sine"])
def test_the_estimate_is_a_lower_bound_of_the_real_step(name):
    """Never a false alarm: a step allocates at least what the record says (measured by
    tracemalloc, which NumPy reports to), the batch's data aside."""
    m = load_model(REPO / "generated" / f"{name}.py")
    rng = np.random.default_rng(0)
    batch = 64
    data = synthetic(m, rng, batch)
    data = {k: v if k in m.CONFIG.get("labels", {}) else np.asarray(v, dtype=m.DTYPE)
            for k, v in data.items()}
    params = m.init_params(rng)
    state = initial_state(m) if takes_state(m) else None
    kwargs = training_kwargs(m, state, np.random.default_rng(1))
    data_bytes = sum(v.nbytes for k, v in data.items() if k in m.INPUTS)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    m.loss_and_grad(params, **data, **kwargs)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert memory_needed(m, batch)[0] <= peak + data_bytes
    assert memory_needed(m, batch)[0] > 0.3 * peak  # and not a vacuous one
