"""Training: exact resume, interruption, divergence, history and checkpoints, CLI end to end."""

import csv
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from conftest import REPO, run_bpc
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.train import Diverged, train


def spiral_setup(epochs=4, **opt):
    m = load_model(REPO / "generated" / "spiral.py")
    ds = data.builtin("spiral", m, seed=0, n=30, classes=3)
    settings = Settings.from_module(m, {"epochs": epochs, "batch": 16, "eval_every": 1, **opt})
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


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_the_sgd_family_folds_the_learning_rate_into_the_seed(tmp_path, optimizer):
    """bpc train passes scale=-lr to loss_and_grad and adds the result (one pass over the
    parameters): the run agrees with the update of the plain gradient to rounding
    (the factor is applied at the loss's adjoint, not at each gradient), and a resumed
    folded run is bit-exact with the straight one."""
    from bpc.runtime import optimizers

    m, ds, settings = spiral_setup(4, optimizer=optimizer, lr=0.05)
    calls = []

    @functools.wraps(m.loss_and_grad)  # its signature: the loop passes scale
    def spy(params, **kwargs):
        calls.append(kwargs.get("scale"))
        return m.loss_and_grad(params, **kwargs)

    spied = types.SimpleNamespace(**{k: getattr(m, k) for k in dir(m) if not k.startswith("__")})
    spied.loss_and_grad = spy
    folded = quiet_train(spied, ds, settings, tmp_path / "a")
    assert calls and set(calls) == {-0.05}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optimizers.Optimizer, "fold_lr", lambda self: False)
        plain = quiet_train(m, ds, settings, tmp_path / "b")
    for k in plain.params:
        np.testing.assert_allclose(folded.params[k], plain.params[k], rtol=1e-9, atol=1e-12)
    _, _, two = spiral_setup(2, optimizer=optimizer, lr=0.05)
    quiet_train(m, ds, two, tmp_path / "c")
    resumed = quiet_train(m, ds, settings, tmp_path / "c", resume=True)
    for k in plain.params:
        np.testing.assert_array_equal(resumed.params[k], folded.params[k])


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
    assert result.history[-1]["train_acc"] is None and result.history[-1]["test_acc"] is None


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
    assert "epoch 2/2" in r.stdout  # rows at the cadence: here the end only
    assert "epoch 1/2" not in r.stdout
    r = run_bpc("train", "generated/sine.py", "--data", "sine:n=60", "--epochs", "2",
                "--out", tmp_path / "each", "--eval-every", "1", "--checkpoint-every", "0")
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
        [sys.executable, "-m", "bpc", "train", "specs/spiral.bp", "--epochs", "100000",
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
    def label(value, grad):  # value above, gradient below in the second colour
        return (f'<font color="#1f3b73">{value}</font><br/>'
                f'<font color="#c0392b">{grad}</font>')
    for value, grad in (("100", "2.2"), ("2", "110"), ("150", "3.3"), ("3", "165"),
                        ("650", "1.1"), ("1.1", "650"), ("200", "1.1"), ("450", "1.1")):
        assert label(value, grad) in r.stdout, (value, grad)
    r = run_bpc("graph", "specs/two_layer.bp")
    assert r.returncode == 0 and "W1" in r.stdout and "->" in r.stdout
    # integer labels and [1, K] values for one data point (once a crash)
    r = run_bpc("graph", "specs/spiral.bp", "--values")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "<br/>" in r.stdout


def test_plot_draws_several_runs_on_one_figure(tmp_path):
    """bpc plot: two runs' curves on the same axes (DLFS 6.3's with/without comparison),
    each labelled with its folder's name; a folder without a run is a clear error."""
    pytest.importorskip("matplotlib")
    for name, lr in (("fast", "0.5"), ("slow", "0.01")):
        r = run_bpc("train", "specs/xor.bp", "--epochs", "3", "--eval-every", "1", "--lr", lr,
                    "--out", tmp_path / name, "-q")
        assert r.returncode == 0, r.stderr
    from bpc.runtime.plots import run_history

    name, history = run_history(tmp_path / "fast")
    assert name == "fast" and history["epoch"] == [1, 2, 3]
    assert run_history(tmp_path / "slow" / "checkpoint.npz")[1]["loss"] == \
        run_history(tmp_path / "slow" / "history.csv")[1]["loss"]
    r = run_bpc("plot", tmp_path / "fast", tmp_path / "slow", "-o", tmp_path / "both.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "both.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_bpc("plot", tmp_path / "nothing")
    assert r.returncode == 1 and "nothing: no run here" in r.stderr
    assert "Traceback" not in r.stderr


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    from bpc.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code = main(["train", str(REPO / "specs" / "xor.bp"), "--plot", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "--plot needs matplotlib" in err and "backprop-compiler[plot]" in err
    assert not (tmp_path / "history.csv").exists()  # refused before training


# ----------------------------------------------------------------------------- hostile use
def test_ctrl_c_inside_an_update_stops_after_it(tmp_path):
    """SIGINT while the optimizer is updating: the update completes, the run stops at the
    step boundary and the checkpoint records that step (not half of it)."""
    m, ds, settings = spiral_setup(3, optimizer="adam")
    seen = {"n": 0}

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_apply":
            seen["n"] += 1
            if seen["n"] == 3:  # the update of step 3 (one flat buffer)
                signal.raise_signal(signal.SIGINT)

    sys.setprofile(hook)
    try:
        result = quiet_train(m, ds, settings, tmp_path)
    finally:
        sys.setprofile(None)
    assert result.interrupted and result.steps == 3
    with np.load(tmp_path / "checkpoint.npz") as f:
        meta = json.loads(str(f["meta"]))
        assert meta["step"] == 3 and int(f["opt/t"]) == 3


def test_history_is_rebuilt_from_the_checkpoint(tmp_path):
    m, ds, settings = spiral_setup(2)
    quiet_train(m, ds, settings, tmp_path)
    path = tmp_path / "history.csv"

    def rows():  # without the timing column
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    full = rows()
    for damage in ("", full[0] + "\n" + full[1][:7], "\n".join(full + full[1:]) + "\n"):
        path.write_text(damage)  # missing rows, a cut line, duplicated rows
        _, _, four = spiral_setup(4)
        quiet_train(m, ds, four, tmp_path, resume=True)
        assert rows()[:3] == full and [r.split(",")[0] for r in rows()[1:]] == \
            ["1", "2", "3", "4"]
        quiet_train(m, ds, settings, tmp_path, force=True)  # back to two epochs
    path.unlink()
    quiet_train(m, ds, four, tmp_path, resume=True)
    assert rows()[:3] == full


@pytest.mark.parametrize("change, words", [
    ({"batch": 8}, "--batch was 16, now 8"),
    ({"optimizer": "momentum"}, "trained with adam, not momentum"),
    ({"seed": 1}, "--seed was 0, now 1"),
])
def test_resume_refuses_other_settings(tmp_path, change, words):
    m, ds, settings = spiral_setup(1)
    quiet_train(m, ds, settings, tmp_path)
    _, _, other = spiral_setup(2, **change)
    with pytest.raises(UserError) as info:
        quiet_train(m, ds, other, tmp_path, resume=True)
    assert words in info.value.message
    assert "another --out folder" in info.value.hint or "--optimizer" in info.value.hint


def test_resume_with_another_learning_rate_says_so(tmp_path):
    m, ds, settings = spiral_setup(1)
    quiet_train(m, ds, settings, tmp_path)
    _, _, other = spiral_setup(2, lr=0.5)
    said = []
    train(m, ds, other, tmp_path, resume=True, quiet=True, log=said.append)
    assert said == ["note: resuming with --lr 0.5; the run was trained with 0.01 so far"]


def test_resume_refuses_other_data_and_other_shapes(tmp_path):
    m, ds, settings = spiral_setup(1)
    quiet_train(m, ds, settings, tmp_path)
    other = data.builtin("spiral", m, seed=1, n=30, classes=3)  # another split
    with pytest.raises(UserError, match="training data differ"):
        quiet_train(m, ds.__class__(other.train, ds.test, ds.name), settings, tmp_path,
                    resume=True)
    wide = types.SimpleNamespace(**{k: getattr(m, k) for k in dir(m) if not k.startswith("__")})
    wide.PARAMS = {**m.PARAMS, "b2": (3,)}
    with np.load(tmp_path / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["param/b2"] = np.zeros(1)
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    with pytest.raises(UserError, match=r"parameter 'b2' has shape \(1,\) there, \(3,\) here"):
        quiet_train(m, ds, settings, tmp_path, resume=True)


def test_cli_resume_refuses_a_wider_model(tmp_path):
    spec = tmp_path / "narrow.bp"
    text = (REPO / "specs" / "xor.bp").read_text()
    spec.write_text(text.replace("dense 2 init", "dense 1 init"))
    r = run_bpc("train", spec, "--epochs", "2", "--out", tmp_path / "o", "--quiet")
    assert r.returncode == 0, r.stderr
    spec.write_text(text.replace("dense 2 init", "dense 50 init"))
    r = run_bpc("train", spec, "--epochs", "4", "--out", tmp_path / "o", "--resume")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot resume the run in" in r.stderr and "has shape (2, 1) there, (2, 50) here" \
        in r.stderr and "hint:" in r.stderr


def test_a_run_folder_is_locked(tmp_path):
    from bpc.runtime.runfolder import RunFolder

    with RunFolder(tmp_path):
        r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"{tmp_path} is in use by another bpc train (process " in r.stderr
    r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", tmp_path, "--quiet")
    assert r.returncode == 0, r.stderr  # released


def test_run_files_get_the_umask_and_no_symlink_is_followed(tmp_path):
    m, ds, settings = spiral_setup(1)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").symlink_to(victim)
    old = os.umask(0o027)
    try:
        quiet_train(m, ds, settings, out)
    finally:
        os.umask(old)
    assert victim.read_text() == "keep me" and not (out / "history.csv").is_symlink()
    for name in ("checkpoint.npz", "history.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o640, name
    (out / "checkpoint.npz").unlink()
    (out / "checkpoint.npz").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        quiet_train(m, ds, settings, out, resume=True)
    assert victim.read_text() == "keep me"


def test_cli_out_problems_name_the_path(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", a_file)
    assert r.returncode == 1 and f"--out {a_file} is a file, not a folder" in r.stderr
    r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", a_file / "sub")
    assert r.returncode == 1 and str(a_file / "sub") in r.stderr
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "checkpoint.npz").write_bytes(b"PK\x03\x04 not a zip")
    r = run_bpc("train", "specs/xor.bp", "--out", tmp_path / "damaged", "--resume")
    assert r.returncode == 1 and "is not a readable checkpoint" in r.stderr
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", ro)
        assert r.returncode == 1 and str(ro) in r.stderr
    for r in (r,):
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_cli_closed_pipe_and_early_ctrl_c(tmp_path):
    r = subprocess.run(f"{sys.executable} -m bpc show specs/spiral.bp | head -1",
                       shell=True, cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.stdout.startswith('"""spiral') and r.stderr == ""
    # Ctrl-C while bpc starts (its imports; -S: without the site's own .pth start-up,
    # which runs before any bpc code): exit 130, or 0 when it came too late. Python's
    # own start-up (runpy, before bpc's first line) is not bpc's: a traceback is
    # allowed only when no frame of it is in bpc's files.
    import site

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *site.getsitepackages()]))
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-S", "-m", "bpc", "check",
                                 "specs/spiral.bp"], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if "Traceback" in err and _before_the_handler(err):
            continue  # interrupted inside Python's start-up, before bpc's handler exists
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, err)
        assert "Traceback" not in err, (delay, err)


def _before_the_handler(err: str) -> bool:
    """Whether a traceback's frames in bpc's files all lie in bpc/__init__.py before the
    line that installs the early handler (nothing can run earlier than those lines)."""
    init = REPO / "bpc" / "__init__.py"
    installed = next(i for i, line in enumerate(init.read_text().splitlines(), 1)
                     if "_signal.signal(_signal.SIGINT, _interrupted_early)" in line)
    frames = re.findall(r'File "([^"]+)", line (\d+)', err)
    ours = [(f, int(n)) for f, n in frames if f.startswith(str(REPO))]
    return all(f == str(init) and n <= installed for f, n in ours)


def test_ctrl_c_in_bpc_package_start_up_exits_quietly():
    """The window the loop above can only hit by chance, hit on purpose: a Ctrl-C while
    bpc/__init__.py runs (before the command's handler exists) exits 130 without a
    traceback when bpc is the command; a program importing bpc gets the interrupt."""
    code = ("import os, sys\nsys.argv = [{argv!r}]\n"
            "def stop(*a):\n    raise KeyboardInterrupt\n"
            "os.path.abspath = stop\nimport bpc\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    interrupted = -signal.SIGINT  # Python's own exit on an unhandled KeyboardInterrupt
    for argv, code_wanted in (("-m", 130), ("/usr/bin/bpc", 130),
                              ("myscript.py", interrupted)):
        r = subprocess.run([sys.executable, "-c", code.format(argv=argv)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == code_wanted, (argv, r.returncode, r.stderr)
        assert ("Traceback" in r.stderr) == (code_wanted == interrupted), (argv, r.stderr)


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import errno

    m, ds, settings = spiral_setup(1)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError) as info:
        quiet_train(m, ds, settings, tmp_path)
    assert info.value.message.startswith(f"cannot write {tmp_path}")
    assert "No space left on device" in info.value.message
    # the checkpoint's write failed (history.csv's first write is not fsynced), and no
    # temporary is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "history.csv"]
    monkeypatch.undo()
    with pytest.raises(UserError, match="nothing to resume"):
        quiet_train(m, ds, settings, tmp_path / "nowhere", resume=True)
    assert not (tmp_path / "nowhere").exists()


def test_parameters_are_checked_at_a_bounded_cadence():
    """The per-step parameter check became a cadence: any PARAM_CHECK_EVERY consecutive
    steps hold a check (the bound on how late a non-finite parameter is named)."""
    from bpc.runtime.train import PARAM_CHECK_EVERY, params_check_due

    checked = [s for s in range(1000) if params_check_due(s)]
    gaps = np.diff([-1, *checked, 1000])
    assert gaps.max() == PARAM_CHECK_EVERY and len(checked) < 1000 // 8


def test_non_finite_parameters_are_never_evaluated(tmp_path):
    """An evaluation checks the parameters first: a NaN between two checks stops the
    run as diverged before any accuracy is computed from it."""
    from bpc.runtime import train as train_mod

    m = load_model(REPO / "generated" / "sine.py")
    ds = data.builtin("sine", m, seed=0, n=40)
    settings = Settings.from_module(m, {"epochs": 3, "lr": 0.01, "optimizer": "sgd",
                                        "eval_every": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "make_optimizer", _poisoned_at(2, train_mod.make_optimizer))
        mp.setattr(train_mod, "params_check_due", lambda step: False)
        mp.setattr(train_mod, "accuracy", lambda *a: pytest.fail("evaluated"))
        with pytest.raises(Diverged) as info:
            train(m, ds, settings, None, quiet=True, log=lambda *_: None)
    assert "diverged at step 2 " in info.value.message
    assert "is no longer finite" in info.value.message


def _poisoned_at(t: int, make):
    """``make_optimizer`` whose update at step ``t`` leaves a NaN in the first parameter
    (where the loss does not read it yet: the loss stays finite)."""
    def poisoned(*args, **kwargs):
        opt = make(*args, **kwargs)
        update = opt.update

        def update_then_nan(params, lr=None):
            update(params, lr)
            if opt.t == t:
                next(iter(opt._param_views.values())).flat[0] = np.nan
        opt.update = update_then_nan
        return opt
    return poisoned


def test_a_checkpoint_is_never_written_with_non_finite_parameters(tmp_path):
    """Between two checks a checkpoint checks the parameters itself: the run stops as
    diverged, and no checkpoint holds the NaN."""
    from bpc.runtime import train as train_mod

    m = load_model(REPO / "generated" / "sine.py")
    ds = data.builtin("sine", m, seed=0, n=40)
    settings = Settings.from_module(m, {"epochs": 3, "lr": 0.01, "optimizer": "sgd"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "make_optimizer", _poisoned_at(2, train_mod.make_optimizer))
        mp.setattr(train_mod, "params_check_due", lambda step: False)
        mp.setattr(train_mod, "CHECKPOINT_OVERHEAD", 0)  # a checkpoint at every boundary
        with pytest.raises(Diverged) as info:
            train(m, ds, settings, tmp_path, quiet=True, log=lambda *_: None,
                  checkpoint_every=0)
    assert "diverged at step 2 " in info.value.message
    assert "is no longer finite" in info.value.message
    with np.load(tmp_path / "checkpoint.npz") as f:  # step 1's
        assert all(np.isfinite(f[k]).all() for k in f.files if k.startswith("param/"))


def test_the_command_line_is_parsed_before_numpy_is_imported():
    """Building the parser imports no NumPy: a Ctrl-C during NumPy's import becomes an
    ImportError (NumPy wraps it), which must land inside the command's guard, not while
    the command line is read."""
    code = ("import sys; import bpc.cli as cli; cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_a_command_builds_and_imports_only_its_own_parser():
    """``bpc train …`` imports the train command's module alone (start-up: the other
    twelve are not needed); without a command, or with a misspelt one, every command is
    there for the help and the list of choices."""
    from bpc.cli import _command_named

    assert _command_named(["--debug", "train", "x.bp", "--lr", "0.1"]) == "train"
    assert _command_named(["--help", "train"]) is None
    assert _command_named(["trian", "x.bp"]) is None and _command_named([]) is None
    code = ("import sys; import bpc.cli as cli; cli.build_parser('train'); "
            "print(sorted(m for m in sys.modules if m.startswith('bpc.cli.')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.stdout.split() == ["['bpc.cli.options',", "'bpc.cli.train']"], r.stderr
