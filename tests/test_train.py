"""Training: exact resume, interruption, divergence, history and checkpoints, CLI end to end."""

import csv
import json
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from conftest import REPO, run_bpc
from runtime import data
from runtime.errors import UserError
from runtime.loader import load_model
from runtime.train import Diverged, Settings, train


def spiral_setup(epochs=4, **opt):
    m = load_model(REPO / "generated" / "spiral.py")
    ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
    settings = Settings.from_module(m, {"epochs": epochs, "batch": 16, **opt})
    return m, ds, settings


def quiet_train(*args, **kwargs):
    return train(*args, quiet=True, log=lambda *_: None, **kwargs)


def test_two_plus_two_epochs_equal_four(tmp_path):
    m, ds, four = spiral_setup(4)
    straight = quiet_train(m, ds, four, tmp_path / "a")
    _, _, two = spiral_setup(2)
    quiet_train(m, ds, two, tmp_path / "b")
    resumed = quiet_train(m, ds, four, tmp_path / "b", resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])
    assert resumed.steps == straight.steps
    rows = list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]


def test_resume_after_an_interrupt_mid_epoch_is_exact(tmp_path):
    m, ds, settings = spiral_setup(3, optimizer="adam")
    straight = quiet_train(m, ds, settings, tmp_path / "a")
    calls = {"n": 0}

    def flaky(params, **batch):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of the second epoch (5 batches each)
            raise KeyboardInterrupt
        return m.loss_and_grad(params, **batch)

    broken = types.SimpleNamespace(**{k: getattr(m, k) for k in dir(m) if not k.startswith("__")})
    broken.loss_and_grad = flaky
    first = quiet_train(broken, ds, settings, tmp_path / "b")
    assert first.interrupted and first.steps == 6
    resumed = quiet_train(m, ds, settings, tmp_path / "b", resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


def test_checkpoint_contents(tmp_path):
    m, ds, settings = spiral_setup(1, optimizer="momentum")
    quiet_train(m, ds, settings, tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as f:
        keys = set(f.files)
        meta = json.loads(str(f["meta"]))
    assert {f"param/{k}" for k in m.PARAMS} <= keys
    assert {f"opt/v/{k}" for k in m.PARAMS} <= keys and "opt/t" in keys
    assert meta["epoch"] == 1 and meta["step"] == 5 and "rng" in meta  # 72 examples / 16
    header = open(tmp_path / "history.csv").readline().strip().split(",")
    assert header[:1] == ["epoch"] and {"loss", "train_acc", "test_acc", "seconds"} <= set(header)


def test_divergence_names_the_step(tmp_path):
    # Squared error explodes under a huge step (softmax cross-entropy stays finite).
    m = load_model(REPO / "generated" / "sine.py")
    ds = data.builtin("sine", m, seed=0, n=40)
    settings = Settings.from_module(m, {"epochs": 50, "lr": 1e6, "optimizer": "sgd"})
    with pytest.raises(Diverged) as info:
        quiet_train(m, ds, settings, tmp_path)
    assert "training diverged at step" in info.value.message
    assert "lower the learning rate" in info.value.hint


def test_settings_precedence():
    m = load_model(REPO / "generated" / "two_layer.py")  # spec: iters = 10000, batch = 100
    s = Settings.from_module(m, {})
    assert (s.iters, s.epochs, s.batch, s.optimizer, s.opt["lr"]) == (10000, None, 100, "sgd", 0.1)
    s = Settings.from_module(m, {"epochs": 2, "lr": 0.5, "optimizer": "adam"})
    assert (s.iters, s.epochs, s.opt["lr"], s.optimizer) == (None, 2, 0.5, "adam")
    with pytest.raises(UserError):
        Settings.from_module(m, {"batch": 0})


def test_regression_has_no_accuracy(tmp_path):
    m = load_model(REPO / "generated" / "sine.py")
    ds = data.builtin("sine", m, seed=0, n=40)
    result = quiet_train(m, ds, Settings.from_module(m, {"epochs": 2}), tmp_path)
    assert result.history[-1]["train_acc"] == "" and result.history[-1]["test_acc"] == ""


def test_xor_learns():
    m = load_model(REPO / "specs" / "xor.bp")
    ds = data.builtin("xor", m, seed=3)
    result = quiet_train(m, ds, Settings.from_module(m, {}), None)
    assert float(result.history[-1]["train_acc"]) == 1.0
    assert float(result.history[-1]["loss"]) < 0.02


# ----------------------------------------------------------------------------- CLI
def test_cli_train_end_to_end(tmp_path):
    r = run_bpc("train", "specs/spiral.bp", "--epochs", "3", "--out", tmp_path, "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spiral: loss")
    assert "test_acc" in lines[0] and "Traceback" not in r.stderr
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "history.csv").exists()
    r = run_bpc("train", "specs/spiral.bp", "--epochs", "4", "--out", tmp_path, "--resume")
    assert r.returncode == 0, r.stderr
    assert "epoch 4/4" in r.stdout and "epoch 3/4" not in r.stdout


def test_cli_train_generated_module_and_data_flag(tmp_path):
    r = run_bpc("train", "generated/sine.py", "--data", "sine:n=60", "--epochs", "2",
                "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "epoch 1/2" in r.stdout and "epoch 2/2" in r.stdout


def test_cli_divergence_is_exit_1_without_traceback(tmp_path):
    r = run_bpc("train", "specs/sine.bp", "--lr", "1e6", "--optimizer", "sgd",
                "--epochs", "5", "--out", tmp_path, "--quiet")
    assert r.returncode == 1
    assert "bpc: error: training diverged at step" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_data_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3)), t=np.zeros(4, dtype=int))
    r = run_bpc("train", "specs/spiral.bp", "--data", bad, "--out", tmp_path / "o")
    assert r.returncode == 1
    assert "'x' has 3 at axis 1" in r.stderr and "Traceback" not in r.stderr
    r = run_bpc("train", "specs/receipt.bp")
    assert r.returncode == 1 and "no data" in r.stderr


def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "train", "specs/spiral.bp", "--epochs", "100000",
         "--batch", "1", "--out", str(out), "--quiet"],
        cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stdout and "Traceback" not in stderr
    with np.load(out / "checkpoint.npz") as f:
        meta = json.loads(str(f["meta"]))
    assert meta["step"] > 0


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    r = run_bpc("train", "specs/spiral.bp", "--epochs", "2", "--out", tmp_path, "--plot",
                "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_main_job_digits_reaches_95_percent(tmp_path):
    pytest.importorskip("sklearn")
    start = time.time()
    r = run_bpc("train", "specs/digits.bp", "--out", tmp_path, "--quiet")
    assert r.returncode == 0, r.stderr
    assert time.time() - start < 60
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert float(rows[-1]["test_acc"]) >= 0.95, rows[-1]


# ----------------------------------------------------------------------------- gradcheck, stats, graph
def test_gradcheck_cli_passes_good_and_fails_broken(tmp_path):
    r = run_bpc("gradcheck", "specs/two_layer.bp", "--samples", "5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "W1" in r.stdout and "ok: all 4 gradients match" in r.stdout
    broken = tmp_path / "toy_broken.py"
    text = (REPO / "generated" / "toy.py").read_text()
    assert "dl_df1 = h2 * dl_dh2" in text
    broken.write_text(text.replace("dl_df1 = h2 * dl_dh2", "dl_df1 = h1 * dl_dh2"))
    r = run_bpc("gradcheck", broken)
    assert r.returncode == 1
    assert "FAIL" in r.stdout and "beta1" in r.stdout.split("FAILED")[1]
    assert "beta3" not in r.stdout.split("FAILED")[1]  # layers after the bug are still right


def test_stats_exploding_versus_he():
    r = run_bpc("stats", "specs/deep50.bp", "--json", "--batch", "50")
    he = json.loads(r.stdout)
    r = run_bpc("stats", "specs/deep50.bp", "--json", "--batch", "50", "--init", "normal(std=1)")
    big = json.loads(r.stdout)
    assert {"layer", "act_mean", "act_std", "grad_std"} <= set(he[0])
    relu_he = [row for row in he if row["layer"].startswith("z")]
    relu_big = [row for row in big if row["layer"].startswith("z")]
    assert len(relu_he) == 50
    assert all(0.1 < row["act_std"] < 10 for row in relu_he)
    assert all(0.01 < row["grad_std"] < 10 for row in he)
    # normal(std=1) with 80 units: each layer multiplies the scale by about sqrt(40).
    stds = [row["act_std"] for row in relu_big]
    assert stds[-1] > 1e30 and stds[-1] / stds[0] > 1e30
    growth = [b / a for a, b in zip(stds, stds[1:])]
    assert sum(g > 1 for g in growth) >= 45
    assert big[0]["grad_std"] > 1e30


def test_graph_receipt_values():
    r = run_bpc("graph", "specs/receipt.bp", "--values")
    assert r.returncode == 0 and r.stdout.startswith('digraph "receipt"')
    for label in ('"100\\n2.2"', '"2\\n110"', '"150\\n3.3"', '"3\\n165"', '"650\\n1.1"',
                  '"1.1\\n650"', '"200"', '"450"'):
        assert label in r.stdout, label
    r = run_bpc("graph", "specs/two_layer.bp")
    assert r.returncode == 0 and "W1" in r.stdout and "->" in r.stdout
    # integer labels and [1, K] values for one data point (once a crash)
    r = run_bpc("graph", "specs/spiral.bp", "--values")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "\\n" in r.stdout


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    from runtime.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code = main(["train", str(REPO / "specs" / "xor.bp"), "--plot", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "--plot needs matplotlib" in err and "bpc[plot]" in err
    assert not (tmp_path / "history.csv").exists()  # refused before training
