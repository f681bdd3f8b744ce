"""The ``rnn``, ``lstm`` and ``gru`` layers against PyTorch's ``nn.RNN``, ``nn.LSTM`` and
``nn.GRU`` (batch first, the same weights, the LSTM's gates mapped from bpc's f, g, i, o
to PyTorch's i, f, g, o): every step, the loss and every gradient, for T = 1, 2 and 50,
starting from zeros and from an initial state ``init=h0``."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from recurrent_specs import data, run_module

torch = pytest.importorskip("torch", reason="pip install 'backprop-compiler[torch]'")

H = 4
LSTM_BLOCKS = [2, 0, 1, 3]  # PyTorch's i, f, g, o as blocks of bpc's f, g, i, o


def spec(cell: str, init: bool) -> str:
    start = " init=h0" if init else ""
    return (f"input x : [N, T, 3]\ninput h0 : [N, {H}]\ntarget y : [N, T, {H}]\n"
            f"layers x -> h {{ {cell} {H}{start} }}\n"
            "loss L = mean((h - y)^2) + sum(h[:, -1]^2)\ngrad wrt x, h0\n")


def _to_torch(cell: str, w):
    """bpc's fused weight ``[D, G*H]`` (or bias) as PyTorch's ``[G*H, D]``, gates reordered."""
    if cell == "lstm":
        w = torch.cat([w[..., j * H:(j + 1) * H] for j in LSTM_BLOCKS], -1)
    return w.T if w.dim() == 2 else w


def _from_torch(cell: str, g):
    """A gradient of PyTorch's weight (or bias) as bpc's: transposed, gates reordered."""
    g = g.T if g.dim() == 2 else g
    if cell == "lstm":
        back = [LSTM_BLOCKS.index(j) for j in range(4)]
        g = torch.cat([g[..., j * H:(j + 1) * H] for j in back], -1)
    return g


def _torch_run(cell, params, feeds, init):
    make = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = make(3, H, batch_first=True).double()
    p = {k: torch.tensor(v) for k, v in params.items()}
    with torch.no_grad():
        net.weight_ih_l0.copy_(_to_torch(cell, p["Wx1"]))
        net.weight_hh_l0.copy_(_to_torch(cell, p["Wh1"]))
        net.bias_ih_l0.copy_(_to_torch(cell, p["b1"]))
        net.bias_hh_l0.copy_(p["bh1"] if cell == "gru" else torch.zeros(net.bias_hh_l0.shape))
    x, y = (torch.tensor(feeds[k], requires_grad=k == "x") for k in ("x", "y"))
    h0 = torch.tensor(feeds["h0"] if init else np.zeros_like(feeds["h0"]))[None]
    h0.requires_grad_()
    h, _ = net(x, (h0, torch.zeros_like(h0)) if cell == "lstm" else h0)
    loss = torch.mean((h - y) ** 2) + torch.sum(h[:, -1] ** 2)
    loss.backward()
    grads = {"Wx1": _from_torch(cell, net.weight_ih_l0.grad),
             "Wh1": _from_torch(cell, net.weight_hh_l0.grad),
             "b1": _from_torch(cell, net.bias_ih_l0.grad), "x": x.grad}
    if init:
        grads["h0"] = h0.grad[0]
    if cell == "gru":
        grads["bh1"] = net.bias_hh_l0.grad
    return h.detach().numpy(), float(loss.detach()), {k: v.numpy() for k, v in grads.items()}


def _check(cell: str, length: int, init: bool, style: str = "fast",
           target: str = "numpy") -> None:
    comp = Compilation.from_text(spec(cell, init), "cell.bp", style=style, target=target)
    feeds, params = data(comp.program, length)
    rng = np.random.default_rng(1)
    params = {k: rng.normal(scale=0.5, size=v.shape) for k, v in params.items()}  # biases too
    want_h, want_loss, want = _torch_run(cell, params, feeds, init)
    loss, h, grads = run_module(comp.module, params, feeds, target)
    np.testing.assert_allclose(h, want_h, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    assert set(grads) == set(want) | {"h0"}
    if not init:  # h0 is not read: no gradient reaches it
        assert not grads["h0"].any()
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("init", [False, True], ids=["from0", "init"])
@pytest.mark.parametrize("length", [1, 2, 50])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_against_torch_nn(cell, length, init):
    _check(cell, length, init)


@pytest.mark.parametrize("style,target", [("textbook", "numpy"), ("fast", "torch")])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_in_each_style_and_target(cell, style, target):
    _check(cell, 5, False, style, target)
    _check(cell, 5, True, style, target)
