"""``bpc graph`` and ``bpc explain`` of a loop over time: the loop is one box holding its
step equations as the spec wrote them, with a dashed carried edge (``h[t-1] → h[t]``) for
each carried value; ``explain``'s worked example lists the loop step by step."""

import pytest

from bpc.compiler.compilation import Compilation
from bpc.reports.explain import report
from bpc.reports.graph import build, dot, to_svg
from bpc.reports.trace import point, summarize
from conftest import GOLDEN, check_golden, run_bpc
from html_page import Page
from recurrent_specs import CELLS, LOSS


def _spec(tmp_path, cell: str):
    path = tmp_path / f"{cell}.bp"
    path.write_text(CELLS[cell] + LOSS)
    return path


def test_rnn_graph_is_golden(tmp_path):
    check_golden(GOLDEN / "graph_rnn.dot", dot(build(Compilation.from_file(_spec(tmp_path,
                                                                                 "rnn")))))


def test_lstm_graph_folds_the_loop_into_one_box(tmp_path):
    comp = Compilation.from_file(_spec(tmp_path, "lstm"))
    feeds, params, _ = point(comp)
    g = build(comp, feeds, params)
    loops = [n for n in g.nodes if n.kind == "loop"]
    assert len(loops) == 1
    head, *lines = loops[0].label.split("\n")
    assert head == "loop over t"
    assert [line.split("[")[0] for line in lines] == ["a", "i", "f", "g", "o", "c", "h"]
    assert lines[-2].endswith("from c0") and lines[-1].endswith("from h0")
    key = loops[0].key
    carries = sorted(e.value for e in g.edges if e.kind == "carry")
    assert carries == ["c[t-1] → c[t]", "h[t-1] → h[t]"]
    assert all(e.src == e.dst == key for e in g.edges if e.kind == "carry")
    by_key = {n.key: n for n in g.nodes}
    out = sorted(by_key[e.dst].label for e in g.edges if e.src == key and e.dst != key)
    assert out == sorted("aifgoch")  # each stacked result from the box
    into = {by_key[e.src].label: e for e in g.edges if e.dst == key != e.src}
    assert set(into) == {"x", "h0", "c0", "Wx", "Wh", "b"}
    assert into["x"].value == summarize(feeds["x"]) and into["Wh"].grad
    assert "op" not in {by_key[e.src].kind for e in into.values()}
    svg = to_svg(g)
    assert svg.count('class="carry"') == 2 and svg.count('class="loop"') == 1
    assert "c[t] = f[t] * c[t - 1] + i[t] * g[t] from c0" in svg
    assert not Page(svg).stack


@pytest.fixture(scope="module")
def rnn_page(tmp_path_factory):
    return report(_spec(tmp_path_factory.mktemp("rnn"), "rnn"), batch=10)


def test_explain_page_of_a_loop(rnn_page, tmp_path):
    page = Page(rnn_page)
    assert not page.stack
    table = page.text["trace"]
    for t in range(4):
        assert f"t = {t}: h_t" in table and f"t = {t}: dL_dh_next" in table
    assert "for t in reversed(range(x.shape[1])):" in table
    assert 'class="loop"' in rnn_page and "h[t-1] → h[t]" in rnn_page
    # the gradient norm per time step, a line for the whole loss and one for the last step
    assert rnn_page.count('class="time-norms"') == 1
    assert "gradient norm per step ||dL/dh_t||" in rnn_page
    comp = Compilation.from_file(_spec(tmp_path, "rnn"), style="textbook")
    feeds, params, _ = point(comp)
    loss, _ = comp.module.loss_and_grad(params, **feeds)
    assert float(page.text["loss-value"]) == pytest.approx(loss, rel=1e-9)


def test_cli_graph_and_explain_of_a_loop(tmp_path):
    spec = _spec(tmp_path, "gru")
    out = run_bpc("graph", spec, "--svg", "--values")
    assert out.returncode == 0, out.stderr
    assert 'class="loop"' in out.stdout and "h[t-1] → h[t]" in out.stdout
    out = run_bpc("explain", spec, "-o", tmp_path / "gru.html", "--batch", "5")
    assert out.returncode == 0, out.stderr
    assert "t = 3: dL_dh_next" in (tmp_path / "gru.html").read_text()
