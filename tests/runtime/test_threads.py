"""``--threads N``: the BLAS/OpenMP pools and torch's compute with N threads for the
length of a command, and are given back their own numbers after it."""

import os
import sys

import numpy as np  # noqa: F401 - its BLAS is one of the pools
import pytest
from threadpoolctl import threadpool_info

from bpc.runtime.threads import limited
from conftest import REPO, run_bpc


def _pools() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info()]


def test_the_pools_take_the_limit_and_get_theirs_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = _pools()
    assert before, "NumPy's BLAS should be a pool threadpoolctl sees"
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    with limited(1):
        assert set(_pools()) == {1}
        assert os.environ["OMP_NUM_THREADS"] == "1"  # read by a torch loaded now
        if torch is not None:
            assert torch.get_num_threads() == 1
    assert _pools() == before and "OMP_NUM_THREADS" not in os.environ
    if torch is not None:
        assert torch.get_num_threads() == torch_before
    with limited(None):
        assert _pools() == before


def test_the_flag_on_the_command_line(tmp_path):
    r = run_bpc("train", REPO / "specs" / "xor.bp", "--threads", "1", "--out", tmp_path / "r",
                "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_bpc("train", REPO / "specs" / "xor.bp", "--threads", "0")
    assert r.returncode == 2 and "--threads" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["eval", "predict", "sample", "gradcheck"])
def test_every_computing_command_takes_it(command):
    r = run_bpc(command, "--help")
    assert "--threads N" in r.stdout
