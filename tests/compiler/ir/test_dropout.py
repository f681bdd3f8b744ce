"""Training and inference modes: dropout.

``loss_and_grad(..., rng=...)`` is training mode by default (inverted dropout, masks drawn
from ``rng``, the backward pass reusing them); ``predict`` and ``loss`` are inference mode
by default (dropout is the identity); tests/compiler/backend/test_mode_keyword.py has both
modes of both functions. Checked against PyTorch float64 with the same mask, against
central differences with the masks held fixed, against the IR evaluator, and through a
training run interrupted at random points and resumed.
"""

import random

import numpy as np
import pytest

from bpc.compiler.ir.evaluate import evaluate
from bpc.compiler.pipeline import compile_text, program_from_text
from bpc.runtime import data
from bpc.runtime.gradcheck import gradcheck
from bpc.runtime.settings import Settings

SPEC = """model drop
input x : [N, 4]
target t : [N]
layers x -> y {
  dense 16; relu
  dropout 0.3
  dense 16; tanh
  dropout 0.5
  dense 3
}
loss L = softmax_cross_entropy(y, t)
"""
TWIN = SPEC.replace("  dropout 0.3\n", "").replace("  dropout 0.5\n", "")


def module(text, name="drop"):
    import types

    _, source = compile_text(text, f"{name}.bp")
    m = types.ModuleType(name)
    exec(compile(source, name, "exec"), m.__dict__)
    m.SOURCE = source
    return m


def point(m, seed=1, n=7):
    rng = np.random.default_rng(seed)
    params = {k: v + 0.05 * rng.normal(size=v.shape) for k, v in m.init_params(rng).items()}
    return params, {"x": rng.normal(size=(n, 4)), "t": rng.integers(0, 3, size=n)}


def masks(seed, shapes, ps):
    """The masks ``rng.random(shape) >= p``, drawn in order from one generator."""
    rng = np.random.default_rng(seed)
    return [rng.random(s) >= p for s, p in zip(shapes, ps)]


def test_contract():
    m, twin = module(SPEC), module(TWIN, "twin")
    import inspect

    sig = inspect.signature(m.loss_and_grad).parameters
    assert sig["rng"].kind is inspect.Parameter.KEYWORD_ONLY and sig["rng"].default is None
    assert sig["training"].default is True
    assert "rng" not in inspect.signature(m.predict).parameters
    assert inspect.signature(m.loss).parameters["training"].default is False
    assert "rng" not in inspect.signature(twin.loss_and_grad).parameters  # v1: unchanged
    assert "training=" not in twin.SOURCE
    assert "rng.random(" in m.SOURCE and "rng.random(" not in twin.SOURCE


def test_inference_is_the_identity_and_independent_of_the_batch():
    m, twin = module(SPEC), module(TWIN, "twin")
    params, d = point(m, n=40)
    full = m.predict(params, d["x"])
    assert np.array_equal(full, twin.predict(params, d["x"]))
    assert m.loss(params, **d) == twin.loss(params, **d)
    for lo, hi in ((0, 1), (3, 11), (11, 40)):
        assert np.allclose(m.predict(params, d["x"][lo:hi]), full[lo:hi], rtol=1e-13,
                           atol=0)


def test_training_mode_against_torch_with_the_same_masks():
    torch = pytest.importorskip("torch")
    m = module(SPEC)
    params, d = point(m)
    loss, grads = m.loss_and_grad(params, **d, rng=np.random.default_rng(5))
    k1, k2 = masks(5, [(7, 16), (7, 16)], [0.3, 0.5])
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(d["x"])
    z1 = torch.relu(x @ P["W1"] + P["b1"])
    d1 = z1 * torch.tensor(k1) / (1 - 0.3)  # inverted dropout, the same mask
    z2 = torch.tanh(d1 @ P["W2"] + P["b2"])
    d2 = z2 * torch.tensor(k2) / (1 - 0.5)
    y = d2 @ P["W3"] + P["b3"]
    want = torch.nn.functional.cross_entropy(y, torch.tensor(d["t"]))
    want.backward()
    assert np.isclose(loss, want.item(), rtol=1e-12)
    for k, p in P.items():
        assert np.allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-14), k


def test_masks_fixed_by_the_seed_and_finite_differences():
    m = module(SPEC)
    params, d = point(m)
    a = m.loss_and_grad(params, **d, rng=np.random.default_rng(2))
    b = m.loss_and_grad(params, **d, rng=np.random.default_rng(2))
    c = m.loss_and_grad(params, **d, rng=np.random.default_rng(3))
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0] != c[0]
    rows = gradcheck(m, samples=30, batch=6)
    assert rows and all(r.ok for r in rows), [(r.name, r.why) for r in rows]
    assert sum(r.checked for r in rows) > 100


def test_mask_rate_and_scale():
    m = module("""model big
input x : [N, 200]
d = dropout(x, 0.25)
output d
loss L = sum(d)
""", "big")
    x = np.ones((50, 200))
    import inspect

    assert "rng" not in inspect.signature(m.predict).parameters
    assert np.array_equal(m.predict({}, x), x)  # inference: the identity
    # training mode through the evaluator (the same primitive table)
    prog = program_from_text("model big\ninput x : [N, 200]\nd = dropout(x, 0.25)\n"
                             "loss L = sum(d)\n", "big.bp")
    v = evaluate(prog, {"x": x}, {}, rng=np.random.default_rng(0))["d"]
    kept = v != 0
    assert abs(kept.mean() - 0.75) < 0.01
    assert np.allclose(v[kept], 1 / 0.75)
    loss, _ = m.loss_and_grad({}, x, rng=np.random.default_rng(0))
    assert np.isclose(loss, v.sum())  # the module draws the evaluator's masks


def test_evaluator_and_module_draw_the_same_masks():
    m = module(SPEC)
    params, d = point(m)
    prog = program_from_text(SPEC, "drop.bp")
    values = evaluate(prog, d, params)  # default: a generator seeded with 0
    loss, grads = m.loss_and_grad(params, **d, rng=np.random.default_rng(0))
    assert np.isclose(values["L"], loss, rtol=1e-12)
    for w in prog.wrt:
        assert np.allclose(values[prog.grads[w]], grads[w], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("text, message", [
    (SPEC.replace("dropout 0.3", "dropout 1"), "from 0 up to (not including) 1, not 1"),
    (SPEC.replace("dropout 0.3", "dropout(p=-0.1)"), "not -0.1"),
])
def test_bad_probability(text, message):
    from bpc.compiler.errors import SpecError

    with pytest.raises(SpecError) as info:
        compile_text(text, "drop.bp")
    assert message in info.value.render()


def test_interrupted_dropout_run_resumes_exactly(tmp_path):
    """SIGINT at random points of a run with dropout (masks drawn from the run's
    generator), resumed: the same end state as the run never interrupted."""
    from resume_runs import assert_same, finish, run, state

    m = module(SPEC.replace("x : [N, 4]", "x : [N, 2]"))
    ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
    settings = Settings(epochs=3, batch=16, seed=0, eval_every=2, optimizer="adam",
                        opt={"lr": 0.01})
    ref = tmp_path / "ref"
    events, stopped = run(m, ds, settings, ref, interrupt_at=-1)
    assert not stopped
    reference = state(ref)
    rng = random.Random("dropout-resume")
    for k in sorted(rng.randrange(1, events + 1) for _ in range(3)):
        out = tmp_path / f"at{k}"
        run(m, ds, settings, out, interrupt_at=k)
        finish(m, ds, settings, out)
        assert_same(state(out), reference, f"dropout, SIGINT at event {k} of {events}")



def test_digits_subset():
    """data digits_subset(n=K): K training examples, the same test set as digits."""
    pytest.importorskip("sklearn")
    m = module(SPEC.replace("[N, 4]", "[N, 64]"))
    full = data.builtin("digits", m, seed=0)
    small = data.builtin("digits_subset", m, seed=0, n=50)
    assert small.size(m) == 50 and full.size(m) == 1797 - 359
    assert small.size(m, "test") == full.size(m, "test") == 359
    assert np.array_equal(small.test["x"], full.test["x"])
    assert all(any(np.array_equal(r, f) for f in full.train["x"]) for r in small.train["x"])
