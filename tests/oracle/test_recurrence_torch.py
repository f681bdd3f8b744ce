"""Recurrences against PyTorch: ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` (batch first, the
same weights, gates mapped) against the tanh RNN, LSTM and GRU written as equations
(tests/support/recurrent_specs.py): the stacked hidden states, the loss and every
gradient (weights, biases, the sequence and the initial states), from the generated
NumPy module in both styles and from the PyTorch target's module."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from recurrent_specs import CELLS, LOSS, data, run_module

torch = pytest.importorskip("torch", reason="pip install 'backprop-compiler[torch]'")


def _torch_cell(cell, params):
    """The torch module with bpc's weights: ``W_ih = Wx.T``, ``W_hh = Wh.T``."""
    make = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = make(3, 4, batch_first=True).double()
    p = {k: torch.tensor(v) for k, v in params.items()}
    with torch.no_grad():
        net.weight_ih_l0.copy_(p["Wx"].T)
        net.weight_hh_l0.copy_(p["Wh"].T)
        if cell == "gru":  # the hidden bias sits inside r * (...): kept apart
            net.bias_ih_l0.copy_(p["bx"])
            net.bias_hh_l0.copy_(p["bh"])
        else:
            net.bias_ih_l0.copy_(p["b"])
            net.bias_hh_l0.zero_()
    return net


def _torch_run(cell, params, feeds):
    """(h, loss, gradients by bpc's names) from PyTorch's autograd."""
    net = _torch_cell(cell, params)
    x, y = (torch.tensor(feeds[k], requires_grad=k == "x") for k in ("x", "y"))
    h0 = torch.tensor(feeds["h0"])[None].requires_grad_()
    if cell == "lstm":
        c0 = torch.tensor(feeds["c0"])[None].requires_grad_()
        h, _ = net(x, (h0, c0))
    else:
        h, _ = net(x, h0)
    loss = torch.mean((h - y) ** 2) + torch.sum(h[:, -1] ** 2)
    loss.backward()
    grads = {"Wx": net.weight_ih_l0.grad.T, "Wh": net.weight_hh_l0.grad.T, "x": x.grad,
             "h0": h0.grad[0]}
    if cell == "gru":
        grads.update(bx=net.bias_ih_l0.grad, bh=net.bias_hh_l0.grad)
    else:
        grads["b"] = net.bias_ih_l0.grad
    if cell == "lstm":
        grads["c0"] = c0.grad[0]
    return h.detach().numpy(), float(loss.detach()), {k: v.numpy() for k, v in grads.items()}


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_against_torch_nn(cell, style, target):
    comp = Compilation.from_text(CELLS[cell] + LOSS, "cell.bp", style=style, target=target)
    feeds, params = data(comp.program, 7)
    want_h, want_loss, want = _torch_run(cell, params, feeds)
    loss, h, grads = run_module(comp.module, params, feeds, target)
    np.testing.assert_allclose(h, want_h, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    assert set(grads) == set(want)
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-9, atol=1e-12, err_msg=name)
