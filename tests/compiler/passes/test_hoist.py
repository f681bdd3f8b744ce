"""The fast style's hoisting (compiler/passes/hoist.py): a loop's work that reads a
sequence but nothing carried, with a matrix product in it, is done once over the whole
sequence before the loop; the backward's input-side gradients follow after it.

What the hoisted code computes is judged against the textbook style here, and by the
differential test (tests/oracle) and the random recurrences in both styles; here: what
is hoisted, what must not be, and how it reads.
"""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.ir import topo_order
from bpc.compiler.ir.memory import footprint
from bpc.compiler.passes.autodiff import differentiate
from bpc.compiler.passes.fast_forms import fast_forms
from bpc.compiler.passes.hoist import hoist
from bpc.compiler.passes.optimize import optimize
from conftest import REPO
from recurrent_specs import CELLS, LOSS, data

CELL = """\
model cell
input x : [N, T, 4]
target y : [N, T, 4]
param Wx : [4, 4] = normal(std=0.5)
param Wh : [4, 4] = normal(std=0.5)
param b : [4] = normal(std=0.1)
h[t] = {step} from 0
loss L = mean((h - y)^2)
"""


def loop_of(prog):
    """The body of the program's (first) loop."""
    return next(n for n in topo_order([bd.node for bd in prog.forward])
                if n.op == "scan").attr("body")


def step_ops(prog) -> list[str]:
    return [n.op for n in topo_order(list(loop_of(prog).steps))]


def test_the_lstm_s_input_projection_is_one_product_before_the_loop():
    comp = Compilation.from_file(REPO / "specs" / "charlm.bp")
    body = loop_of(comp.fast_program)
    assert [leaf.attr("name") for leaf in body.slices] == ["a2_x"]
    assert step_ops(comp.fast_program).count("matmul") == 1  # h[t-1] @ Wh alone
    assert step_ops(comp.program).count("matmul") == 2
    assert comp.restyled("textbook").coded is comp.program  # the book's loop, as written
    text = comp.text
    forward = text[text.index("def loss_and_grad"):text.index("# backward")]
    assert "a2_x = _matmul_rows(e1, Wx2)\n    a2_x += b2" in forward
    assert "a2_t = a2_x[:, t_2] + h2_prev @ Wh2" in forward
    backward = text[text.index("for t_2 in reversed"):]
    loop, after = backward.split("\n    del ", 1)
    assert "dL_da2_x[:, t_2] = dL_da2_t" in loop
    assert "Wx2" not in loop and "dL_db2" not in loop and "e1" not in loop
    for line in ("dL_db2 = np.sum(dL_da2_x, axis=(0, 1)", "np.reshape(dL_da2_x, (-1, 128))",
                 "dL_de1 = _matmul_rows(dL_da2_x, Wx2.T)"):
        assert line in after


def test_the_backward_does_not_keep_the_hoisted_sequence():
    """Its adjoint is the step's own; only the stacked adjoint [N, T, 4H] is new, and
    the forward keeps what it kept before (CONFIG["memory"])."""
    comp = Compilation.from_file(REPO / "specs" / "charlm.bp")
    text = comp.text
    forward = text[text.index("def loss_and_grad"):text.index("# backward")]
    assert "    del a2_x\n" in forward
    unhoisted = optimize(differentiate(fast_forms(comp.ir)))  # the fast style without it
    assert comp.module.CONFIG["memory"]["kept"] == footprint(unhoisted)["kept"]


@pytest.mark.parametrize("step, why", [
    ("tanh((x[:, t] * h[t-1]) @ Wx)", "the product reads a carried value"),
    ("tanh(x[:, t] * b + h[t-1] @ Wh)", "no product of the sequence"),
])
def test_what_is_not_hoisted(step, why):
    comp = Compilation.from_text(CELL.format(step=step))
    assert hoist(comp.ir) is comp.ir, why
    assert comp.fast_program is comp.program


def test_a_draw_in_the_step_is_refused_where_it_is_written():
    """Dropout in a step would be drawn again by the backward loop: a located error,
    also for a value started from 0 (not the width's error)."""
    text = CELL.format(step="tanh(dropout(x[:, t] @ Wx, 0.5) + h[t-1] @ Wh + b)")
    with pytest.raises(SpecError, match="a loop's step cannot use dropout") as e:
        Compilation.from_text(text).ir
    assert e.value.diagnostics[0].span.col == text.splitlines()[6].index("dropout") + 1


def test_a_value_of_every_example_stays_in_the_loop():
    """``enc @ Wp`` ([N, 4H], closed over) would not broadcast over [N, T, 4H]: the
    addition model's decoder hoists ``x @ Wx + b`` and adds it in the step."""
    text = (REPO / "generated" / "addition.py").read_text()
    assert "a_t = a_x[:, t] + h_prev @ Wh + h_matmul" in text
    assert "a_x = _matmul_rows(x, Wx)\n    a_x += b" in text


def test_a_step_equation_hoisted_whole_is_the_sequence():
    """A GRU's ``gx[t] = x[:, t] @ Wx + bx``: computed once as ``gx``, read as gx[:, t];
    the loop no longer computes it."""
    comp = Compilation.from_text("model gru\n" + CELLS["gru"] + LOSS)
    assert "gx" not in loop_of(comp.fast_program).names
    text = comp.text
    assert "gx = _matmul_rows(x, Wx)\n    gx += bx" in text
    assert "gx_t" not in text and "r_t = _sigmoid_tanh(gx[:, t][:, :4]" in text


CARRIED = """\
model carried
input x : [N, T, 3]
input c0 : [N, 4]
target y : [N, T, 4]
param W1 : [3, 4] = normal(std=0.5)
param W2 : [4, 4] = normal(std=0.5)
c[t] = sin(x[:, t] @ W1) from c0
h[t] = sin(c[t-1] @ W2) from 0
loss L = mean((h - y)^2) + sum(c[:, -1])
"""


def test_a_carried_step_equation_stays_in_the_loop():
    """``c`` reads nothing carried, but the next step reads it as a value of the loop:
    ``x @ W1`` is hoisted, ``sin`` of it stays; the values are the textbook's."""
    comp = Compilation.from_text(CARRIED)
    assert loop_of(comp.fast_program).names == ("c", "h")
    assert "c_t = np.sin(c_x[:, t])" in comp.text
    feeds, params = data(comp.program, 4, seed=5)
    (loss, got), (want_loss, want) = (c.module.loss_and_grad(params, **feeds) for c in (
        comp, comp.restyled("textbook")))
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


UNREAD = """\
model unread
input x : [N, 3]
input xs : [N, T, 2]
target y : [N, T]
param w0 : [2, 3] = normal(std=0.5)
param w1 : [2, 3] = normal(std=0.5)
param w2 : [3, 2] = normal(std=0.5)
s2[t] = tanh(xs[:, t] @ w0)
s1[t] = tanh(xs[:, t] @ w1 + x) from x
loss L = sum(sin(s1[:, -1])) + softmax_cross_entropy(s1 @ w2, y)
grad wrt xs
"""


def test_a_step_equation_nothing_reads_leaves_with_the_loop():
    """``s2`` is hoisted whole and read by nothing: no trace of it is left; w0's
    gradient is 0, as the textbook's."""
    comp = Compilation.from_text(UNREAD)
    assert loop_of(comp.fast_program).names == ("s1",)
    assert "s2" not in comp.text.split("def loss_and_grad")[1]
    feeds, params = data(comp.program, 3, seed=4)
    feeds["y"] = np.zeros(feeds["y"].shape, dtype=int)
    (loss, got), (want_loss, want) = (c.module.loss_and_grad(params, **feeds) for c in (
        comp, comp.restyled("textbook")))
    assert loss == pytest.approx(want_loss, rel=1e-12) and not want["w0"].any()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_hoisted_loop_computes_the_textbook_s_values(cell, dtype):
    """rnn, lstm, gru (started from h0, every step and the last one read), both dtypes."""
    text = f"model {cell}\ndtype {dtype}\n" + CELLS[cell] + LOSS
    comp = Compilation.from_text(text)
    assert comp.fast_program is not comp.program
    feeds, params = data(comp.program, 5, seed=1)
    fast_loss, fast = comp.module.loss_and_grad(params, **feeds)
    loss, want = comp.restyled("textbook").module.loss_and_grad(params, **feeds)
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert fast_loss == pytest.approx(loss, rel=tol)
    for name in want:
        assert fast[name].dtype == want[name].dtype
        np.testing.assert_allclose(fast[name], want[name], rtol=tol, atol=tol)


def test_a_sequence_of_length_0_is_named_as_the_spec_names_it():
    comp = Compilation.from_text("model rnn\n" + CELLS["rnn"] + LOSS)
    feeds, params = data(comp.program, 0)
    with pytest.raises(ValueError, match="'x' has length 0"):
        comp.module.loss_and_grad(params, **feeds)


STACK = """\
model stack
input x : [N, T, 3]
input h0 : [N, 5]
target y : [N, {out}]
layers x -> f {{
  {layers}
  dense 2
}}
loss L = mean((f - y)^2)
grad wrt x
"""


@pytest.mark.parametrize("layers, out", [
    ("lstm 6; lstm 5", "T, 2"),  # stacked: the second reads the first's h
    ("gru 5 init=h0; rnn 4 last", "2"),  # a start given, the last step only
    ("rnn 5 init=h0; dropout 0.5; lstm 4 last", "2"),  # a draw between loops
    ("dropout 0.5; gru 4; gru 3 last", "2"),  # a GRU's gx over a drawn sequence
])
def test_stacked_layers_hoist_each_loop_and_compute_the_textbook_s_values(layers, out):
    text = STACK.format(layers=layers, out=out)
    comp = Compilation.from_text(text)
    loops = [n for n in topo_order([bd.node for bd in comp.fast_program.forward])
             if n.op == "scan"]
    assert len(loops) == 2 and all("matmul" in [m.op for m in topo_order(
        list(loop.args))] for loop in loops)
    feeds, params = data(comp.program, 4, seed=2)

    def run(module):  # the same masks for both: a fresh generator of one seed each
        draws = {"rng": np.random.default_rng(0)} if "dropout" in layers else {}
        return module.loss_and_grad(params, **feeds, **draws)

    (loss, got), (want_loss, want) = run(comp.module), run(comp.restyled("textbook").module)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12)
