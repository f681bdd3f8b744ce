"""``bpc stats --data``: the statistics on the first examples of the spec's training data
(as ``bpc train`` loads it) instead of a random batch, through the same statistics; and
the errors a user can cause, reported without a traceback."""

import json
import urllib.error
import urllib.request

import numpy as np

from bpc.cli import main
from bpc.compiler.compilation import Compilation
from bpc.reports.stats import data_batch, layer_stats
from bpc.runtime.data import batch_axes, conform, examples, load
from bpc.runtime.loader import compiled_model
from conftest import run_bpc

MLP = """model mlp
input x : [N, 2]
target t : [N]
layers x -> y {
  dense 8
  tanh
  dense 3
}
loss L = softmax_cross_entropy(y, t)
train { data_seed = 4 }
"""

COPY = """model copy_rnn
input x : [N, T]
target t : [N, T]
layers x -> y {
  embedding 10 4
  rnn 6
  dense 10
}
loss L = softmax_cross_entropy(y, t, ignore=0)
data copy(n=30, steps=2, delay=3)
"""


def _spec(tmp_path, text, data="data spiral(n=20)\n"):
    path = tmp_path / "model.bp"
    path.write_text(text + data)
    return path


def _module(path):
    comp = Compilation.from_file(str(path))
    return comp, compiled_model(comp, comp.path)


def test_data_batch_is_the_first_rows_train_loads(tmp_path):
    """The spec's data line drawn from its data seed (4), conformed, its first rows: the
    statistics differ from the random batch's and match those computed on these rows."""
    comp, module = _module(_spec(tmp_path, MLP))
    feeds, where = data_batch(comp.program, module, 7)
    trained = conform(load(module.CONFIG["data"], module, 4).train, module)
    first = examples(trained, batch_axes(module), slice(0, 7))
    assert set(feeds) == {"x", "t"} and where.startswith("the first 7 examples")
    for name in feeds:
        assert np.array_equal(feeds[name], first[name])
    other_seed = conform(load(module.CONFIG["data"], module, 0).train, module)
    assert not np.array_equal(feeds["x"], other_seed["x"][:7])
    on_data = layer_stats(comp.program, batch=7, feeds=feeds)
    on_random = layer_stats(comp.program, batch=7)
    assert on_data[0]["act_std"] != on_random[0]["act_std"]


def test_a_loop_takes_the_data_sequence_length(tmp_path):
    """The copy task's layout (2 symbols, 3 blanks, a delimiter, the 2 recalled: T = 8),
    whatever ``steps`` says; "last" is still the last step's loss."""
    comp, module = _module(_spec(tmp_path, COPY, ""))
    feeds, _ = data_batch(comp.program, module, 5)
    rows = layer_stats(comp.program, batch=5, steps=20, feeds=feeds)
    timed = [r for r in rows if "grad_norm_per_step" in r]
    assert feeds["x"].shape == (5, 8) and timed
    for r in timed:
        assert len(r["grad_norm_per_step"]) == len(r["last_step_grad_norm_per_step"]) == 8
        assert r["last_step_grad_norm_per_step"][-1] == r["grad_norm_per_step"][-1] > 0


def test_cli_data_flag(tmp_path):
    """``--data`` alone: the spec's data line; the JSON rows are the library's on the
    same rows; ``--data NAME`` takes another data set as ``bpc train --data`` does."""
    path = _spec(tmp_path, MLP)
    r = run_bpc("stats", path, "--data", "--batch", "6")
    assert r.returncode == 0, r.stderr
    assert "first 6 examples of the training data (spiral)" in r.stdout.splitlines()[0]
    r = run_bpc("stats", path, "--data", "--batch", "6", "--json")
    comp, module = _module(path)
    feeds, _ = data_batch(comp.program, module, 6)
    assert json.loads(r.stdout) == layer_stats(comp.program, batch=6, feeds=feeds)
    r = run_bpc("stats", path, "--batch", "6", "--data", "spiral:n=5,classes=3")
    assert r.returncode == 0 and "training data (spiral)" in r.stdout


def test_errors_name_the_problem(tmp_path, monkeypatch, capsys):
    no_data = _spec(tmp_path, MLP, "")
    r = run_bpc("stats", no_data, "--data")
    assert r.returncode == 1 and "no 'data' line" in r.stderr and "Traceback" not in r.stderr
    r = run_bpc("stats", _spec(tmp_path, MLP), "--data", "--batch", "500")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--batch 500: the training data (spiral) has" in r.stderr
    r = run_bpc("stats", _spec(tmp_path, MLP), "--data", "--steps", "4")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--steps and --data exclude each other" in r.stderr
    r = run_bpc("stats", no_data, "--data", "missing.npz")
    assert r.returncode == 1 and "missing.npz" in r.stderr and "Traceback" not in r.stderr
    # a data set to download, offline
    monkeypatch.setenv("BPC_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    mnist = _spec(tmp_path, MLP.replace("[N, 2]", "[N, 784]"), "data mnist\n")
    assert main(["stats", str(mnist), "--data"]) == 1
    assert "could not download mnist.npz" in capsys.readouterr().err


def test_the_python_api_takes_data_and_parameters(tmp_path):
    """``model.stats(data=True)`` is ``bpc stats --data --json``'s rows; ``data=`` a data
    set as ``--data`` takes it; ``params=`` trained parameters in place of the initial
    ones; steps with data, and a data string out of range, are refused by name."""
    import bpc
    import pytest

    from bpc.runtime.errors import UserError

    path = _spec(tmp_path, MLP)
    model = bpc.compile(path)
    r = run_bpc("stats", path, "--data", "--batch", "6", "--json")
    assert model.stats(batch=6, data=True) == json.loads(r.stdout)
    r = run_bpc("stats", path, "--data", "spiral:n=5,classes=3", "--batch", "6", "--json")
    assert model.stats(batch=6, data="spiral:n=5,classes=3") == json.loads(r.stdout)
    trained = model.train(epochs=2, quiet=True).params
    moved = model.stats(batch=6, data=True, params=trained)
    assert moved != model.stats(batch=6, data=True)
    assert moved == layer_stats(model._compilation().program, batch=6, params=trained,
                                feeds=data_batch(model._compilation().program, model, 6)[0])
    with pytest.raises(UserError, match="steps and data exclude each other"):
        model.stats(data=True, steps=4)
    with pytest.raises(UserError, match="data='spiral:classes=1'"):
        model.stats(data="spiral:classes=1")
    with pytest.raises(UserError, match="model.stats"):
        model.stats(params={"W1": np.zeros((2, 8))})
