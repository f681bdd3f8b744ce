"""Batch norm's state in the views: the IR evaluator takes and updates state, ``bpc trace``
shows batch norm's steps and the running statistics' update, ``bpc stats`` its effect on
activations, ``bpc graph`` states as leaves and updates as updates, ``bpc explain`` all of
it on one page.

Oracles outside bpc: the backward pass of "Deep Learning from Scratch"'s
``BatchNormalization`` layer (common/layers.py, written out below in NumPy), PyTorch's
``batch_norm`` (float64, autograd; skipped without torch), and finite differences.
"""

import json
import re

import numpy as np
import pytest

import bpc
from bpc.compiler.ir.evaluate import (evaluate, initial_params, initial_state, new_state,
                                      random_feeds)
from bpc.compiler.compilation import Compilation
from bpc.compiler.pipeline import program_from_file
from bpc.runtime.errors import UserError
from bpc.reports.explain import report
from bpc.runtime.gradcheck import gradcheck
from bpc.reports.graph import GRAD_COLOUR, build, dot, steps, to_svg
from bpc.reports.stats import format_table, layer_stats, layer_values
from bpc.reports.trace import (BATCH_ROWS, format_trace, parse_at, point, summarize,
                               trace)
from conftest import BN_EXAMPLE, GOLDEN, REPO, SPECS, check_golden, run_bpc
from html_page import Page


# batch norm written by hand: two features, a batch of four, numbers small enough to print
TINY = """\
# batch norm by hand (DLFS 6.3): two features
model bn_tiny
input  x : [N, 2]
target t : [N, 2]
param W : [2, 2] = [1.0, -0.5; 0.5, 2.0]
param gamma : [2] = [1.5, 0.5]
param beta : [2] = [0.1, -0.2]
state running_mean : [2] = zeros
state running_var : [2] = constant(value=2.0)
h = x @ W
y = batch_norm(h, gamma, beta, running_mean, running_var, momentum=0.8, eps=1e-5)
loss L = mse(y, t)
"""
TINY_X = np.array([[1, 2], [0, -1], [3, 0.5], [-2, 1]], dtype=float)
TINY_T = np.array([[0, 1], [1, 0], [0.5, 0.5], [1, 1]], dtype=float)
TINY_AT = "x=[[1,2],[0,-1],[3,0.5],[-2,1]],t=[[0,1],[1,0],[0.5,0.5],[1,1]]"

# DLFS ch. 6.3's experiment: a deep MLP from a poor initial scale, without and with
# batch norm after each dense layer
DEEP = """\
model {name}
input  x : [N, 64]
target t : [N, 10]
layers x -> y {{
  repeat 5 {{ dense 100 init=normal(std=0.01); {bn}relu }}
  dense 10
}}
loss L = softmax_cross_entropy(y, t)
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("state_views")
    out = {}
    for name, text in (("bn_example", BN_EXAMPLE), ("bn_tiny", TINY),
                       ("deep", DEEP.format(name="deep", bn="")),
                       ("deep_bn", DEEP.format(name="deep_bn", bn="batchnorm; "))):
        path = folder / f"{name}.bp"
        path.write_text(text)
        out[name] = path
    return out


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


def _values(tr) -> dict:
    return {ln.name: ln.value for ln in tr.lines}


# ----------------------------------------------------------------------------- evaluator

def test_evaluator_state_defaults_to_init_state_and_updates_like_the_module(specs):
    comp = Compilation.from_file(specs["bn_example"])
    prog = comp.program
    module = bpc.compile(specs["bn_example"])
    init = initial_state(prog)
    want = module.init_state()
    assert init.keys() == want.keys() == module.STATE.keys()
    for k in init:
        assert init[k].dtype == want[k].dtype and np.array_equal(init[k], want[k]), k
    rng = np.random.default_rng(3)
    params, feeds = initial_params(prog, rng), random_feeds(prog, rng, 7)
    after = new_state(prog, feeds, params)  # from the initial state, masks of seed 0
    state = module.init_state()
    module.loss_and_grad(params, **feeds, state=state, rng=np.random.default_rng(0))
    for k in state:
        assert np.allclose(after[k], state[k], rtol=1e-12, atol=1e-15), k
        assert not np.array_equal(after[k], init[k]), k  # it moved
    # from another state: the update reads the old value
    again = new_state(prog, feeds, params, state=after)
    state2 = {k: np.array(v) for k, v in after.items()}
    module.loss_and_grad(params, **feeds, state=state2, rng=np.random.default_rng(0))
    assert all(np.allclose(again[k], state2[k], rtol=1e-12) for k in state2)


def test_evaluator_runs_the_inference_program_with_a_given_state(specs):
    comp = Compilation.from_file(specs["bn_example"])
    prog, infer = comp.program, comp.inference
    assert not infer.updates and [b.name for b in infer.states] == list(initial_state(prog))
    module = bpc.compile(specs["bn_example"])
    rng = np.random.default_rng(1)
    params, feeds = initial_params(prog, rng), random_feeds(prog, rng, 5)
    trained = new_state(prog, feeds, params)
    for state in (None, trained):
        got = evaluate(infer, feeds, params, names=["y"], state=state)["y"]
        want = module.predict(params, feeds["x"], state=state or module.init_state())
        assert np.allclose(got, want, rtol=1e-12, atol=1e-14)
    # inference normalizes with the running statistics: one example alone is not zeroed
    one = evaluate(infer, {"x": feeds["x"][:1], "t": feeds["t"][:1]}, params,
                   names=["y"], state=trained)["y"]
    assert np.allclose(one, module.predict(params, feeds["x"][:1], state=trained))
    with pytest.raises(ValueError, match="state 'bn1_running_mean' is \\[3\\]"):
        evaluate(infer, feeds, params, state={**trained, "bn1_running_mean": np.zeros(3)})


def test_state_initializers_constant_and_number(tmp_path):
    spec = tmp_path / "init.bp"
    spec.write_text("model init\ninput x : [N, 3]\nparam g : [3] = ones\nparam b : [3] = zeros\n"
                    "state m : [3] = 0.5\nstate v : [3] = constant(value=4.0)\n"
                    "h = batch_norm(x, g, b, m, v)\nloss L = sum(h^2)\n")
    comp = Compilation.from_file(spec)
    prog = comp.program
    got = initial_state(prog)
    want = bpc.compile(spec).init_state()
    assert np.array_equal(got["m"], [0.5] * 3) and np.array_equal(got["v"], [4.0] * 3)
    assert all(np.array_equal(got[k], want[k]) for k in want)


# ----------------------------------------------------------------------------- trace

def test_tiny_trace_is_dlfs_batch_norm_number_for_number(specs):
    r = run_bpc("trace", specs["bn_tiny"], "--at", TINY_AT, "--step")
    assert r.returncode == 0, r.stderr
    check_golden(GOLDEN / "trace_bn_tiny.txt", r.stdout)
    assert "training mode: batch_norm normalizes with this batch's own" in r.stdout
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    feeds, params, _ = point(comp, parse_at(TINY_AT))
    v = _values(trace(comp, feeds, params))
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
    v = _values(trace(comp, feeds, params))
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
    v = _values(trace(comp, feeds, params))
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
    v = _values(trace(comp, feeds, params))
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


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_gallery_spec_traces(spec):
    comp = Compilation.from_file(spec)
    prog = comp.program
    feeds, params, where = point(comp)
    text = format_trace(trace(comp, feeds, params, where, step=True))
    assert text.startswith(f"{prog.name}: worked example at ")
    assert ("# running statistics" in text) == bool(prog.states)


# ----------------------------------------------------------------------------- stats

def test_stats_show_batch_norm_keeping_activations_spread(specs):
    """DLFS ch. 6.3: weights from normal(std=0.01) through five ReLU layers. Without
    batch norm the activations shrink by about 0.07 per layer; with it every layer's
    keep their spread."""
    plain = layer_stats(program_from_file(specs["deep"]), batch=100, seed=0)
    normed = layer_stats(program_from_file(specs["deep_bn"]), batch=100, seed=0)
    relu = [r["act_std"] for r in plain if r["layer"].startswith("z")]
    relu_bn = [r["act_std"] for r in normed if r["layer"].startswith("z")]
    assert len(relu) == len(relu_bn) == 5
    assert relu[-1] < 1e-4 * relu[0] and all(b < a for a, b in zip(relu, relu[1:]))
    assert all(0.3 < s < 1 for s in relu_bn)
    assert max(relu_bn) / min(relu_bn) < 1.2
    # the steps are not layers; every batch norm row says what it did per feature
    layers = [r["layer"] for r in normed]
    assert not any(re.match(r"bn\d_(mu|xc|var|std|xn)$", n) for n in layers)
    norms = [r for r in normed if "batch_norm" in r]
    assert [r["layer"] for r in norms] == [f"bn{j}" for j in range(1, 6)]
    for r in norms:
        bn = r["batch_norm"]
        assert bn["mode"] == "training" and bn["input"] == "a" + r["layer"][2:]
        assert bn["out"]["mean_absmax"] < 1e-10
        assert 0.999 < bn["out"]["std_min"] <= bn["out"]["std_max"] < 1.0
        assert bn["in"]["std_max"] < 0.2  # what came in was small


def test_stats_values_are_batch_norm_in_training_mode(specs):
    """The values stats shows are the batch's own normalization (not the running
    statistics, which would leave the small activations small)."""
    comp = Compilation.from_file(specs["deep_bn"])
    prog = comp.program
    values = {name: act for name, act, _ in layer_values(prog, batch=50, seed=2)}
    a1 = values["a1"]
    want = (a1 - a1.mean(axis=0)) / np.sqrt(a1.var(axis=0) + 1e-6)  # gamma 1, beta 0
    assert np.allclose(values["bn1"], want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(values["bn1"], a1 / np.sqrt(1 + 1e-6))  # inference's


def test_stats_cli_says_training_mode(specs):
    r = run_bpc("stats", specs["deep_bn"], "--batch", "64")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == ("batch_norm in training mode: each feature normalized with this "
                        "batch's own mean and variance")
    assert re.search(r"^bn3 \*\s", r.stdout, re.M) and "bn3_mu" not in r.stdout
    table = r.stdout.split("out: std")[1].strip().splitlines()
    assert [ln.split()[:2] for ln in table] == [[f"bn{j}", f"a{j}"] for j in range(1, 6)]
    r = run_bpc("stats", specs["deep_bn"], "--json", "--batch", "32")
    rows = json.loads(r.stdout)
    assert sum("batch_norm" in row for row in rows) == 5
    # a spec without batch norm prints the table alone, as before
    plain = layer_stats(program_from_file(specs["deep"]), batch=10)
    assert format_table(plain).startswith("layer ") and "*" not in format_table(plain)


# ----------------------------------------------------------------------------- graph

def test_graph_folds_steps_and_draws_states_and_updates(specs):
    comp = Compilation.from_file(specs["bn_example"])
    prog = comp.ir
    assert steps(prog) == {f"bn{j}_{s}": f"bn{j}" for j in (1, 2)
                           for s in ("mu", "xc", "var", "std", "xn")}
    feeds, params, _ = point(comp)
    g = build(comp, feeds, params)
    text = dot(g)
    labels = re.findall(r'\[label="([^"]*)", shape=circle\]', text)
    assert labels.count("batchnorm") == 2 and "repeat" not in text
    assert not re.search(r"bn\d_(mu|xc|var|std|xn)", text)
    states = {n.label: n.key for n in g.nodes if n.kind == "state"}
    assert sorted(states) == ["bn1_running_mean", "bn1_running_var", "bn2_running_mean",
                              "bn2_running_var"]
    updates = [e for e in g.edges if e.kind == "update"]
    assert sorted(e.dst for e in updates) == sorted(states.values())
    assert all(not e.grad for e in updates)  # an update is not differentiated
    after = new_state(prog, feeds, params)
    by_key = {n.key: n.label for n in g.nodes}
    for e in updates:
        assert e.value == summarize(after[by_key[e.dst]])
        assert by_key[e.src] == "batchnorm"
        line = next(ln for ln in text.splitlines() if f"-> {e.dst} " in ln)
        assert "style=dashed" in line and GRAD_COLOUR not in line
    # the gradient into batch norm is the trace's dL_da1
    a1 = next(n.key for n in g.nodes if n.label == "a1")
    into = next(e for e in g.edges if e.src == a1)
    v = _values(trace(Compilation.from_file(specs["bn_example"]), feeds, params))
    assert into.grad == summarize(v["dL_da1"])
    svg = to_svg(g)
    page = Page(svg)
    assert not page.stack
    assert "state (not trained)" in svg and 'stroke-dasharray="5 3"' in svg
    assert svg.count('fill="#e2f4e0"') >= 4 + 1  # four states and the legend's box


def test_graph_of_a_repeated_batch_norm_block(tmp_path):
    spec = tmp_path / "deep.bp"
    spec.write_text(DEEP.format(name="deep", bn="batchnorm; "))
    r = run_bpc("graph", spec, "--values")
    assert r.returncode == 0, r.stderr
    # five rounds: the first, one box for the three in between (3 x a, bn, z), the last
    assert 'repeat [label="bn1 … a5 (9 equations)", shape=box]' in r.stdout or \
        re.search(r'repeat \[label="\w+ … \w+ \(9 equations\)"', r.stdout)
    shown = set(re.findall(r'label="(bn\d_running_\w+)"', r.stdout))
    assert shown == {"bn1_running_mean", "bn1_running_var", "bn5_running_mean",
                     "bn5_running_var"}
    assert "bn3" not in r.stdout


def test_graph_of_an_inference_program_has_states_as_inputs(specs):
    g = build(Compilation.from_file(specs["bn_tiny"]), inference=True)
    kinds = {n.label: n.kind for n in g.nodes}
    assert kinds["running_mean"] == kinds["running_var"] == "state"
    op = next(n.key for n in g.nodes if n.label == "batch_norm")
    sources = {e.src for e in g.edges if e.dst == op}
    keys = {n.label: n.key for n in g.nodes}
    assert {keys["running_mean"], keys["running_var"]} <= sources
    assert not any(e.kind == "update" for e in g.edges)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_gallery_spec_graphs(spec):
    comp = Compilation.from_file(spec)
    prog = comp.ir
    feeds, params, _ = point(comp)
    g = build(comp, feeds, params)
    assert dot(g).startswith("digraph") and not Page(to_svg(g)).stack
    assert any(n.kind == "loss" for n in g.nodes)


# ----------------------------------------------------------------------------- explain

def test_explain_page_of_a_batch_norm_spec(specs):
    text = report(specs["bn_example"], batch=20)
    page = Page(text)
    assert not page.stack
    module = bpc.compile(specs["bn_example"])
    assert int(page.text["total-params"]) == sum(
        int(np.prod(s)) for s in module.PARAMS.values())
    assert int(page.text["total-state"]) == sum(int(np.prod(s)) for s in module.STATE.values())
    rows = re.findall(r'<tr class="state"><td>state</td><td><code>(\w+)</code>', text)
    assert rows == list(module.STATE)
    assert "FAIL" not in page.text["gradcheck"]
    assert page.text["gradcheck"].count("ok\n") == len(module.PARAMS)
    assert "bn1_running_mean+" in page.text["trace"] and "dL_dbn1_xn" in page.text["trace"]
    assert "training mode updates a state" in page.text["graph"]
    assert "Batch norm in training mode" in page.text["stats"]
    assert "bn1_mu" not in page.text["stats"]
    # the page's code is the module as compiled: predict in inference mode, no masks
    predict = text.split("predict")[1].split("loss")[0]
    assert "rng" not in predict


def test_explain_line_map_links_state_updates_to_their_layer(specs):
    textbook = Compilation.from_file(specs["bn_example"], style="textbook")
    code = textbook.text.splitlines()
    mapping = textbook.spec_lines
    layer_line = BN_EXAMPLE.splitlines().index("  repeat 2 { dense 32; batchnorm; relu; "
                                             "dropout 0.1 }") + 1
    updates = [i for i, ln in enumerate(code, 1) if ln.strip().startswith('state["')]
    # loss_and_grad's and loss's: a training program alone computes both in training mode
    assert len(updates) == 8 and all(mapping.get(i) == layer_line for i in updates)
    reads = [i for i, ln in enumerate(code, 1) if '= state["' in ln]
    assert reads and not any(i in mapping for i in reads)


def test_explain_gradient_check_of_batch_norm_has_teeth(specs):
    """The check the page runs (gradcheck in training mode, from init_state() each
    time): the right backward passes, a wrong one (the mean's share of dL/dx dropped)
    fails."""
    comp = Compilation.from_file(specs["bn_tiny"])
    prog = comp.program
    good = comp.restyled("textbook").new_module()
    state = good.init_state()
    rows = gradcheck(good, samples=10, batch=4, seed=0, state=state, modes=("training",))
    assert rows and all(r.ok for r in rows)
    assert all(np.array_equal(v, good.init_state()[k]) for k, v in state.items())
    bad = comp.restyled("textbook").new_module()
    source = re.sub(r"(dL_dh = dL_dy_xc) \+ [^\n]+", r"\1", good.source)
    assert source != good.source
    exec(compile(source, "<bad>", "exec"), bad.__dict__)  # noqa: S102
    rows = {r.name: r for r in gradcheck(bad, samples=10, batch=4, seed=0,
                                         modes=("training",))}
    assert not rows["W"].ok and rows["gamma"].ok


def test_cli_on_batch_norm_spec_errors_are_located(specs, tmp_path):
    r = run_bpc("trace", specs["bn_example"], "--at", "bn1_running_mean=[1]")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "'bn1_running_mean' is not an input, target or parameter" in r.stderr
    with pytest.raises(UserError):
        point(Compilation.from_file(specs["bn_tiny"]), parse_at("x=[[1,2,3]]"))


def test_views_of_batch_norm_over_images(tmp_path):
    """[N, C, H, W]: each channel normalized over the batch and its pixels."""
    spec = tmp_path / "conv_bn.bp"
    spec.write_text("model conv_bn\ninput x : [N, 1, 8, 8]\ntarget t : [N, 10]\n"
                    "layers x -> y {\n  conv 4 size=3 pad=1; batchnorm; relu; maxpool 2; "
                    "flatten; dense 10\n}\nloss L = softmax_cross_entropy(y, t)\n")
    comp = Compilation.from_file(spec)
    prog = comp.program
    values = {name: act for name, act, _ in layer_values(prog, batch=20, seed=1)}
    a1, bn1 = values["a1"], values["bn1"]
    mean, var = a1.mean(axis=(0, 2, 3)), a1.var(axis=(0, 2, 3))
    want = (a1 - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-6)
    assert np.allclose(bn1, want, rtol=1e-10, atol=1e-12)
    row = next(r for r in layer_stats(prog, batch=20, seed=1) if r["layer"] == "bn1")
    std_in = a1.std(axis=(0, 2, 3))
    assert row["batch_norm"]["in"]["std_min"] == pytest.approx(std_in.min())
    assert row["batch_norm"]["in"]["std_max"] == pytest.approx(std_in.max())
    assert row["batch_norm"]["out"]["std_min"] > 0.999
    feeds, params, where = point(comp)
    assert feeds["x"].shape == (BATCH_ROWS, 1, 8, 8) and where.startswith("a batch of 4")
    v = _values(trace(comp, feeds, params))
    assert v["bn1_mu"].shape == (4,) and np.allclose(
        v["bn1_running_var+"], 0.9 + 0.1 * v["a1"].var(axis=(0, 2, 3)))
    text = dot(build(Compilation.from_file(spec), feeds, params))
    assert re.findall(r'\[label="([^"]*)", shape=circle\]', text).count("batchnorm") == 1


def test_stats_finds_what_a_batch_norm_normalizes_when_the_spec_takes_its_step_names():
    """The spec defines bn1_mu itself, so the layer's mean step is bn1_mu_2: the batch
    norm still normalizes a1 (not what the spec's bn1_mu reads)."""
    from bpc.compiler.pipeline import program_from_text
    from bpc.reports.stats import batch_norms

    prog = program_from_text(
        "input x : [N, 4]\ntarget t : [N, 2]\nlayers x -> h {\n  dense 4; batchnorm; relu\n}\n"
        "bn1_mu = h * 2\nparam W : [4, 2] = normal\ny = bn1_mu @ W\n"
        "loss L = softmax_cross_entropy(y, t)\n", "coll.bp")
    assert "bn1_mu_2" in [bd.name for bd in prog.forward]
    assert batch_norms(prog) == {"bn1": "a1"}
