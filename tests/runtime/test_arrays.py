"""Arrays given in memory and the files people have: .npy files, CSV columns in any order,
inputs with defaults left out, files without targets to predict on, and the warnings
about labels that do not match the model's classes."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.runtime import in_memory
from bpc.runtime.conform import label_warnings
from bpc.runtime.data import load, parse_data_flag
from bpc.runtime.errors import UserError

SPIRAL = """model spiral
input  x : [N, 2]
target t : [N]
layers x -> y { dense 8; relu; dense 3 }
loss L = softmax_cross_entropy(y, t)
"""
DEFAULTED = """model scaled
input x : [N, 2]
input gain = 2.0
target t : [N, 1]
param W : [2, 1] = 0.5
y = gain * (x @ W)
loss L = mse(y, t)
"""
COLUMNS = """model columns
input x : [2, N]
target t : [1, N]
param W : [1, 2] = 0.5
y = W @ x
loss L = mse(y, t)
"""


def model(text):
    return Compilation.from_text(text, "<test>").new_module()


@pytest.fixture(scope="module")
def spiral():
    return model(SPIRAL)


def test_arrays_by_name_or_in_order(spiral):
    x, t = np.zeros((4, 2)), np.array([0, 1, 2, 0])
    by_name = in_memory.checked(spiral, {"x": x.tolist(), "t": t}, "data")
    in_order = in_memory.checked(spiral, (x, t), "data")
    assert by_name.keys() == in_order.keys() == {"x", "t"}
    assert by_name["t"].dtype == np.int64 and by_name["x"].dtype == spiral.DTYPE
    only_inputs = in_memory.checked(spiral, {"x": x}, "data", targets=False)
    assert list(only_inputs) == ["x"]


@pytest.mark.parametrize("given, message", [
    ({"x": np.zeros((4, 3)), "t": np.zeros(4, int)},
     "'x' has 3 at axis 1, but the spec declares 2 there (shape (4, 3), expected [N, 2]"),
    ({"x": np.zeros((4, 2)), "t": np.zeros(3, int)},
     "'t' has shape (3,), expected [N] with N = 4 (from 'x')"),
    ({"x": np.zeros((4, 2))}, "has no array for 't'"),
    ({"x": np.zeros((4, 2)), "t": np.zeros(4, int), "y": 1}, "'y' is not an input or target"),
    ({"x": [[1, 2], [3]], "t": [0, 1]}, "'x' is not an array of numbers (expected [N, 2])"),
    ({"x": None, "t": [0]}, "'x' is None, not an array (expected [N, 2])"),
    ({"x": [["a", "b"]], "t": [0]}, "'x' holds <U1 values, not numbers"),
    ({"x": [[object(), 1]], "t": [0]}, "'x' holds Python objects, not numbers"),
    ({"x": [[np.nan, 1.0]], "t": [0]}, "'x' has values that are not finite numbers"),
    ({"x": np.zeros((2, 2)), "t": [0, 3]}, "must lie in 0..2 (3 classes), but it has 3"),
    ({"x": np.zeros((2, 2)), "t": np.eye(5)[[0, 1]]},
     "'t' is given as one-hot rows of 5 values, but the model's output has 3 classes"),
    ((np.zeros((2, 2)), [0, 1], [0, 1]), "3 arrays, but the model takes 2 (x, t"),
    ({1: np.zeros((2, 2))}, "1 is not an input or target"),
    ("x.npy", "expected arrays by name"),
])
def test_every_problem_names_the_array_and_the_shape_expected(spiral, given, message):
    with pytest.raises(UserError) as e:
        in_memory.checked(spiral, given, "data")
    assert message in e.value.message


def test_parameters_are_checked_against_the_model(spiral):
    rng = np.random.default_rng(0)
    params = spiral.init_params(rng)
    assert in_memory.checked_params(spiral, params, "p").keys() == params.keys()
    with pytest.raises(UserError, match="no value for the parameter 'W1'"):
        in_memory.checked_params(spiral, {k: v for k, v in params.items() if k != "W1"}, "p")
    with pytest.raises(UserError, match=r"'b1' has shape \(3,\), but the model declares \[8\]"):
        in_memory.checked_params(spiral, {**params, "b1": np.zeros(3)}, "p")
    with pytest.raises(UserError, match="must be a dict of arrays"):
        in_memory.checked_params(spiral, [1, 2], "p")


def test_npy_files_by_order_or_by_name(tmp_path, spiral, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("inputs.npy", np.ones((5, 2)))
    np.save("labels.npy", np.arange(5) % 3)
    assert parse_data_flag("inputs.npy,labels.npy") == {
        "npy": [[None, "inputs.npy"], [None, "labels.npy"]]}
    assert parse_data_flag("t=labels.npy,x=inputs.npy")["npy"][0] == ["t", "labels.npy"]
    assert parse_data_flag("a.npz") == {"path": "a.npz"}
    for flag in ("inputs.npy,labels.npy", "t=labels.npy,x=inputs.npy", "t=labels.npy,inputs.npy"):
        data = load(flag, spiral).train
        assert data["x"].shape == (5, 2) and list(data["t"]) == [0, 1, 2, 0, 1]
    only_x = load("inputs.npy", spiral, targets=False).train
    assert list(only_x) == ["x"]
    with pytest.raises(UserError, match="3 .npy files, but the model takes 2 arrays"):
        load("inputs.npy,labels.npy,labels.npy", spiral)
    with pytest.raises(UserError, match="'q' is not an input or target"):
        load("q=inputs.npy,labels.npy", spiral)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(UserError, match="bad.npy is not a readable .npy file"):
        load("bad.npy,labels.npy", spiral)
    np.save("objects.npy", np.array([{}, 1], dtype=object))
    with pytest.raises(UserError, match="objects.npy is not a readable .npy file"):
        load("objects.npy,labels.npy", spiral)


def test_csv_columns_in_any_order_and_without_targets(tmp_path, spiral):
    (tmp_path / "d.csv").write_text("t,x1,x0\n2,0.5,0.25\n0,1.5,1.25\n")
    data = load(str(tmp_path / "d.csv"), spiral).train
    np.testing.assert_array_equal(data["x"], [[0.25, 0.5], [1.25, 1.5]])
    (tmp_path / "u.csv").write_text("x1,x0\n0.5,0.25\n")
    assert list(load(str(tmp_path / "u.csv"), spiral, targets=False).train) == ["x"]
    with pytest.raises(UserError, match="has no column for 't'"):
        load(str(tmp_path / "u.csv"), spiral)


def test_an_input_with_a_default_may_be_left_out_of_a_csv(tmp_path):
    m = model(DEFAULTED)
    (tmp_path / "d.csv").write_text("x0,x1,t\n1,2,3\n4,5,6\n")
    data = load(str(tmp_path / "d.csv"), m).train
    assert set(data) == {"x", "t"}
    from bpc.runtime.train import run

    result, _, _ = run(m, str(tmp_path / "d.csv"), {"epochs": 2}, quiet=True)
    assert result.history[-1]["epoch"] == 2  # trained with gain = 2.0, its default


def test_arrays_follow_the_declared_layout(tmp_path):
    m = model(COLUMNS)
    data = in_memory.checked(m, {"x": np.zeros((2, 5)), "t": np.zeros((1, 5))}, "data")
    assert data["x"].shape == (2, 5)
    (tmp_path / "c.csv").write_text("x1,t,x0\n1,2,3\n4,5,6\n")
    data = load(str(tmp_path / "c.csv"), m).train
    np.testing.assert_array_equal(data["x"], [[3, 6], [1, 4]])


def test_labels_that_leave_classes_unused_are_a_warning(spiral):
    warn = label_warnings(spiral, {"t": np.arange(30) % 2}, "training data (d)")
    assert warn == ["warning: training data (d): 't' holds labels 0..1, but the model's "
                    "output has 3 classes: class 2 never appears"]
    from_one = label_warnings(spiral, {"t": np.arange(30) % 2 + 1}, "d")
    assert "class 0 never appears (labels count classes from 0)" in from_one[0]
    assert label_warnings(spiral, {"t": np.arange(30) % 3}, "d") == []
    assert label_warnings(spiral, {"t": np.arange(6) % 2}, "d") == []  # too few to tell
    assert label_warnings(spiral, {"t": np.eye(3)[np.arange(30) % 2]}, "d") == []  # rows


def test_targets_of_a_zero_one_prediction_outside_zero_one_are_a_warning():
    m = model("""model b
input x : [N, 2]
target t : [N, 1]
param W : [2, 1] = 0.0
z = x @ W
loss L = sigmoid_cross_entropy(z, t)
""")
    warn = label_warnings(m, {"t": np.array([[0.0], [1.0], [2.0]])}, "d")
    assert warn == ["warning: d: 't' is the target of a 0/1 prediction (one output, a "
                    "sigmoid's), but holds 2 (1 of 3 values outside 0..1)"]
    assert label_warnings(m, {"t": np.array([[0.0], [0.3], [1.0]])}, "d") == []


def test_sequences_longer_than_the_table_of_positions_are_refused():
    """A learned table of positions bounds T: longer data is an error naming both, and the
    random data of gradcheck, stats and explain has at most that many steps."""
    from bpc.runtime.datasets import synthetic

    module = model("model pos\ninput x : [N, T, 3]\ntarget t : [N]\n"
                   "layers x -> y { posenc learned 5; pool mean; dense 2 }\n"
                   "loss L = softmax_cross_entropy(y, t)\n")
    assert module.CONFIG["at_most"] == {"T": [5, "pe1_table"]}
    fits = in_memory.checked(module, {"x": np.zeros((2, 5, 3)), "t": [0, 1]}, "data")
    assert fits["x"].shape == (2, 5, 3)
    with pytest.raises(UserError) as e:
        in_memory.checked(module, {"x": np.zeros((2, 6, 3)), "t": [0, 1]}, "data")
    assert "'x' has 6 steps (T, axis 1), but the table of positions 'pe1_table' holds 5" \
        in e.value.message
    assert synthetic(module, np.random.default_rng(0), 100)["x"].shape == (100, 5, 3)
