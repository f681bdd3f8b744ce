"""``bpc explain``: the page parses, holds every section, loads nothing, escapes the
spec, and its numbers are the generated module's; ``bpc graph --svg`` and its layout."""

import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from conftest import REPO, SPECS, run_bpc
from html_page import Page
from bpc.reports.explain import report
from bpc.reports.trace import parse_at

SECTIONS = ("summary", "code", "graph", "trace", "gradcheck", "stats")
MAZUR_AT = "x=[0.05,0.10],t=[0.01,0.99]"


def _module(spec):
    return Compilation.from_file(spec, style="textbook").module


@pytest.fixture(scope="module")
def mazur_page():
    return report(REPO / "specs" / "mazur.bp", parse_at(MAZUR_AT), batch=20)


def test_page_parses_holds_every_section_and_loads_nothing(mazur_page):
    page = Page(mazur_page)
    assert not page.stack, "unclosed tags"
    for section in SECTIONS:
        assert page.ids.get(section) == "section", section
    for tag, attrs in page.attrs:
        for key in ("src", "href"):
            assert key not in attrs or not re.match(r"(https?:)?//", attrs[key]), (tag, attrs)
    assert "<link" not in mazur_page and "@import" not in mazur_page
    assert mazur_page.count("<svg") >= 1 + 2 * 2  # the graph, and two histograms per layer


def test_page_numbers_are_the_modules(mazur_page):
    page = Page(mazur_page)
    m = _module(REPO / "specs" / "mazur.bp")
    params = m.init_params(np.random.default_rng(0))
    x, t = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    loss, grads = m.loss_and_grad(params, x, t)
    assert float(page.text["loss-value"]) == pytest.approx(loss, rel=1e-9)
    assert float(page.text["loss-value"]) == pytest.approx(0.298371109, abs=1e-9)  # Mazur
    assert int(page.text["total-params"]) == sum(v.size for v in params.values())
    # the worked-example table: dE_dW2 as the module computes it, w5+ as Mazur states it
    table = page.text["trace"]
    g = grads["W2"]
    assert f"[[{g[0, 0]:.6g}, {g[0, 1]:.6g}], [{g[1, 0]:.6g}, {g[1, 1]:.6g}]]" in table
    assert "0.358916" in table and "0.149781" in table
    assert page.text["gradcheck"].count("ok\n") == 4 and "FAIL" not in page.text["gradcheck"]


def test_spec_text_is_escaped(tmp_path):
    spec = tmp_path / "evil.bp"
    spec.write_text('# </script><script>alert(1)</script> <b>bold</b> & "quotes"\n'
                    "model evil\ninput x : scalar\nparam w = 2.0\nloss L = (w * x)^2\n")
    text = report(spec, parse_at("x=1.5"), batch=5)
    assert "<script>alert(1)" not in text and "<b>bold</b>" not in text
    assert "&lt;/script&gt;" in text or "&lt;/script" in text
    page = Page(text)
    assert not page.stack
    assert float(page.text["loss-value"]) == pytest.approx(9.0)  # (2 * 1.5)^2


def test_source_map_links_a_spec_line_to_its_forward_and_backward_lines():
    textbook = Compilation.from_file(REPO / "specs" / "toy.bp", style="textbook")
    code, mapping = textbook.text, textbook.spec_lines
    lines = code.splitlines()
    spec_line = next(i for i, ln in enumerate((REPO / "specs" / "toy.bp").read_text()
                                                .splitlines(), 1) if ln == "h1 = sin(f0)")
    linked = [lines[c - 1].strip() for c, s in mapping.items() if s == spec_line]
    assert "h1 = np.sin(f0)" in linked  # forward (in predict, loss and loss_and_grad)
    assert "dl_df0 = np.cos(f0) * dl_dh1" in linked  # backward
    assert "# h1 = sin(f0) (sin'(x) = cos(x))" in linked  # the header of that backward group
    assert all("f2" not in ln or "f0" in ln for ln in linked)


@pytest.mark.parametrize("spec", [p for p in SPECS if p.stem not in ("mazur", "deep50")],
                         ids=lambda p: p.stem)
def test_every_gallery_spec_explains(spec, tmp_path):
    page = Page(report(spec, batch=8))
    assert all(s in page.ids for s in SECTIONS)
    assert "FAIL" not in page.text["gradcheck"]


def test_cli_explain_and_errors(tmp_path):
    out = tmp_path / "receipt.html"
    r = run_bpc("explain", "specs/receipt.bp", "-o", out)
    assert r.returncode == 0, r.stderr
    page = Page(out.read_text())
    assert float(page.text["loss-value"]) == 715
    assert "650" in page.text["graph"] and "2.2" in page.text["graph"]
    r = run_bpc("explain", "specs/toy.bp", "--at", "q=1", "-o", out)
    assert r.returncode == 1 and "'q' is not an input" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_bpc("explain", "specs/missing.bp", "-o", out)
    assert r.returncode == 1 and "missing.bp" in r.stderr and "Traceback" not in r.stderr


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
