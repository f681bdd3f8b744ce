"""``bpc explain``: the page parses, holds every section, loads nothing, escapes the
spec, and its numbers are the generated module's; a batch-norm spec's page shows its
state, links the state updates to their layer and checks the gradient in training
mode."""

import re

import numpy as np
import pytest

import bpc
from batchnorm_specs import specs  # noqa: F401 - a fixture
from bpc.compiler.compilation import Compilation
from bpc.reports.explain import report
from bpc.reports.trace import parse_at
from bpc.runtime.gradcheck import gradcheck
from conftest import BN_EXAMPLE, REPO, SPECS, run_bpc
from html_page import Page

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


def test_explain_page_shows_the_specs_warnings_once(tmp_path):
    warned = REPO / "tests" / "golden" / "warnings" / "window_leaves_pixels.bp"
    expected = (warned.with_suffix(".warn")).read_text().replace("window_leaves_pixels.bp",
                                                                 str(warned))
    out = tmp_path / "warned.html"
    r = run_bpc("explain", warned, "-o", out, "--batch", "4")
    assert r.returncode == 0, r.stderr
    page = Page(out.read_text())
    assert not page.stack
    box = page.text["warnings"]
    assert box.count("warning:") == 2 == r.stderr.count("warning:")
    for line in expected.splitlines():  # located, with the caret, as bpc check says it
        assert line in box, line
    assert "×" in out.read_text() and "2 warnings" in box


def test_explain_page_of_a_spec_without_warnings_has_no_box(mazur_page):
    assert "warnings" not in Page(mazur_page).ids
