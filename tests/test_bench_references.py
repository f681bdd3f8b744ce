"""The benchmark's hand-written references compute what the generated module computes.

A benchmark that times something else is worthless: the layer-object and hand-fused
references must give the generated module's loss and gradients for the same net.
"""

import sys

import numpy as np
import pytest

from compiler.pipeline import compile_text
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from bench import matmul_flops, spec_text  # noqa: E402
from references import FusedNet, LayerNet  # noqa: E402


@pytest.mark.parametrize("sizes", [[6, 5, 3], [7, 6, 5, 4]])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_references_match_generated(sizes, dtype):
    ns: dict = {}
    exec(compile(compile_text(spec_text(sizes, dtype), "bench_mlp.bp")[1], "m", "exec"), ns)
    rng = np.random.default_rng(0)
    n = 4
    params = {k: v + 0.1 * rng.normal(size=v.shape).astype(dtype)
              for k, v in ns["init_params"](rng).items()}
    x = rng.normal(size=(n, sizes[0])).astype(dtype)
    t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    want_loss, want = ns["loss_and_grad"](params, x, t)
    tol = 1e-10 if dtype == "float64" else 1e-4
    depth = len(sizes) - 1
    # The layer objects take -sum(t log(p + 1e-7)) / N as the book does: compute that
    # from the generated module's logits; the fused reference matches the exact loss.
    logits = ns["predict"](params, x).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    book_loss = -np.sum(t * np.log(p + 1e-7)) / n
    for ref, expected in ((LayerNet({k: v.copy() for k, v in params.items()}, depth), book_loss),
                          (FusedNet({k: v.copy() for k, v in params.items()}, depth, n, dtype),
                           want_loss)):
        loss, grads = ref.loss_and_grad(x, t)
        assert loss == pytest.approx(expected, rel=1e-5 if dtype == "float32" else 1e-10)
        for k in want:
            np.testing.assert_allclose(grads[k], want[k], rtol=tol * 100, atol=tol)


def test_flop_count():
    # forward 2nab per layer, weight gradients the same, input gradients for all but the
    # first layer
    assert matmul_flops([784, 50, 10], 100) == 2 * 100 * (784 * 50 + 50 * 10) * 3 \
        - 2 * 100 * 784 * 50
