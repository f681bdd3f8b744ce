"""The differential test's float32 tolerance (tests/support/diffharness.py, ``ROUNDING``):
a gradient whose terms cancel (a dense bias right before batch norm, exactly 0) is
judged against how far rounding moves it, its terms' magnitude, not its value; a wrong
gradient still fails, there and elsewhere."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("torch", reason="the differential oracle needs PyTorch; skipped")

import diffharness  # noqa: E402
from diffharness import Mismatch, differential, rounding_slack  # noqa: E402
from torch_oracle import Oracle  # noqa: E402

BIAS_BEFORE_NORM = """model bn
dtype float32
input x : [N, 3]
layers x -> h {
  dense 4
  batchnorm
  tanh
}
loss L = sum(sin(h))
"""


def test_the_slack_is_the_terms_magnitude_where_they_cancel():
    oracle = Oracle(BIAS_BEFORE_NORM)
    mod = diffharness.build(BIAS_BEFORE_NORM)
    params, data = diffharness.draw(mod, oracle, np.random.default_rng(0))
    state = mod.init_state()
    want = oracle.run(params, data, state=state)
    slack = rounding_slack(oracle, want, params, data, state)
    assert np.abs(want.grads["b1"]).max() < 1e-12  # exactly 0: the batch's terms cancel
    assert 1e-6 < slack["b1"].max() < 1e-3  # rounding of terms of order 1, not of 0
    for name in ("W1", "bn1_gamma", "bn1_beta"):  # elsewhere below rtol (2e-3)
        assert (slack[name] <= 5e-4 * np.abs(want.grads[name]).max()).all(), name


CONV_BIAS_BEFORE_NORM = """model rnd
dtype float32
let c0 = 0.25
let K = 3
input x : [N, 3]
input x3 : [N, 2, 3]
input s : scalar
input xs : [N, T, 2]
input img : [N, 1, 3, 5]
layers img -> y1 {
  conv 3 size=1 stride=2 pad=1
  batchnorm
  residual { conv 3 size=3 pad=1; batchnorm; relu; conv 3 size=1 }
  relu
  maxpool 1 stride=[1, 1] pad=[0, 0]
}
layers xs -> q2 {
  rnn 2 last
}
target t0 : [N, 3]
output x
loss L = sum(sin(q2)) + mse(x, t0) + sum(cos(y1)) + 0.5 * mean(x3)
grad wrt x, x3, xs, img
param p_extra = 0.5
"""


def test_a_conv_bias_before_batch_norm_agrees():
    """Found by the random specs: db1 is exactly 0, the module's float32 3e-4 (batch norm
    over 24 pixels of a feature 65 times its spread); within the slack, not the atol."""
    differential(CONV_BIAS_BEFORE_NORM, 0)


def _off(monkeypatch, name, how):
    """Modules whose gradient ``name`` is changed by ``how`` (a wrong gradient)."""
    build = diffharness.build

    def wrong_build(*args, **kw):
        mod = build(*args, **kw)
        right = mod.loss_and_grad

        @functools.wraps(right)  # the same signature: state, rng, training, grads
        def loss_and_grad(*a, **k):
            loss, grads = right(*a, **k)
            grads[name] = how(grads[name]).astype(grads[name].dtype)
            return loss, grads

        mod.loss_and_grad = loss_and_grad
        return mod

    monkeypatch.setattr(diffharness, "build", wrong_build)


@pytest.mark.parametrize("name, how", [
    ("b1", lambda g: g + 1e-3),  # the cancelling one, off by far less than its terms
    ("W1", lambda g: g * 1.01),  # one that does not cancel, off by 1%
    ("bn1_beta", lambda g: g * np.where(np.arange(g.size) == 0, 1.02, 1)),  # one element
])
def test_a_wrong_gradient_still_fails(monkeypatch, name, how):
    differential(BIAS_BEFORE_NORM, 0)  # right: agrees
    _off(monkeypatch, name, how)
    with pytest.raises(Mismatch, match=f"d{name}"):
        differential(BIAS_BEFORE_NORM, 0)
