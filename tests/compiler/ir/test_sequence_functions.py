"""The sequence models' functions against direct NumPy formulas (no PyTorch needed):
layer_norm, and pooling over the real steps of padded sequences, whose sequences without
a real step pool to 0 (never NaN or -inf) and whose padded steps get no gradient."""

import numpy as np
import pytest

from diffharness import build

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4, 2))
MASK = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])


def module(expr: str, dtype: str = "float64"):
    return build(f"model m\ndtype {dtype}\ninput x : [N, T, 2]\ninput k : [N, T]\n"
                 f"output y = {expr}\nloss L = sum(y * y)\ngrad wrt x\n", style="textbook")


def test_layer_norm_is_the_formula():
    g, be = RNG.normal(size=2), RNG.normal(size=2)
    mod = build("model m\ninput x : [N, T, 2]\nparam g : [2] = ones\nparam be : [2] = zeros"
                "\noutput y = layer_norm(x, g, be, eps=0.01)\nloss L = sum(y)\n")
    mu = X.mean(axis=-1, keepdims=True)
    want = g * (X - mu) / np.sqrt(((X - mu) ** 2).mean(axis=-1, keepdims=True) + 0.01) + be
    np.testing.assert_allclose(mod.predict({"g": g, "be": be}, X), want, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_masked_mean_and_max_are_over_the_real_steps(dtype):
    kept = MASK[:, :, None] > 0
    mean = (X * kept).sum(axis=1) / np.maximum(kept.sum(axis=1), 1)
    top = np.where(kept, X, -np.inf).max(axis=1)
    top[2] = 0  # the sequence without a real step
    for fn, want in (("masked_mean", mean), ("masked_max", top)):
        mod = module(f"{fn}(x, k)", dtype)
        got = mod.predict({}, X, MASK)
        assert got.dtype == np.dtype(dtype) and np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)
        _, grads = mod.loss_and_grad({}, X, MASK)
        assert np.all(grads["x"][MASK == 0] == 0) and np.all(np.isfinite(grads["x"]))
