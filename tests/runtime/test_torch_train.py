"""The runtime on the torch target (float64, CPU): the same loop, optimizers and
checkpoints as NumPy's, so a run on torch is the NumPy run (same initial parameters,
shuffles and updates, within 1e-12), its checkpoint resumes on either target, a SIGKILL
and a resume continue it exactly (dropout's masks included), and gradcheck, predict and
eval run on the device."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch target's tests need PyTorch: "
                            "pip install 'backprop-compiler[torch]'")

from conftest import REPO, run_bpc  # noqa: E402
from resume_runs import state  # noqa: E402

from bpc.cli import main  # noqa: E402
from bpc.runtime.arrays import to_host  # noqa: E402
from bpc.runtime.errors import UserError  # noqa: E402
from bpc.runtime.loader import load_model  # noqa: E402
from bpc.runtime.optimizers import OPTIMIZER_CLASSES, make_optimizer, pack  # noqa: E402
from bpc.runtime.train import run  # noqa: E402

SPIRAL = REPO / "specs" / "spiral.bp"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread, here and in the subprocesses: models this small gain nothing
    from more, and on a machine whose cores are busy the thread pool's waiting makes a
    call 20 times slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
DATA = "spiral:n=40"


def params_of(result) -> dict[str, np.ndarray]:
    return {k: to_host(v) for k, v in result.params.items()}


def close(a: dict, b: dict, tol: float = 1e-12) -> None:
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(to_host(a[k]), to_host(b[k]), rtol=0, atol=tol, err_msg=k)


def train(target, out=None, resume=False, spec=SPIRAL, data=DATA, **overrides):
    module = load_model(spec, target=target)
    result, _, _ = run(module, data, {"epochs": 3, "batch": 16, **overrides}, out,
                       resume=resume, quiet=True)
    return result


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_torch_run_is_the_numpy_run(optimizer):
    on_torch, on_numpy = train("torch", optimizer=optimizer), train("numpy",
                                                                     optimizer=optimizer)
    assert all(isinstance(v, torch.Tensor) for v in on_torch.params.values())
    close(params_of(on_torch), on_numpy.params)
    for a, b in zip(on_torch.history, on_numpy.history):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-12)
        assert a["train_acc"] == b["train_acc"]


def test_a_module_of_a_compilation_is_the_numpy_run_too():
    """``Compilation.retargeted("torch").new_module()``, as ``load_model`` gives it: its
    parameters drawn by its NumPy twin, so it trains to the NumPy run's numbers (it had
    drawn them from a torch.Generator and trained elsewhere)."""
    from bpc.compiler.compilation import Compilation

    module = Compilation.from_file(SPIRAL).retargeted("torch").new_module()
    result, _, _ = run(module, DATA, {"epochs": 3, "batch": 16}, None, quiet=True)
    close(params_of(result), train("numpy").params)


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CLASSES))
def test_every_optimizer_updates_tensors_as_arrays(name):
    rng = np.random.default_rng(0)
    shapes = {"W": (3, 4), "b": (4,), "s": ()}
    start = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(3)]
    settings = {"lr": 0.1, "clip": 0.5, "weight_decay": 0.01}
    on_numpy, on_torch = pack(start), pack({k: torch.tensor(v) for k, v in start.items()})
    opt_n = make_optimizer(name, on_numpy, **settings)
    opt_t = make_optimizer(name, on_torch, **settings)
    for g in grads:
        opt_n.step(on_numpy, g)
        opt_t.step(on_torch, {k: torch.tensor(v) for k, v in g.items()})
    close(on_torch, on_numpy, 1e-14)
    close(opt_t.state_dict(), opt_n.state_dict(), 1e-14)


@pytest.mark.parametrize("first,then", [("torch", "numpy"), ("numpy", "torch")])
def test_a_checkpoint_resumes_on_the_other_target(tmp_path, first, then):
    train(first, tmp_path / "run", epochs=2)
    resumed = train(then, tmp_path / "run", resume=True, epochs=4)
    whole = train("numpy", epochs=4)
    close(params_of(resumed), whole.params)
    assert resumed.steps == whole.steps


DROPOUT = """model spiral_dropout
input x : [N, 2]
target t : [N]
layers x -> y { dense 16; relu; dropout 0.5; dense 3 }
loss L = softmax_cross_entropy(y, t)
"""


def test_dropout_masks_resume_exactly_on_torch(tmp_path):
    """The mask generator's state is in the checkpoint: the split run draws the masks the
    whole run draws (which are torch's own, not NumPy's)."""
    spec = tmp_path / "dropout.bp"
    spec.write_text(DROPOUT)
    train("torch", tmp_path / "whole", spec=spec, epochs=2)
    train("torch", tmp_path / "split", spec=spec, epochs=1)
    train("torch", tmp_path / "split", resume=True, spec=spec, epochs=2)
    # (the split run's first epoch ended with a history row of its own)
    assert_same_run(tmp_path / "split", tmp_path / "whole", history=False)
    assert "masks" in state(tmp_path / "whole")[1]


def assert_same_run(a, b, history: bool = True) -> None:
    """The two run folders' checkpoints (and histories) are the same, timings aside."""
    (arrays_a, meta_a, csv_a), (arrays_b, meta_b, csv_b) = state(a), state(b)
    assert set(arrays_a) == set(arrays_b)
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    if not history:
        for meta in (meta_a, meta_b):
            del meta["history"], meta["loss_sum"], meta["seen"]
    assert meta_a == meta_b
    assert csv_a == csv_b or not history


def test_sigkill_then_resume_continues_exactly(tmp_path):
    out = tmp_path / "run"
    args = ["train", SPIRAL, "--target", "torch", "--data", DATA, "--batch", "16",
            "--iters", "300", "--out", out, "-q"]
    p = subprocess.Popen([sys.executable, "-m", "bpc", *map(str, args),
                          "--checkpoint-every", "0"], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists() and p.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    r = run_bpc(*args, "--resume")
    assert r.returncode == 0, r.stderr
    train("torch", tmp_path / "whole", iters=300)
    assert_same_run(out, tmp_path / "whole")


def test_gradcheck_on_the_device(capsys):
    """float64 on the device, both modes of a model with batch norm."""
    assert main(["gradcheck", str(REPO / "specs" / "batchnorm.bp"), "--target", "torch",
                 "--device", "cpu", "--samples", "5"]) == 0
    out = capsys.readouterr().out
    assert "ok: all" in out and "training and inference mode" in out


def test_predict_and_eval_on_the_device_print_numpy_s_numbers(tmp_path, capsys):
    train("torch", tmp_path / "run", epochs=1)
    for command in ("eval", "predict"):
        outputs = []
        for target in ([], ["--target", "torch"]):
            assert main([command, str(SPIRAL), "--checkpoint", str(tmp_path / "run"),
                         "--data", DATA, *target]) == 0
            outputs.append(capsys.readouterr().out)
        assert outputs[0] == outputs[1]


def test_a_stateful_model_evaluates_predicts_and_samples_on_the_device(tmp_path, capsys):
    """zen_lm's streams reset on the host for a torch module seen through Hosted (the
    initial state is a tensor, the state kept an array: it had been an internal error)."""
    spec = REPO / "specs" / "zen_lm.bp"
    train("numpy", tmp_path / "run", spec=spec, data="zen:steps=16,stride=16", epochs=1,
          batch=4, shuffle=False)
    for command in (["eval"], ["predict"], ["sample", "--prompt", "Simple", "--length", "30",
                                            "--samples", "4"]):
        outputs = []
        for target in ([], ["--target", "torch"]):
            assert main([command[0], str(spec), "--checkpoint", str(tmp_path / "run"),
                         *command[1:], *target]) == 0
            outputs.append(capsys.readouterr().out)
        assert outputs[0] == outputs[1], command


def test_devices_that_are_not_there_are_refused():
    module = load_model(SPIRAL)
    with pytest.raises(UserError, match="needs the torch target"):
        run(module, DATA, {"epochs": 1}, None, quiet=True, device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            run(load_model(SPIRAL, target="torch"), DATA, {"epochs": 1}, None, quiet=True,
                device="cuda")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        run(load_model(SPIRAL, target="torch"), DATA, {"epochs": 1}, None, quiet=True,
            device="tpu")


def test_a_compiled_torch_model_trains_on_its_device():
    import bpc

    model = bpc.compile(SPIRAL, target="torch")
    result = model.train(DATA, epochs=2, batch=16, quiet=True, device="cpu")
    assert all(v.device.type == "cpu" for v in result.params.values())
    close(params_of(result), train("numpy", epochs=2).params)


def test_a_torch_model_trains_and_evaluates_through_the_api_as_a_numpy_model_does():
    """model.train and model.evaluate on arrays: the torch target's figures are NumPy's."""
    import bpc

    x = np.random.default_rng(0).normal(size=(30, 2))
    t = np.arange(30) % 3
    figures = []
    for target in ("numpy", "torch"):
        model = bpc.compile(SPIRAL, target=target)
        result = model.train(x=x, t=t, epochs=3, batch=10, quiet=True)
        figures.append((result.history[-1]["loss"], model.evaluate(x=x[:7], t=t[:7])))
    (loss_np, eval_np), (loss_torch, eval_torch) = figures
    assert loss_torch == pytest.approx(loss_np, rel=1e-10)
    assert eval_torch["examples"] == eval_np["examples"] == 7
    assert eval_torch["loss"] == pytest.approx(eval_np["loss"], rel=1e-10)
    assert eval_torch["accuracy"] == eval_np["accuracy"]


def test_a_torch_run_reads_an_npz_in_numpy_s_dtype(tmp_path):
    """--data FILE.npz on the torch target: the arrays are read in the NumPy dtype of the
    module's torch DTYPE, and the run is the NumPy run."""
    rng = np.random.default_rng(1)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.normal(size=(40, 2)), t=np.arange(40) % 3)
    said = []
    for target in ("numpy", "torch"):
        r = run_bpc("train", SPIRAL, "--target", target, "--data", data, "--epochs", "2",
                    "--out", tmp_path / target, "-q")
        assert r.returncode == 0, r.stderr
        said.append(r.stdout.split("  (")[0].split(": ", 1)[1])
    assert said[0] == said[1]
