"""``bpc trace``: the worked examples of the textbooks, number for number.

Published numbers quoted here:

- UDL notebook 7.1, "Backpropagation in Toy Model" (udlbook/udlbook,
  Notebooks/Chap07/7_1_Backpropagation_in_Toy_Model.ipynb), x = 2.3, y = 2.0:
  f0 1.230, h1 0.942, f1 1.623, h2 5.068, f2 7.137, h3 0.657, f3 2.372, l_i 0.139;
  dldf3 0.745, dldh3 2.234, dldf2 -1.683, dldh2 -3.366, dldf1 -17.060, dldh1 6.824,
  dldf0 2.281; dldbeta3 0.745, dldomega3 0.489, dldbeta2 -1.683, dldomega2 -8.530,
  dldbeta1 -17.060, dldomega1 -16.079, dldbeta0 2.281, dldomega0 5.246.
- Matt Mazur, "A Step by Step Backpropagation Example": E_total = 0.298371109,
  w5+ = 0.35891648, w1+ = 0.149780716 (learning rate 0.5).
- "Deep Learning from Scratch" ch. 5, the apples-and-oranges receipt: 715, and the
  gradients 2.2 (apple), 110 (apple_num), 3.3 (orange), 165 (orange_num), 650 (tax).
"""

import math
import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from conftest import GOLDEN, REPO, check_golden, run_bpc
from bpc.reports.trace import fmt, parse_at, point, summarize, trace

UDL = {"f0": 1.230, "h1": 0.942, "f1": 1.623, "h2": 5.068, "f2": 7.137, "h3": 0.657,
       "f3": 2.372, "l": 0.139,
       "dl_df3": 0.745, "dl_dh3": 2.234, "dl_df2": -1.683, "dl_dh2": -3.366,
       "dl_df1": -17.060, "dl_dh1": 6.824, "dl_df0": 2.281,
       "dl_dbeta3": 0.745, "dl_domega3": 0.489, "dl_dbeta2": -1.683, "dl_domega2": -8.530,
       "dl_dbeta1": -17.060, "dl_domega1": -16.079, "dl_dbeta0": 2.281,
       "dl_domega0": 5.246}
MAZUR_AT = "x=[0.05,0.10],t=[0.01,0.99]"


def _lines(text: str) -> dict[str, str]:
    """name -> the stated result (what follows the last ' = ') of each trace line."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s+([A-Za-z_][\w+]*) = ", line)
        if m and not line.strip().startswith("#"):
            out[m.group(1)] = line.rsplit(" = ", 1)[1]
    return out


def _trace(spec, at=None, step=False, digits=6):
    comp = Compilation.from_file(REPO / "specs" / spec)
    feeds, params, where = point(comp, parse_at(at) if at else None)
    return comp, trace(comp, feeds, params, where, step=step, digits=digits)


def test_udl_toy_trace_reproduces_notebook_7_1():
    r = run_bpc("trace", "specs/toy.bp", "--at", "x=2.3,y=2.0")
    assert r.returncode == 0, r.stderr
    check_golden(GOLDEN / "trace_toy.txt", r.stdout)
    stated = _lines(r.stdout)
    _, tr = _trace("toy.bp", "x=2.3,y=2.0")
    exact = {ln.name: float(ln.value) for ln in tr.lines}
    for name, published in UDL.items():
        assert f"{exact[name]:.3f}" == f"{published:.3f}", name  # as the notebook prints
        assert float(stated[name]) == pytest.approx(exact[name], rel=1e-5), name
    # the issue's own example line, digit for digit
    assert "dl_df2 = -sin(f2) × dl_dh3 = (-0.753523) × 2.23358 = -1.68306" in r.stdout
    # derivation order: every adjoint after the forward pass, dl_df3 first, dl_df0 last
    order = [n for n in stated if n.startswith("dl_d")]
    assert order[0] == "dl_df3" and order.index("dl_df0") > order.index("dl_dh1")


def test_mazur_trace_reproduces_the_blog_post():
    r = run_bpc("trace", "specs/mazur.bp", "--at", MAZUR_AT, "--step", "--digits", "9")
    assert r.returncode == 0, r.stderr
    check_golden(GOLDEN / "trace_mazur.txt", r.stdout)
    stated = _lines(r.stdout)
    assert float(stated["E"]) == pytest.approx(0.298371109, abs=1e-9)
    w2 = np.array(eval(stated["W2+"]))  # noqa: S307 - our own printed list of numbers
    w1 = np.array(eval(stated["W1+"]))  # noqa: S307
    assert w2[0, 0] == pytest.approx(0.35891648, abs=1e-8)  # w5+
    assert w1[0, 0] == pytest.approx(0.149780716, abs=1e-9)  # w1+


def test_receipt_trace_is_the_dlfs_graph():
    r = run_bpc("trace", "specs/receipt.bp")
    assert r.returncode == 0, r.stderr
    check_golden(GOLDEN / "trace_receipt.txt", r.stdout)
    stated = _lines(r.stdout)
    assert [float(stated[k]) for k in ("price", "dprice_dapple", "dprice_dtax",
                                        "dprice_dapple_num", "dprice_dorange",
                                        "dprice_dorange_num")] == \
        pytest.approx([715, 2.2, 650, 110, 3.3, 165])
    assert "dprice_dapple = apple_num × dprice_dall_price = 2 × 1.1 = 2.2" in r.stdout


@pytest.mark.parametrize("spec,at,step", [("toy.bp", "x=2.3,y=2.0", True),
                                          ("mazur.bp", MAZUR_AT, True),
                                          ("receipt.bp", None, False),
                                          ("digits.bp", None, True),
                                          ("spiral.bp", None, False)])
def test_written_out_numbers_equal_the_stated_results(spec, at, step):
    """Every step written with numbers recomputes (in Python) to the number it states, to
    the rounding of its operands; every stated value is the evaluator's own."""
    _, tr = _trace(spec, at, step)
    checked = 0
    for line in tr.lines:
        if line.numeric is None:
            continue
        again = eval(line.numeric, {"np": np, "sin": np.sin, "cos": np.cos})  # noqa: S307
        value = float(np.asarray(line.value))
        assert again == pytest.approx(value, rel=2e-5, abs=1e-9), line.text()
        stated = float(line.text().rsplit(" = ", 1)[1])
        assert stated == pytest.approx(value, rel=1e-5, abs=1e-12)
        checked += 1
    if spec in ("toy.bp", "receipt.bp", "mazur.bp"):
        assert checked >= 3


def test_toy_trace_gradients_match_finite_differences():
    """The trace's numbers are not the evaluator's word alone."""
    comp, tr = _trace("toy.bp", "x=2.3,y=2.0")
    m = comp.restyled("textbook").module
    params = m.init_params(np.random.default_rng(0))
    values = {ln.name: float(ln.value) for ln in tr.lines}
    eps = 1e-6
    for w in m.GRADS:
        up = {**params, w: params[w] + eps}
        down = {**params, w: params[w] - eps}
        fd = (m.loss(up, 2.3, 2.0) - m.loss(down, 2.3, 2.0)) / (2 * eps)
        assert values[f"dl_d{w}"] == pytest.approx(fd, rel=1e-6)


def test_summaries_never_show_a_mean_alone():
    big = np.linspace(-1, 1, 100).reshape(10, 10)
    text = summarize(big)
    assert "mean" not in text and "norm" in text and "min -1" in text and "max 1" in text
    assert summarize(np.array([1.5, -2.0])) == "[1.5, -2]"
    assert summarize(np.zeros((2, 3, 4, 5))).startswith("[2×3×4×5] norm 0")
    assert fmt(-1.68306123) == "-1.68306" and fmt(0.0) == "0" and math.isnan(
        float(fmt(float("nan"))))


def test_trace_errors_name_the_fault():
    r = run_bpc("trace", "specs/toy.bp", "--at", "z=1")
    assert r.returncode == 1 and "'z' is not an input, target or parameter" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_bpc("trace", "specs/toy.bp", "--at", "x=[1,2]")
    assert r.returncode == 1 and "'x' has shape []" in r.stderr
    r = run_bpc("trace", "specs/toy.bp", "--row", "0")
    assert r.returncode == 1 and "no 'data' line" in r.stderr
    r = run_bpc("trace", "specs/sine.bp", "--row", "3")
    assert r.returncode == 0 and "row 3 of the spec's data" in r.stdout
    r = run_bpc("trace", "specs/sine.bp", "--row", "100000")
    assert r.returncode == 1 and "rows 0 to" in r.stderr
    # labels in the data, one-hot rows in the spec: the row as training sees it
    r = run_bpc("trace", "specs/digits.bp", "--row", "3")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  t = \[\[(0|1)(, (0|1)){9}\]\]$", r.stdout, re.M)
