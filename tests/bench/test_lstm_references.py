"""The LSTM benchmark's references compute what the generated module computes: the book's
layer classes and the hand-fused NumPy step give its loss and every gradient (the fused one
also its SGD step), PyTorch's nn.LSTM (when installed) its loss with the gates mapped."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import lstm  # noqa: E402
from lstm_references import BookRnnlm, FusedRnnlm  # noqa: E402


@pytest.fixture(scope="module")
def case():
    return lstm.setup(45, 8, "float64")


def test_book_layers_give_the_generated_loss_and_gradients(case):
    module, params, inputs, t = case
    want_loss, want = module.loss_and_grad(params, *inputs, t)
    book = BookRnnlm({k: v.copy() for k, v in params.items()})
    loss, grads = book.loss_and_grad(inputs[0], t)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert grads.keys() == want.keys()
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, want[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_hand_fused_gives_the_generated_loss_gradients_and_step(case):
    module, params, inputs, t = case
    fused = FusedRnnlm({k: v.copy() for k, v in params.items()}, *t.shape)
    want_loss, want = module.loss_and_grad(params, *inputs, t)
    loss, grads = fused.loss_and_grad(inputs[0], t)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert grads.keys() == want.keys()
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, want[name], rtol=1e-9, atol=1e-12, err_msg=name)
    assert fused.step(inputs[0], t, lstm.LR) == pytest.approx(want_loss, rel=1e-12)
    for name, param in fused.params.items():
        np.testing.assert_allclose(param, params[name] - lstm.LR * want[name], rtol=1e-9,
                                   atol=1e-12, err_msg=name)


def test_the_book_keeps_one_cache_per_step(case):
    module, params, inputs, t = case
    book = BookRnnlm({k: v.copy() for k, v in params.items()})
    book.loss_and_grad(inputs[0], t)
    # x, h_prev, c_prev, i, f, g, o, c_next: D + 7 H numbers per example
    assert book.kept_per_step() == lstm.N * (8 + 7 * 8) * 8


def test_torch_step_starts_from_the_generated_loss(case):
    pytest.importorskip("torch", reason="PyTorch is an optional peer of the benchmark")
    module, params, inputs, t = case
    want_loss, _ = module.loss_and_grad(params, *inputs, t)
    step = lstm.torch_step({k: v.copy() for k, v in params.items()}, inputs[0], t, "float64")
    assert step() == pytest.approx(want_loss, rel=1e-10)
