"""The allocator setting ``bpc train`` makes: freed activations are reused, not faulted in."""

import subprocess
import sys

import pytest

from conftest import REPO

# Steps that allocate, fill and free arrays of a SimpleConvNet activation's size (8 MB),
# counting the page faults of the last 10 after two to warm up.
STEPS = """
import resource, sys
sys.path.insert(0, {repo!r})
from bpc.runtime.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
import numpy as np
def step():
    a = np.ones(1 << 20)
    b = a * 2.0
    return float(b.sum())
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", STEPS.format(repo=str(REPO)), mode],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_kept_freed_memory_takes_no_page_faults_per_step():
    kept, faults = _faults("keep")
    if kept != "True":
        pytest.skip("the C library here is not glibc: no allocator setting")
    _, default_faults = _faults("default")
    assert faults <= 20 < default_faults  # a few for Python's own objects, at most
