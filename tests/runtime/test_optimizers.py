"""Optimizers: one hand-computed step each, schedules, clipping, decay, and convergence."""

import math

import numpy as np
import pytest

from bpc.compiler.vocab import OPTIMIZERS
from bpc.runtime.errors import UserError
from bpc.runtime.optimizers import OPTIMIZER_CLASSES, learning_rate, make_optimizer

P0 = np.array([1.0, -2.0])
G = np.array([0.5, 0.25])


def one_step(name, **cfg):
    p = {"w": P0.copy()}
    opt = make_optimizer(name, p, **cfg)
    opt.step(p, {"w": G.copy()})
    return p["w"], opt


def test_sgd_step():
    w, _ = one_step("sgd", lr=0.1)
    np.testing.assert_allclose(w, P0 - 0.1 * G)


def test_momentum_steps():
    p = {"w": P0.copy()}
    opt = make_optimizer("momentum", p, lr=0.1, momentum=0.9)
    opt.step(p, {"w": G})
    np.testing.assert_allclose(p["w"], P0 - 0.1 * G)  # v = -lr g
    opt.step(p, {"w": G})
    np.testing.assert_allclose(p["w"], P0 - 0.1 * G + (0.9 * -0.1 * G - 0.1 * G))


def test_nesterov_step():
    w, _ = one_step("nesterov", lr=0.1, momentum=0.9)
    v = -0.1 * G
    np.testing.assert_allclose(w, P0 + 0.9 * v - 0.1 * G)


def test_adagrad_step():
    w, _ = one_step("adagrad", lr=0.1, eps=1e-8)
    np.testing.assert_allclose(w, P0 - 0.1 * G / (np.abs(G) + 1e-8))


def test_rmsprop_step():
    w, _ = one_step("rmsprop", lr=0.01, rho=0.9, eps=1e-8)
    h = 0.1 * G ** 2
    np.testing.assert_allclose(w, P0 - 0.01 * G / (np.sqrt(h) + 1e-8))


def test_adam_first_step_is_lr_times_sign():
    w, opt = one_step("adam", lr=0.001)
    # After bias correction m_hat = g and v_hat = g^2, so the step is lr * g / |g|.
    np.testing.assert_allclose(w, P0 - 0.001 * np.sign(G), rtol=1e-6)
    assert opt.t == 1


def test_weight_decay_adds_l2_gradient():
    w, _ = one_step("sgd", lr=0.1, weight_decay=0.01)
    np.testing.assert_allclose(w, P0 - 0.1 * (G + 0.01 * P0))


def test_clip_scales_global_norm():
    p = {"a": np.array([0.0]), "b": np.array([0.0])}
    opt = make_optimizer("sgd", p, lr=1.0, clip=1.0)
    opt.step(p, {"a": np.array([3.0]), "b": np.array([4.0])})  # norm 5 -> scaled by 1/5
    np.testing.assert_allclose([p["a"][0], p["b"][0]], [-0.6, -0.8])


def test_updates_are_in_place_and_gradients_untouched():
    for name in OPTIMIZERS:
        p = {"w": P0.copy()}
        buf = p["w"]
        g = G.copy()
        make_optimizer(name, p, clip=0.1, weight_decay=0.1).step(p, {"w": g})
        assert p["w"] is buf
        np.testing.assert_array_equal(g, G)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_converges_on_a_convex_quadratic(name):
    a = np.diag([1.0, 4.0, 9.0])
    target = np.array([1.0, -1.0, 2.0])
    p = {"w": np.zeros(3)}
    lr = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.01,
          "adam": 0.05}[name]
    opt = make_optimizer(name, p, lr=lr)
    for step in range(3000):
        rate = lr if name not in ("rmsprop", "adam") else lr * 0.999 ** step
        opt.step(p, {"w": a @ (p["w"] - target)}, rate)
    np.testing.assert_allclose(p["w"], target, atol=1e-3)


def test_state_round_trips():
    p = {"w": P0.copy()}
    opt = make_optimizer("adam", p)
    opt.step(p, {"w": G})
    state = {k: v.copy() for k, v in opt.state_dict().items()}
    q = {"w": p["w"].copy()}
    other = make_optimizer("adam", q)
    other.load_state_dict(state)
    opt.step(p, {"w": G})
    other.step(q, {"w": G})
    np.testing.assert_array_equal(p["w"], q["w"])


def test_schedules():
    cfg = {"lr": 1.0, "gamma": 0.5, "step": 2, "min_lr": 0.0}
    assert learning_rate({**cfg, "schedule": "constant"}, 7, 10) == 1.0
    assert [learning_rate({**cfg, "schedule": "step"}, e, 10) for e in (0, 1.9, 2, 4)] == \
        [1.0, 1.0, 0.5, 0.25]
    assert learning_rate({**cfg, "schedule": "exponential"}, 3, 10) == pytest.approx(0.125)
    cos = {**cfg, "schedule": "cosine"}
    assert learning_rate(cos, 0, 10) == pytest.approx(1.0)
    assert learning_rate(cos, 5, 10) == pytest.approx(0.5)
    assert learning_rate(cos, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate({**cos, "min_lr": 0.1}, 10, 10) == pytest.approx(0.1)
    assert math.isclose(learning_rate(cos, 2.5, 10), 0.5 * (1 + math.cos(math.pi / 4)))


def test_unknown_settings_are_reported():
    with pytest.raises(UserError, match="no setting 'beta1'"):
        make_optimizer("sgd", {"w": P0.copy()}, beta1=0.9)
    with pytest.raises(UserError, match="unknown optimizer"):
        make_optimizer("lion", {"w": P0.copy()})
    assert set(OPTIMIZER_CLASSES) == set(OPTIMIZERS)


def test_pack_lays_arrays_out_in_one_buffer_per_dtype():
    from bpc.runtime.optimizers import flat_buffers, pack

    arrays = {"W": np.arange(6.0).reshape(2, 3), "b": np.array(7.0),
              "v": np.array([1, 2], np.float32), "c": np.ones(2)}
    packed = pack(arrays)
    assert list(packed) == list(arrays)
    for k in arrays:
        np.testing.assert_array_equal(packed[k], arrays[k])
        assert packed[k].dtype == arrays[k].dtype and packed[k].shape == arrays[k].shape
    bufs = flat_buffers(packed)
    assert [b.size for b in bufs] == [9, 2] and [b.dtype for b in bufs] == [np.float64,
                                                                           np.float32]
    assert flat_buffers(arrays) is None  # separate arrays are not packed
    assert flat_buffers({"a": packed["W"], "c": packed["c"]}) is None  # a gap


MIXED = {"W": np.array([[0.5, -1.0], [2.0, 0.25]]), "b": np.array(-0.3), "c": np.ones(3)}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_packed_and_separate_parameters_update_identically(name):
    """The flat path (packed parameters, as bpc train passes them) and the synced path (any
    dict of arrays) are the same arithmetic: bit-identical parameters and state."""
    from bpc.runtime.optimizers import pack

    rng = np.random.default_rng(0)
    separate = {k: v.copy() for k, v in MIXED.items()}
    packed = pack(MIXED)
    settings = {"lr": 0.1, "weight_decay": 0.01, "clip": 0.5}
    a, b = make_optimizer(name, separate, **settings), make_optimizer(name, packed, **settings)
    for _ in range(4):
        g = {k: rng.normal(size=np.shape(v)) for k, v in MIXED.items()}
        keep = {k: np.copy(v) for k, v in g.items()}
        a.step(separate, g)
        b.step(packed, {k: np.copy(v) for k, v in g.items()})
        for k in g:
            np.testing.assert_array_equal(g[k], keep[k])  # gradients never written
    for k in MIXED:
        np.testing.assert_array_equal(separate[k], packed[k])
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and all(k == "t" or "/" in k for k in sa)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_gradients_computed_into_the_flat_buffer_are_used_in_place():
    from bpc.runtime.optimizers import pack

    p = pack({"w": P0.copy(), "s": np.array(1.0)})
    opt = make_optimizer("sgd", p, lr=0.1)
    opt.grad_buffers["w"][...] = G  # as loss_and_grad(..., grads=) writes them
    opt.grad_buffers["s"][...] = 2.0
    opt.step(p, dict(opt.grad_buffers))
    np.testing.assert_allclose(p["w"], P0 - 0.1 * G)
    assert float(p["s"]) == pytest.approx(0.8)


def test_nonfinite_names_the_parameter():
    from bpc.runtime.optimizers import pack

    p = pack({"a": np.zeros(2), "b": np.zeros(3)})
    opt = make_optimizer("sgd", p, lr=1.0)
    opt.gather({"a": np.array([1e200, 1e200]), "b": np.ones(3)})  # its dot overflows
    with np.errstate(over="ignore"):  # as in the training loop
        assert opt.nonfinite("grads") is None
    opt.gather({"a": np.ones(2), "b": np.array([0.0, np.nan, 1.0])})
    assert opt.nonfinite("grads") == "b"
    opt.update(p)
    assert opt.nonfinite("params") == "b"


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_sgd_family_updates_match_the_scratch_buffer_arithmetic_exactly(name):
    """The SGD family scales its own gradient buffer in place instead of writing lr g into
    a scratch buffer: the same IEEE operations on the same operands, so the parameters
    and the velocity are bit-identical (tolerance 0) to the earlier arithmetic, written
    out here, also when loss_and_grad wrote the gradient into ``grad_buffers``."""
    from bpc.runtime.optimizers import pack

    rng = np.random.default_rng(1)
    lr, mu = 0.037, 0.9
    p = pack({"w": rng.normal(size=(7, 5)), "b": rng.normal(size=5)})
    opt = make_optimizer(name, p, lr=lr, **({} if name == "sgd" else {"momentum": mu}))
    want = {k: v.copy() for k, v in p.items()}
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    for _ in range(3):
        g = {k: rng.normal(size=v.shape) for k, v in p.items()}
        for k, view in opt.grad_buffers.items():
            view[...] = g[k]  # as loss_and_grad(..., grads=) writes them
        opt.step(p, dict(opt.grad_buffers))
        for k in want:
            lr_g = g[k] * lr
            if name == "sgd":
                want[k] -= lr_g
                continue
            vel[k] *= mu
            vel[k] -= lr_g
            if name == "momentum":
                want[k] += vel[k]
            else:
                want[k] += vel[k] * mu - lr_g
            np.testing.assert_array_equal(opt.state["v"][k], vel[k])
        for k in want:
            np.testing.assert_array_equal(p[k], want[k])


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_a_folded_update_of_minus_lr_g_is_the_update_of_g_exactly(name):
    """Folded (``fold_lr``: loss_and_grad(..., scale=-lr) hands over -lr g), the SGD family
    adds what it is given: p + (-(lr g)) is p - lr g in IEEE arithmetic, so given the
    same gradient the parameters and the velocity are bit-identical (tolerance 0). Only
    where the generated backward pass applies the factor can round differently
    (tests/runtime/test_train.py: the whole runs agree to 1e-9)."""
    from bpc.runtime.optimizers import pack

    rng = np.random.default_rng(2)
    lr, cfg = 0.037, ({} if name == "sgd" else {"momentum": 0.9})
    start = {"w": rng.normal(size=(7, 5)), "b": rng.normal(size=5)}
    plain, folded = pack(dict(start)), pack(dict(start))
    a = make_optimizer(name, plain, lr=lr, **cfg)
    b = make_optimizer(name, folded, lr=lr, **cfg)
    assert b.fold_lr() and not a.folded
    for _ in range(3):
        g = {k: rng.normal(size=v.shape) for k, v in start.items()}
        a.step(plain, g)
        b.step(folded, {k: v * -lr for k, v in g.items()})
        for k in start:
            np.testing.assert_array_equal(folded[k], plain[k])
            for slot in b.state:
                np.testing.assert_array_equal(b.state[slot][k], a.state[slot][k])


@pytest.mark.parametrize("name, cfg", [("adam", {}), ("adagrad", {}), ("rmsprop", {}),
                                       ("sgd", {"clip": 1.0}),
                                       ("momentum", {"weight_decay": 1e-4})])
def test_rules_that_need_the_gradient_itself_do_not_fold(name, cfg):
    opt = make_optimizer(name, {"w": P0.copy()}, lr=0.1, **cfg)
    assert not opt.fold_lr() and not opt.folded
