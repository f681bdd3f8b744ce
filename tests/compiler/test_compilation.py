"""One ``Compilation`` per spec: each stage runs once, whoever asks; no one else runs one.

The reports (trace, graph, explain), the loader and the API ask a compilation for the
IR, the inference program, the module and the source map; a stage run twice would mean
a second, possibly different, program behind one page.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from bpc.compiler import compilation as compilation_module
from bpc.compiler.compilation import Compilation
from bpc.reports.explain import report
from bpc.reports.graph import build
from bpc.reports.trace import point, trace
from conftest import BN_EXAMPLE, REPO

STAGE_FUNCTIONS = ("elaborate", "differentiate", "optimize", "name_every_value",
                   "generate_module", "generate")
SOURCE_ROOTS = ("compiler", "runtime", "reports", "bpc")


@pytest.fixture
def counted(monkeypatch):
    """Calls of each stage function made through ``compilation``."""
    calls = {"elaborate": 0, "differentiate": 0, "optimize": 0}
    for name in calls:
        original = getattr(compilation_module, name)

        def wrapped(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(compilation_module, name, wrapped)
    return calls


def test_every_stage_runs_once_for_trace_graph_and_the_module(counted, tmp_path):
    spec = tmp_path / "bn.bp"
    spec.write_text(BN_EXAMPLE)
    comp = Compilation.from_file(spec)
    feeds, params, where = point(comp, seed=1)
    trace(comp, feeds, params, where, step=True)
    build(comp, feeds, params)
    comp.restyled("textbook").text
    comp.module.loss_and_grad  # noqa: B018 - executed once, here
    comp.restyled("textbook").fast_program  # noqa: B018 - shared, made once
    # training and inference are elaborated once each; the graph's every-value-named
    # program is differentiated once more, and so are the fast style's training and
    # inference programs (batch norm's closed form, the loss's one exponential): other
    # programs, not stages re-run
    assert counted == {"elaborate": 2, "differentiate": 5, "optimize": 4}


def test_explain_page_compiles_the_spec_once_per_dtype(counted):
    report(REPO / "specs" / "xor.bp", batch=4)
    # one compilation in the spec's dtype; xor is float64, so the gradient check's
    # float64 module is the same one
    assert counted == {"elaborate": 1, "differentiate": 2, "optimize": 1}


def test_another_style_shares_the_stages():
    comp = Compilation.from_file(REPO / "specs" / "toy.bp")
    textbook = comp.restyled("textbook")
    assert textbook.program is comp.program and textbook.ir is comp.ir
    assert textbook.text != comp.text and comp.restyled("fast") is comp


def test_another_dtype_is_another_compilation_of_the_same_spec():
    comp = Compilation.from_file(REPO / "specs" / "xor.bp")
    f32 = comp.with_dtype("float32")
    assert f32.spec is comp.spec and f32.program.dtype == "float32"
    assert comp.with_dtype("float64") is comp
    assert f32.module.DTYPE is np.float32
    params = f32.module.init_params(np.random.default_rng(0))
    assert all(v.dtype == np.float32 for v in params.values())
    # the same as the spec saying so
    text = (REPO / "specs" / "xor.bp").read_text()
    said = Compilation.from_text("dtype float32\n" + text, str(REPO / "specs" / "xor.bp"))
    assert said.text == f32.text


def test_source_map_points_every_backward_step_at_the_equation_it_differentiates():
    comp = Compilation.from_file(REPO / "specs" / "mazur.bp", style="textbook")
    lines = comp.text.split("\n")
    spec = (REPO / "specs" / "mazur.bp").read_text().split("\n")
    for line, spec_line in comp.spec_lines.items():
        code = lines[line - 1].strip()
        if code.startswith("dE_dW2 =") or code.startswith("dE_db2 ="):
            assert "W2" in spec[spec_line - 1]
    origins = comp.generated.origins
    assert all(lines[k - 1].startswith("    ") for k in origins)  # inside functions only
    mapped = {lines[k - 1].strip() for k in comp.spec_lines}
    assert any(c.startswith("# ") for c in mapped)  # headings are mapped too
    starts = comp.generated.starts
    assert list(starts) == ["loss_and_grad", "loss", "predict"]  # found from the end
    assert all(lines[k - 1].startswith(f"def {name}(") for name, k in starts.items())


def test_source_map_is_empty_rather_than_wrong_when_black_moves_lines(monkeypatch):
    from bpc.compiler.backend import codegen, layout

    monkeypatch.setattr(codegen, "needs_black", lambda text: True)
    monkeypatch.setattr(layout, "black", lambda text: "\n" + text)  # every line moves
    comp = Compilation.from_file(REPO / "specs" / "toy.bp")
    assert comp.generated.origins == {} and comp.spec_lines == {}
    assert comp.generated.starts == {}


def _calls_outside(root: Path, names) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else \
                    fn.attr if isinstance(fn, ast.Attribute) else None
                if name in names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    return found


def test_no_module_but_the_compilation_runs_a_stage():
    """The stage functions are called in compiler/compilation.py only (codegen's own
    ``generate`` wrapper excepted: it is the stage; and a loop's step, a program of its
    own, is differentiated and optimized by its loop's vjp, within the program's own
    differentiation: ops/recurrence.body_grad)."""
    found = [f for root in SOURCE_ROOTS for f in _calls_outside(REPO / root, STAGE_FUNCTIONS)
             if not f.startswith("compiler/compilation.py:")
             and not f.startswith("compiler/backend/codegen.py:")
             and not f.startswith("compiler/ir/ops/recurrence.py:")]
    assert found == []
