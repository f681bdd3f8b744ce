"""What a run's checkpoint is trusted with: the run's identity is the compiled model itself
(not a probe of it), every entry read back is verified against the model's and the
optimizer's declarations, and the files of a run folder are never written through a
symbolic link nor left behind as temporaries."""

import json
import os

import numpy as np
import pytest

import bpc
from conftest import REPO, run_bpc
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.settings import Settings
from bpc.runtime.identity import model_identity
from bpc.runtime.train import train

# A small model with dropout, batch norm and a stop_gradient: each can change without
# moving the loss at initialization (inference mode: no dropout, the running statistics
# as initialized, the same forward values).
SPEC = """model drift
input x : [N, 2]
target t : [N]
layers x -> h {{ dense 8; batchnorm momentum={momentum}; relu; dropout {rate} }}
y = h @ W2 + {stop}
param W2 : [8, 3] = normal(std=0.5)
param b2 : [3] = zeros
loss L = softmax_cross_entropy(y, t)
data spiral(n=30)
optimizer adam(lr=0.01)
train {{ epochs = 2; batch = 16; seed = 0 }}
"""
BASE = {"momentum": 0.9, "rate": 0.2, "stop": "b2"}


def spec_text(**change):
    return SPEC.format(**{**BASE, **change})


def quiet(*args, **kwargs):
    return train(*args, quiet=True, log=lambda *_: None, **kwargs)


def setup(text, epochs=2):
    m = bpc.compile(text)
    ds = data.load(m.CONFIG["data"], m, 0)
    return m, ds, Settings.from_module(m, {"epochs": epochs})


@pytest.mark.parametrize("change, words", [
    ({"rate": 0.5}, "the training step (loss_and_grad)"),
    ({"momentum": 0.5}, "the training step (loss_and_grad)"),
    ({"stop": "stop_gradient(b2)"}, "the training step (loss_and_grad)"),
])
def test_a_changed_model_that_keeps_the_initial_loss_does_not_resume(tmp_path, change, words):
    m, ds, settings = setup(spec_text())
    quiet(m, ds, settings, tmp_path)
    other, _, more = setup(spec_text(**change), epochs=4)
    # the probe the old identity relied on cannot see it
    params = other.init_params(np.random.default_rng(0))
    state = other.init_state()
    x = np.asarray(ds.train["x"], dtype=np.float64)
    t = np.asarray(ds.train["t"])
    assert other.loss(params, x, t, state=state) == m.loss(params, x, t, state=state)
    with pytest.raises(UserError) as info:
        quiet(other, ds, more, tmp_path, resume=True)
    assert "cannot resume the run in" in info.value.message
    assert words in info.value.message, info.value.message
    quiet(m, ds, Settings.from_module(m, {"epochs": 4}), tmp_path, resume=True)  # its own


def test_cli_refuses_a_changed_dropout_rate_and_resumes_the_same_spec(tmp_path):
    spec = tmp_path / "drift.bp"
    spec.write_text(spec_text())
    r = run_bpc("train", spec, "--out", tmp_path / "run", "-q")
    assert r.returncode == 0, r.stderr
    spec.write_text(spec_text(rate=0.4))
    r = run_bpc("train", spec, "--out", tmp_path / "run", "--resume", "--epochs", "3")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "the model is not the one the run trained: the training step (loss_and_grad), " \
           "the training-mode loss (loss(training=True)) differ" in r.stderr, r.stderr
    spec.write_text("# a comment and another layout change nothing\n\n" + spec_text())
    r = run_bpc("train", spec, "--out", tmp_path / "run", "--resume", "--epochs", "3", "-q")
    assert r.returncode == 0, r.stderr


def test_the_identity_is_the_model_not_its_file_or_layout():
    spiral = [model_identity(bpc.compile(REPO / "specs" / "spiral.bp")),
              model_identity(bpc.load(REPO / "generated" / "spiral.py")),
              model_identity(bpc.compile((REPO / "specs" / "spiral.bp").read_text()))]
    assert len({i["digest"] for i in spiral}) == 1
    # the settings are not the model: a run may be given more epochs
    longer = (REPO / "specs" / "spiral.bp").read_text().replace("epochs = 100", "epochs = 7")
    assert model_identity(bpc.compile(longer))["digest"] == spiral[0]["digest"]
    textbook = model_identity(bpc.compile(REPO / "specs" / "spiral.bp", style="textbook"))
    assert textbook["digest"] != spiral[0]["digest"]


def test_a_cached_identity_is_the_one_reading_the_text_gives(tmp_path, monkeypatch):
    """The digests kept in the cache for a module's text are used only as they were
    written: an edited entry (its MAC no longer matches) is read again from the text."""
    monkeypatch.setenv("BPC_CACHE", str(tmp_path))
    module = bpc.load(REPO / "generated" / "spiral.py")
    first = model_identity(module)  # read from the text, kept
    entries = list((tmp_path / "identities").glob("*.json"))
    assert len(entries) == 1
    assert model_identity(module) == first  # from the entry
    mac, body = entries[0].read_bytes().split(b"\n", 1)
    planted = json.loads(body)
    planted["parts"]["predict"] = "0" * 16
    entries[0].write_bytes(mac + b"\n" + json.dumps(planted).encode())
    assert model_identity(module) == first
    edited = type(module)("edited")
    edited.source = module.source.replace("def predict(", "def predict2(")
    assert model_identity(edited)["digest"] != first["digest"]


def test_an_old_checkpoint_resumes_with_a_note_and_its_own_checks(tmp_path):
    """A checkpoint from before the model was recorded: its contract and loss at
    initialization are checked as then, and the resume says what it cannot check."""
    from bpc.runtime.identity import _contract_hash

    m, ds, settings = setup(spec_text())
    quiet(m, ds, settings, tmp_path)
    path = tmp_path / "checkpoint.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["run"]["model"]
    meta["run"]["contract"] = _contract_hash(m)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    said = []
    _, _, more = setup(spec_text(), epochs=3)
    train(m, ds, more, tmp_path, resume=True, quiet=True, log=said.append)
    assert any("was written by an older bpc, which did not record the compiled model"
               in line for line in said), said
    with np.load(path) as f:  # what it writes now records the model
        assert json.loads(str(f["meta"]))["run"]["model"] == model_identity(m)


# ----------------------------------------------------------------------------- damaged entries
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    spec = root / "drift.bp"
    spec.write_text(spec_text())
    r = run_bpc("train", spec, "--out", root / "run", "-q")
    assert r.returncode == 0, r.stderr
    return spec, root / "run" / "checkpoint.npz"


def damaged(src, dst, change):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    dst.parent.mkdir(exist_ok=True)
    np.savez(dst, **arrays)


def set_meta(arrays, **changes):
    meta = json.loads(str(arrays["meta"]))
    for k, v in changes.items():
        if v is KeyError:
            del meta[k]
        else:
            meta[k] = v
    arrays["meta"] = np.array(json.dumps(meta))


def put(key, value):
    return lambda a: a.__setitem__(key, value)


DAMAGES = {
    "moment (1,)": (put("opt/m/W2", np.zeros(1)),
                    "the optimizer entry 'opt/m/W2' is float64 of shape (1,), adam keeps "
                    "float64 of shape (8, 3)"),
    "moment ()": (put("opt/v/b2", np.array(0.5)),
                  "the optimizer entry 'opt/v/b2' is float64 of shape (), adam keeps"),
    "moment float32": (lambda a: a.__setitem__("opt/m/b2", a["opt/m/b2"].astype(np.float32)),
                       "the optimizer entry 'opt/m/b2' is float32 of shape (3,)"),
    "moment NaN": (put("opt/m/b2", np.full(3, np.nan)),
                   "the optimizer entry 'opt/m/b2' has values that are not finite"),
    "second moment < 0": (put("opt/v/b2", -np.ones(3)),
                          "the optimizer entry 'opt/v/b2' is negative (a sum of squares)"),
    "step count < 0": (put("opt/t", np.array(-4)),
                       "the optimizer entry 'opt/t' is negative (a step count)"),
    "step count float": (put("opt/t", np.array(4.5)),
                         "the optimizer entry 'opt/t' is float64 of shape ()"),
    "missing slot": (lambda a: a.pop("opt/v/W2"), "it lacks 'opt/v/W2'"),
    "extra slot": (put("opt/h/W2", np.zeros((8, 3))),
                   "it has 'opt/h/W2', which adam does not keep"),
    "param NaN": (lambda a: a["param/W2"].__setitem__((0, 0), np.nan),
                  "the parameter entry 'param/W2' has values that are not finite"),
    "negative variance": (lambda a: a["state/bn1_running_var"].__setitem__(2, -0.5),
                          "the state entry 'state/bn1_running_var' is a running variance, "
                          "but has negative values (1 of 8, the least -0.5)"),
    "garbage JSON": (put("meta", np.array("{not json")), "the 'meta' entry is damaged (not JSON"),
    "meta not text": (put("meta", np.zeros(3)), "the 'meta' entry is damaged (a float64 array"),
    "meta a list": (put("meta", np.array("[1, 2]")),
                    "the 'meta' entry is damaged (a JSON list, not an object)"),
    "missing key": (lambda a: set_meta(a, step=KeyError),
                    "the 'meta' entry is damaged: it lacks 'step'"),
    "wrong type": (lambda a: set_meta(a, epoch="2"),
                   "the 'meta' entry is damaged: 'epoch' is '2', not a whole number"),
    "bad generator": (lambda a: set_meta(a, rng={"bit_generator": "nope"}),
                      "the 'meta' entry is damaged: 'rng' is"),
    "bad history": (lambda a: set_meta(a, history=[["x"] * 8]),
                    "the 'meta' entry is damaged: 'history' is"),
    "bad run": (lambda a: set_meta(a, run={"opt": 3}),
                "the 'meta' entry is damaged: 'run' is"),
    # batch_index may equal the batches of an epoch (interrupted before the epoch's end
    # was written: test_modes resumes such a run), never exceed them
    "batch past the epoch": (lambda a: set_meta(a, batch_index=10**6),
                             "the 'meta' entry is damaged: 'batch_index' is 1000000, but an "
                             "epoch has"),
    "no meta": (lambda a: a.pop("meta"), "is not a readable checkpoint (it has no 'meta' entry)"),
}


@pytest.mark.parametrize("what", sorted(DAMAGES))
def test_a_damaged_checkpoint_entry_is_a_clear_error_on_resume(trained, tmp_path, what):
    spec, good = trained
    change, message = DAMAGES[what]
    bad = tmp_path / "run" / "checkpoint.npz"
    damaged(good, bad, change)
    r = run_bpc("train", spec, "--out", bad.parent, "--resume", "--epochs", "3")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"bpc: error: {bad}"), first
    assert message in first, first


def test_eval_refuses_a_negative_running_variance_instead_of_reporting_nan(trained, tmp_path):
    spec, good = trained
    bad = tmp_path / "run" / "checkpoint.npz"
    damaged(good, bad, DAMAGES["negative variance"][0])
    for command in ("eval", "predict"):
        r = run_bpc(command, spec, "--checkpoint", bad)
        assert r.returncode == 1 and "nan" not in r.stdout.lower(), (r.stdout, r.stderr)
        assert "'state/bn1_running_var' is a running variance, but has negative" in r.stderr


# ----------------------------------------------------------------------------- run files
KILL_IN_WRITE = """
import os, signal, stat, sys
sys.argv = ["bpc", "train", sys.argv[1], "--out", sys.argv[2], "-q"]
real = os.fsync
def fsync(fd):
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size > 1000:  # the checkpoint's temporary, full
        os.kill(os.getpid(), signal.SIGKILL)
    return real(fd)
os.fsync = fsync
from bpc.cli import main
main()
"""


def test_a_temporary_left_by_a_kill_inside_a_checkpoint_write_is_removed_next_run(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "drift.bp"
    spec.write_text(spec_text())
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", KILL_IN_WRITE, str(spec), str(out)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == -9, r.stderr
    left = [p for p in out.iterdir() if p.name.startswith(".checkpoint.npz.")]
    assert len(left) == 1 and left[0].stat().st_size > 1000, list(out.iterdir())
    keep = [out / ".checkpoint.npz.mine.tmp", out / "notes.tmp", out / ".checkpoint.npz.x"]
    for p in keep:
        p.write_text("the user's")
    r = run_bpc("train", spec, "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    assert not left[0].exists()
    assert all(p.read_text() == "the user's" for p in keep)


def test_plots_replace_a_planted_symlink_never_write_through_it(tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep me")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("curves.png", "fit.png"):
        (out / name).symlink_to(victim)
    r = run_bpc("train", "specs/xor.bp", "--epochs", "20", "--out", out, "--plot", "-q")
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == b"keep me"
    for name in ("curves.png", "fit.png"):
        assert not (out / name).is_symlink()
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    link = tmp_path / "both.png"
    link.symlink_to(victim)
    r = run_bpc("plot", out, "-o", link)
    assert r.returncode == 0, r.stderr
    assert victim.read_bytes() == b"keep me" and not link.is_symlink()


def test_a_fifo_at_the_lock_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / ".lock")
    r = run_bpc("train", "specs/xor.bp", "--epochs", "1", "--out", out, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{out / '.lock'} is not a regular file" in r.stderr


def test_bpc_plot_of_a_checkpoint_with_damaged_history_names_it(trained, tmp_path):
    _, good = trained
    for history in (5, [[{"a": 1}] * 8], [["x"] * 8]):
        bad = tmp_path / "run" / "checkpoint.npz"
        damaged(good, bad, lambda a: set_meta(a, history=history))
        r = run_bpc("plot", bad, "-o", tmp_path / "c.png")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(bad) in r.stderr, r.stderr


def test_the_api_verifies_a_checkpoint_against_its_model(trained, tmp_path):
    spec, good = trained
    model = bpc.compile(spec)
    assert set(bpc.load_checkpoint(good, model).params) == set(model.PARAMS)
    for what in ("param NaN", "negative variance"):
        bad = tmp_path / what / "checkpoint.npz"
        damaged(good, bad, DAMAGES[what][0])
        with pytest.raises(UserError, match=str(bad).replace("(", r"\(")):
            bpc.load_checkpoint(bad, model)
    bad = tmp_path / "history" / "checkpoint.npz"
    damaged(good, bad, lambda a: set_meta(a, history=3))
    with pytest.raises(UserError, match="its history rows are not rows of numbers"):
        bpc.load_checkpoint(bad)
