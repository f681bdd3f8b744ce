"""The benchmark's hand-written references compute what the generated module computes.

A benchmark that times something else is worthless: the layer-object and hand-fused
references must give the generated module's loss and gradients for the same net.
"""

import sys

import numpy as np
import pytest

from bpc.compiler.pipeline import compile_text
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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_toy_reference_matches_generated(dtype):
    from bench import toy_spec_text
    from references import ToyNet

    ns: dict = {}
    exec(compile(compile_text(toy_spec_text(dtype), "toy.bp")[1], "m", "exec"), ns)
    params = ns["init_params"](np.random.default_rng(0))
    x, y = np.array(0.5, dtype), np.array(1.0, dtype)
    want_loss, want = ns["loss_and_grad"](params, x, y)
    loss, grads = ToyNet(params, dtype).loss_and_grad(x, y)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert loss == pytest.approx(want_loss, rel=tol)
    for k in want:
        assert grads[k].dtype == want[k].dtype == np.dtype(dtype)
        np.testing.assert_allclose(grads[k], want[k], rtol=tol)


@pytest.mark.parametrize("spec, optimizer", [("xor", "sgd"), ("sine", "adam"),
                                             ("batchnorm", "sgd"), ("dropout", "sgd"),
                                             ("bigram", "adam"), ("sine_rnn", "adam")])
def test_plain_loop_makes_the_run_bpc_train_makes(spec, optimizer, tmp_path):
    """The whole-run benchmark's baseline does the same steps: same final parameters
    (ids and sequences too: bigram's [N, T] ids, sine_rnn's [N, T, 1] steps)."""
    from references import plain_loop
    from bpc.runtime import data
    from bpc.runtime.loader import load_model
    from bpc.runtime.settings import Settings
    from bpc.runtime.train import train

    m = load_model(REPO / "generated" / f"{spec}.py")
    settings = Settings.from_module(m, {"epochs": 3, "optimizer": optimizer})
    ds = data.load(m.CONFIG.get("data"), m, settings.seed)
    result = train(m, ds, settings, tmp_path, quiet=True, log=lambda *_: None)
    arrays = data.conform(ds.train, m)
    params = plain_loop(m, arrays, settings, data.batch_axes(m))
    for k in params:
        np.testing.assert_array_equal(params[k], result.params[k])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batchnorm_reference_matches_generated(dtype):
    """Loss, gradients and the running statistics a step leaves, both styles' modules."""
    from fast_forms import batchnorm_spec_text
    from references import BatchNormNet

    sizes = [6, 5, 4, 3]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, sizes[0])).astype(dtype)
    t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], 8)]
    tol = 1e-10 if dtype == "float64" else 1e-4
    for style in ("fast", "textbook"):
        ns: dict = {}
        exec(compile(compile_text(batchnorm_spec_text(sizes, dtype), "bn.bp", style)[1], "m",
                     "exec"), ns)
        params = {k: v + 0.1 * rng.normal(size=v.shape).astype(dtype)
                  for k, v in ns["init_params"](rng).items()}
        state, ref_state = ns["init_state"](), ns["init_state"]()
        want_loss, want = ns["loss_and_grad"](params, x, t, state=state)
        ref = BatchNormNet({k: v.copy() for k, v in params.items()}, ref_state,
                           len(sizes) - 1, len(x), dtype)
        loss, grads = ref.loss_and_grad(x, t)
        assert loss == pytest.approx(want_loss, rel=tol)
        for k in want:
            np.testing.assert_allclose(grads[k], want[k], rtol=tol * 100, atol=tol)
        for k in state:
            np.testing.assert_allclose(ref_state[k], state[k], rtol=tol, atol=tol)
