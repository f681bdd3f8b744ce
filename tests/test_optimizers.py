"""Optimizers: one hand-computed step each, schedules, clipping, decay, and convergence."""

import math

import numpy as np
import pytest

from compiler.vocab import OPTIMIZERS
from runtime.errors import UserError
from runtime.optimizers import OPTIMIZER_CLASSES, learning_rate, make_optimizer

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
