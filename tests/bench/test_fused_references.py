"""The hand-fused references of the batch-norm and sigmoid rows compute what the
generated module computes: its loss, gradients and (batch norm) running statistics."""

import sys
import tempfile

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from model_rows import BATCH, hand_fused, row_setup  # noqa: E402


@pytest.mark.parametrize("row", ["BN MLP", "784-50-10 sigmoid", "SimpleConvNet"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hand_fused_rows_match_generated(row, dtype):
    with tempfile.TemporaryDirectory() as tmp:
        module, params, state, x, t = row_setup(row, dtype, tmp)
    rng = np.random.default_rng(1)
    params = {k: (v + 0.1 * rng.normal(size=v.shape)).astype(dtype) for k, v in params.items()}
    kw = {"state": {k: v.copy() for k, v in state.items()}} if state is not None else {}
    want_loss, want = module.loss_and_grad(params, x, t, **kw)
    net = hand_fused(row, params, state, dtype).net
    loss, grads = net.loss_and_grad(x, t)
    tol = 1e-9 if dtype == "float64" else 2e-3
    assert loss == pytest.approx(want_loss, rel=tol)
    assert set(grads) == set(want)
    # One scale for all: a bias before batch norm has the gradient 0, in rounding noise.
    scale = max(np.abs(g).max() for g in want.values())
    for k in want:
        np.testing.assert_allclose(grads[k] / scale, want[k] / scale, atol=tol, err_msg=k)
    for k in kw.get("state", {}):
        np.testing.assert_allclose(net.state[k], kw["state"][k], rtol=tol, atol=tol)
    assert x.shape[0] == BATCH
