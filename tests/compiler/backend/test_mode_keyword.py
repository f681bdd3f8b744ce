"""The mode is an explicit keyword: ``loss(..., training=False)`` and
``loss_and_grad(..., training=True)`` by default, both values on both functions.

``loss(training=True)`` is the loss ``loss_and_grad`` differentiates by default (the same
masks, batch statistics and state update); ``loss_and_grad(training=False)`` is the
gradient of ``loss()`` (inference mode). Both modes against central differences
(``gradcheck`` checks both) and against the PyTorch oracle (tests/support/diffharness.py
compares every mode of every function); a module without modes is unchanged.
"""

import inspect
import re
import types

import numpy as np
import pytest

from bpc.compiler.pipeline import compile_text
from bpc.runtime import modes
from bpc.runtime.gradcheck import format_table, gradcheck

DROPOUT = """model drop
input x : [N, 3]
target t : [N]
layers x -> y {
  dense 8; relu
  dropout 0.3
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""
BN = """model bn
input x : [N, 3]
target t : [N]
layers x -> y {
  dense 8; batchnorm; tanh
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""
BOTH = """model both
input x : [N, 3]
target t : [N]
layers x -> y {
  dense 8; batchnorm; relu
  dropout 0.5
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""
PLAIN = """model plain
input x : [N, 3]
target t : [N]
layers x -> y {
  dense 8; relu
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""


def module(text, style="fast"):
    name, source = compile_text(text, "modes.bp", style=style)
    m = types.ModuleType(name)
    exec(compile(source, name, "exec"), m.__dict__)
    m.SOURCE = source
    return m


def point(m, seed=1, n=6):
    rng = np.random.default_rng(seed)
    params = {k: v + 0.05 * rng.normal(size=v.shape) for k, v in m.init_params(rng).items()}
    return params, {"x": 2 * rng.normal(size=(n, 3)) + 0.5, "t": rng.integers(0, 3, n)}


def signature(f) -> str:
    return str(inspect.signature(f)).split(" ->")[0]


def test_the_contract():
    d, b, both, plain = module(DROPOUT), module(BN), module(BOTH), module(PLAIN)
    assert signature(d.predict) == "(params, x)"
    assert signature(d.loss) == "(params, x, t, *, training=False, rng=None)"
    assert signature(d.loss_and_grad) == \
        "(params, x, t, *, training=True, rng=None, scale=1.0, grads=None)"
    assert signature(b.predict) == "(params, x, *, state)"
    assert signature(b.loss) == "(params, x, t, *, state, training=False)"
    assert signature(b.loss_and_grad) == \
        "(params, x, t, *, state, training=True, scale=1.0, grads=None)"
    assert signature(both.loss) == "(params, x, t, *, state, training=False, rng=None)"
    assert signature(both.loss_and_grad) == ("(params, x, t, *, state, training=True, "
                                             "rng=None, scale=1.0, grads=None)")
    # no modes: no keyword, no private functions
    assert signature(plain.loss) == "(params, x, t)"
    assert signature(plain.loss_and_grad) == "(params, x, t, *, scale=1.0, grads=None)"
    assert "training=" not in plain.SOURCE and "_loss_training" not in plain.SOURCE
    for m in (d, b, both):
        for name in ("loss", "loss_and_grad"):
            doc = getattr(m, name).__doc__
            assert "By default (``training=" in doc and "With ``training=" in doc


@pytest.mark.parametrize("text", [DROPOUT, BN, BOTH], ids=["dropout", "bn", "both"])
@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_training_loss_is_what_loss_and_grad_differentiates(text, style):
    m = module(text, style)
    params, d = point(m)
    kw = modes.fixed_masks(m)
    kw2 = modes.fixed_masks(m)
    value, _ = m.loss_and_grad(params, **d, **kw)
    assert kw["training"] is True
    assert m.loss(params, **d, **kw2) == pytest.approx(value, rel=1e-13)
    if "state" in kw:  # the same running statistics moved the same way
        assert all(np.allclose(kw["state"][k], kw2["state"][k], rtol=1e-13)
                   for k in kw["state"])
    inference = m.loss(params, **d, **modes.inference_kwargs(m, function="loss"))
    assert inference != pytest.approx(value, rel=1e-6)  # the modes differ here
    # the default is inference mode
    assert m.loss(params, **d, **({"state": m.init_state()} if "state" in kw else {})) == \
        inference


@pytest.mark.parametrize("text", [DROPOUT, BN, BOTH], ids=["dropout", "bn", "both"])
@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_inference_gradient_is_the_gradient_of_loss(text, style):
    m = module(text, style)
    params, d = point(m)
    state = modes.initial_state(m)
    if state:  # a non-trivial state: one training step's running statistics
        m.loss_and_grad(params, **d, **modes.training_kwargs(m, state))
    kw = modes.inference_kwargs(m, modes.copy_state(state), "loss_and_grad")
    assert kw["training"] is False
    value, grads = m.loss_and_grad(params, **d, **kw)
    infer = modes.inference_kwargs(m, state, "loss")
    assert value == pytest.approx(m.loss(params, **d, **infer), rel=1e-13)
    # central differences of loss() itself
    eps = 1e-6
    for name, g in grads.items():
        flat = np.asarray(params[name]).reshape(-1)
        for i in range(0, flat.size, max(1, flat.size // 5)):
            plus, minus = ({**params, name: params[name].copy()} for _ in range(2))
            plus[name].reshape(-1)[i] += eps
            minus[name].reshape(-1)[i] -= eps
            numeric = (m.loss(plus, **d, **infer) - m.loss(minus, **d, **infer)) / (2 * eps)
            assert np.asarray(g).reshape(-1)[i] == pytest.approx(numeric, rel=1e-5,
                                                                  abs=1e-8), (name, i)
    # and it is not the training-mode gradient
    _, g_train = m.loss_and_grad(params, **d, **modes.fixed_masks(m, state=state))
    assert not all(np.allclose(grads[k], g_train[k]) for k in grads)


@pytest.mark.parametrize("text", [DROPOUT, BN, BOTH], ids=["dropout", "bn", "both"])
def test_both_modes_against_torch(text):
    pytest.importorskip("torch")
    from diffharness import differential

    for seed in range(3):
        differential(text, seed)


def test_gradcheck_checks_both_modes_and_has_teeth():
    m = module(BOTH, "textbook")
    rows = gradcheck(m, samples=10, batch=5)
    assert [r.mode for r in rows] == ["training"] * 6 + ["inference"] * 6
    assert all(r.ok for r in rows), format_table(rows)
    assert "inference" in format_table(rows).splitlines()[-1]
    assert [r.mode for r in gradcheck(m, samples=3, modes=("inference",))] == \
        ["inference"] * 6
    assert [r.mode for r in gradcheck(module(PLAIN), samples=3)] == [""] * 4
    # an inference gradient that is wrong (a term of the chain rule dropped) fails, and
    # only in inference mode
    head, inference = m.SOURCE.split("def _loss_and_grad_inference", 1)
    broken, n = re.subn(r"(dL_dW1 = )x\.T @ ", r"\1 2 * x.T @ ", inference)
    assert n == 1
    bad = types.ModuleType("bad")
    exec(compile(head + "def _loss_and_grad_inference" + broken, "bad", "exec"),
         bad.__dict__)
    rows = {(r.name, r.mode): r for r in gradcheck(bad, samples=10, batch=5)}
    assert not rows["W1", "inference"].ok and rows["W1", "training"].ok


def test_training_mode_needs_rng():
    m = module(DROPOUT)
    params, d = point(m)
    with pytest.raises(TypeError, match="training mode needs rng"):
        m.loss_and_grad(params, **d)
    with pytest.raises(TypeError, match="training mode needs rng"):
        m.loss(params, **d, training=True)
    m.loss_and_grad(params, **d, training=False)  # inference draws nothing


def test_runtime_names_the_mode():
    m, plain = module(BOTH), module(PLAIN)
    assert modes.training_kwargs(m)["training"] is True
    assert modes.inference_kwargs(m, function="loss")["training"] is False
    assert "training" not in modes.inference_kwargs(m)
    assert modes.training_kwargs(plain) == modes.inference_kwargs(plain) == {}
    params, d = point(m)
    state = modes.initial_state(m)
    assert modes.training_loss(m, params, d, state=state) == \
        m.loss(params, **d, **modes.fixed_masks(m, state=state))
    assert modes.inference_loss(m, params, d, state) == m.loss(params, **d, state=state)
