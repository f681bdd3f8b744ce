"""Scaled dot-product attention written as equations, against PyTorch's
``F.scaled_dot_product_attention``: ``softmax(q @ swapaxes(k, -1, -2) / sqrt(d), mask=m) @ v``
over [N, H, T, d] heads, without a mask, with a causal one, a padding one from the data
and both; the output and the gradient of every operand, float64, from the NumPy module
in both code styles and from the PyTorch target. (A row masked whole, where torch gives
NaN, is covered by the differential case ``masked-attention``.) And the PyTorch target
against the NumPy target (``torch_twin.agree``) on the differential cases of batched
products, axis moves, rank-4 reductions and masked attention."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the attention oracle needs PyTorch; skipped")
F = torch.nn.functional

from bpc.compiler.compilation import Compilation  # noqa: E402
from differential_cases import named  # noqa: E402
from torch_twin import agree  # noqa: E402

SPEC = """model sdpa
param q : [2, 3, 4, 5] = normal
param k : [2, 3, 6, 5] = normal
param v : [2, 3, 6, 5] = normal
input r : [2, 3, 4, 5]
input keep : [2, 1, 1, 6]
o = softmax(q @ swapaxes(k, -1, -2) / sqrt(5){mask}) @ v
output o
loss L = sum(o * r)
"""
MASKS = {"none": ("", None), "causal": (", mask=causal(6)[:4]", "causal"),
         "padding": (", mask=keep", "padding"), "both": (", mask=causal(6)[:4] * keep", "both")}


def _torch_mask(kind, keep):
    causal = torch.ones(4, 6, dtype=torch.bool).tril()
    padding = torch.as_tensor(keep) != 0
    return {None: None, "causal": causal, "padding": padding,
            "both": causal & padding}[kind]


@pytest.mark.parametrize("target,style", [("numpy", "fast"), ("numpy", "textbook"),
                                          ("torch", "fast")])
@pytest.mark.parametrize("mask", MASKS)
def test_attention_as_equations_matches_sdpa(mask, target, style):
    text, kind = MASKS[mask]
    comp = Compilation.from_text(SPEC.format(mask=text), "sdpa.bp", style=style)
    mod = comp.retargeted(target).new_module()
    rng = np.random.default_rng(0)
    params = {n: rng.normal(size=s) for n, s in (("q", (2, 3, 4, 5)), ("k", (2, 3, 6, 5)),
                                                  ("v", (2, 3, 6, 5)))}
    keep = np.ones((2, 1, 1, 6))
    keep[0, ..., 4:] = 0  # the first example's last two positions are padding
    data = {"r": rng.normal(size=(2, 3, 4, 5)), "keep": keep}
    if target == "torch":
        params, data = ({n: torch.as_tensor(a) for n, a in d.items()} for d in (params, data))
    loss, grads = mod.loss_and_grad(params, **data)
    takes = inspect.signature(mod.predict).parameters
    out = mod.predict(params, **{k: v for k, v in data.items() if k in takes})

    ref = {n: torch.tensor(np.asarray(a), requires_grad=True) for n, a in params.items()}
    want = F.scaled_dot_product_attention(ref["q"], ref["k"], ref["v"],
                                          attn_mask=_torch_mask(kind, keep))
    want_loss = (want * torch.as_tensor(np.asarray(data["r"]))).sum()
    want_loss.backward()
    np.testing.assert_allclose(np.asarray(out), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(loss), float(want_loss.detach()), rtol=1e-10)
    for n in ("q", "k", "v"):
        np.testing.assert_allclose(np.asarray(grads[n]), ref[n].grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=n)


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("case", ["matmul-batched", "axis-moves", "any-axis-rank-4",
                                  "masked-attention"])
def test_torch_target_agrees(case, style):
    comp = Compilation.from_text(named(case).values[1], "case.bp", style=style)
    problems = agree(comp, seed=0)
    assert not problems, "\n".join(problems)
