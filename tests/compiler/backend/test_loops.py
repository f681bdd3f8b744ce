"""Loops over time in generated modules (backend/loops.py): the forward is one ``for t in
range(T)`` loop and the backward one ``for t in reversed(range(T))`` loop, never T
copies; each module computes what the IR evaluator computes, in both code styles, and a
float32 model stays float32. (The torch target: tests/oracle/test_recurrence_torch.py.)"""

import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.evaluate import evaluate
from gradcheck_ir import check
from recurrent_specs import CELLS, LOSS, RNN, data


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_module_computes_what_the_ir_does(cell, style):
    comp = Compilation.from_text(CELLS[cell] + LOSS, "cell.bp", style=style)
    prog = comp.program
    for length in (1, 2, 9):  # one module, any T
        feeds, params = data(prog, length)
        want = evaluate(prog, feeds, params)
        loss, grads = comp.module.loss_and_grad(params, **feeds)
        assert loss == pytest.approx(want[prog.loss], rel=1e-12)
        for name in prog.wrt:
            np.testing.assert_allclose(grads[name], want[prog.grads[name]], rtol=1e-10,
                                       atol=1e-13, err_msg=name)
        np.testing.assert_allclose(comp.module.predict(params, **{
            k: v for k, v in feeds.items() if k != "y"}), want["h"], rtol=1e-12)


def test_the_loops_read_like_the_book():
    """TimeRNN.forward / backward: one loop each way, the carried adjoint written out,
    the weights' gradients summed over steps, the input's written per step."""
    text = Compilation.from_text(RNN + LOSS, "rnn.bp", style="textbook").generated.text
    body = text[text.index("def loss_and_grad"):]
    assert body.count("for t in range(x.shape[1]):") == 1
    assert body.count("for t in reversed(range(x.shape[1])):") == 1
    for line in ("h = np.empty((x.shape[0], x.shape[1], 4), dtype=DTYPE)",
                 "h_t = np.tanh(x[:, t] @ Wx + h_prev @ Wh + b)",
                 "h[:, t] = h_t",
                 "h_prev = h[:, t - 1] if t > 0 else h0",
                 "dL_dh_t = dL_dh[:, t] + dL_dh_next",
                 "dL_dWh += h_prev.T @ dL_dh_t_in",
                 "dL_dx[:, t] = dL_dh_t_in @ Wx.T",
                 "dL_dh_next = dL_dh_t_in @ Wh.T",
                 "dL_dh0 = dL_dh_next"):
        assert re.search(rf"^\s+{re.escape(line)}$", body, re.M), line


def test_what_the_backward_keeps_per_step_is_the_stacked_steps():
    """A tanh RNN keeps h (the book: x, h_prev and h_next, which are x and h): the
    forward allocates one [N, T, H] array, and the backward reads the steps from it."""
    text = Compilation.from_text(RNN + LOSS, "rnn.bp", style="fast").generated.text
    body = text[text.index("def loss_and_grad"):]
    forward = body[:body.index("# backward")]
    assert re.findall(r"(\w+) = np\.empty\(", forward) == ["h"]


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_an_lstm_keeps_what_the_book_keeps(style):
    """The book's LSTM cache: the gates and c per step (h_prev is h), not the
    pre-activation a: its gate slices' adjoints are joined (the book's np.hstack), which
    reads no a for its shape, so the forward does not stack it."""
    text = Compilation.from_text(CELLS["lstm"] + LOSS, "lstm.bp", style=style).generated.text
    body = text[text.index("def loss_and_grad"):]
    forward = body[:body.index("# backward")]
    assert sorted(re.findall(r"(\w+) = np\.empty\(", forward)) == ["c", "f", "g", "h", "i", "o"]
    assert re.search(r"dL_da_t = np\.concatenate\(\s*\[dL_di_t_in, dL_df_t_in, dL_dg_t_in, "
                     r"dL_do_t_in\], axis=1\s*\)", body), body
    assert "zeros_like(a" not in body


def test_float32_stays_float32():
    comp = Compilation.from_text(CELLS["lstm"] + LOSS, "cell.bp", dtype="float32")
    feeds, params = data(comp.program, 5)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    loss, grads = comp.module.loss_and_grad(params, **feeds)
    assert all(g.dtype == np.float32 for g in grads.values()), {
        k: g.dtype for k, g in grads.items()}
    assert comp.module.predict(params, **{k: v for k, v in feeds.items()
                                          if k != "y"}).dtype == np.float32


STACKED = """
input x : [N, T, 3]
input h0 : [N, 4]
target y : [N, T, 4]
param Wx : [3, 4] = normal(std=0.5)
param Wh : [4, 4] = normal(std=0.5)
param Ux : [4, 4] = normal(std=0.5)
param Uh : [4, 4] = normal(std=0.5)
h[t] = tanh(x[:, t] @ Wx + h[t-1] @ Wh) from h0
k[t] = tanh(h[t] @ Ux + k[t-1] @ Uh) from h0
d0 = k[:, -1]
d[t] = tanh(y[:, t] @ Uh + d[t-1] @ Wh) from d0
loss L = mean((d - y)^2) + mean(k^2)
grad wrt x, h0
"""


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_stacked_cells_in_one_loop_and_a_loop_started_by_another(style):
    """Two cells in one loop (k reads h[t]); a second loop (a decoder) starts from the
    first's last step, and shares weights with it: each weight's gradient sums both."""
    comp = Compilation.from_text(STACKED, "stacked.bp", style=style)
    prog = comp.program
    feeds, params = data(prog, 5)
    check(prog, feeds, params)
    want = evaluate(prog, feeds, params)
    loss, grads = comp.module.loss_and_grad(params, **feeds)
    assert loss == pytest.approx(want[prog.loss], rel=1e-12)
    for name in prog.wrt:
        np.testing.assert_allclose(grads[name], want[prog.grads[name]], rtol=1e-10,
                                   atol=1e-13, err_msg=name)
    body = comp.generated.text
    assert body.count("for t in reversed(range(") == 2 * body.count("def loss_and_grad")


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_scale_multiplies_every_gradient_once(cell, style):
    """``scale`` (the one-pass SGD's ``-lr``) seeds the backward pass once: the step's own
    derivative inside the loop must not multiply by it again (it did: scale squared)."""
    comp = Compilation.from_text(CELLS[cell] + LOSS, "cell.bp", style=style)
    feeds, params = data(comp.program, 5)
    _, plain = comp.module.loss_and_grad(params, **feeds)
    plain = {name: g.copy() for name, g in plain.items()}
    _, scaled = comp.module.loss_and_grad(params, **feeds, scale=-0.3)
    for name, g in plain.items():
        np.testing.assert_allclose(scaled[name], -0.3 * g, rtol=1e-12, atol=1e-15,
                                   err_msg=name)


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_from_0_in_each_style_and_target(style, target):
    """``h[t] = ... from 0``: the zeros are made as many rows as the sequence has."""
    if target == "torch":
        pytest.importorskip("torch", reason="pip install 'backprop-compiler[torch]'")
    text = CELLS["lstm"].replace("from h0", "from 0").replace("from c0", "from 0") + LOSS
    comp = Compilation.from_text(text, "cell.bp", style=style, target=target)
    assert "zeros((x.shape[0], 4)" in comp.generated.text
    feeds, params = data(comp.program, 4)
    want = evaluate(comp.program, feeds, params)
    if target == "torch":
        import torch
        feeds = {k: torch.tensor(v) for k, v in feeds.items()}
        params = {k: torch.tensor(v) for k, v in params.items()}
    loss, grads = comp.module.loss_and_grad(params, **feeds)
    assert float(loss) == pytest.approx(want[comp.program.loss], rel=1e-12)
    for name in comp.program.wrt:
        np.testing.assert_allclose(np.asarray(grads[name]), want[comp.program.grads[name]],
                                   rtol=1e-10, atol=1e-13, err_msg=name)


def test_a_loop_s_result_under_another_name_is_not_overwritten():
    """``g = h`` names the loop's stacked result: the fast style must not compute
    ``g - y`` into it while ``g[:, -1]`` and the backward still read it."""
    text = RNN + "g = h\nloss L = mean((g - y)^2) + sum(g[:, -1]^2)\n"
    comp = Compilation.from_text(text, "alias.bp", style="fast")
    feeds, params = data(comp.program, 5)
    want = evaluate(comp.program, feeds, params)
    loss, grads = comp.module.loss_and_grad(params, **feeds)
    assert loss == pytest.approx(want[comp.program.loss], rel=1e-12)
    np.testing.assert_allclose(grads["Wh"], want[comp.program.grads["Wh"]], rtol=1e-10)


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_a_sequence_of_length_0_is_a_clear_error_in_the_module(style):
    comp = Compilation.from_text(RNN + LOSS, "cell.bp", style=style)
    feeds, params = data(comp.program, 0)
    with pytest.raises(ValueError, match="'x' has length 0: a loop over time needs a step"):
        comp.module.loss_and_grad(params, **feeds)
    with pytest.raises(ValueError, match="'x' has length 0: a loop over time needs a step"):
        comp.module.predict(params, x=feeds["x"], h0=feeds["h0"])


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_a_step_that_reads_nothing_of_the_loop(style):
    """``c[t] = (z @ Wz)^2 from 0`` is the same at every step: computed once before the
    loop from what it reads (which the module loads), its gradient summed over the steps;
    unread, it still runs (it had named a parameter the module never loaded)."""
    text = RNN.replace("input h0 : [N, 4]", "input h0 : [N, 4]\ninput z : [N, 4]\n"
                       "param Wz : [4, 4] = normal(std=0.5)") + "c[t] = (z @ Wz)^2 * 0.1 from 0\n"
    for loss in ("L = mean((h - y)^2) + sum(c * h)", "L = mean((h - y)^2)"):
        comp = Compilation.from_text(f"{text}loss {loss}\ngrad wrt z\n", "fixed.bp",
                                     style=style, warn=lambda text: None)
        feeds, params = data(comp.program, 3)
        want = evaluate(comp.program, feeds, params)
        got, grads = comp.module.loss_and_grad(params, **feeds)
        assert got == pytest.approx(want[comp.program.loss], rel=1e-12)
        for name in comp.program.wrt:
            np.testing.assert_allclose(grads[name], want[comp.program.grads[name]],
                                       rtol=1e-10, atol=1e-13, err_msg=name)
        check(comp.program, feeds, params)
