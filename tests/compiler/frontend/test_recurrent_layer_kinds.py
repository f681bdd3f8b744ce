"""The ``rnn``, ``lstm`` and ``gru`` layers as written out: their step equations and
weights, every step or the last, stacking, the time variable clear of declared names, and
their mistakes as located errors. (Their numbers: tests/oracle/test_recurrent_layers_torch.py.)"""

import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.frontend.astprint import show_ast
from bpc.compiler.frontend.load import load_text
from bpc.compiler.ir.evaluate import initial_params


def spec(layers: str, target: str = "y") -> str:
    return (f"input x : [N, T, 3]\ntarget {target} : [N, 2]\n"
            f"layers x -> out {{ {layers} }}\nloss L = mse(out, {target})\n")


def test_an_lstm_is_the_book_s_step_equations():
    text = show_ast(load_text(spec("lstm 4 last; dense 2")))
    for line in ("param Wx1 : [fan_in(x), 16]", "param Wh1 : [4, 16]", "param b1 : [16] = zeros",
                 "a1[t] = x[:, t] @ Wx1 + h1[t - 1] @ Wh1 + b1",
                 "f1[t] = sigmoid(a1[t][:, 0:4])", "g1[t] = tanh(a1[t][:, 4:8])",
                 "c1[t] = f1[t] * c1[t - 1] + g1[t] * i1[t] from 0",
                 "h1[t] = o1[t] * tanh(c1[t]) from 0", "hs1 = h1[:, -1]"):
        assert line in text, line


def test_stacked_layers_number_their_weights_with_the_dense_layers():
    comp = Compilation.from_text(spec("gru 5; rnn 3 last; dense 2"), "s.bp")
    shapes = {b.name: b.node.shape for b in comp.program.params}
    assert shapes["Wx1"] == (3, 15) and shapes["bh1"] == (15,)
    assert shapes["Wx2"] == (5, 3) and shapes["Wh2"] == (3, 3) and shapes["W3"] == (3, 2)
    forward = {b.name: b.node.shape for b in comp.program.forward}
    assert forward["hs1"] == ("N", "T", 5) and forward["hs2"] == ("N", 3)


def test_the_time_variable_is_a_name_the_spec_does_not_declare():
    text = show_ast(load_text(spec("rnn 2 last", target="t")))
    assert "h1[t_2] = tanh(x[:, t_2] @ Wx1 + h1[t_2 - 1] @ Wh1 + b1) from 0" in text
    Compilation.from_text(spec("rnn 2 last", target="t"), "s.bp").program


def test_forget_bias_starts_the_forget_gate_s_bias_at_1():
    comp = Compilation.from_text(spec("lstm 2 last forget_bias=1"), "s.bp")
    b = initial_params(comp.program, np.random.default_rng(0))["b1"]
    np.testing.assert_array_equal(b, [1, 1, 0, 0, 0, 0, 0, 0])


def test_init_names_the_initial_state():
    text = "input h0 : [N, 4]\n" + spec("gru 4 init=h0 last; dense 2")
    assert "h1[t] = (1 - z1[t]) * n1[t] + z1[t] * h1[t - 1] from h0" in show_ast(
        load_text(text))


@pytest.mark.parametrize("layers,message", [
    ("rnn 4 last=2", "'rnn' takes 'last' (the last step) or nothing"),
    ("rnn 4 init=0.5 last", "'init' of 'rnn' names the initial state"),
    ("gru 4 forget_bias=1 last", "'forget_bias' is the bias of an LSTM's forget gate"),
    ("lstm 0", "'units' of 'lstm' must be a whole number >= 1"),
])
def test_mistakes_are_located_errors(layers, message):
    with pytest.raises(SpecError, match=re.escape(message)) as e:
        load_text(spec(layers))
    assert ":3:" in str(e.value)
