"""Loops over time (``h[t] = ... from h0``): ``scan`` and ``scan_grad`` through the IR
evaluator, against central finite differences over short and long sequences (T = 1, 2,
50) for a tanh RNN, an LSTM and a GRU written as equations, every parameter and the
differentiated inputs (the sequence and the initial state)."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.ir.evaluate import evaluate
from gradcheck_ir import check
from recurrent_specs import CELLS, LOSS, RNN, data


def _problem(text, length, seed=0):
    prog = Compilation.from_text(text + LOSS, "cell.bp").program
    return (prog, *data(prog, length, seed))


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


def _from_zero(cell: str) -> str:
    return CELLS[cell].replace("from h0", "from 0").replace("from c0", "from 0")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_from_0_starts_at_zeros_of_the_step_s_shape(cell):
    """``from 0`` is ``from h0`` with h0 all zeros; its gradients check against finite
    differences, and the zeros get none (no input stands behind them)."""
    zero, explicit = _problem(_from_zero(cell), 6), _problem(CELLS[cell], 6)
    feeds = {k: np.zeros_like(v) if k in ("h0", "c0") else v for k, v in explicit[1].items()}
    want = evaluate(explicit[0], feeds, explicit[2])
    got = evaluate(zero[0], feeds, explicit[2])
    assert got[zero[0].loss] == pytest.approx(want[explicit[0].loss], rel=1e-12)
    np.testing.assert_array_equal(got["h"], want["h"])
    check(*zero, rng=np.random.default_rng(2))
    assert not got[zero[0].grads["h0"]].any()  # declared, but the loop does not read it


def test_from_0_whose_shape_no_value_in_scope_gives_is_refused():
    text = ("input x : [N, T, 3]\nh[t] = sum(h[t-1], axis=1) + x[:, t] from 0\n"
            "loss L = sum(h)\n")
    with pytest.raises(SpecError, match="could not be worked out from its step") as e:
        Compilation.from_text(text, "loop.bp").program
    assert "from h0" in str(e.value)


@pytest.mark.parametrize("step, width", [
    ("tanh(x[:, t] @ Wx + h[t-1] @ Wh)", 4),  # Wh's rows
    ("tanh(h[t-1] + x[:, t] @ Wx)", 4),  # Wx's columns, whichever operand comes first
    ("tanh(b + h[t-1]) * sum(x[:, t], axis=1, keepdims=true)", 4),  # a bias's width
    ("tanh(h[t-1] @ Wr + x[:, t])", 3),  # the sequence's (and Wr's)
    ("h[t-1] * sigmoid(x[:, t] @ Wg) + x[:, t] @ Wg", 1),  # only 1s: an LSTM of width 1
])
def test_from_0_takes_the_width_its_step_fixes(step, width):
    text = ("input x : [N, T, 3]\nparam Wx : [3, 4] = xavier\nparam Wh : [4, 4] = xavier\n"
            f"param Wr : [3, 3] = xavier\nparam Wg : [3, 1] = xavier\nparam b : [4] = zeros\n"
            f"h[t] = {step} from 0\n"
            "loss L = sum(h)\n")
    comp = Compilation.from_text(text, "loop.bp", warn=lambda text: None)
    assert f"h_init = np.zeros((x.shape[0], {width}), dtype=DTYPE)" in comp.generated.text
    assert "h_prev = h_init" in comp.generated.text


def test_from_0_whose_step_leaves_the_width_open_is_refused():
    """``h[t] = sin(h[t-1]) + …`` gives back any width: refused, never a guess (the first
    dimension in scope, N, had been taken)."""
    text = ("input x : [N, T, 3]\nparam W : [3, 2] = xavier\ng[t] = x[:, t] @ W\n"
            "h[t] = sin(h[t-1]) from 0\nloss L = sum(g) + sum(h)\n")
    with pytest.raises(SpecError, match="could not be worked out from its step"):
        Compilation.from_text(text, "loop.bp").program


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recurrent_layers_of_width_1_start_from_0(kind):
    """Gates [N, 1] broadcast against any width: the step is still [N, 1] (it had been
    refused, the width left open, while it was worked out from the step alone)."""
    text = (f"input x : [N, T, 3]\nlayers x -> y {{\n  {kind} 1\n}}\nloss L = sum(y)\n")
    comp = Compilation.from_text(text, "loop.bp")
    assert "np.zeros((x.shape[0], 1), dtype=DTYPE)" in comp.generated.text


def test_a_width_from_0_that_a_slice_needs_is_a_located_error():
    """A step that slices the zero-started value needs its width's value: the trial
    that works the width out stops (``NeedsWidth``, not any TypeError) and the spec is
    told to give an initial value; an unknown width never takes part in arithmetic as
    the string it is (``* 2`` would repeat it)."""
    from bpc.compiler.ir.ops.core import NeedsWidth, Unknown

    text = ("model s\ninput x : [N, T, 3]\ntarget y : [N, T, 4]\n"
            "param Wx : [3, 4] = normal(std=0.5)\nparam Wh : [2, 4] = normal(std=0.5)\n"
            "h[t] = tanh(x[:, t] @ Wx + h[t-1][:, 0:2] @ Wh) from 0\n"
            "loss L = mean((h - y)^2)\n")
    with pytest.raises(SpecError, match="could not be worked out from its step"):
        Compilation.from_text(text, "slice.bp").program
    width = Unknown("h_width")
    for use in (lambda: width * 2, lambda: 2 + width, lambda: width < 3, lambda: int(width)):
        with pytest.raises(NeedsWidth):
            use()
