"""Dropout sites: each draws its mask exactly once per training-mode call, in spec order,
whatever its rank, its p, and whether a loss or an output reads it — the same masks in
the generated module (both styles), the IR evaluator (trace, graph, explain) and the
PyTorch oracle (tests/support/torch_oracle.py, which draws ``rng.random(shape) >= p`` per site
in spec order).
"""

import types

import numpy as np
import pytest

from bpc.compiler.ir import random_sites
from bpc.compiler.ir.evaluate import evaluate
from bpc.compiler.pipeline import compile_text, program_from_text
from bpc.runtime.modes import training_kwargs


class Recorder:
    """A generator that records every ``random(shape)`` call (shape, values)."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.draws = []

    def random(self, shape=None):
        out = self.rng.random(shape)
        self.draws.append((tuple(np.shape(out)), np.array(out, copy=True)))
        return out


def module(text, style="fast"):
    _, source = compile_text(text, "sites.bp", style=style)
    m = types.ModuleType("sites")
    exec(compile(source, "sites", "exec"), m.__dict__)
    m.SOURCE = source
    return m


HEAD = """model sites
input x : [N, 3]
input s : []
param W : [3, 3] = normal(std=0.5)
param v : [3] = normal(std=0.5)
param w : [] = 1.5
"""

# (name, equations, the shapes of the sites in spec order with N = 4)
CASES = [
    ("scalar site", "d = dropout(w * s, 0.5)\nloss L = d * d + sum(x @ W)\n", [()]),
    ("scalar p=0 then matrix", "d = dropout(w * s, 0)\nh = dropout(x @ W, 0.5)\n"
     "loss L = d * sum(h)\n", [(), (4, 3)]),
    ("p=0 first", "h = dropout(x @ W, 0)\ng = dropout(tanh(h) * v, 0.5)\n"
     "loss L = sum(g^2)\n", [(4, 3), (4, 3)]),
    ("only p=0", "h = dropout(x @ W, 0)\nloss L = sum(h^2)\n", [(4, 3)]),
    ("unused site first", "u = dropout(tanh(x * v), 0.5)\nh = dropout(x @ W, 0.5)\n"
     "loss L = sum(h^2)\n", [(4, 3), (4, 3)]),
    ("unused site between", "h = dropout(x @ W, 0.3)\nu = dropout(v, 0.5)\n"
     "g = dropout(h * w, 0.5)\nloss L = sum(g^2)\n", [(4, 3), (3,), (4, 3)]),
    ("output-only site", "h = dropout(x @ W, 0.5)\ny = dropout(h * v, 0.5)\noutput y\n"
     "g = dropout(relu(h), 0.9)\nloss L = sum(g)\n", [(4, 3), (4, 3), (4, 3)]),
    ("two sites in one equation", "loss L = sum(dropout(x @ W, 0.5) * "
     "dropout(tanh(x) * v, 0.2)) + dropout(w, 0.5)\n", [(4, 3), (4, 3), ()]),
    ("nested sites", "h = dropout(dropout(x @ W, 0.5) * v, 0.5)\nloss L = sum(h^2)\n",
     [(4, 3), (4, 3)]),
    ("a site the optimizer would fold away", "loss L = sum(x @ W) + 0 * "
     "sum(dropout(x * v, 0.5)) + 0 * dropout(w, 0.5)\n", [(4, 3), ()]),
    ("vector site", "h = dropout(v * w, 0.5)\nloss L = sum(h * v) + sum(x @ W)\n", [(3,)]),
    ("scalar site read by a vector", "c = dropout(s * w, 0.5)\nh = c * v\n"
     "loss L = sum(h^2) + sum(x @ W)\n", [()]),
]


def _point(m, seed=1, n=4):
    rng = np.random.default_rng(seed)
    params = {k: np.asarray(v) + 0.05 * rng.normal(size=np.shape(v))
              for k, v in m.init_params(rng).items()}
    return params, {"x": rng.normal(size=(n, 3)), "s": rng.normal()}


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("name, body, shapes", CASES, ids=[c[0] for c in CASES])
def test_module_draws_every_site_once_in_spec_order(name, body, shapes, style):
    text = HEAD + body
    m = module(text, style)
    params, data = _point(m)
    rec = Recorder(7)
    loss, grads = m.loss_and_grad(params, **data, rng=rec)
    assert [s for s, _ in rec.draws] == shapes, name
    # the IR evaluator draws the same masks, in the same order, whatever it is asked for
    prog = program_from_text(text, "sites.bp")
    assert [tuple(4 if isinstance(d, str) else d for d in n.shape)
            for n in random_sites(prog)] == shapes
    for names in (None, ["L"], [prog.grads["W"]]):
        ev = Recorder(7)
        values = evaluate(prog, data, params, names=names, rng=ev)
        assert [s for s, _ in ev.draws] == shapes
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ev.draws, rec.draws))
        if names is None:
            assert np.isclose(values["L"], loss, rtol=1e-12)
            for w in prog.wrt:
                assert np.allclose(values[prog.grads[w]], grads[w], rtol=1e-10,
                                   atol=1e-13), (name, w)


@pytest.mark.parametrize("name, body, shapes", CASES, ids=[c[0] for c in CASES])
def test_module_evaluator_and_torch_agree(name, body, shapes):
    pytest.importorskip("torch")
    from diffharness import differential

    text = HEAD + body
    for seed in range(3):
        differential(text, seed, state_steps=1)


def test_rng_whenever_the_spec_has_a_dropout():
    """The signature follows from the docs: a dropout anywhere (p = 0, unused, read
    only by ``output``) makes ``loss_and_grad`` take ``rng``."""
    import inspect

    for name, body, _ in CASES:
        m = module(HEAD + body)
        assert "rng" in inspect.signature(m.loss_and_grad).parameters, name
        assert "rng" in training_kwargs(m), name


def test_p_zero_draws_and_keeps_every_element():
    text = HEAD + "h = dropout(x @ W, 0)\nloss L = sum(h^2)\n"
    m, plain = module(text), module(text.replace("dropout(x @ W, 0)", "x @ W"))
    params, data = _point(m)
    rec = Recorder()
    loss, grads = m.loss_and_grad(params, **data, rng=rec)
    want, want_grads = plain.loss_and_grad(params, **data)
    assert len(rec.draws) == 1 and loss == pytest.approx(want, rel=1e-14)
    assert all(np.allclose(grads[k], want_grads[k], rtol=1e-14) for k in want_grads)


def test_random_specs_draw_like_the_evaluator():
    """Random specs with dropout sites anywhere: the module's draws are the evaluator's,
    site for site."""
    rng = np.random.default_rng(11)
    bodies = []
    for _ in range(25):
        lines, names = [], ["x @ W", "tanh(x) * v"]
        for k in range(int(rng.integers(2, 6))):
            a = names[int(rng.integers(len(names)))]
            b = names[int(rng.integers(len(names)))]
            p = [0, 0.25, 0.5, 0.75][int(rng.integers(4))]
            expr = [f"dropout({a}, {p})", f"relu({a}) + dropout({b}, {p})",
                    f"dropout({a} * dropout({b}, {p}), 0.5)",
                    f"{a} * w"][int(rng.integers(4))]
            lines.append(f"h{k} = {expr}")
            names.append(f"h{k}")
        used = [n for n in names[2:] if rng.random() < 0.5] or [names[-1]]
        lines.append("loss L = " + " + ".join(f"sum({n}^2)" for n in used))
        bodies.append("\n".join(lines) + "\n")
    for body in bodies:
        text = HEAD + body
        m = module(text)
        prog = program_from_text(text, "sites.bp")
        params, data = _point(m)
        rec, ev = Recorder(3), Recorder(3)
        loss, _ = m.loss_and_grad(params, **data, rng=rec)
        values = evaluate(prog, data, params, names=["L"], rng=ev)
        assert len(rec.draws) == len(random_sites(prog)) == body.count("dropout(")
        assert [s for s, _ in rec.draws] == [s for s, _ in ev.draws], body
        assert np.isclose(values["L"], loss, rtol=1e-12), body


IMAGES = """model imgdrop
input x : [N, 2, 5, 5]
target t : [N, 3]
param K : [4, 2, 3, 3] = normal(std=0.3)
param V : [36, 3] = normal(std=0.3)
a = dropout(conv2d(x, K), 0.5)
f = flatten(dropout(relu(a), 0.3))
loss L = mse(f @ V, t)
"""


def test_four_d_sites():
    """Sites on [N, C, H, W] values: the module's masks are the evaluator's and torch's."""
    pytest.importorskip("torch")
    from diffharness import differential

    m = module(IMAGES)
    prog = program_from_text(IMAGES, "sites.bp")
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    data = {"x": rng.normal(size=(3, 2, 5, 5)), "t": rng.normal(size=(3, 3))}
    rec, ev = Recorder(2), Recorder(2)
    loss, _ = m.loss_and_grad(params, **data, rng=rec)
    values = evaluate(prog, data, params, names=["L"], rng=ev)
    assert [s for s, _ in rec.draws] == [s for s, _ in ev.draws] == [(3, 4, 3, 3)] * 2
    assert np.isclose(values["L"], loss, rtol=1e-12)
    for seed in range(2):
        differential(IMAGES, seed)
