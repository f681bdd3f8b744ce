"""A stateful ``lstm`` (``stateful=B``: truncated BPTT, DLFS2's ``TimeLSTM(stateful=True)``)
against PyTorch's ``nn.LSTM`` carrying ``(h, c)`` detached from one batch to the next:
over consecutive batches, the loss, every gradient and the state after each batch, in
both code styles and on the torch target."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation

torch = pytest.importorskip("torch", reason="pip install 'backprop-compiler[torch]'")

H, D, B, T, BATCHES = 4, 3, 2, 5, 3
LSTM_BLOCKS = [2, 0, 1, 3]  # PyTorch's i, f, g, o as blocks of bpc's f, g, i, o
SPEC = (f"input x : [N, T, {D}]\ntarget y : [N, T, {H}]\n"
        f"layers x -> h {{ lstm {H} stateful={B} }}\n"
        "loss L = mean((h - y)^2) + sum(h[:, -1]^2)\n")


def _to_torch(w):
    w = torch.cat([w[..., j * H:(j + 1) * H] for j in LSTM_BLOCKS], -1)
    return w.T if w.dim() == 2 else w


def _from_torch(g):
    g = g.T if g.dim() == 2 else g
    back = [LSTM_BLOCKS.index(j) for j in range(4)]
    return torch.cat([g[..., j * H:(j + 1) * H] for j in back], -1)


def _torch_runs(params, batches):
    """Each batch's loss, gradients and (h, c) after it, the state detached between."""
    net = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        net.weight_ih_l0.copy_(_to_torch(torch.tensor(params["Wx1"])))
        net.weight_hh_l0.copy_(_to_torch(torch.tensor(params["Wh1"])))
        net.bias_ih_l0.copy_(_to_torch(torch.tensor(params["b1"])))
        net.bias_hh_l0.zero_()
    hc = (torch.zeros(1, B, H, dtype=torch.float64),) * 2
    out = []
    for x, y in batches:
        net.zero_grad()
        h, hc = net(torch.tensor(x), hc)
        loss = torch.mean((h - torch.tensor(y)) ** 2) + torch.sum(h[:, -1] ** 2)
        loss.backward()
        hc = tuple(v.detach() for v in hc)  # truncated: no gradient into the last batch
        grads = {"Wx1": _from_torch(net.weight_ih_l0.grad),
                 "Wh1": _from_torch(net.weight_hh_l0.grad),
                 "b1": _from_torch(net.bias_ih_l0.grad)}
        out.append((float(loss.detach()), {k: v.numpy() for k, v in grads.items()},
                    {"h1_state": hc[0][0].numpy(), "c1_state": hc[1][0].numpy()}))
    return out


@pytest.mark.parametrize("style,target", [("fast", "numpy"), ("textbook", "numpy"),
                                          ("fast", "torch")])
def test_a_stateful_lstm_carries_its_state_as_pytorch_does(style, target):
    comp = Compilation.from_text(SPEC, "stateful.bp", style=style, target=target)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(scale=0.5, size=shape) for k, shape in comp.module.PARAMS.items()}
    batches = [(rng.normal(size=(B, T, D)), rng.normal(size=(B, T, H)))
               for _ in range(BATCHES)]
    want = _torch_runs(params, batches)
    module = comp.module
    convert = (lambda v: torch.tensor(v)) if target == "torch" else (lambda v: v)
    state = {k: convert(np.asarray(v)) for k, v in module.init_state().items()}
    params = {k: convert(v) for k, v in params.items()}
    for k, ((x, y), (loss_w, grads_w, state_w)) in enumerate(zip(batches, want)):
        loss, grads = module.loss_and_grad(params, convert(x), convert(y), state=state)
        assert float(loss) == pytest.approx(loss_w, rel=1e-12), f"batch {k}"
        for name, g in grads_w.items():
            np.testing.assert_allclose(np.asarray(grads[name]), g, rtol=1e-10, atol=1e-12,
                                       err_msg=f"d{name}, batch {k}")
        for name, v in state_w.items():
            np.testing.assert_allclose(np.asarray(state[name]), v, rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} after batch {k}")


MIXED = """model mixed
input x : [N, T, 2]
layers x -> y { lstm 3 stateful=4 last; dropout 0.3; batchnorm; dense 2 }
loss L = mean(y * y)
"""


@pytest.mark.parametrize("seed", range(3))
def test_streams_beside_batch_norm_and_dropout_agree_with_the_oracle(seed):
    """Both modes move the streams, training mode alone the running statistics: the
    differential harness against the PyTorch oracle, several calls from the state left."""
    from diffharness import differential

    differential(MIXED, seed)
