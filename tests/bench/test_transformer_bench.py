"""The transformer benchmark's hand-fused step and its PyTorch peer compute what the
generated block computes: the same loss and every gradient, before anything is timed."""

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import transformer  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hand_fused_and_torch_agree_with_the_generated_block(dtype, tmp_path):
    module = transformer.generated_module(transformer.SPEC.replace("DTYPE", dtype), tmp_path)
    rng = np.random.default_rng(3)
    params = {k: (v + 0.05 * rng.normal(size=v.shape)).astype(dtype)
              for k, v in module.init_params(rng).items()}
    x, t = (rng.normal(size=(transformer.N, transformer.T, transformer.D)).astype(dtype)
            for _ in range(2))
    torch = transformer.torch_parts(params, dtype)
    transformer._agree(module, params, x, t, torch and torch[1], dtype)
    before = {k: v.copy() for k, v in params.items()}
    loss = transformer.fused_step(params)(x, t)
    _, grads = module.loss_and_grad(before, x, t)
    assert loss == pytest.approx(float(module.loss(before, x, t)), rel=1e-4)
    for k, g in grads.items():  # the step moved every parameter by -lr times its gradient
        np.testing.assert_allclose(params[k], before[k] - transformer.LR * g,
                                   rtol=1e-4, atol=1e-6)


def test_a_wrong_gradient_is_caught(tmp_path, monkeypatch):
    module = transformer.generated_module(transformer.SPEC.replace("DTYPE", "float64"),
                                          tmp_path)
    rng = np.random.default_rng(0)
    params = module.init_params(rng)
    x, t = (rng.normal(size=(transformer.N, transformer.T, transformer.D)) for _ in range(2))
    real = transformer.fused_grads

    def off(p, x, t):
        loss, g = real(p, x, t)
        g["Wv"] = g["Wv"] * 1.001
        return loss, g
    monkeypatch.setattr(transformer, "fused_grads", off)
    with pytest.raises(AssertionError, match="hand-fused: Wv"):
        transformer._agree(module, params, x, t, None, "float64")
