"""No silent wrong result from the data (issue 10): the batch axis wherever the spec puts
it, labels that exist, finite numbers, the threshold the loss implies, sizes from the
arrays the spec names, and data paths relative to the spec."""

import csv
import math
import types

import numpy as np
import pytest

from conftest import REPO, run_bpc
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.evaluate import accuracy, mean_loss, predict_all, task_kind
from bpc.runtime.train import train

# The same two-layer regression net, written with examples as columns and as rows: the
# same parameters, drawn in the same order, so equal data must give equal losses.
COLUMNS = """model col
input  x : [1, N]
target y : [1, N]
param Omega0 : [4, 1] = normal(std=0.5);  param beta0 : [4, 1] = zeros
param Omega1 : [1, 4] = normal(std=0.5);  param beta1 : [1, 1] = zeros
h = tanh(beta0 + Omega0 @ x)
f = beta1 + Omega1 @ h
loss l = mse(f, y)
optimizer adam(lr=0.01)
"""
ROWS = """model row
input  x : [N, 1]
target y : [N, 1]
param Omega0 : [4, 1] = normal(std=0.5);  param beta0 : [4, 1] = zeros
param Omega1 : [1, 4] = normal(std=0.5);  param beta1 : [1, 1] = zeros
h = tanh(beta0.T + x @ Omega0.T)
f = beta1.T + h @ Omega1.T
loss l = mse(f, y)
optimizer adam(lr=0.01)
"""


def compile_text(tmp_path, name, text):
    path = tmp_path / f"{name}.bp"
    path.write_text(text)
    return load_model(path)


def quiet_train(module, dataset, **overrides):
    settings = Settings.from_module(module, overrides)
    return train(module, dataset, settings, None, quiet=True, log=lambda *_: None)


def contract(inputs, targets, defaults=None, config=None):
    """A stand-in module: only the declarations the data side reads."""
    return types.SimpleNamespace(INPUTS=inputs, TARGETS=targets, DEFAULTS=defaults or {},
                                 CONFIG=config or {}, DTYPE=np.float64)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("specs")
    return compile_text(folder, "col", COLUMNS), compile_text(folder, "row", ROWS)


# ----------------------------------------------------------------------------- 1. the batch axis
@pytest.mark.parametrize("inputs,targets,defaults,axes", [
    ({"x": ("N", 2)}, {"t": ("N", 1)}, {}, {"x": 0, "t": 0}),
    ({"x": (1, "N")}, {"y": (1, "N")}, {}, {"x": 1, "y": 1}),
    ({"x": (3, "N", 2)}, {"t": ("N",)}, {}, {"x": 1, "t": 0}),
    ({"x": ("N", "T")}, {"t": ("N", "T")}, {}, {"x": 0, "t": 0}),  # several: the one named N
    ({"x": ("T", "N")}, {"t": ("T", "N")}, {}, {"x": 1, "t": 1}),
    ({"x": ()}, {"y": ()}, {}, {}),  # scalars: the data is one example
    ({"x": ("N", 2)}, {"t": (2,)}, {}, {}),  # a target without N: no batch dimension
    ({"x": ("N", "N")}, {"t": ("N",)}, {}, {}),  # twice in x: not one batch axis
    ({"x": ("N", 2), "w": ()}, {"t": ("N",)}, {"w": 1.0}, {"x": 0, "t": 0}),  # a default
])
def test_batch_axis_is_the_dimension_inputs_and_targets_share(inputs, targets, defaults, axes):
    m = contract(inputs, targets, defaults)
    assert data.batch_axes(m) == axes
    assert data.example_count({k: np.zeros([7 if isinstance(d, str) else d for d in shape])
                               for k, shape in {**inputs, **targets}.items()},
                              axes) == (7 if axes else 1)


def test_data_without_a_batch_dimension_is_one_example_each_step():
    toy = load_model(REPO / "specs" / "toy.bp")  # input x : scalar, target y : scalar
    ds = data.Dataset({"x": np.array(1.0), "y": np.array(0.5)})
    assert ds.size(toy) == 1
    result = quiet_train(toy, ds, epochs=3, batch=4)
    assert result.steps == 3 and float(result.history[-1]["loss"]) >= 0


def test_several_batch_candidates_without_n_is_an_error():
    m = contract({"x": ("B", "T")}, {"t": ("B", "T")})
    with pytest.raises(UserError) as info:
        data.batch_axes(m)
    assert "B and T" in info.value.message and "N" in info.value.hint


@pytest.mark.parametrize("shape,axis", [(("N",), 0), ((1, "N"), 1), ((2, "N"), 1),
                                        ((2, "N", 3), 1), ((2, 3, "N"), 2), (("N", 2), 0)])
def test_arrange_puts_each_example_on_the_batch_axis(shape, axis):
    rows = np.arange(5 * int(np.prod([d for d in shape if d != "N"]))).reshape(
        (5,) + tuple(d for d in shape if d != "N"))
    a = data.arrange(rows, shape, axis)
    assert a.shape == tuple(5 if d == "N" else d for d in shape)
    for i in range(5):
        np.testing.assert_array_equal(np.take(a, i, axis=axis), rows[i])


@pytest.mark.parametrize("name,x,t,x_shape,t_shape", [
    ("sine", ("N",), ("N",), (40,), (40,)),
    ("sine", ("N", 1), (1, "N"), (40, 1), (1, 40)),
    ("xor", (2, "N"), ("N",), (2, 4), (4,)),
    ("xor", ("N", 1, 2), (1, "N"), (4, 1, 2), (1, 4)),
    ("spiral", (2, "N"), ("N",), (2, 24), (24,)),  # integer labels
    ("spiral", ("N", 2), ("N", 3), (24, 2), (24,)),  # labels for one-hot: conform's job
])
def test_builtins_take_the_declared_layout(name, x, t, x_shape, t_shape):
    m = contract({"x": x}, {"t": t})
    kwargs = {"n": 50} if name == "sine" else {"n": 10} if name == "spiral" else {}
    ds = data.builtin(name, m, seed=0, **kwargs)
    assert (ds.train["x"].shape, ds.train["t"].shape) == (x_shape, t_shape)
    rows = data.builtin(name, contract({"x": ("N", 2 if name != "sine" else 1)},
                                       {"t": ("N",) if name == "spiral" else ("N", 1)}),
                        seed=0, **kwargs)
    flat = np.moveaxis(ds.train["x"], x.index("N"), 0).reshape(len(rows.train["x"]), -1)
    np.testing.assert_array_equal(flat, rows.train["x"])  # the same examples, rearranged


def test_batches_slice_the_batch_axis_and_pass_the_rest_whole():
    arrays = {"x": np.arange(20).reshape(2, 10), "t": np.arange(10) * 2, "w": np.ones(3)}
    axes = {"x": 1, "t": 0}
    got = list(data.batches(arrays, 4, np.random.default_rng(0), axes))
    assert [b["x"].shape for b in got] == [(2, 4), (2, 4), (2, 2)]
    assert all(np.array_equal(b["t"], b["x"][0] * 2) for b in got)
    assert all(b["w"] is arrays["w"] for b in got)
    seen = np.concatenate([b["x"][0] for b in got])
    assert sorted(seen.tolist()) == list(range(10))


def column_and_row_data(n=150, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=n)
    return x, np.sin(x) + 0.1 * rng.normal(size=n)


def write_source(kind, folder, model_name):
    """The same data as a file each layout reads: npz in the declared layout, csv rows."""
    x, y = column_and_row_data()
    xt, yt = column_and_row_data(40, seed=2)
    if kind == "npz":
        path = folder / f"{model_name}.npz"
        if model_name == "col":
            np.savez(path, x=x[None, :], y=y[None, :], test_x=xt[None, :], test_y=yt[None, :])
        else:
            np.savez(path, x=x[:, None], y=y[:, None], test_x=xt[:, None], test_y=yt[:, None])
        return {"path": str(path)}
    if kind == "csv":
        path = folder / "rows.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x", "y"])
            w.writerows(zip(x, y))
        return {"path": str(path)}
    return {"name": "sine", "n": 150}


@pytest.mark.parametrize("kind", ["npz", "csv", "builtin"])
def test_column_convention_trains_in_minibatches_like_row_major(kind, pair, tmp_path):
    results = []
    for m, name in zip(pair, ("col", "row")):
        ds = data.load(write_source(kind, tmp_path, name), m, seed=0)
        n = ds.size(m)
        result = quiet_train(m, ds, epochs=3, batch=32)
        results.append((n, result))
    (n_col, col), (n_row, row) = results
    assert n_col == n_row > 32
    assert col.steps == row.steps == 3 * math.ceil(n_col / 32)  # minibatches, not full batch
    for a, b in zip(col.history, row.history):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-9)
        assert (a["test_loss"] is None and b["test_loss"] is None) or \
            float(a["test_loss"]) == pytest.approx(float(b["test_loss"]), rel=1e-9)
    for k in col.params:
        np.testing.assert_allclose(col.params[k], row.params[k], rtol=1e-9, atol=1e-12)


def test_csv_columns_fill_the_declared_layout(tmp_path):
    m = contract({"x": (2, "N")}, {"t": ("N",)})
    path = tmp_path / "d.csv"
    path.write_text("x0,x1,t\n1,2,0\n3,4,1\n5,6,0\n")
    arrays = data.load_file(path, m).train
    np.testing.assert_array_equal(arrays["x"], [[1, 3, 5], [2, 4, 6]])
    np.testing.assert_array_equal(arrays["t"], [0, 1, 0])
    path.write_text("x0,x1,x2,t\n1,2,3,0\n")
    with pytest.raises(UserError, match="the columns for 'x' must be x0 … x1 .*: extra x2"):
        data.load_file(path, m)
    path.write_text("x0,x1,t\n1,2\n")
    with pytest.raises(UserError, match=r"d.csv:2: 2 values, but the header names 3"):
        data.load_file(path, m)
    path.write_text("x0,x1,t\n1,2,0\n1,oops,1\n")
    with pytest.raises(UserError, match=r"d.csv:3: column 'x1' is not a number \('oops'\)"):
        data.load_file(path, m)


def test_evaluation_chunks_along_the_batch_axis(pair):
    col, row = pair
    x, y = column_and_row_data(5000)
    params = col.init_params(np.random.default_rng(0))
    whole = col.predict(params, x[None, :])
    chunked = predict_all(col, params, {"x": x[None, :]}, chunk=700)
    assert chunked.shape == (1, 5000)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    loss = col.loss(params, x[None, :], y[None, :])
    assert mean_loss(col, params, {"x": x[None, :], "y": y[None, :]}, batch=700) == \
        pytest.approx(loss, rel=1e-12)
    assert mean_loss(row, params, {"x": x[:, None], "y": y[:, None]}, batch=700) == \
        pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("loss", ["mse(f, y)", "least_squares(f, y)", "sse(f, y)",
                                  "mean((f - y)^2) + sum(f) * 0 + mean(f)^2"])
def test_evaluated_loss_is_the_loss_over_the_whole_set(tmp_path, loss):
    # Averaging losses, summing losses, and one that is neither (mean(f)^2 couples the
    # examples): chunked evaluation must equal one call on everything.
    m = compile_text(tmp_path, "lossy", COLUMNS.replace("mse(f, y)", loss)
                     .replace("model col", "model lossy"))
    x, y = column_and_row_data(3000)
    params = m.init_params(np.random.default_rng(0))
    arrays = {"x": x[None, :], "y": y[None, :]}
    assert mean_loss(m, params, arrays, batch=1000) == pytest.approx(
        m.loss(params, **arrays), rel=1e-9)


def test_predictions_of_a_model_that_couples_examples_are_not_chunked(tmp_path):
    m = compile_text(tmp_path, "centred", COLUMNS.replace("model col", "model centred")
                     .replace("f = beta1", "g = beta1").replace("loss l = mse(f, y)",
                                                                "output f = g - mean(g)\n"
                                                                "loss l = mse(f, y)"))
    x, _ = column_and_row_data(3000)
    params = m.init_params(np.random.default_rng(0))
    np.testing.assert_allclose(predict_all(m, params, {"x": x[None, :]}, chunk=1000),
                               m.predict(params, x[None, :]), rtol=1e-12)


def test_column_binary_classifier_gets_an_accuracy(tmp_path):
    m = compile_text(tmp_path, "colbin", """model colbin
input  x : [2, N]
target t : [1, N]
param w : [1, 2] = zeros
param b : [1, 1] = zeros
output p = sigmoid(w @ x + b)
loss L = mse(p, t)
""")
    t = np.array([[1.0, 0.0, 1.0, 1.0]])
    assert task_kind(m, {"t": t}) == ("binary", "t")
    params = {"w": np.array([[1.0, 0.0]]), "b": np.zeros((1, 1))}
    x = np.array([[1.0, -1.0, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert accuracy(m, params, {"x": x, "t": t}, ("binary", "t")) == 0.75


def test_cli_trains_a_column_spec_on_a_builtin_in_minibatches(tmp_path):
    spec = tmp_path / "colsine.bp"
    spec.write_text(COLUMNS.replace("model col", "model colsine") + "data sine(n=100)\n")
    r = run_bpc("train", spec, "--epochs", "2", "--batch", "16", "--out", tmp_path / "o",
                "--quiet", "--eval-every", "1")
    assert r.returncode == 0, r.stderr
    assert "(10 steps" in r.stdout  # 80 training examples in batches of 16, twice
    rows = list(csv.DictReader(open(tmp_path / "o" / "history.csv")))
    assert [row["step"] for row in rows] == ["5", "10"] and rows[-1]["test_loss"]


# ----------------------------------------------------------------------------- 2. labels
@pytest.mark.parametrize("labels,shown", [([0, -1, 2], "-1"), ([3, 0, 1], "3"),
                                          ([-2, 7, 0, 7], "-2, 7")])
def test_labels_outside_the_classes_are_errors(labels, shown):
    spiral = load_model(REPO / "specs" / "spiral.bp")  # 3 classes, integer labels
    arrays = {"x": np.zeros((len(labels), 2)), "t": np.array(labels)}
    with pytest.raises(UserError) as info:
        data.conform(arrays, spiral, "training data")
    msg = info.value.message
    assert "training data: 't'" in msg and "0..2" in msg and f"has {shown} (" in msg


@pytest.mark.parametrize("labels", [[0, -1], [10, 1]])
def test_labels_given_for_one_hot_targets_are_checked_too(labels):
    digits = load_model(REPO / "specs" / "digits.bp")  # one-hot [N, 10]
    with pytest.raises(UserError, match=r"'t'.*0\.\.9"):
        data.conform({"x": np.zeros((2, 64)), "t": np.array(labels)}, digits)


def test_rows_that_are_not_one_hot_do_not_become_labels():
    spiral = load_model(REPO / "specs" / "spiral.bp")
    with pytest.raises(UserError, match="not one-hot"):
        data.conform({"x": np.zeros((2, 2)), "t": np.array([[0, 0, 0], [0.2, 0.8, 0]])},
                     spiral)


def test_cli_negative_label_is_named(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 2)), t=np.array([0, 1, -1, 2]))
    r = run_bpc("train", "specs/spiral.bp", "--data", bad, "--out", tmp_path / "o")
    assert r.returncode == 1, r.stdout
    assert "'t'" in r.stderr and "-1" in r.stderr and "0..2" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


# ----------------------------------------------------------------------------- 3. NaN and inf
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", ["x", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_a_data_error_before_training(split, name, bad, pair):
    _, row = pair
    arrays = {"x": np.zeros((6, 1)), "y": np.zeros((6, 1))}
    held = {k: v.copy() for k, v in arrays.items()}
    (arrays if split == "train" else held)[name][4, 0] = bad
    calls = []
    spy = types.SimpleNamespace(**{k: getattr(row, k) for k in dir(row)
                                   if not k.startswith("__")})
    spy.loss_and_grad = lambda *a, **k: calls.append(1) or row.loss_and_grad(*a, **k)
    with pytest.raises(UserError) as info:
        quiet_train(spy, data.Dataset(arrays, held, "d.npz"), epochs=1)
    msg = info.value.message
    where = "training data (d.npz)" if split == "train" else "test data (d.npz)"
    assert msg.startswith(f"{where}: '{name}' has values that are not finite")
    assert "index (4, 0)" in msg and "learning rate" not in msg + (info.value.hint or "")
    assert calls == []  # found before the first step


def test_values_too_large_for_float32_are_named(tmp_path):
    m = compile_text(tmp_path, "small", ROWS.replace("model row", "model small\ndtype float32"))
    with pytest.raises(UserError, match="'x' has values too large for float32"):
        data.conform({"x": np.full((2, 1), 1e39), "y": np.zeros((2, 1))}, m)


def test_cli_nan_in_the_test_split(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((10, 2))
    bad = np.zeros((3, 2))
    bad[1, 1] = np.nan
    np.savez(path, x=x, t=np.zeros(10, dtype=int), test_x=bad, test_t=np.zeros(3, dtype=int))
    r = run_bpc("train", "specs/spiral.bp", "--data", path, "--out", tmp_path / "o")
    assert r.returncode == 1
    assert "test data (d.npz): 'x'" in r.stderr and "NaN" in r.stderr
    assert "diverged" not in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- 4. threshold
SIGMOID_XENT = """model {name}
input  x : [N, 2]
target t : [N, 1]
param W : [2, 1] = zeros
param b : [1] = zeros
z = x @ W + b
{output}
loss L = sigmoid_cross_entropy(z, t)
"""


@pytest.mark.parametrize("output,threshold", [("", 0.0), ("output z", 0.0),
                                              ("output p = sigmoid(z)", 0.5)])
def test_compiler_records_the_threshold_the_loss_implies(tmp_path, output, threshold):
    m = compile_text(tmp_path, "logit", SIGMOID_XENT.format(name="logit", output=output))
    assert m.CONFIG["accuracy"]["threshold"] == threshold


def test_no_sigmoid_cross_entropy_means_probabilities():
    assert load_model(REPO / "specs" / "xor.bp").CONFIG["accuracy"]["threshold"] == 0.5


def binary(threshold):
    return {"accuracy": {"target": "t", "kind": "binary", "class_axis": None,
                         "threshold": threshold}}


@pytest.mark.parametrize("config,expected", [(binary(0.0), 0.75), (binary(None), 0.5),
                                             (binary(0.5), 0.5)])
def test_accuracy_uses_the_recorded_threshold_not_the_range(config, expected):
    # Logits that happen to lie in [0, 1]: a guess from the range would call them
    # probabilities.
    y = np.array([[0.2], [0.7], [0.1], [0.4]])
    m = contract({"x": ("N", 1)}, {"t": ("N", 1)}, config=config)
    m.predict = lambda params, x: y
    arrays = {"x": np.zeros((4, 1)), "t": np.array([[1.0], [1.0], [0.0], [1.0]])}
    assert accuracy(m, {}, arrays, ("binary", "t")) == expected


def test_logistic_regression_accuracy_end_to_end(tmp_path):
    m = compile_text(tmp_path, "logreg", SIGMOID_XENT.format(name="logreg", output=""))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    t = (x[:, :1] + x[:, 1:] > 0).astype(float)
    result = quiet_train(m, data.Dataset({"x": x, "t": t}), epochs=20, batch=20,
                         optimizer="sgd", lr=1.0)
    assert float(result.history[-1]["train_acc"]) >= 0.95


# ----------------------------------------------------------------------------- 5. sizes, dtypes
def test_size_comes_from_the_named_arrays_not_the_first_in_the_file(tmp_path, pair):
    _, row = pair
    path = tmp_path / "d.npz"
    np.savez(path, aaa_notes=np.zeros(7), x=np.zeros((5, 1)), y=np.zeros((5, 1)))
    ds = data.load_file(path, row)
    assert "aaa_notes" not in ds.train and ds.size(row) == 5  # an unnamed array: never read
    result = quiet_train(row, ds, epochs=2, batch=2)
    assert result.steps == 2 * 3


@pytest.mark.parametrize("bad,words", [
    (np.zeros((3, 1), dtype=complex), "complex"),
    (np.array([["a"], ["b"], ["c"]]), "not numbers"),
    (np.array([[1.0], [None], [2.0]], dtype=object), "not numbers"),
    (np.zeros((3, 1), dtype="datetime64[s]"), "not numbers"),
])
def test_arrays_that_are_not_real_numbers_are_named(bad, words, pair):
    _, row = pair
    with pytest.raises(UserError) as info:
        data.conform({"x": bad, "y": np.zeros((3, 1))}, row, "training data")
    assert info.value.message.startswith("training data: 'x' holds") and words in \
        info.value.message


def test_booleans_and_integers_are_numbers(pair):
    _, row = pair
    out = data.conform({"x": np.array([[True], [False]]), "y": np.array([[1], [2]])}, row)
    assert out["x"].dtype == np.float64 and out["y"].tolist() == [[1.0], [2.0]]


# ----------------------------------------------------------------------------- 6. data paths
def test_spec_data_path_is_relative_to_the_spec_not_the_cwd(tmp_path):
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    x, y = column_and_row_data(40)
    np.savez(project / "data" / "d.npz", x=x[:, None], y=y[:, None])
    spec = project / "rel.bp"
    spec.write_text(ROWS.replace("model row", "model rel") + 'data "data/d.npz"\n')
    r = run_bpc("train", spec, "--epochs", "1", "--batch", "10", "--out", "o", "--quiet",
                cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert "(4 steps" in r.stdout
    # From the project folder, with a relative spec path, too.
    r = run_bpc("train", "rel.bp", "--epochs", "1", "--out", elsewhere / "o2", "--quiet",
                cwd=project)
    assert r.returncode == 0, r.stderr


def test_compiled_module_reads_data_from_its_own_folder(tmp_path):
    project, built, elsewhere = tmp_path / "project", tmp_path / "built", tmp_path / "away"
    for d in (project, built, elsewhere):
        d.mkdir()
    spec = project / "relmod.bp"
    spec.write_text(ROWS.replace("model row", "model relmod") + 'data "d.npz"\n')
    r = run_bpc("compile", spec, "-o", built, "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_bpc("train", built / "relmod.py", "--epochs", "1", "--out", "o", cwd=elsewhere)
    assert r.returncode == 1
    assert f"data file {built / 'd.npz'} does not exist" in r.stderr
    assert "module's folder" in r.stderr and "Traceback" not in r.stderr
    x, y = column_and_row_data(30)
    np.savez(built / "d.npz", x=x[:, None], y=y[:, None])
    r = run_bpc("train", built / "relmod.py", "--epochs", "1", "--out", "o", "--quiet",
                cwd=elsewhere)
    assert r.returncode == 0, r.stderr


def test_data_flag_paths_stay_relative_to_the_working_directory(tmp_path):
    x, y = column_and_row_data(30)
    np.savez(tmp_path / "mine.npz", x=x[:, None], y=y[:, None])
    spec = tmp_path / "specs" / "flag.bp"
    spec.parent.mkdir()
    spec.write_text(ROWS.replace("model row", "model flag"))
    r = run_bpc("train", spec, "--data", "mine.npz", "--epochs", "1", "--out", "o",
                "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- 8. hostile files
LABELS = """model lab
input x : [N, 2]
target t : [N]
layers x -> y { dense 3 }
loss L = softmax_cross_entropy(y, t)
"""


def train_on(tmp_path, data_path, spec_text=LABELS):
    spec = tmp_path / "lab.bp"
    spec.write_text(spec_text)
    r = run_bpc("train", spec, "--data", data_path, "--epochs", "1", "-q", "--out",
                tmp_path / "run", "--force", timeout=120)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r


def test_csv_columns_must_be_exactly_the_numbered_ones(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x0,x5,t\n1,2,0\n3,4,1\n")
    r = train_on(tmp_path, path)
    assert r.returncode == 1
    assert f"{path}: the columns for 'x' must be x0 … x1 (one per value of an example of " \
           "[N, 2]): missing x1; extra x5" in r.stderr, r.stderr
    path.write_text("x0,x1,x2,t\n1,2,0,0\n3,4,1,1\n")
    assert "extra x2" in train_on(tmp_path, path).stderr
    path.write_text("x0,x_0,x1,t\n1,2,0,0\n3,4,1,1\n")
    assert "two columns hold value 0 of 'x' ('x0' and 'x_0')" in train_on(tmp_path, path).stderr
    path.write_text("x1,x0,t\n1,2,0\n3,4,1\n")  # any order, each once
    assert train_on(tmp_path, path).returncode == 0


def test_an_out_of_range_label_is_shown_as_read(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 2)), t=np.array([0, 2 ** 64 - 1], dtype=np.uint64))
    r = train_on(tmp_path, path)
    assert r.returncode == 1 and "but it has 18446744073709551615 (1 of 2" in r.stderr, r.stderr
    np.savez(path, x=np.zeros((2, 2)), t=np.array([0.0, 1e30]))
    assert "but it has 1e+30 (1 of 2" in train_on(tmp_path, path).stderr


def _npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def test_an_npz_member_the_spec_does_not_name_is_never_read(tmp_path):
    import zipfile

    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", _npy_bytes(np.zeros((4, 2))))
        zf.writestr("t.npy", _npy_bytes(np.array([0, 1, 2, 1])))
        zf.writestr("junk.npy", b"\x93NUMPY garbage: reading it would fail" * 10)
        zf.writestr("bomb.npy", b"\0" * (50 << 20))  # 50 MB of zeros, 50 KB deflated
    assert path.stat().st_size < 1 << 20
    r = train_on(tmp_path, path)
    assert r.returncode == 0, r.stderr


def test_an_npz_too_large_for_memory_is_refused_before_reading(tmp_path):
    """A member whose zip header declares 8 TB (and whose .npy header agrees): refused
    with the figure, before anything is decompressed."""
    import io
    import zipfile

    path = tmp_path / "d.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                   "shape": (2 ** 40, 2)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", header.getvalue() + b"\0" * 64)
        zf.writestr("t.npy", _npy_bytes(np.array([0, 1])))
        zf.getinfo("x.npy").file_size = len(header.getvalue()) + 2 ** 44
    r = train_on(tmp_path, path)
    assert r.returncode == 1, r.stderr
    assert f"data file {path} is too large to load: its arrays ('x' [1099511627776, 2] " \
           "float64, 't' [2] int64) need about" in r.stderr, r.stderr
    assert "GB of memory, and" in r.stderr and "is available" in r.stderr


def test_damaged_data_files_are_clear_errors_naming_the_file(tmp_path):
    import os

    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.random.default_rng(0).normal(size=(200, 2)),
                        t=np.arange(200) % 3)
    blob = good.read_bytes()
    cases = {"empty.npz": (b"", "is not a readable .npz file (it is empty)"),
             "cut.npz": (blob[: len(blob) // 2], "is not a readable .npz file"),
             "flipped.npz": (blob[:60] + bytes(b ^ 0xFF for b in blob[60:400]) + blob[400:],
                             "is damaged"),
             "array.npz": (_npy_bytes(np.zeros(3)), "is a .npy file (one array) named .npz"),
             "big.csv": (b"x0,x1,t\n" + b"a" * (200 * 1024) + b",2,0\n",
                         ":2: not readable as CSV (field larger than field limit")}
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        r = train_on(tmp_path, path)
        assert r.returncode == 1 and str(path) in r.stderr and words in r.stderr, (name, r.stderr)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    r = train_on(tmp_path, fifo)
    assert r.returncode == 1 and f"{fifo} is not a regular file" in r.stderr, r.stderr


def test_a_csv_that_does_not_fit_in_memory_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    path.write_text("x0,x1,t\n1,2,0\n")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(np, "loadtxt", no_memory)
    with pytest.raises(UserError, match=r"data file .*d\.csv \(.* MB\) does not fit in "
                                        r"memory \(.* available\)"):
        data.load_file(path, load_model(REPO / "generated" / "xor.py"))
