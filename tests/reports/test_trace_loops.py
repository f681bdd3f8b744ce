"""``bpc trace`` of a loop over time: the forward step by step, the backward reversed
with the carried adjoint (``dL_dh_next``) at each step, long loops elided to their first
and last steps; every number shown is the generated module's."""

import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.reports.trace import LOOP_STEPS, format_trace, point, trace
from bpc.reports.trace_loops import EDGE_STEPS
from conftest import GOLDEN, check_golden
from recurrent_specs import CELLS, LOSS, data


def _compiled(tmp_path, cell: str) -> Compilation:
    path = tmp_path / f"{cell}.bp"
    path.write_text(CELLS[cell] + LOSS)
    return Compilation.from_file(path)


def _steps(text: str, name: str) -> dict[int, str]:
    """t -> what the trace states for ``name`` at step t (the text after the last ' = ')."""
    out, t = {}, None
    for line in text.splitlines():
        head = re.match(r"\s+t = (\d+):$", line)
        if head:
            t = int(head.group(1))
        elif line.strip().startswith(f"{name} ") and t is not None:
            out[t] = line.rsplit(" = ", 1)[1]
    return out


def _numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text)])


def test_rnn_trace_is_golden(tmp_path):
    comp = _compiled(tmp_path, "rnn")
    feeds, params, where = point(comp)
    assert feeds["x"].shape == (1, LOOP_STEPS, 3)
    check_golden(GOLDEN / "trace_rnn.txt", format_trace(trace(comp, feeds, params, where)))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_each_step_shows_the_module_values(tmp_path, cell):
    """h_t at each step is the module's h[:, t]; the sequence's gradient at each step is
    the module's dL_dx[:, t]; the carried adjoint left after step 0 is dL_dh0."""
    comp = _compiled(tmp_path, cell)
    feeds, params = data(comp.ir, LOOP_STEPS, batch=1)
    text = format_trace(trace(comp, feeds, params))
    module = comp.restyled("textbook").module
    inputs = {k: v for k, v in feeds.items() if k in module.INPUTS}
    h = module.predict(params, **inputs)
    _, grads = module.loss_and_grad(params, **feeds)
    forward = _steps(text.split("# backward")[0], "h_t")
    backward = _steps(text.split("# backward")[1], "dL_dx[:, t]")
    assert sorted(forward) == sorted(backward) == list(range(LOOP_STEPS))
    for t in range(LOOP_STEPS):
        assert np.allclose(_numbers(forward[t]), h[0, t], atol=1e-5)
        assert np.allclose(_numbers(backward[t]), grads["x"][0, t], atol=1e-5)
    carried = _steps(text.split("# backward")[1], "dL_dh_next")
    assert np.allclose(_numbers(carried[0]), grads["h0"][0], atol=1e-5)


def test_a_long_loop_shows_its_first_and_last_steps(tmp_path):
    comp = _compiled(tmp_path, "lstm")
    feeds, params = data(comp.ir, 9, batch=2)
    text = format_trace(trace(comp, feeds, params))
    shown = list(range(EDGE_STEPS)) + list(range(9 - EDGE_STEPS, 9))
    assert sorted(_steps(text.split("# backward")[0], "h_t")) == shown
    assert sorted(_steps(text.split("# backward")[1], "dL_dc_t")) == shown
    left_out = f"… t = {EDGE_STEPS} to {8 - EDGE_STEPS} left out ({9 - 2 * EDGE_STEPS} steps)"
    assert text.count(left_out) == 2
    assert "h = [2×9×4] norm" in text  # a stacked result summarized, not printed in full
