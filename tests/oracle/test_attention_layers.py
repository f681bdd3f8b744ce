"""The attention and transformer layers against PyTorch's own modules with the same
weights, float64: ``nn.MultiheadAttention(batch_first=True)`` (its ``in_proj`` the
stacked transposes of Wq, Wk, Wv) without a mask, causal, with a key padding mask and
both; ``nn.TransformerEncoderLayer(batch_first=True)`` post-norm and pre-norm, dropout 0
(and with dropout, inference equal to dropout 0). The output, the loss and the gradient
of every parameter, in both code styles; and the PyTorch target against the NumPy one
on a classifier with both layers."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the attention oracle needs PyTorch; skipped")

from bpc.compiler.compilation import Compilation  # noqa: E402
from torch_twin import agree  # noqa: E402

N, T, D, H, FF = 2, 5, 6, 3, 7
SPEC = f"""model block
input x : [N, T, {D}]
input keep : [N, T]
input r : [N, T, {D}]
layers x -> y {{ {{layer}} }}
loss L = sum(y * r)
"""
MASKS = {"none": "", "causal": " causal", "padding": " mask=keep",
         "both": " causal mask=keep"}


def _run(layer: str, style: str, seed: int = 0):
    """The module's output, loss and gradients, with its parameters and data."""
    comp = Compilation.from_text(SPEC.replace("{layer}", layer), "block.bp", style=style)
    mod = comp.new_module()
    rng = np.random.default_rng(seed)
    params = {n: a + rng.normal(scale=0.1, size=np.shape(a))  # biases and norms not trivial
              for n, a in mod.init_params(rng).items()}
    keep = np.ones((N, T))
    keep[0, 3:] = 0  # the first example's last two steps are padding
    data = {"x": rng.normal(size=(N, T, D)), "keep": keep, "r": rng.normal(size=(N, T, D))}
    loss, grads = mod.loss_and_grad(params, **data)
    return params, data, np.asarray(_predict(mod, params, data)), float(loss), grads


def _predict(mod, params, data):
    takes = inspect.signature(mod.predict).parameters
    return mod.predict(params, **{k: v for k, v in data.items() if k in takes})


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _load_attention(mha, p, base):
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([_t(p[f"{base}_W{n}"]).T for n in "qkv"]))
        mha.in_proj_bias.copy_(torch.cat([_t(p[f"{base}_b{n}"]) for n in "qkv"]))
        mha.out_proj.weight.copy_(_t(p[f"{base}_Wo"]).T)
        mha.out_proj.bias.copy_(_t(p[f"{base}_bo"]))


def _masks(mask: str, keep):
    causal = ~torch.ones(T, T, dtype=torch.bool).tril() if "causal" in mask else None
    padding = _t(keep) == 0 if "keep" in mask else None  # torch: True is left out
    return causal, padding


def _attention_grads(mha, base):
    """torch's gradients in the module's names and layout (x @ W, not W x)."""
    w, b = mha.in_proj_weight.grad, mha.in_proj_bias.grad
    out = {}
    for i, n in enumerate("qkv"):
        out[f"{base}_W{n}"] = w[i * D:(i + 1) * D].T
        out[f"{base}_b{n}"] = b[i * D:(i + 1) * D]
    out[f"{base}_Wo"] = mha.out_proj.weight.grad.T
    out[f"{base}_bo"] = mha.out_proj.bias.grad
    return out


def _compare(out, loss, grads, want, want_loss, want_grads):
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loss, float(want_loss.detach()), rtol=1e-10)
    assert set(grads) == set(want_grads)
    for n, g in want_grads.items():
        np.testing.assert_allclose(np.asarray(grads[n]), g.numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=n)


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("mask", MASKS)
def test_attention_layer_matches_multihead_attention(mask, style):
    params, data, out, loss, grads = _run(f"attention heads={H}{MASKS[mask]}", style)
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True, dtype=torch.float64)
    _load_attention(mha, params, "att1")
    causal, padding = _masks(MASKS[mask], data["keep"])
    x = _t(data["x"])
    want, _ = mha(x, x, x, attn_mask=causal, key_padding_mask=padding, need_weights=False)
    want_loss = (want * _t(data["r"])).sum()
    want_loss.backward()
    _compare(out, loss, grads, want, want_loss, _attention_grads(mha, "att1"))


def _encoder_layer(params, norm_first: bool, dropout: float = 0.0):
    layer = torch.nn.TransformerEncoderLayer(D, H, dim_feedforward=FF, dropout=dropout,
                                             batch_first=True, norm_first=norm_first,
                                             dtype=torch.float64)
    _load_attention(layer.self_attn, params, "tf1")
    with torch.no_grad():
        for lin, n in ((layer.linear1, "1"), (layer.linear2, "2")):
            lin.weight.copy_(_t(params[f"tf1_W{n}"]).T)
            lin.bias.copy_(_t(params[f"tf1_b{n}"]))
        for ln, n in ((layer.norm1, "ln1"), (layer.norm2, "ln2")):
            ln.weight.copy_(_t(params[f"tf1_{n}_gamma"]))
            ln.bias.copy_(_t(params[f"tf1_{n}_beta"]))
    return layer


def _encoder_grads(layer):
    out = _attention_grads(layer.self_attn, "tf1")
    for lin, n in ((layer.linear1, "1"), (layer.linear2, "2")):
        out[f"tf1_W{n}"], out[f"tf1_b{n}"] = lin.weight.grad.T, lin.bias.grad
    for ln, n in ((layer.norm1, "ln1"), (layer.norm2, "ln2")):
        out[f"tf1_{n}_gamma"], out[f"tf1_{n}_beta"] = ln.weight.grad, ln.bias.grad
    return out


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("mask", ["none", "both"])
def test_transformer_layer_matches_transformer_encoder_layer(norm, mask, style):
    layer = f"transformer heads={H} ff={FF} norm={norm}{MASKS[mask]}"
    params, data, out, loss, grads = _run(layer, style)
    torch_layer = _encoder_layer(params, norm_first=norm == "pre")
    torch_layer.train()  # the fast path of eval mode is another kernel; dropout is 0
    causal, padding = _masks(MASKS[mask], data["keep"])
    want = torch_layer(_t(data["x"]), src_mask=causal, src_key_padding_mask=padding)
    want_loss = (want * _t(data["r"])).sum()
    want_loss.backward()
    _compare(out, loss, grads, want, want_loss, _encoder_grads(torch_layer))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_transformer_dropout_is_the_identity_in_inference(norm):
    """Dropout's mode semantics: in inference the block with dropout=0.3 is the block
    without, PyTorch's layer in eval mode."""
    params, data, _, _, _ = _run(f"transformer heads={H} ff={FF} norm={norm}", "fast")
    text = SPEC.replace("{layer}", f"transformer heads={H} ff={FF} norm={norm} dropout=0.3")
    mod = Compilation.from_text(text, "block.bp").new_module()
    out = _predict(mod, params, data)
    torch_layer = _encoder_layer(params, norm_first=norm == "pre", dropout=0.3).eval()
    with torch.no_grad():
        want = torch_layer(_t(data["x"]))
    np.testing.assert_allclose(np.asarray(out), want.numpy(), rtol=1e-9, atol=1e-12)


CLASSIFIER = """model classifier
input x : [N, T, 8]
input keep : [N, T]
target t : [N]
layers x -> y {
  posenc sinusoidal; attention heads=2 causal
  transformer heads=2 ff=16 norm=pre causal mask=keep dropout=0.1; pool mean; dense 3
}
loss L = softmax_cross_entropy(y, t)
"""


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_torch_target_agrees_on_a_transformer_classifier(style):
    comp = Compilation.from_text(CLASSIFIER, "classifier.bp", style=style)
    problems = agree(comp, seed=0)
    assert not problems, "\n".join(problems)
