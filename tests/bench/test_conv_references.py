"""The conv benchmark's references compute what the generated module computes.

A benchmark that times something else is worthless: the book's layer classes and the
hand-written NumPy must give the generated SimpleConvNet's loss and gradients.
"""

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from conv import implementations, kept_bytes, setup  # noqa: E402
from conv_references import BookConvNet, HandConvNet  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv_references_match_generated(dtype):
    module, params, x, t = setup(dtype)
    n = 8
    x, t = x[:n], t[:n]
    rng = np.random.default_rng(1)
    x = (x + 0.3 * rng.random(x.shape)).astype(dtype)  # no all-zero windows: no ties
    params = {k: (v + 0.05 * rng.normal(size=v.shape)).astype(dtype)
              for k, v in params.items()}
    want_loss, want = module.loss_and_grad(params, x, t)
    want = {k: np.array(v, dtype=np.float64) for k, v in want.items()}
    tol = 1e-9 if dtype == "float64" else 2e-4
    logits = module.predict(params, x).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    book_loss = -np.sum(np.log(p[np.arange(n), t] + 1e-7)) / n  # the book's 1e-7
    cases = [(BookConvNet({k: v.copy() for k, v in params.items()}), book_loss),
             (BookConvNet({k: v.copy() for k, v in params.items()}, input_grad=False),
              book_loss),
             (HandConvNet({k: v.copy() for k, v in params.items()}, n, dtype), want_loss)]
    for ref, expected in cases:
        loss, grads = ref.loss_and_grad(x, t)
        assert loss == pytest.approx(expected, rel=1e-4 if dtype == "float32" else 1e-9)
        for k in want:
            scale = np.max(np.abs(want[k])) + 1e-12
            np.testing.assert_allclose(np.asarray(grads[k], dtype=np.float64) / scale,
                                       want[k] / scale, atol=tol, rtol=0, err_msg=k)


def test_every_benchmarked_step_runs_and_the_kept_bytes_count_the_patch_matrix():
    runs = implementations("float32")
    assert {"generated", "book layers", "hand NumPy"} <= set(runs)
    for step in runs.values():
        step()
    assert kept_bytes("float64") == 8 * 100 * (25 * 576 + 30 * 576 + 30 * 144 + 110)
