"""Embeddings and sequence losses against PyTorch: ``embed`` as ``nn.Embedding``,
``softmax_cross_entropy`` over [N, T, V] logits with [N, T] labels as
``F.cross_entropy`` (the mean over every token) and with ``ignore=`` as its
``ignore_index`` (the mean over the tokens kept), forward and every gradient, both code
styles and both targets (the torch module too)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the oracle is PyTorch (pip install torch)")

import bpc  # noqa: E402
from diffharness import differential  # noqa: E402

F = torch.nn.functional

BIGRAM = """\
model bigram
input ids : [N, T]
target t : [N, T]
layers ids -> y {{ embedding 6 6; tanh }}
loss L = softmax_cross_entropy(y, t{ignore})
"""


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("ignore", ["", ", ignore=0", ", ignore=5"])
def test_embedding_and_sequence_loss_match_the_oracle(style, ignore):
    for seed in range(3):
        differential(BIGRAM.format(ignore=ignore), seed, style=style)


def _torch_lm(table, ids, t, ignore=None):
    layer = torch.nn.Embedding(*table.shape, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(table))
    logits = layer(torch.as_tensor(ids))
    kw = {} if ignore is None else {"ignore_index": ignore}
    loss = F.cross_entropy(logits.reshape(-1, table.shape[1]),
                           torch.as_tensor(t).reshape(-1), **kw)
    loss.backward()
    return loss.item(), layer.weight.grad.numpy()


@pytest.mark.parametrize("ignore", [None, 0])
def test_the_mean_is_torch_cross_entropy_over_every_token_kept(ignore):
    model = bpc.compile(BIGRAM.replace("; tanh", "").format(
        ignore="" if ignore is None else f", ignore={ignore}"))
    rng = np.random.default_rng(1)
    ids, t = rng.integers(0, 6, size=(4, 7)), rng.integers(0, 6, size=(4, 7))
    t[0, :3] = 0  # padding
    table = rng.normal(size=(6, 6))
    loss, grads = model.loss_and_grad({"E1": table}, ids, t)
    want_loss, want_grad = _torch_lm(table, ids, t, ignore)
    assert np.isclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(grads["E1"], want_grad, rtol=1e-10, atol=1e-14)


def test_a_batch_of_padding_only_has_loss_zero_and_no_gradient():
    """torch gives NaN (0 / 0) here; bpc documents 0 and a zero gradient."""
    model = bpc.compile(BIGRAM.format(ignore=", ignore=0"))
    ids = np.array([[1, 2, 3]])
    loss, grads = model.loss_and_grad({"E1": np.ones((6, 6))}, ids, np.zeros((1, 3), int))
    assert loss == 0.0 and not np.any(grads["E1"])


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("ignore", ["", ", ignore=0"])
def test_the_torch_target_agrees_with_the_numpy_target(style, ignore):
    from bpc.compiler.compilation import Compilation
    from torch_twin import agree

    problems = agree(Compilation.from_text(BIGRAM.format(ignore=ignore), style=style),
                     seed=0, init=True)
    assert not problems, "\n".join(problems)
