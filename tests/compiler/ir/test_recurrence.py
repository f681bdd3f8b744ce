"""Loops over time (``h[t] = ... from h0``): ``scan`` and ``scan_grad`` through the IR
evaluator, against central finite differences over short and long sequences (T = 1, 2,
50) for a tanh RNN, an LSTM and a GRU written as equations, every parameter and the
differentiated inputs (the sequence and the initial state)."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.evaluate import evaluate, initial_params
from gradcheck_ir import check

HEAD = """
input x : [N, T, 3]
input h0 : [N, 4]
target y : [N, T, 4]
"""
RNN = HEAD + """
param Wx : [3, 4] = normal(std=0.5)
param Wh : [4, 4] = normal(std=0.5)
param b : [4] = normal(std=0.1)
h[t] = tanh(x[:, t] @ Wx + h[t-1] @ Wh + b) from h0
"""
LSTM = HEAD + """
input c0 : [N, 4]
param Wx : [3, 16] = normal(std=0.5)
param Wh : [4, 16] = normal(std=0.5)
param b : [16] = normal(std=0.1)
a[t] = x[:, t] @ Wx + h[t-1] @ Wh + b
i[t] = sigmoid(a[t][:, 0:4])
f[t] = sigmoid(a[t][:, 4:8])
g[t] = tanh(a[t][:, 8:12])
o[t] = sigmoid(a[t][:, 12:16])
c[t] = f[t] * c[t-1] + i[t] * g[t] from c0
h[t] = o[t] * tanh(c[t]) from h0
grad wrt c0
"""
GRU = HEAD + """
param Wz : [3, 4] = normal(std=0.5);  param Uz : [4, 4] = normal(std=0.5)
param Wr : [3, 4] = normal(std=0.5);  param Ur : [4, 4] = normal(std=0.5)
param Wn : [3, 4] = normal(std=0.5);  param Un : [4, 4] = normal(std=0.5)
param bz : [4] = zeros;  param bn : [4] = normal(std=0.1)
z[t] = sigmoid(x[:, t] @ Wz + h[t-1] @ Uz + bz)
r[t] = sigmoid(x[:, t] @ Wr + h[t-1] @ Ur)
n[t] = tanh(x[:, t] @ Wn + (r[t] * h[t-1]) @ Un + bn)
h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1] from h0
"""
# Every step and the last one read by the loss, so adjoints arrive per step and at the end.
LOSS = """
loss L = mean((h - y)^2) + sum(h[:, -1]^2)
grad wrt x, h0
"""
CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _problem(text, length, seed=0):
    prog = Compilation.from_text(text + LOSS, "cell.bp").program
    rng = np.random.default_rng(seed)
    feeds = {bd.name: rng.normal(size=[3 if d == "N" else length if d == "T" else d
                                       for d in bd.node.shape])
             for bd in prog.inputs + prog.targets}
    return prog, feeds, initial_params(prog, rng)


def _numeric(prog, feeds, params, name, eps=1e-6):
    """Central differences of the loss with respect to the input ``name``."""
    x, out = feeds[name], np.zeros_like(feeds[name])
    for i in np.ndindex(x.shape):
        values = []
        for step in (eps, -eps):
            moved = x.copy()
            moved[i] += step
            values.append(evaluate(prog, {**feeds, name: moved}, params,
                                   names=[prog.loss])[prog.loss])
        out[i] = (values[0] - values[1]) / (2 * eps)
    return out


@pytest.mark.parametrize("length", [1, 2, 50])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_gradient_against_finite_differences(cell, length):
    prog, feeds, params = _problem(CELLS[cell], length)
    samples = None if length < 50 else 20
    check(prog, feeds, params, samples=samples, rng=np.random.default_rng(1))
    if length == 50:
        return  # the inputs' gradients, every element: the short sequences suffice
    got = evaluate(prog, feeds, params)
    for name in ("x", "h0", "c0") if cell == "lstm" else ("x", "h0"):
        want = _numeric(prog, feeds, params, name)
        np.testing.assert_allclose(got[prog.grads[name]], want, rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_the_stacked_result_is_batch_first_and_T_is_the_data_s():
    prog, feeds, params = _problem(RNN, 7)
    h = evaluate(prog, feeds, params, names=["h"])["h"]
    assert h.shape == (3, 7, 4)
    step = np.tanh(feeds["x"][:, 0] @ params["Wx"] + feeds["h0"] @ params["Wh"] + params["b"])
    np.testing.assert_allclose(h[:, 0], step, rtol=1e-12)
    bd = next(b for b in prog.forward if b.name == "h")
    assert bd.node.shape == ("N", "T", 4)


def test_a_sequence_of_length_0_is_refused():
    prog, feeds, params = _problem(RNN, 0)
    with pytest.raises(ValueError, match="length 0"):
        evaluate(prog, feeds, params, names=["h"])
