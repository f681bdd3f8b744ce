import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "specs").glob("*.bp"))
GOLDEN = Path(__file__).resolve().parent / "golden"
# How closely the two code styles' modules agree, (rtol, atol) by dtype: the fast style's
# forms (sigmoid by tanh, batch norm's closed-form backward) round differently.
STYLE_TOL = {"float64": (1e-9, 1e-12), "float32": (3e-5, 3e-6)}
UPDATE_GOLDEN = os.environ.get("BPC_UPDATE_GOLDEN") == "1"


def run_bpc(*args, cwd=REPO, timeout=300, input=None):
    """Run the bpc command line in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", "bpc", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, input=input)


def check_golden(path: Path, actual: str):
    """Compare with a golden file; BPC_UPDATE_GOLDEN=1 rewrites it instead."""
    if UPDATE_GOLDEN or not path.exists():
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {path} is missing; run with BPC_UPDATE_GOLDEN=1")
        path.write_text(actual)
        return
    assert actual == path.read_text(), f"output differs from {path}"


# Issue 13's example: two dense layers with batch norm and dropout, on the bundled digits.
BN_EXAMPLE = """\
model bn_example
input  x : [N, 64]
target t : [N, 10]
layers x -> y {
  repeat 2 { dense 32; batchnorm; relu; dropout 0.1 }
  dense 10
}
loss L = softmax_cross_entropy(y, t)
optimizer adam(lr=0.01)
train { epochs = 5; batch = 50; seed = 0 }
data digits
"""
