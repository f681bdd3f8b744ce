"""Accuracy only for a classifier's output (issue 22): the compiler records in CONFIG
which recognised loss ties predict's output to which target (kind, class axis,
threshold); anything else has no accuracy anywhere (history, summary, best epoch,
chance note, plots, bpc eval, the Python API), with one note saying why."""

import csv

import numpy as np
import pytest

from conftest import REPO, run_bpc
from bpc.compiler.pipeline import program_from_file, program_from_text
from bpc.compiler.ir.heads import head
from bpc.runtime import data
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.evaluate import accuracy, no_accuracy_note, task_kind
from bpc.runtime.train import train

# A logistic regression whose loss is written out by hand: predict returns logits, and
# nothing tells the runtime so (it used to threshold them at 0.5, as probabilities).
LOGISTIC = """model logistic
input  x : [N, 2]
target t : [N, 1]
param W : [2, 1] = zeros
param b : [1] = zeros
z = x @ W + b
loss L = mean(softplus(z) - t * z)
data xor
"""
# An autoencoder that declares a target only to take a built-in data set: no loss reads
# it (it used to get an "accuracy" of argmax over the reconstruction).
AUTOENCODER = """model autoenc
input  x : [N, 64]
target t : [N, 10]
layers x -> r {
  dense 8
  relu
  dense 64
}
loss L = mse(r, x)
data digits
"""
# A column-convention classifier: classes along axis 0 of predict's output (it used to
# end in an internal error: argmax along the last axis, the examples).
COLUMNS = """model colclass
input  x : [64, N]
target t : [N]
param W : [10, 64] = normal(std=0.01)
param b : [10, 1] = zeros
output f = W @ x + b
loss L = softmax_cross_entropy(f.T, t)
data digits
"""
# softmax_cross_entropy on logits predict does not return: no accuracy either.
OTHER_OUTPUT = """model other
input  x : [N, 2]
target t : [N]
param W : [2, 3] = zeros
y = x @ W
output q = y * y
loss L = softmax_cross_entropy(y, t)
"""

# DLFS's softmax then cross_entropy_error, with cross_entropy: a classifier too.
SOFTMAX_THEN_CROSS_ENTROPY = """model ce
input  x : [N, 64]
target t : [N, 10]
param W : [64, 10] = zeros
output p = softmax(x @ W)
loss L = cross_entropy(p, t)
data digits
"""

CLASSIFIERS = {"batchnorm", "batchnorm_none", "convnet_digits", "digits", "dropout",
               "dropout_none", "simple_convnet", "spiral", "two_layer", "xor", "mazur", "bigram",
               "dates", "tiny_gpt", "charlm", "addition", "copy_rnn", "copy_lstm",
               "zen_lm"}


def test_the_compiler_says_which_output_predicts_which_target():
    assert head(program_from_text(LOGISTIC)) == (None, (
        "the loss is not one bpc recognises as a classifier's (softmax_cross_entropy, "
        "sigmoid_cross_entropy, cross_entropy of a softmax output, or a squared error of a "
        "sigmoid output and a target)"))
    assert head(program_from_text(AUTOENCODER)) == (None, (
        "target 't' is read by no loss, so no prediction is compared with it"))
    assert head(program_from_text(COLUMNS))[0] == {
        "target": "t", "kind": "labels", "class_axis": 0, "threshold": None, "logits": True}
    assert head(program_from_text(SOFTMAX_THEN_CROSS_ENTROPY))[0] == {
        "target": "t", "kind": "onehot", "class_axis": 1, "target_class_axis": 1,
        "threshold": None, "logits": False}
    assert head(program_from_text(SOFTMAX_THEN_CROSS_ENTROPY.replace(
        "output p = softmax(x @ W)", "output p = softmax(x @ W, axis=0)")))[0] is None
    acc, why = head(program_from_text(OTHER_OUTPUT))
    assert acc is None and why.startswith("predict returns 'q', which is not what "
                                          "softmax_cross_entropy compares")


@pytest.mark.parametrize("spec", sorted((REPO / "specs").glob("*.bp")), ids=lambda p: p.stem)
def test_gallery_classifiers_keep_their_accuracy_and_regressions_stay_quiet(spec):
    acc, why = head(program_from_file(str(spec)))
    assert (acc is not None) == (spec.stem in CLASSIFIERS)
    assert why is None  # nothing in the gallery needs a note
    config = load_model(REPO / "generated" / f"{spec.stem}.py").CONFIG
    assert config.get("accuracy") == acc and "no_accuracy" not in config


def compile_text(tmp_path, name, text):
    path = tmp_path / f"{name}.bp"
    path.write_text(text)
    return load_model(path)


def test_no_accuracy_anywhere_for_a_hand_written_logistic_loss(tmp_path):
    m = compile_text(tmp_path, "logistic", LOGISTIC)
    ds = data.builtin("xor", m, seed=0)
    assert task_kind(m, ds.train) is None
    assert accuracy(m, m.init_params(np.random.default_rng(0)), ds.train,
                    task_kind(m, ds.train)) is None
    logged = []
    result = train(m, ds, Settings.from_module(m, {"epochs": 3}), None, log=logged.append)
    assert all(row["train_acc"] is None for row in result.history)
    assert [line for line in logged if "accuracy" in line] == [
        "note: no accuracy: " + head(program_from_text(LOGISTIC))[1]]
    assert not any("chance" in n for n in result.notes)


def test_binary_targets_that_are_not_0_or_1_have_no_accuracy(tmp_path):
    m = load_model(REPO / "generated" / "mazur.py")
    t = np.array([[0.01, 0.99]])
    assert task_kind(m, {"t": t}) is None
    assert "values other than 0 and 1" in no_accuracy_note(m, {"t": t})
    assert task_kind(m, {"t": np.array([[0.0, 1.0]])}) == ("binary", "t")


def test_a_module_without_the_record_has_no_accuracy(tmp_path):
    m = compile_text(tmp_path, "spiral", (REPO / "specs" / "spiral.bp").read_text())
    del m.CONFIG["accuracy"]
    ds = data.builtin("spiral", m, seed=0, n=20)
    assert task_kind(m, ds.train) is None and no_accuracy_note(m, ds.train) is None


@pytest.mark.parametrize("name,text", [("logistic", LOGISTIC), ("autoenc", AUTOENCODER)])
def test_cli_train_and_eval_report_no_accuracy_and_say_why_once(tmp_path, name, text):
    spec = tmp_path / f"{name}.bp"
    spec.write_text(text)
    r = run_bpc("train", spec, "--epochs", "3", "--eval-every", "1", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("note: no accuracy: ") == 1, r.stdout
    assert "acc" not in r.stdout.replace("no accuracy", "") and "chance" not in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "o" / "history.csv")))
    assert len(rows) == 3 and all(row["train_acc"] == row["test_acc"] == "" for row in rows)
    r = run_bpc("eval", spec, "--checkpoint", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "accuracy" not in r.stdout.replace("no accuracy", "")
    assert r.stdout.count("note: no accuracy: ") == 1


def test_cli_column_classifier_gets_its_accuracy(tmp_path):
    spec = tmp_path / "colclass.bp"
    spec.write_text(COLUMNS)
    r = run_bpc("train", spec, "--epochs", "3", "--out", tmp_path / "o", "--lr", "0.5")
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr and "note: no accuracy" not in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "o" / "history.csv")))
    assert float(rows[-1]["train_acc"]) > 0.5
    r = run_bpc("eval", spec, "--checkpoint", tmp_path / "o")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr


def test_column_softmax_and_cross_entropy_classes_along_axis_0(tmp_path):
    m = compile_text(tmp_path, "cecol", """model cecol
input  x : [64, N]
target t : [10, N]
param W : [10, 64] = zeros
output p = softmax(W @ x, axis=0)
loss L = cross_entropy(p, t)
""")
    assert m.CONFIG["accuracy"] == {"target": "t", "kind": "onehot", "class_axis": 0,
                                    "target_class_axis": 0, "threshold": None,
                                    "logits": False}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=50)
    x, t = np.eye(64)[:, labels * 6], np.eye(10)[:, labels]  # separable: one pixel each
    params = {"W": np.eye(10, 64)[:, [i // 6 if i % 6 == 0 else 63 for i in range(64)]]}
    assert accuracy(m, params, {"x": x, "t": t}, task_kind(m, {"t": t})) == 1.0
    params["W"] = params["W"][::-1]
    assert accuracy(m, params, {"x": x, "t": t}, task_kind(m, {"t": t})) < 0.5


def test_api_history_of_a_non_classifier_has_no_accuracy(tmp_path):
    import bpc

    model = bpc.compile(AUTOENCODER)
    result = model.train(epochs=1, quiet=True)
    assert result.history["train_acc"] == [None] and result.history.best()["train_acc"] is None
