"""Sequences as data: token ids [N, T] for embed and per-token targets, checked before
training (each bad input an error naming the array), in files, in memory and from the
command line."""

import numpy as np
import pytest

from conftest import run_bpc
from bpc.runtime import data
from bpc.runtime.errors import UserError

LM = """\
model lm
input ids : [N, T]
target t : [N, T]
layers ids -> y { embedding 5 5 }
loss L = softmax_cross_entropy(y, t)
train { epochs = 1; batch = 2 }
"""


@pytest.fixture(scope="module")
def lm():
    import bpc

    return bpc.compile(LM)


def test_sequences_of_any_length_conform(lm):
    for steps in (1, 7):
        ids = np.arange(3 * steps).reshape(3, steps) % 5
        arrays = data.conform({"ids": ids, "t": (ids + 1) % 5}, lm)
        assert arrays["ids"].dtype == np.int64 and arrays["ids"].shape == (3, steps)


@pytest.mark.parametrize("ids, message", [
    (np.array([[0, 5, 1]]), r"'ids' holds token ids, which must lie in 0..4 \(the embedding "
                            r"table has 5 rows\), but it has 5 \(1 of 3 ids, the first at "
                            r"index \(0, 1\)\)"),
    (np.array([[0, 1, -2]]), r"'ids' holds token ids, which must lie in 0..4 .* but it has -2"),
    (np.array([[0.0, 1.5, 2.0]]), r"'ids' holds token ids, which must be whole numbers, but "
                                  r"it has 1.5 at index \(0, 1\)"),
    (np.zeros((1, 0), dtype=int), r"'ids' has shape \(1, 0\): its dimension T \(axis 1\) is 0"),
    ([[0, 1, 2], [3]], r"'ids' is not an array of numbers \(expected \[N, T\]\): its rows have "
                       r"different lengths \(ragged\)"),
])
def test_bad_ids_are_errors_naming_the_array(lm, ids, message):
    t = np.zeros((1, 3), dtype=int)
    with pytest.raises(UserError, match=message):
        data.conform({"ids": ids, "t": t}, lm, "training data")


def test_the_command_line_names_the_bad_id(tmp_path):
    spec = tmp_path / "lm.bp"
    spec.write_text(LM)
    ok = {"ids": np.array([[0, 1], [2, 3]]), "t": np.array([[1, 2], [3, 4]])}
    np.savez(tmp_path / "ok.npz", **ok)
    assert run_bpc("train", spec, "--data", tmp_path / "ok.npz", "--out",
                   tmp_path / "run").returncode == 0
    np.savez(tmp_path / "bad.npz", ids=np.array([[0, 1], [9, 3]]), t=ok["t"])
    bad = run_bpc("train", spec, "--data", tmp_path / "bad.npz", "--out", tmp_path / "r2")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "'ids' holds token ids, which must lie in 0..4" in bad.stderr
    assert "but it has 9" in bad.stderr


def test_accuracy_per_token_leaves_the_padding_id_out():
    import bpc
    from bpc.runtime.evaluate import accuracy, chance_accuracy, task_kind

    padded = bpc.compile(LM.replace("(y, t)", "(y, t, ignore=0)"))
    ids = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    t = ids.copy()  # the table below predicts each id itself
    t[:, -1] = 0  # padding, which it never predicts
    table = {"E1": 10.0 * np.eye(5)}
    arrays = {"ids": ids, "t": t}
    assert padded.CONFIG["accuracy"]["ignore"] == 0 and padded.CONFIG["perplexity"]
    assert accuracy(padded, table, arrays, task_kind(padded, arrays)) == 1.0
    plain = bpc.compile(LM)
    assert accuracy(plain, table, arrays, task_kind(plain, arrays)) == 0.75  # per token
    assert chance_accuracy(task_kind(padded, arrays), arrays, padded) == 2 / 6


def test_a_language_model_reports_its_perplexity(tmp_path):
    from bpc.runtime.history import summary_line

    row = {"epoch": 1, "loss": np.log(4.0), "test_loss": 0.0, "seconds": 0.5}
    assert "loss 1.3863 (ppl 4)  test_loss 0.0000 (ppl 1)" in summary_line(row, 1, True)
    assert "ppl" not in summary_line(row, 1)
    spec = tmp_path / "lm.bp"
    spec.write_text(LM)
    ids = np.array([[0, 1, 2], [2, 3, 4]])
    np.savez(tmp_path / "d.npz", ids=ids, t=(ids + 1) % 5)
    run = run_bpc("train", spec, "--data", tmp_path / "d.npz", "--out", tmp_path / "run")
    assert run.returncode == 0 and "(ppl " in run.stdout
    ev = run_bpc("eval", spec, "--checkpoint", tmp_path / "run" / "checkpoint.npz", "--data",
                 tmp_path / "d.npz")
    assert ev.returncode == 0 and "perplexity " in ev.stdout
