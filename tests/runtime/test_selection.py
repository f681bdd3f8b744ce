"""Validation, early stopping, the best checkpoint, an honest history and run folders
that are not overwritten: through ``train``, the Python API and the command line (in a
subprocess, as a user runs it), and a kill-and-resume of a run that stops early."""

import csv
import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

import bpc
from conftest import REPO, run_bpc
from resume_runs import (FIRST_STEP, assert_same, default_sigint,  # noqa: F401 - a fixture
                         distinct_points, finish, run, state)
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.history import History, best_row
from bpc.runtime.loader import load_model
from bpc.runtime.settings import METRICS, Settings
from bpc.runtime.train import train

SPIRAL = REPO / "specs" / "spiral.bp"
POINTS = int(os.environ.get("BPC_KILL_POINTS", "3"))
# 90 spiral points, a quarter held out: 72 to train on in batches of 16 (5 steps an
# epoch), 18 to validate on. Adam at 0.2 overshoots: val_loss is lowest at epoch 9 and
# the run stops at epoch 11 of 12 (patience 2), the parameters of epoch 9 restored.
STOPPING = dict(epochs=12, batch=16, seed=0, eval_every=1, optimizer="adam",
                opt={"lr": 0.2}, validation=0.25, early_stop="val_loss", patience=2,
                keep="best")


def spiral():
    m = load_model(REPO / "generated" / "spiral.py")
    return m, data.builtin("spiral", m, seed=0, n=30, classes=3)


def quiet_train(*args, **kwargs):
    return train(*args, quiet=True, log=lambda *_: None, **kwargs)


def stop_epoch(values: list, patience: int, min_delta: float = 0.0) -> int | None:
    """Where Keras' EarlyStopping stops on ``values`` (one per epoch, low is better):
    the first epoch ``patience`` epochs after the last improvement by more than
    ``min_delta``; None when it never stops."""
    best, wait = None, 0
    for epoch, v in enumerate(values, 1):
        if best is None or v < best - min_delta:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None


# ----------------------------------------------------------------------------- history
def test_every_epoch_has_a_row_and_the_cadence_changes_only_the_measures(tmp_path):
    m, ds = spiral()
    rows = {}
    for every in (1, 3):
        settings = Settings(epochs=7, batch=16, seed=0, eval_every=every, optimizer="adam",
                            opt={"lr": 0.05})
        rows[every] = History(quiet_train(m, ds, settings, tmp_path / str(every)).history)
        assert rows[every]["epoch"] == list(range(1, 8))
        measured = [r["epoch"] for r in rows[every] if r["test_acc"] is not None]
        assert measured == ([1, 2, 3, 4, 5, 6, 7] if every == 1 else [3, 6, 7])
    # the loss is each epoch's mean training loss, whatever the cadence
    assert rows[1]["loss"] == rows[3]["loss"]
    every_row = (tmp_path / "3" / "history.csv").read_text().splitlines()
    assert len(every_row) == 8 and every_row[1].split(",")[3] == ""


def test_the_loss_is_the_mean_of_the_epochs_steps():
    m, ds = spiral()
    settings = Settings(epochs=2, batch=16, seed=0, eval_every=2, optimizer="sgd",
                        opt={"lr": 0.1})
    result = quiet_train(m, ds, settings, None)
    # The same two epochs, step by step: each batch's loss weighted by its examples.
    rng = np.random.default_rng(0)
    params = {k: np.array(v) for k, v in m.init_params(rng).items()}
    arrays = data.conform(ds.train, m, "train")
    n, means = len(arrays["x"]), []
    for _ in range(2):
        order, total = rng.permutation(n), 0.0
        for i in range(0, n, 16):
            b = {k: v[order[i:i + 16]] for k, v in arrays.items()}
            value, grads = m.loss_and_grad(params, **b)
            params = {k: params[k] - 0.1 * grads[k] for k in params}
            total += value * len(b["x"])
        means.append(total / n)
    np.testing.assert_allclose(History(result.history)["loss"], means, rtol=1e-6)


def test_the_best_row_breaks_ties_by_the_lower_loss_then_the_later_epoch():
    rows = [{"epoch": 1, "loss": 0.5, "val_loss": 0.2}, {"epoch": 2, "loss": 0.4},
            {"epoch": 3, "loss": 0.3, "val_loss": 0.2, "train_acc": 1.0},
            {"epoch": 4, "loss": 0.3, "val_loss": 0.2, "train_acc": 1.0},
            {"epoch": 5, "loss": 0.1, "val_loss": 0.25}]
    assert best_row(rows)["epoch"] == 4  # val_loss first; of equals, lower loss, later
    assert best_row(rows, "train_acc")["epoch"] == 4
    assert best_row(rows, "loss")["epoch"] == 5
    assert best_row([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.5}])["epoch"] == 2


# ----------------------------------------------------------------------------- validation
def test_the_data_seed_draws_the_splits_and_the_seed_does_not(tmp_path):
    model, runs = bpc.load(REPO / "generated" / "spiral.py"), {}
    for seed, data_seed in ((0, 0), (1, 0), (0, 1)):
        out = tmp_path / f"{seed}-{data_seed}"
        model.train("spiral:n=30", epochs=1, seed=seed, data_seed=data_seed,
                        validation=0.2, out=out, quiet=True)
        runs[seed, data_seed] = json.loads(str(np.load(out / "checkpoint.npz")["meta"]))["run"]
    same, other_seed, other_data = runs[0, 0], runs[1, 0], runs[0, 1]
    for key in ("data", "val_data", "test_data"):
        assert same[key] == other_seed[key]  # a seed sweep keeps its data
        assert same[key] != other_data[key]


def test_validation_is_a_spec_setting_and_a_flag(tmp_path):
    spec = tmp_path / "s.bp"
    spec.write_text(SPIRAL.read_text().replace("seed = 0", "seed = 0; validation = 0.25; "
                                               "data_seed = 2"))
    r = run_bpc("train", spec, "--epochs", "2", "--out", tmp_path / "a", "--eval-every", "1")
    assert r.returncode == 0, r.stderr
    assert "180 training examples, 60 validation, 60 test" in r.stdout
    assert "val_loss" in r.stdout and "val_acc" in r.stdout
    spec.write_text(SPIRAL.read_text().replace("seed = 0", "seed = 0; validation = 1"))
    r = run_bpc("check", spec)
    assert r.returncode == 1 and "'validation' must be a number in [0, 1), not 1" in r.stderr
    r = run_bpc("train", SPIRAL, "--validation", "1.5", "--out", tmp_path / "b")
    assert r.returncode == 2 and "--validation: must be a number in [0, 1)" in r.stderr


def test_eval_splits_the_data_as_the_run_did(tmp_path):
    """bpc eval's train split is what the run trained on, and its validation split the
    examples it validated on: the same numbers as the run's last history row."""
    out = tmp_path / "run"
    r = run_bpc("train", SPIRAL, "--epochs", "3", "--validation", "0.2", "--data-seed", "4",
                "--eval-every", "1", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    with open(out / "history.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    said = {}
    for split in ("train", "validation"):
        r = run_bpc("eval", SPIRAL, "--checkpoint", out, "--split", split)
        assert r.returncode == 0, r.stderr
        said[split] = r.stdout
    assert "192 examples" in said["train"] and "48 examples" in said["validation"]
    assert f"{float(row['val_acc']):.2%}" in said["validation"]
    assert f"{float(row['train_acc']):.2%}" in said["train"]
    r = run_bpc("train", SPIRAL, "--epochs", "1", "--out", tmp_path / "plain", "-q")
    r = run_bpc("eval", SPIRAL, "--checkpoint", tmp_path / "plain", "--split", "validation")
    assert r.returncode == 1 and "held no validation data out" in r.stderr


def test_validation_problems_are_reported(tmp_path):
    m, ds = spiral()
    tiny = Settings(epochs=1, validation=0.001)
    with pytest.raises(UserError, match="holds out 0"):
        quiet_train(m, ds, tiny, None)
    with pytest.raises(UserError, match="cannot watch val_loss: the run has no validation"):
        quiet_train(m, ds, Settings(epochs=1, early_stop="val_loss"), None)
    given = data.Dataset(ds.train, ds.test, "spiral", validation=ds.test)
    with pytest.raises(UserError, match="validation data is given twice"):
        quiet_train(m, given, Settings(epochs=1, validation=0.1), None)
    result = quiet_train(m, given, Settings(epochs=1), None)  # arrays given: validated on
    assert History(result.history)[-1]["val_loss"] is not None
    with pytest.raises(UserError, match="not a measure in the history"):
        Settings.from_module(m, {"early_stop": "lr"})


# ----------------------------------------------------------------------------- stopping
def test_early_stopping_is_keras_with_restore_best_weights(tmp_path):
    m, ds = spiral()
    result = quiet_train(m, ds, Settings(**STOPPING), tmp_path)
    history = History(result.history)
    val = history["val_loss"]
    assert result.epochs == stop_epoch(val, 2) < 12 and result.stopped
    best = best_row(history, "val_loss")
    assert best["val_loss"] == min(val)
    with np.load(tmp_path / "best.npz") as f:
        meta = json.loads(str(f["meta"]))
        assert meta["epoch"] == best["epoch"] and meta["metric"] == "val_loss"
        for k, v in result.params.items():  # the restored parameters are the best epoch's
            np.testing.assert_array_equal(f[f"param/{k}"], v)
    with np.load(tmp_path / "checkpoint.npz") as f:  # the last epoch's stay there
        assert not np.array_equal(f["param/W1"], result.params["W1"])
        np.testing.assert_array_equal(f["best/W1"], result.params["W1"])
    # min_delta: an improvement smaller than it does not count
    loose = quiet_train(m, ds, Settings(**{**STOPPING, "min_delta": 0.1}), None)
    assert loose.epochs == stop_epoch(History(loose.history)["val_loss"], 2, 0.1)


def test_keep_best_alone_trains_to_the_end_and_keeps_the_best_epoch(tmp_path):
    m, ds = spiral()
    settings = Settings(**{**STOPPING, "early_stop": None, "epochs": 11})
    result = quiet_train(m, ds, settings, tmp_path)
    assert result.epochs == 11 and result.stopped is None
    best = best_row(result.history, "val_loss")
    assert best["epoch"] < 11  # the last is not the best: best.npz is not checkpoint.npz
    with np.load(tmp_path / "best.npz") as f, np.load(tmp_path / "checkpoint.npz") as last:
        assert json.loads(str(f["meta"]))["epoch"] == best["epoch"]
        np.testing.assert_array_equal(last["param/W1"], result.params["W1"])
        assert not np.array_equal(f["param/W1"], result.params["W1"])


def test_a_stopped_run_resumes_to_nothing_and_keeps_its_best(tmp_path):
    m, ds = spiral()
    quiet_train(m, ds, Settings(**STOPPING), tmp_path)
    before = state(tmp_path)
    said = []
    train(m, ds, Settings(**{**STOPPING, "epochs": 20}), tmp_path, resume=True,
          log=said.append)
    assert any("nothing to do: the run stopped early at epoch 11" in s for s in said)
    assert_same(state(tmp_path), before, "resumed after its stop", [True] * 11)
    with pytest.raises(UserError, match="the metric --early-stop/--keep best watch was "
                                        "val_loss, now loss"):
        quiet_train(m, ds, Settings(**{**STOPPING, "early_stop": "loss"}), tmp_path,
                    resume=True)


@pytest.fixture(scope="module")
def stopping_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    m, ds = spiral()
    events, stopped = run(m, ds, Settings(**STOPPING), out, interrupt_at=-1)
    assert not stopped
    return events, state(out), events - FIRST_STEP["at"] + 1


def test_sigint_anywhere_in_a_run_that_stops_early_resumes_exactly(stopping_reference,
                                                                    tmp_path, default_sigint):
    events, reference, _ = stopping_reference
    m, ds = spiral()
    stopped = 0
    for k in distinct_points(random.Random("select-int"), events, POINTS):
        out = tmp_path / f"at{k}"
        stopped += run(m, ds, Settings(**STOPPING), out, interrupt_at=k)[1]
        finish(m, ds, Settings(**STOPPING), out)
        assert_same(state(out), reference, f"SIGINT at event {k} of {events}", [True] * 11)
    assert stopped, "no point stopped a run"


KILLED = """
import os, signal, sys
from bpc.runtime import data
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.train import train
out, kill_at = sys.argv[1], int(sys.argv[2])
m = load_model(os.path.join({repo!r}, "generated", "spiral.py"))
ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
count, started = 0, False
def hook(frame, event, arg):
    global count, started
    started = started or event == "call" and frame.f_code.co_name == "loss_and_grad"
    if started:
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(hook)
train(m, ds, Settings(**{settings!r}), out, quiet=True, log=lambda *_: None,
      checkpoint_every=0)
"""


def test_sigkill_anywhere_in_a_run_that_stops_early_resumes_exactly(stopping_reference,
                                                                     tmp_path):
    _, reference, events = stopping_reference
    m, ds = spiral()
    script = KILLED.format(repo=str(REPO), settings=STOPPING)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for k in distinct_points(random.Random("select-kill"), events, max(1, POINTS // 2 + 1)):
        out = tmp_path / f"at{k}"
        r = subprocess.run([sys.executable, "-c", script, str(out), str(k)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, -signal.SIGKILL), r.stderr
        finish(m, ds, Settings(**STOPPING), out)
        assert_same(state(out), reference, f"SIGKILL at event {k} of {events}", [True] * 11)


# ----------------------------------------------------------------------------- the CLI
def test_cli_validation_early_stop_keep_best_eval_and_plot(tmp_path):
    out = tmp_path / "run"
    r = run_bpc("train", SPIRAL, "--data", "spiral:n=30", "--validation", "0.25",
                "--batch", "16", "--lr", "0.2", "--epochs", "12", "--early-stop",
                "--patience", "2", "--eval-every", "1", "--out", out, "-q")  # keeps best
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("stopped early at epoch 11: val_loss has not improved for 2 "
                               "epochs (since epoch 9")
    assert lines[2].startswith("best: epoch 9/11") and lines[2].endswith("best.npz)")
    r = run_bpc("eval", SPIRAL, "--checkpoint", out / "best.npz", "--data", "spiral:n=30")
    assert r.returncode == 0 and "test split of spiral" in r.stdout, r.stderr
    r = run_bpc("plot", out, "-o", tmp_path / "curves.png")
    assert r.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 0, r.stderr


def test_cli_plot_draws_a_run_of_the_default_cadence(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    from matplotlib import pyplot as plt

    r = run_bpc("train", SPIRAL, "--epochs", "40", "--out", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(rows) == 41 and sum(bool(x.split(",")[4]) for x in rows[1:]) < 40
    from bpc.runtime.plots import plot_runs, run_history

    drawn = []
    real_close = plt.close
    plt.close = lambda fig: drawn.append(fig) or real_close(fig)
    try:
        plot_runs([run_history(tmp_path / "run")], tmp_path / "c.png")
    finally:
        plt.close = real_close
    lines = {line.get_label(): line.get_xdata() for ax in drawn[0].axes
             for line in ax.get_lines()}  # labelled "run train loss", ...
    assert list(lines["run train loss"]) == list(range(1, 41))  # every epoch
    assert len(lines["run test loss"]) == len(lines["run test accuracy"]) >= 2  # joined


def test_a_run_folder_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    args = ("train", SPIRAL, "--epochs", "1", "--out", out, "-q")
    assert run_bpc(*args).returncode == 0
    first = (out / "checkpoint.npz").read_bytes()
    r = run_bpc(*args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{out} holds a run already" in r.stderr and "--force" in r.stderr
    assert (out / "checkpoint.npz").read_bytes() == first
    assert run_bpc(*args, "--resume").returncode == 0
    assert run_bpc(*args, "--force").returncode == 0
    model = bpc.compile(SPIRAL)
    with pytest.raises(UserError, match="holds a run already"):
        model.train(epochs=1, out=out, quiet=True)
    model.train(epochs=1, out=out, quiet=True, force=True)


def test_every_metric_flag_is_a_history_column():
    from bpc.runtime.history import HISTORY_FIELDS

    assert set(METRICS) < set(HISTORY_FIELDS)


def test_a_checkpoint_with_the_older_columns_resumes_and_loads(tmp_path):
    from bpc.runtime.history import OLD_FIELDS, HISTORY_FIELDS

    m, ds = spiral()
    two, four = (Settings(epochs=e, batch=16, eval_every=1, optimizer="adam") for e in (2, 4))
    quiet_train(m, ds, two, tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    keep = [HISTORY_FIELDS.index(k) for k in OLD_FIELDS]
    old_rows = [[r[i] for i in keep] for r in meta["history"]]
    arrays["meta"] = np.array(json.dumps({**meta, "history": old_rows}))
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    loaded = bpc.load_checkpoint(tmp_path).history
    assert loaded["epoch"] == [1, 2] and loaded["val_acc"] == [None, None]
    assert [[r[k] for k in OLD_FIELDS] for r in loaded] == \
        [[r[k] for k in OLD_FIELDS] for r in History(dict(zip(OLD_FIELDS, row))
                                                     for row in old_rows)]
    result = quiet_train(m, ds, four, tmp_path, resume=True)
    history = History(result.history)
    assert history["epoch"] == [1, 2, 3, 4] and history["val_loss"] == [None] * 4
    old = History(dict(zip(OLD_FIELDS, row)) for row in old_rows)  # as numbers, as now
    assert [[r[k] for k in OLD_FIELDS[:-1]] for r in old] == \
        [[r[k] for k in OLD_FIELDS[:-1]] for r in result.history[:2]]


def test_an_accuracy_can_be_watched_and_the_best_row_is_its_highest(tmp_path):
    """--early-stop val_acc: the best row is the highest validation accuracy (the summary
    takes its sign from the same table the stopping rule does)."""
    r = run_bpc("train", SPIRAL, "--epochs", "40", "--validation", "0.2", "--early-stop",
                "val_acc", "--patience", "3", "--eval-every", "1", "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    best = [line for line in r.stdout.splitlines() if line.startswith("best:")]
    assert len(best) == 1
    with open(tmp_path / "a" / "history.csv", newline="") as f:
        highest = max(float(row["val_acc"]) for row in csv.DictReader(f))
    assert f"val_acc {highest:.1%}" in best[0]
