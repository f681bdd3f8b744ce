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

Batch norm's steps and the running statistics' update, against the backward pass of
"Deep Learning from Scratch"'s ``BatchNormalization`` layer (common/layers.py, written out
below in NumPy), PyTorch's ``batch_norm`` (float64, autograd; skipped without torch) and
finite differences.
"""

import math
import re

import numpy as np
import pytest

from batchnorm_specs import TINY_AT, TINY_T, TINY_X, specs, trace_values  # noqa: F401 - a fixture
from bpc.compiler.compilation import Compilation
from bpc.reports.trace import (BATCH_ROWS, fmt, format_trace, parse_at, point, summarize,
                               trace)
from bpc.runtime.errors import UserError
from conftest import GOLDEN, REPO, SPECS, check_golden, run_bpc

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


# ----------------------------------------------------------------------------- batch norm
def dlfs_batchnorm(x, gamma, beta, dout, eps):
    """"Deep Learning from Scratch" common/layers.py BatchNormalization, training mode:
    (out, dx, dgamma, dbeta, batch mean, batch (biased) variance)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc ** 2, axis=0)
    std = np.sqrt(var + eps)
    xn = xc / std
    out = gamma * xn + beta
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    dx = dxc - dmu / n
    return out, dx, dgamma, dbeta, mu, var


def test_tiny_trace_is_dlfs_batch_norm_number_for_number(specs):
    r = run_bpc("trace", specs["bn_tiny"], "--at", TINY_AT, "--step")
    assert r.returncode == 0, r.stderr
    check_golden(GOLDEN / "trace_bn_tiny.txt", r.stdout)
    assert "training mode: batch_norm normalizes with this batch's own" in r.stdout
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, params, _ = point(comp, parse_at(TINY_AT))
    v = trace_values(trace(comp, feeds, params))
    h = TINY_X @ params["W"]
    n = h.size
    # DLFS's layer: the forward, and the backward of dL/dy = 2 (y - t) / n (mse)
    out, _, _, _, mu, var = dlfs_batchnorm(h, params["gamma"], params["beta"],
                                           np.zeros_like(h), 1e-5)
    out, dh, dgamma, dbeta, mu, var = dlfs_batchnorm(h, params["gamma"], params["beta"],
                                                     2 * (out - TINY_T) / n, 1e-5)
    assert np.allclose(v["y"], out, rtol=1e-12)
    assert np.allclose(v["y_mu"], mu) and np.allclose(v["y_var"], var)
    assert np.allclose(v["dL_dh"], dh, rtol=1e-10, atol=1e-14)
    assert np.allclose(v["dL_dgamma"], dgamma, rtol=1e-10)
    assert np.allclose(v["dL_dbeta"], dbeta, rtol=1e-10)
    assert np.allclose(v["dL_dW"], TINY_X.T @ dh, rtol=1e-10)
    # the running statistics: momentum 0.8 keeps 0.8 of the old (0 and 2), the book's
    # biased batch variance
    assert np.allclose(v["running_mean"], 0) and np.allclose(v["running_var"], 2)
    assert np.allclose(v["running_mean+"], 0.2 * mu, rtol=1e-12)
    assert np.allclose(v["running_var+"], 0.8 * 2 + 0.2 * var, rtol=1e-12)
    assert "running_var+ = 0.8 × running_var + 0.2 × y_var = " in r.stdout


def test_tiny_trace_agrees_with_torch(specs):
    torch = pytest.importorskip("torch")
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, params, _ = point(comp, parse_at(TINY_AT))
    v = trace_values(trace(comp, feeds, params))
    w = torch.tensor(params["W"], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(params["gamma"], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(params["beta"], dtype=torch.float64, requires_grad=True)
    mean, var = torch.zeros(2, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64)
    y = torch.nn.functional.batch_norm(torch.tensor(TINY_X) @ w, mean, var, gamma, beta,
                                       training=True, momentum=0.2, eps=1e-5)
    loss = torch.mean((y - torch.tensor(TINY_T)) ** 2)
    loss.backward()
    assert loss.item() == pytest.approx(float(v["L"]), rel=1e-12)
    for name, t in (("dL_dW", w), ("dL_dgamma", gamma), ("dL_dbeta", beta)):
        assert np.allclose(v[name], t.grad.numpy(), rtol=1e-10, atol=1e-14), name
    # torch's momentum is the new value's share; its running mean agrees
    assert np.allclose(v["running_mean+"], mean.numpy(), rtol=1e-12)
    # its running variance uses the unbiased variance, bpc (as DLFS) the biased one
    h = TINY_X @ params["W"]
    assert np.allclose(var.numpy(), 0.8 * 2 + 0.2 * h.var(axis=0, ddof=1))
    assert np.allclose(v["running_var+"], 0.8 * 2 + 0.2 * h.var(axis=0, ddof=0))


def test_tiny_trace_gradients_match_finite_differences(specs):
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, params, _ = point(comp, parse_at(TINY_AT))
    v = trace_values(trace(comp, feeds, params))
    m = comp.restyled("textbook").new_module()

    def loss(p):  # training mode, from a fresh state every time
        return m.loss_and_grad(p, TINY_X, TINY_T, state=m.init_state())[0]

    eps = 1e-6
    for name in ("W", "gamma", "beta"):
        for idx in np.ndindex(params[name].shape):
            up = {k: np.array(a) for k, a in params.items()}
            down = {k: np.array(a) for k, a in params.items()}
            up[name][idx] += eps
            down[name][idx] -= eps
            fd = (loss(up) - loss(down)) / (2 * eps)
            assert v[f"dL_d{name}"][idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_example_trace_shows_the_steps_in_derivation_order(specs):
    r = run_bpc("trace", specs["bn_example"])
    assert r.returncode == 0, r.stderr
    assert f"worked example at a batch of {BATCH_ROWS}, seed 0" in r.stdout
    forward = r.stdout.split("# forward pass")[1].split("# running statistics")[0]
    names = re.findall(r"^  (\w+) = ", forward, re.M)
    steps_1 = [names.index(s) for s in ("a1", "bn1_mu", "bn1_xc", "bn1_var", "bn1_std",
                                         "bn1_xn", "bn1", "z1")]
    assert steps_1 == sorted(steps_1)
    backward = r.stdout.split("# backward pass")[1]
    adjoints = re.findall(r"^    (dL_d\w+) = ", backward, re.M)
    order = [adjoints.index(f"dL_dbn1_{s}") for s in ("xn", "std", "var", "xc", "mu")]
    assert order == sorted(order)  # the book's backward, step by step, in reverse
    assert adjoints.index("dL_dbn1") < order[0] and adjoints.index("dL_da1") > order[-1]
    state = r.stdout.split("# running statistics")[1].split("# backward")[0]
    assert re.findall(r"^  (\w+\+) = ", state, re.M) == [
        "bn1_running_mean+", "bn1_running_var+", "bn2_running_mean+", "bn2_running_var+"]
    assert "bn1_running_mean+ = 0.9 × bn1_running_mean + 0.1 × bn1_mu = [32] norm" in state
    # the steps' header is the equation, once (not 'bn1 = … and bn1 = …')
    assert " and bn1 = " not in r.stdout
    # the batch's statistics are not degenerate: every example differs from the mean
    comp = Compilation.from_file(specs["bn_example"])
    prog = comp.program
    feeds, params, _ = point(comp)
    v = trace_values(trace(comp, feeds, params))
    assert v["a1"].shape == (BATCH_ROWS, 32) and np.all(v["bn1_var"] > 1e-3)
    assert np.allclose(v["bn1_xn"].mean(axis=0), 0) and np.allclose(
        v["bn1_xn"].std(axis=0), 1, atol=1e-4)


def test_trace_refuses_a_module_whose_state_update_disagrees(specs):
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, params, _ = point(comp, parse_at(TINY_AT))
    good = comp.restyled("textbook").new_module()
    bad = comp.restyled("textbook").new_module()
    bad.source = good.source.replace("0.8 * running_var + 0.2 * y_var",
                                     "0.8 * running_var + 0.2 * y_std")
    assert bad.source != good.source
    exec(compile(bad.source, "<bad>", "exec"), bad.__dict__)  # noqa: S102
    trace(comp, feeds, params, module=good)
    with pytest.raises(RuntimeError, match="disagree on running_var\\+"):
        trace(comp, feeds, params, module=bad)


def test_trace_rows_and_batches_of_a_batch_norm_spec(specs, tmp_path):
    r = run_bpc("trace", specs["bn_example"], "--row", "5")
    assert r.returncode == 0, r.stderr
    assert "worked example at rows 5 to 8 of the spec's data" in r.stdout
    assert "x = [4×64]" in r.stdout
    r = run_bpc("trace", specs["bn_example"], "--row", "1500")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "a batch of 4 from row K" in r.stderr and "needs K from 0 to" in r.stderr
    # a batch given with --at: the random rest (the targets) has as many rows
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, _, where = point(comp, parse_at("x=[[1,2],[3,4],[5,7]]"))
    assert feeds["x"].shape == (3, 2) and feeds["t"].shape == (3, 2)
    feeds, _, where = point(comp, parse_at("x=[1,2]"))  # one example: said so
    assert feeds["x"].shape == (1, 2) and "normalize every value to 0" in where
    # a spec without state is traced at one example, as before
    comp = Compilation.from_file(REPO / "specs" / "digits.bp")
    prog = comp.program
    feeds, _, where = point(comp)
    assert feeds["x"].shape == (1, 64) and where == "seed 0"


def test_cli_on_batch_norm_spec_errors_are_located(specs, tmp_path):
    r = run_bpc("trace", specs["bn_example"], "--at", "bn1_running_mean=[1]")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "'bn1_running_mean' is not an input, target or parameter" in r.stderr
    with pytest.raises(UserError):
        point(Compilation.from_file(specs["bn_tiny"]), parse_at("x=[[1,2,3]]"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_gallery_spec_traces(spec):
    comp = Compilation.from_file(spec)
    prog = comp.program
    feeds, params, where = point(comp)
    text = format_trace(trace(comp, feeds, params, where, step=True))
    assert text.startswith(f"{prog.name}: worked example at ")
    streams = set(prog.config.get("streams", ()))
    assert ("# running statistics" in text) == any(bd.name not in streams
                                                   for bd in prog.states)
    assert ("# state: the loops' last steps" in text) == bool(streams)


def test_at_takes_a_matrix_as_a_spec_writes_one():
    """--at 'x=[a, b; c, d]': rows separated by ';', as in a spec's matrix literal."""
    got = parse_at("x=[0.05, 0.1; 0.2, 0.3],t=[1; 2]")
    assert np.array_equal(got["x"], [[0.05, 0.1], [0.2, 0.3]])
    assert got["t"].shape == (2, 1)
    assert np.array_equal(parse_at("x=[[1,2],[3,4]]")["x"], parse_at("x=[1, 2; 3, 4]")["x"])
    with pytest.raises(UserError, match="not a number or a list of numbers"):
        parse_at("x=[1, 2; 3]")  # ragged rows
    r = run_bpc("trace", "specs/mazur.bp", "--at",
                "x=[0.05, 0.10; 0.2, 0.3],t=[0.01, 0.99; 0.5, 0.5]")
    assert r.returncode == 0, r.stderr
    assert "worked example at x=" in r.stdout
