"""The attention functions against published numbers and direct NumPy formulas (no
PyTorch needed): a book's worked self-attention example reproduced to the digits it
prints, a query that sees no key giving 0 (never NaN) with no gradient through it, and
split_heads/merge_heads as the reshape and transpose they stand for."""

import numpy as np

from diffharness import build

# Sebastian Raschka, "Build a Large Language Model (From Scratch)", Manning 2024, §3.3.1-3.3.2:
# the embeddings of "Your journey starts with one step" and every token's context vector
# from the simplified self-attention (scores x @ x.T, no projections, no scaling), as printed.
WORDS = np.array([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                  [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
CONTEXT = np.array([[0.4421, 0.5931, 0.5790], [0.4419, 0.6515, 0.5683],
                    [0.4431, 0.6496, 0.5671], [0.4304, 0.6298, 0.5510],
                    [0.4671, 0.5910, 0.5266], [0.4177, 0.6503, 0.5645]])


def test_the_books_self_attention_example():
    """attention divides the scores by sqrt(d) = sqrt(3); the book does not, so the
    queries come in multiplied by sqrt(3)."""
    mod = build("model m\ninput x : [T, 3]\noutput y = attention(x * sqrt(3), x, x)\n"
                "loss L = sum(y)\n")
    np.testing.assert_allclose(mod.predict({}, WORDS), CONTEXT, atol=5e-5)


def test_a_query_that_sees_no_key_gives_zero():
    """Example 0 has no real key: its output is 0 and nothing reaches q, k or v from it."""
    mod = build("model m\ninput x : [N, T, 4]\ninput k : [N, T]\n"
                "output y = attention(x, x, x, keys=k)\nloss L = sum(y * y)\n"
                "grad wrt x\n", style="textbook")
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    keep = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    out = mod.predict({}, x, keep)
    assert np.all(out[0] == 0) and np.isfinite(out).all()
    _, grads = mod.loss_and_grad({}, x=x, k=keep)
    assert np.all(grads["x"][0] == 0) and np.any(grads["x"][1] != 0)


def test_heads_are_a_reshape_and_a_transpose():
    mod = build("model m\ninput x : [N, T, 6]\noutput y = split_heads(x, 3)\n"
                "loss L = sum(y)\n")
    x = np.arange(2 * 4 * 6, dtype=float).reshape(2, 4, 6)
    heads = mod.predict({}, x)
    np.testing.assert_array_equal(heads, x.reshape(2, 4, 3, 2).transpose(0, 2, 1, 3))
    back = build("model m\ninput x : [N, 3, T, 2]\noutput y = merge_heads(x)\n"
                 "loss L = sum(y)\n")
    np.testing.assert_array_equal(back.predict({}, heads), x)
