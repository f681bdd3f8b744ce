"""Every point a view takes is checked as bpc train checks its data (issue 22): one
function (runtime/points.py over data.conform), the same checks and the same messages in
trace, graph, explain, stats, gradcheck, train and eval; never a silent wrong point
(t=-1 read as the last class, t=1.5 as 1) nor an internal error (t=5 of 3 classes)."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from conftest import REPO, run_bpc
from bpc.compiler.pipeline import program_from_file
from bpc.runtime.errors import UserError
from bpc.runtime.gradcheck import gradcheck
from bpc.runtime.loader import load_model
from bpc.runtime.points import check_point, contract

ONEHOT_2 = "[" + ",".join(["1", "1"] + ["0"] * 8) + "]"
# (spec, --at, the array train would read, what the message says)
BAD = [
    ("spiral", "x=[0.1,0.2],t=-1", np.array([-1]),
     "'t' holds class labels, which must lie in 0..2 (3 classes), but it has -1"),
    ("spiral", "x=[0.1,0.2],t=1.5", np.array([1.5]),
     "'t' holds class labels, but the values are not whole numbers"),
    ("spiral", "x=[0.1,0.2],t=5", np.array([5]),
     "'t' holds class labels, which must lie in 0..2 (3 classes), but it has 5"),
    ("digits", f"t={ONEHOT_2}", np.array([[1.0, 1] + [0] * 8]),
     "'t' feeds softmax_cross_entropy, so each row must be one-hot or a probability"),
    ("spiral", "x=[0.1,1e999],t=1", None, "'x' has values that are not finite numbers"),
]


@pytest.mark.parametrize("command", ["trace", "graph", "explain"])
@pytest.mark.parametrize("spec,at,_,message", BAD, ids=[b[1] for b in BAD])
def test_views_refuse_a_bad_point_as_train_does(tmp_path, command, spec, at, _, message):
    extra = ["-o", tmp_path / "page.html"] if command == "explain" else []
    r = run_bpc(command, f"specs/{spec}.bp", "--at", at, *extra)
    assert r.returncode == 1, r.stdout[:300]
    assert r.stderr.startswith(f"bpc: error: --at: {message}"), r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize("spec,at,array,message", [b for b in BAD if b[2] is not None],
                         ids=[b[1] for b in BAD if b[2] is not None])
def test_train_and_eval_say_the_same(tmp_path, spec, at, array, message):
    x = np.zeros((len(array), 64 if spec == "digits" else 2))
    np.savez(tmp_path / "d.npz", x=x, t=array)
    r = run_bpc("train", f"specs/{spec}.bp", "--data", tmp_path / "d.npz", "--out",
                tmp_path / "o")
    assert r.returncode == 1 and f"training data (d.npz): {message}" in r.stderr, r.stderr
    # the Python API's view of the same point
    with pytest.raises(UserError) as e:
        check_point(contract(program_from_file(str(REPO / "specs" / f"{spec}.bp"))),
                    {"x": x, "t": array})
    assert e.value.message.startswith(f"--at: {message}")
    with pytest.raises(UserError) as e:
        gradcheck(load_model(REPO / "specs" / f"{spec}.bp", "float64"), data={"x": x, "t": array})
    assert e.value.message.startswith(f"gradcheck's data: {message}")


@pytest.mark.parametrize("spec", sorted((REPO / "specs").glob("*.bp")), ids=lambda p: p.stem)
def test_a_programs_contract_is_its_modules(spec):
    """The contract of the program a module is printed from (the fast style's for the
    gallery: batch norm's closed form keeps less, CONFIG's memory says so) is the
    module's."""
    c = contract(Compilation.from_file(spec).coded)
    m = load_model(REPO / "generated" / f"{spec.stem}.py")
    assert (c.INPUTS, c.TARGETS, c.CONFIG) == (m.INPUTS, m.TARGETS, m.CONFIG)


def test_a_good_point_still_traces():
    r = run_bpc("trace", "specs/spiral.bp", "--at", "x=[0.1,0.2],t=2")
    assert r.returncode == 0 and "t=2" in r.stdout, r.stderr


def test_a_name_given_twice_is_refused():
    r = run_bpc("trace", "specs/toy.bp", "--at", "x=1,x=2")
    assert r.returncode == 1 and "'x' is given twice" in r.stderr


def test_a_parameter_that_is_not_finite_is_refused():
    r = run_bpc("trace", "specs/toy.bp", "--at", "beta0=1e999")
    assert r.returncode == 1
    assert r.stderr.startswith("bpc: error: --at: 'beta0' has values that are not finite")
