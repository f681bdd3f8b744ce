"""bpc from Python: the documented API (docs/API.md's examples, run), the notebook that
uses it (executed when Jupyter is installed), and the commands that look at a trained
model, end to end through a subprocess."""

import doctest
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

import bpc

XOR = REPO / "specs" / "xor.bp"


def bpc_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bpc", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_api_page_examples_run(monkeypatch):
    monkeypatch.chdir(REPO)  # the page names specs/… relative to the repository
    result = doctest.testfile(str(REPO / "docs" / "API.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 20
    assert result.failed == 0


def test_a_model_is_the_generated_module_and_pickles_by_source(monkeypatch):
    monkeypatch.chdir(REPO)
    model = bpc.compile("specs/xor.bp")
    assert model.source == (REPO / "generated" / "xor.py").read_text()
    again = pickle.loads(pickle.dumps(model))
    params = model.init_params(np.random.default_rng(0))
    x = np.array([[0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(again.predict(params, x=x), model.predict(params, x=x))
    assert "<span" in model._repr_html_() and model._repr_markdown_().startswith("```python")


def test_a_spec_error_is_the_located_message():
    from bpc.compiler.errors import SpecError

    with pytest.raises(SpecError) as e:
        bpc.compile("model m\ninput x : [N, 2]\ny = x @ W\nloss L = sum(y)\n")
    assert "<spec>:3:9: error:" in str(e.value.render())


def test_spec_text_without_a_model_line_is_named_model(tmp_path):
    """A notebook cell rarely has a 'model' line: text in memory is named 'model'; a file
    without one is still named by its stem, which must be an identifier."""
    text = "input x : [N, 1]\nparam w : [1, 1] = 0.5\nloss L = sum(x @ w)\n"
    model = bpc.compile(text)
    assert model.__name__ == "model" and model.source.startswith('"""model: generated')
    assert model.loss({"w": np.ones((1, 1))}, np.ones((3, 1))) == 3.0
    pickled = pickle.loads(pickle.dumps(model))
    assert pickled.__name__ == "model"
    (tmp_path / "line_fit.bp").write_text(text)
    assert bpc.compile(tmp_path / "line_fit.bp").__name__ == "line_fit"
    (tmp_path / "line-fit.bp").write_text(text)
    from bpc.compiler.errors import SpecError

    with pytest.raises(SpecError, match="does not give a usable model name"):
        bpc.compile(tmp_path / "line-fit.bp")


def test_history_is_numbers_and_matches_the_checkpoint(tmp_path):
    model = bpc.compile(XOR)
    result = model.train(epochs=40, eval_every=10, out=tmp_path, quiet=True)
    # A row every epoch, its training loss; the measures every 10th
    assert [r["epoch"] for r in result.history] == list(range(1, 41))
    assert all(isinstance(v, float) for v in result.history["loss"])
    assert [r["epoch"] for r in result.history if r["train_acc"] is not None] == \
        [10, 20, 30, 40]
    assert result.history["test_acc"] == [None] * 40  # xor has no test split
    ckpt = bpc.load_checkpoint(tmp_path)
    assert ckpt.history == result.history
    for k, v in result.params.items():
        np.testing.assert_array_equal(ckpt.params[k], v)
    assert isinstance(ckpt.opt_state, dict) and ckpt.meta["step"] == 40
    assert ckpt.state == {} and result.state == {}  # xor has no state (no batch norm)
    assert "epoch" in str(result.history).splitlines()[0]


def test_load_a_generated_module_and_its_limits():
    from bpc.runtime.errors import UserError

    model = bpc.load(REPO / "generated" / "sine.py")
    assert model.__name__ == "sine" and model.gradcheck()
    with pytest.raises(UserError, match="need its spec"):
        model.stats()
    with pytest.raises(UserError, match="no such file"):
        bpc.compile("specs/nonexistent.bp")


def test_load_executes_a_module_once_and_it_still_pickles(tmp_path, monkeypatch):
    """Issue 22: bpc.load imported the file, then executed its text a second time (the
    two could even differ: import honours a coding cookie, read_text did not)."""
    counter = tmp_path / "runs"
    text = (REPO / "generated" / "sine.py").read_text()
    module = tmp_path / "sine.py"
    module.write_text(text + f"\nwith open({str(counter)!r}, 'a') as _f:\n    _f.write('x')\n")
    model = bpc.load(module)
    assert counter.read_text() == "x"
    assert model.__name__ == "sine" and model.path == str(module)
    assert model.source == module.read_text()
    again = pickle.loads(pickle.dumps(model))  # pickled by source: runs it once more
    assert counter.read_text() == "xx"
    params = model.init_params(np.random.default_rng(0))
    x = np.linspace(0, 1, 5).reshape(5, 1)
    np.testing.assert_array_equal(again.predict(params, x), model.predict(params, x))
    assert not (tmp_path / "__pycache__").exists()  # no bytecode written, so none read


def test_a_planted_bytecode_file_is_never_run(tmp_path, monkeypatch):
    """Loading a generated module reads its text, not a .pyc in __pycache__ beside it
    (one written for this file's size and time would run instead of the file)."""
    import importlib.util
    import py_compile

    from bpc.runtime.loader import load_model

    module = tmp_path / "sine.py"
    module.write_text((REPO / "generated" / "sine.py").read_text())
    decoy = tmp_path / "decoy.py"
    decoy.write_text(module.read_text() + "import os\nos.environ['BPC_PWNED'] = '1'\n")
    monkeypatch.delenv("BPC_PWNED", raising=False)
    cached = Path(importlib.util.cache_from_source(str(module)))
    py_compile.compile(str(decoy), cfile=str(cached), dfile=str(module))
    data = bytearray(cached.read_bytes())  # the header says: compiled from sine.py
    st = module.stat()
    data[8:12] = int(st.st_mtime).to_bytes(4, "little")
    data[12:16] = (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    cached.write_bytes(bytes(data))
    load_model(module)
    bpc.load(module)
    assert "BPC_PWNED" not in os.environ


def test_version_and_python_dash_m():
    from importlib import metadata

    r = bpc_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"bpc {metadata.version('backprop-compiler')}"
    assert bpc.__version__ == metadata.version("backprop-compiler")


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = bpc_cmd("train", XOR, "--out", out, "--epochs", 400)
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_training_output_has_a_header_a_cadence_and_the_best_epoch(xor_run):
    out, text = xor_run
    lines = text.splitlines()
    assert lines[0].startswith("xor: 4 training examples; sgd lr 2, batch 4; 400 epochs")
    assert sum(line.startswith("epoch ") for line in lines) <= 10
    assert lines[-1].startswith("best: epoch ")


def test_verbose_prints_every_epoch_quiet_only_the_summary(tmp_path):
    r = bpc_cmd("train", XOR, "--out", tmp_path / "v", "--epochs", 12, "-v")
    assert sum(line.startswith("epoch ") for line in r.stdout.splitlines()) == 12
    r = bpc_cmd("train", XOR, "--out", tmp_path / "q", "--epochs", 12, "-q")
    assert not any(line.startswith("epoch ") for line in r.stdout.splitlines())
    assert r.stdout.startswith("xor: loss")


def test_params_eval_predict(xor_run, tmp_path):
    out, _ = xor_run
    r = bpc_cmd("params", out / "checkpoint.npz")
    assert r.returncode == 0 and "W1 (2, 2):" in r.stdout and "b2 (1,):" in r.stdout
    ckpt = bpc.load_checkpoint(out)
    r = bpc_cmd("params", out, "--full", 2)
    assert f"std {ckpt.params['W1'].std():.4g}" in r.stdout  # 4 numbers > 2: a summary
    r = bpc_cmd("eval", XOR, "--checkpoint", out)
    model = bpc.compile(XOR)
    from bpc.runtime.data import load
    from bpc.runtime.evaluate import mean_loss

    data = load("xor", model).train
    assert r.returncode == 0, r.stderr
    assert f"loss {mean_loss(model, ckpt.params, data):.6g}" in r.stdout
    assert "accuracy" in r.stdout
    r = bpc_cmd("predict", XOR, "--checkpoint", out, "-o", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "x[0],x[1],y,class,probability" and len(rows) == 5  # a classifier
    table = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    np.testing.assert_allclose(table[:, 2], model.predict(ckpt.params, x=table[:, :2]).ravel(),
                               rtol=1e-7)
    assert sorted(map(tuple, table[:, :2])) == sorted(map(tuple, data["x"]))


@pytest.mark.parametrize("args, message", [
    (["eval", XOR, "--checkpoint", "nowhere.npz"], "nowhere.npz: no such checkpoint"),
    (["eval", REPO / "specs" / "sine.bp", "--checkpoint", "RUN"], "checkpoint of another model"),
    (["predict", XOR, "--checkpoint", "RUN", "--data", "NOTNPZ"], "NOTNPZ"),
    (["params", "NOTNPZ"], "is not a readable checkpoint"),
])
def test_look_commands_refuse_without_traceback(xor_run, tmp_path, args, message):
    out, _ = xor_run
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    args = [str(junk) if a == "NOTNPZ" else out if a == "RUN" else a for a in args]
    message = message.replace("NOTNPZ", str(junk))
    r = bpc_cmd(*args, cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and message in r.stderr


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    r = bpc_cmd("train", REPO / "specs" / "sine.bp", "--out", tmp_path, "--epochs", 5,
                "--plot", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert (tmp_path / "fit.png").stat().st_size > 5000


def test_the_lexer_is_registered_without_taking_android_bp():
    from pygments.lexers import find_lexer_class_for_filename, get_lexer_by_name

    from bpc.compiler.frontend.lexer import BpLexer

    assert isinstance(get_lexer_by_name("bpc"), BpLexer)
    assert find_lexer_class_for_filename("specs/xor.bp") is BpLexer
    assert find_lexer_class_for_filename("Android.bp") is not BpLexer


def test_show_colours_only_when_asked_or_on_a_terminal():
    assert "\x1b[" not in bpc_cmd("show", XOR).stdout  # a pipe: plain
    assert "\x1b[" in bpc_cmd("show", XOR, "--color").stdout


def test_the_notebook_runs():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(REPO / "tests" / "notebooks" / "tour.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells)}
    text = lambda i: "".join(o.get("text", "") + str(o.get("data", {})) for o in outputs[i])
    assert "compiled model xor -> xor" in text(2)
    assert "text/html" in text(3)  # the model shows as highlighted code
    assert "<table>" in text(4)  # the history as a table
    assert "IProgress not found" not in text(4)  # a text bar without ipywidgets, no warning
    assert "image/svg+xml" in text(6)
    # the broken cell (tagged raises-exception, so the tour goes on) shows the located
    # message as IPython shows a UsageError: no traceback
    assert text(7).startswith("UsageError: <spec>:3:9: error:") and "Traceback" not in text(7)
    # untagged, the error stops "Run all" at that cell
    del nb.cells[7].metadata["tags"]
    for cell in nb.cells:
        cell.outputs = []
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="UsageError"):
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO)}}).execute()
    assert not nb.cells[8].outputs


def test_no_module_is_imported_under_two_names():
    """bpc's packages live in the folders compiler/ and runtime/ and are imported as
    bpc.compiler and bpc.runtime only; a module loaded both ways would be two copies."""
    code = ("import sys, bpc, bpc.__main__; from bpc import magic; bpc.compile('specs/xor.bp')"
            ".train(epochs=2, quiet=True); "
            "print(sorted(m for m in sys.modules if 'bpc.' + m in sys.modules and m != '__main__'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
