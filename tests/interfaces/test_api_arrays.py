"""A first real project, end to end through the API and the command line: training on
arrays in memory and on .npy files, predicting on data without labels (the class and its
probability for a classifier), evaluating, and the warnings a careful reviewer gives."""

import numpy as np
import pytest

from conftest import REPO, run_bpc

import bpc
from bpc.runtime.datasets import spiral as spiral_data
from bpc.runtime.errors import UserError

SPIRAL = REPO / "specs" / "spiral.bp"
SINE = REPO / "specs" / "sine.bp"


@pytest.fixture(scope="module")
def points():
    x, t, _ = spiral_data(np.random.default_rng(0), n=60)
    return x, t


@pytest.fixture(scope="module")
def trained(points):
    model = bpc.compile(SPIRAL)
    x, t = points
    result = model.train(x=x, t=t, epochs=30, quiet=True)
    return model, result


def test_train_on_arrays_then_predict_and_evaluate_without_parameters(trained, points):
    model, result = trained
    x, t = points
    assert result.history[-1]["epoch"] == 30 and result.history[-1]["train_acc"] > 0.6
    raw = model.predict(x)
    np.testing.assert_array_equal(raw, model.predict(result.params, x=x))
    np.testing.assert_array_equal(model.predict(x=x.tolist()), raw)
    proba = model.predict(x, outputs="proba")
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True))
    classes = model.predict(x, outputs="class")
    np.testing.assert_array_equal(classes, raw.argmax(axis=1))
    scores = model.evaluate(x=x, t=t)
    assert scores["examples"] == len(x)
    assert scores["accuracy"] == pytest.approx(np.mean(classes == t))
    assert scores == model.evaluate(data={"x": x, "t": t})


def test_the_same_run_from_a_dict_of_arrays_and_from_npy_files(tmp_path, points):
    x, t = points
    a = bpc.compile(SPIRAL).train(data={"x": x, "t": t}, epochs=3, quiet=True)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    b = bpc.compile(SPIRAL).train(f"{tmp_path}/x.npy,{tmp_path}/t.npy", epochs=3, quiet=True)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_validation_arrays_are_checked_and_reach_the_run(monkeypatch, points):
    from bpc.runtime import train

    x, t = points
    seen = {}

    def capture(module, data, overrides, out, **kw):
        seen["data"] = data
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", capture)
    model = bpc.compile(SPIRAL)
    with pytest.raises(KeyboardInterrupt):
        model.train(x=x[:100], t=t[:100], validation=(x[100:], t[100:]))
    assert seen["data"].validation["x"].shape == (80, 2)
    with pytest.raises(KeyboardInterrupt):
        model.train("spiral:n=20", validation={"x": x[:5], "t": t[:5]})
    assert seen["data"].name == "spiral" and len(seen["data"].validation["t"]) == 5
    with pytest.raises(UserError, match=r"validation data \(arrays\): .* 't' has shape "
                                        r"\(3,\), expected \[N\] with N = 5"):
        model.train(x=x, t=t, validation=(x[:5], t[:3]))
    with pytest.raises(UserError, match="validation= takes held-out arrays"):
        model.train(x=x, t=t, validation="x.npz")


@pytest.mark.parametrize("call, message", [
    (lambda m, x, t: m.train(data={"a": x, "t": t}), "'a' is not an input or target"),
    (lambda m, x, t: m.train(x=x), "has no array for 't'"),
    (lambda m, x, t: m.train(x=x, t=t[:-1]), "'t' has shape (179,), expected [N] with N = 180"),
    (lambda m, x, t: m.train(x=x.astype(str), t=t), "'x' holds <U"),
    (lambda m, x, t: m.train(x=x, t=t, epochs="ten"), "epochs= must be a whole number"),
    (lambda m, x, t: m.train(x=x, t=t, optimizer=["adam"]), "optimizer= must be one of"),
    (lambda m, x, t: m.train({"x": x, "t": t}, x=x), "arrays given both as data= and"),
    (lambda m, x, t: m.train(3), "data must be a --data string"),
    (lambda m, x, t: m.predict(x), "has not been trained"),
    (lambda m, x, t: m.evaluate(x=x, t=t), "has not been trained"),
    (lambda m, x, t: m.predict(x, outputs="labels", params={}), "outputs must be one of"),
    (lambda m, x, t: m.predict({"b2": 1}, x), "no value for the parameter 'W1'"),
    (lambda m, x, t: m.gradcheck(eps=-1), "eps= must be a number > 0"),
])
def test_mistakes_are_errors_naming_the_thing(points, call, message):
    x, t = points
    with pytest.raises(UserError) as e:
        call(bpc.compile(SPIRAL), x, t)
    assert message in e.value.message


def test_classes_need_a_classifier_and_state_is_asked_for():
    sine = bpc.compile(SINE)
    sine.train(epochs=1, quiet=True)
    assert sine.predict([[0.5]]).shape == (1, 1)
    with pytest.raises(UserError, match="outputs='class' needs a classifier"):
        sine.predict([[0.5]], outputs="class")
    bn = bpc.compile(REPO / "specs" / "batchnorm.bp")
    params = bn.init_params(np.random.default_rng(0))
    with pytest.raises(UserError, match="has state .* and none was given"):
        bn.predict(params, np.zeros((2, 64)))
    y = bn.predict(params, np.zeros((2, 64)), state=bn.init_state(), outputs="class")
    assert y.shape == (2,)


def test_a_zero_one_classifier_gives_the_probability_of_class_one():
    xor = bpc.compile(REPO / "specs" / "xor.bp")
    xor.train(epochs=2000, quiet=True)
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    raw = xor.predict(x)  # a sigmoid's output: the probability already
    np.testing.assert_array_equal(xor.predict(x, outputs="proba"), raw)
    np.testing.assert_array_equal(xor.predict(x, outputs="class"), (raw > 0.5).astype(int))


def test_one_line_of_text_is_a_path_only_when_it_names_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line = "input x : scalar; param w = 1.0; loss L = (w * x)^2  # fit.bp"
    assert bpc.compile(one_line).__name__ == "model"
    with pytest.raises(UserError) as e:
        bpc.compile("fit.bp")
    assert e.value.message == "fit.bp: no such file" and "read as a path" in e.value.hint
    (tmp_path / "fit.bp").write_text(one_line.replace("  # fit.bp", "") + "\n")
    assert bpc.compile("fit.bp").path == "fit.bp"


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def files(tmp_path_factory, points):
    folder = tmp_path_factory.mktemp("files")
    x, t = points
    np.save(folder / "x.npy", x)
    np.save(folder / "t.npy", t)
    rows = "\n".join(f"{b:.6g},{a:.6g}" for a, b in x[:4])
    (folder / "unlabeled.csv").write_text("x1,x0\n" + rows + "\n")
    r = run_bpc("train", SPIRAL, "--data", "x.npy,t.npy", "--out", "run", "--epochs", 20,
                "-q", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder


def test_train_on_npy_files_and_predict_on_a_file_without_labels(files, points):
    r = run_bpc("predict", SPIRAL, "--checkpoint", "run", "--data", "unlabeled.csv",
                cwd=files)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "x[0],x[1],y[0],y[1],y[2],class,probability" and len(lines) == 5
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    ckpt = bpc.load_checkpoint(files / "run")
    model = bpc.compile(SPIRAL)
    proba = model.predict(ckpt.params, table[:, :2], outputs="proba")
    np.testing.assert_array_equal(table[:, 5], proba.argmax(axis=1))
    np.testing.assert_allclose(table[:, 6], proba.max(axis=1), rtol=1e-6)
    r = run_bpc("predict", SPIRAL, "--checkpoint", "run", "--data", "x.npy", "--outputs",
                "proba", cwd=files)
    assert r.stdout.splitlines()[0] == "x[0],x[1],proba[0],proba[1],proba[2]"
    assert len(r.stdout.splitlines()) == len(points[0]) + 1


def test_predict_refuses_what_it_cannot_give(files):
    r = run_bpc("predict", SINE, "--checkpoint", "run", "--data", "x.npy", "--outputs", "class",
                cwd=files)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = run_bpc("predict", SPIRAL, "--checkpoint", "run", "--outputs", "labels", cwd=files)
    assert r.returncode == 2 and "'labels' is not one of raw, proba, class" in r.stderr
    r = run_bpc("train", SPIRAL, "--data", "t=x.npy,x=t.npy", "--out", "bad", cwd=files)
    assert r.returncode == 1 and "'x' has shape (180,), but the spec declares [N, 2]" in r.stderr


def test_check_compile_and_train_show_the_reviewer_s_warnings(tmp_path, points):
    spec = tmp_path / "unused.bp"
    spec.write_text(SPIRAL.read_text().replace("model spiral", "model unused").replace(
        "loss L", "param extra : [3] = 0.0\nloss L"))
    r = run_bpc("check", spec)
    assert r.stdout == f"{spec}: ok (1 warning)\n"
    assert f"{spec}:11:1: warning: parameter 'extra' does not affect the loss 'L'" in r.stderr
    r = run_bpc("compile", spec, "-o", tmp_path)
    assert "warning: parameter 'extra'" in r.stderr
    x, t = points
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t % 2)  # two of the three classes
    r = run_bpc("train", spec, "--data", "x.npy,t.npy", "--epochs", 1, "--out", "r", "-q",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: parameter 'extra'" in r.stderr
    assert "warning: training data (x.npy,t.npy): 't' holds labels 0..1, but the model's " \
           "output has 3 classes: class 2 never appears" in r.stderr


def test_the_notebook_trains_from_arrays_predicts_on_a_file_and_plots():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(REPO / "tests" / "notebooks" / "your_own_data.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [c.get("outputs", []) for c in nb.cells]
    text = ["".join(o.get("text", "") + str(o.get("data", {})) for o in out) for out in outputs]
    assert "<table>" in text[2]  # the history, as a table
    assert "'accuracy': " in text[3]
    classes, proba = text[4].split("] [")
    assert len(classes.strip("[ ").split()) == 5 and proba.count(".") == 5
    assert "image/png" in text[5]


def test_labels_that_leave_a_class_unused_are_a_warning_in_the_api_too(capsys, points):
    x, t = points
    bpc.compile(SPIRAL).train(x=x, t=t % 2, epochs=1, quiet=True)
    assert "warning: training data (arrays): 't' holds labels 0..1, but the model's output " \
           "has 3 classes: class 2 never appears" in capsys.readouterr().err
