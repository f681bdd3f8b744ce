"""Warnings about declarations the loss does not depend on, decided on the IR: a
parameter with no path to the loss, a target no loss reads; never on a spec whose every
parameter and target reaches the loss (the gallery), also through a layer stack, a
stop_gradient or a second equation."""

import pytest

from conftest import SPECS
from bpc.compiler.pipeline import check_file, check_text

UNUSED = """model u
input  x : [N, 2]
target t : [N, 1]
target s : [N, 1]
param  W : [2, 1] = 0.1
param  V : [2, 1] = 0.1
param  Q : [1, 1] = 0.0
y = x @ W
z = x @ V
loss L = mse(y, t)
output z
"""


def test_a_parameter_and_a_target_the_loss_does_not_depend_on_are_located_warnings():
    warnings = check_text(UNUSED, "u.bp").warnings
    assert [w.splitlines()[0] for w in warnings] == [
        "u.bp:4:1: warning: target 's' is read by no loss: training ignores it",
        "u.bp:6:1: warning: parameter 'V' does not affect the loss 'L' (only 'z' reads it): "
        "its gradient is always zero and training never changes it",
        "u.bp:7:1: warning: parameter 'Q' does not affect the loss 'L' (nothing reads it): "
        "its gradient is always zero and training never changes it",
    ]
    assert "hint: use it on the way to the loss, or remove it" in warnings[1]


@pytest.mark.parametrize("text", [
    UNUSED.replace("z = x @ V", "z = x @ V + stop_gradient(Q)").replace(
        "loss L = mse(y, t)", "loss L = mse(y + z, t) + mean(s)"),
    """model stack
input x : [N, 2]
target t : [N]
layers x -> y { dense 4; relu; dense 3 }
loss L = softmax_cross_entropy(y, t)
""",
])
def test_no_warning_when_everything_reaches_the_loss(text):
    assert check_text(text).warnings == []


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_the_gallery_has_no_such_warning(spec):
    assert check_file(spec).warnings == []
