"""The torch module inside PyTorch programs: its ``Model`` (an nn.Module whose autograd
goes through the written-out backward) with torch.optim, in train and eval mode, under
torch.compile, and the torch target's helpers against their NumPy twins."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch target's tests need PyTorch: "
                            "pip install 'backprop-compiler[torch]'")

from bpc.compiler.compilation import Compilation  # noqa: E402
from bpc.compiler.ir.ops import HELPERS, TORCH_HELPERS, kernels, torch_kernels  # noqa: E402
from bpc.runtime.optimizers import make_optimizer  # noqa: E402

MLP = """model mlp
input x : [N, 4]
target t : [N, 3]
param W1 : [4, 8] = he
param b1 : [8] = zeros
param W2 : [8, 3] = he
param b2 : [3] = zeros
h = relu(x @ W1 + b1)
y = h @ W2 + b2
loss L = softmax_cross_entropy(y, t)
"""

BATCHNORM = """model bn
input x : [N, 4]
target t : [N, 2]
layers x -> y { dense 2; batchnorm }
loss L = mse(y, t)
"""


def _twins(text: str):
    comp = Compilation.from_text(text, "spec.bp")
    return comp.new_module(), comp.retargeted("torch").new_module()


def _batches(rng, steps: int, n: int = 6):
    return [(rng.normal(size=(n, 4)), np.eye(3)[rng.integers(0, 3, n)]) for _ in range(steps)]


def test_torch_optim_sgd_equals_bpc_sgd():
    npm, tm = _twins(MLP)
    rng = np.random.default_rng(0)
    params = npm.init_params(rng)
    batches = _batches(rng, 5)
    opt = make_optimizer("sgd", {k: v.copy() for k, v in params.items()}, lr=0.1)
    ours = {k: v.copy() for k, v in params.items()}
    model = tm.Model(params)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, t in batches:
        _, grads = npm.loss_and_grad(ours, x, t)
        opt.step(ours, grads)
        sgd.zero_grad()
        model(torch.as_tensor(x), torch.as_tensor(t)).backward()
        sgd.step()
    for name, value in ours.items():
        np.testing.assert_allclose(getattr(model, name).detach().numpy(), value,
                                   rtol=0, atol=1e-12)


def test_modes_map_to_train_and_eval():
    npm, tm = _twins(BATCHNORM)
    rng = np.random.default_rng(1)
    params, state = npm.init_params(rng), npm.init_state()
    x, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    model = tm.Model(params)
    want, _ = npm.loss_and_grad(params, x, t, state=state)  # training: updates state
    got = model(torch.as_tensor(x), torch.as_tensor(t)).detach()
    assert abs(float(got) - want) < 1e-12
    for name, value in state.items():
        np.testing.assert_allclose(getattr(model, name).numpy(), value, atol=1e-12)
    model.eval()
    with torch.no_grad():
        got = model(torch.as_tensor(x), torch.as_tensor(t))
        y = model.predict(torch.as_tensor(x))
    assert abs(float(got) - npm.loss(params, x, t, state=state)) < 1e-12
    np.testing.assert_allclose(y.numpy(), npm.predict(params, x, state=state), atol=1e-12)


def test_gradients_reach_the_parameters_through_the_written_backward():
    npm, tm = _twins(MLP)
    model = tm.Model(seed=3)
    x, t = _batches(np.random.default_rng(2), 1)[0]
    model(torch.as_tensor(x), torch.as_tensor(t)).backward()
    params = {k: v.detach().numpy() for k, v in model.params().items()}
    _, want = npm.loss_and_grad(params, x, t)
    for name, value in want.items():
        np.testing.assert_allclose(getattr(model, name).grad.numpy(), value, atol=1e-12)


def test_torch_compile():
    npm, tm = _twins(MLP)
    model = tm.Model(seed=0)
    x, t = (torch.as_tensor(a) for a in _batches(np.random.default_rng(4), 1)[0])
    try:
        compiled = torch.compile(model)
        value = compiled(x, t)
    except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported platform
        pytest.skip(f"torch.compile cannot run here: {type(e).__name__}: {e}"[:300])
    value.backward()
    params = {k: v.detach().numpy() for k, v in model.params().items()}
    want_l, want = npm.loss_and_grad(params, x.numpy(), t.numpy())
    assert abs(float(value.detach()) - want_l) < 1e-12
    for name, g in want.items():
        np.testing.assert_allclose(getattr(model, name).grad.numpy(), g, atol=1e-12)


def test_init_params_takes_dtype_and_device():
    _, tm = _twins(MLP)
    params = tm.init_params(torch.Generator().manual_seed(0), torch.float32, "cpu")
    assert all(v.dtype == torch.float32 for v in params.values())
    assert tuple(params["W1"].shape) == (4, 8)
    again = tm.init_params(torch.Generator().manual_seed(0), torch.float32, "cpu")
    assert all(torch.equal(params[k], again[k]) for k in params)


@pytest.mark.parametrize("name", sorted(set(TORCH_HELPERS) & set(HELPERS)))
def test_helpers_match_their_numpy_twins(name):
    """Each torch helper against the NumPy helper of its name, on one example."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6))
    args = {"_softplus": (x,), "_leaky_relu": (x, 0.1),
            "_index_add": (x, (slice(None), 1), x[:, 1]),
            "_im2col": (x, 3, 2, 2, 1), "_max_pool": (x, 3, 1, 1),
            "_avg_pool": (x, 2, 2, 0), "_first_rows": (x, 1), "_pad_rows": (x, 4),
            "_embed_grad": (rng.integers(0, 4, size=(3, 5)), x[0, :, :5], 6),
            "_masked_softmax": (x, np.tri(6, dtype=bool) & (x[:, :1, :1] > 0), 3),
            "_stream": (x[:, 0], x, "hs")}
    if name == "_col2im":
        args[name] = (kernels._im2col(x, 3, 2, 2, 1), x.shape, 3, 2, 2, 1)
    if name in ("_max_pool_mask", "_max_pool_grad", "_avg_pool_grad"):
        out = kernels._max_pool(x, 3, 1, 1)
        mask = kernels._max_pool_mask(x, out, 3, 1, 1)
        args.update({"_max_pool_mask": (x, out, 3, 1, 1),
                     "_max_pool_grad": (out, mask, 3, 1, 1),
                     "_avg_pool_grad": (kernels._avg_pool(x, 2, 2, 0), x.shape, 2, 2, 0)})
    given = args.get(name, (7, 5))  # _sinusoidal: 7 steps, 5 wide, in each one's float64
    want = getattr(kernels, name)(*given, *((np.float64,) if name == "_sinusoidal" else ()))
    got = getattr(torch_kernels, name)(*(torch.as_tensor(a) if isinstance(a, np.ndarray)
                                         else a for a in given),
                                       *((torch.float64,) if name == "_sinusoidal" else ()))
    assert inspect.signature(getattr(kernels, name)) == \
        inspect.signature(getattr(torch_kernels, name))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


WINDOW = ((2, 3), (2, 2), (1, 0))  # size, stride, pad (rows, columns): a column left out


@pytest.mark.parametrize("name", ["_im2col", "_col2im", "_max_pool", "_max_pool_mask",
                                  "_max_pool_grad", "_avg_pool", "_avg_pool_grad"])
def test_window_helpers_match_their_numpy_twins_per_axis(name):
    """The conv and pooling helpers with per-axis settings whose windows leave the
    image's last column out, against the NumPy helper of their name."""
    x = np.random.default_rng(1).normal(size=(2, 3, 7, 6))
    conv = (3, 2, (2, 1), (1, 0))
    out = kernels._max_pool(x, *WINDOW)
    given = {"_im2col": (x, *conv), "_col2im": (kernels._im2col(x, *conv), x.shape, *conv),
             "_max_pool": (x, *WINDOW), "_max_pool_mask": (x, out, *WINDOW),
             "_max_pool_grad": (out, kernels._max_pool_mask(x, out, *WINDOW), *WINDOW, (7, 6)),
             "_avg_pool": (x, *WINDOW), "_avg_pool_grad": (out, x.shape, *WINDOW)}[name]
    want = getattr(kernels, name)(*given)
    got = getattr(torch_kernels, name)(*(torch.as_tensor(a) if isinstance(a, np.ndarray)
                                         else a for a in given))
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
