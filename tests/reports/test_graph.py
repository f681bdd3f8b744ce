"""``bpc graph``: the computation as a picture (DOT or SVG) with values and gradients on
its edges; helper nodes folded into the operation written, a repeat block collapsed,
batch norm's steps folded into one node, its states as leaves and their updates drawn
as updates."""

import re

import pytest

from batchnorm_specs import DEEP, specs, trace_values  # noqa: F401 - a fixture
from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.evaluate import new_state
from bpc.reports.graph import GRAD_COLOUR, build, dot, steps, to_svg
from bpc.reports.trace import point, summarize, trace
from conftest import SPECS, run_bpc
from html_page import Page

MAZUR_AT = "x=[0.05,0.10],t=[0.01,0.99]"


def test_graph_svg_and_generic_ops():
    r = run_bpc("graph", "specs/receipt.bp", "--svg", "--values")
    assert r.returncode == 0 and r.stdout.lstrip().startswith("<svg")
    page = Page(r.stdout)
    assert not page.stack
    assert ">715<" not in r.stdout or "= 715" in r.stdout
    r = run_bpc("graph", "specs/toy.bp", "--at", "x=2.3,y=2.0")
    assert r.returncode == 0
    assert "-1.683" in r.stdout and "2.234" in r.stdout  # UDL's dl_df2 and dl_dh3
    assert "mean" not in r.stdout


def test_graph_covers_indexing_concat_and_stack(tmp_path):
    """Operations without a case of their own in graph or trace: they come through the
    primitive table (and autodiff) like any other."""
    spec = tmp_path / "cut.bp"
    spec.write_text("model cut\ninput x : [N, 4]\nparam w : [2, 3] = 0.5\n"
                    "a = x[:, 0:2] @ w\nb = concat([a, x[:, 1:4]], axis=1)\n"
                    "s = stack([b, b * 2], axis=0)\nloss L = sum(s^2)\n")
    r = run_bpc("graph", spec, "--values")
    assert r.returncode == 0, r.stderr
    r = run_bpc("trace", spec, "--step")
    assert r.returncode == 0, r.stderr
    assert "dL_da" in r.stdout and "w+" in r.stdout


def test_graph_folds_helper_nodes_into_the_operation_written():
    """sse(y, t) is elaborated into sub, pow, sum and mul; the graph shows one 'sse' node,
    with Mazur's numbers on the edges into it and out of the unnamed pre-activation."""
    r = run_bpc("graph", "specs/mazur.bp", "--at", MAZUR_AT)
    assert r.returncode == 0, r.stderr
    labels = re.findall(r'\[label="([^"]*)", shape=circle\]', r.stdout)
    assert sorted(labels) == sorted(["@", "+", "sigmoid", "@", "+", "sigmoid", "sse"])
    assert "0.7414, -0.2171" in r.stdout  # dE/dout_o (Mazur: 0.74136507)
    assert "0.1385, -0.0381" in r.stdout  # dE/dnet_o, an unnamed value (Mazur: 0.138498562)
    r = run_bpc("graph", "specs/spiral.bp", "--values")
    assert "count" not in r.stdout and '"softmax_cross_entropy"' in r.stdout


def test_graph_collapses_a_repeat_block():
    """deep50's 'repeat 50 { dense 80; relu }': the first round, one box for the 48 in
    between, the last round, the output layer."""
    r = run_bpc("graph", "specs/deep50.bp", "--values")
    assert r.returncode == 0, r.stderr
    assert 'repeat [label="a2 … z49 (96 equations)", shape=box]' in r.stdout
    assert r.stdout.count("shape=circle") == 6  # dense relu, dense relu, dense, loss
    assert re.search(r"n\d+_v -> repeat \[label=<", r.stdout)  # z1 flows in, labelled
    assert re.search(r"repeat -> n\d+ \[label=<", r.stdout)  # z49 flows out, labelled
    assert "W25" not in r.stdout and "W50" in r.stdout


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
    v = trace_values(trace(Compilation.from_file(specs["bn_example"]), feeds, params))
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
