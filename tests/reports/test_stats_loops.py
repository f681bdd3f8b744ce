"""``bpc stats`` of a loop over time: ``||dL/dh_t||`` at each step, of the whole loss
and of the last step's loss carried back (the vanishing gradient), checked against
backpropagation through time written out by hand (DLFS2's ``TimeRNN.backward``)."""

import json

import numpy as np

from bpc.compiler.pipeline import program_from_file
from bpc.reports.stats import stats_batch, format_table, layer_stats
from conftest import run_bpc
from recurrent_specs import COPY_LSTM, COPY_RNN, LOSS, RNN


def _spec(tmp_path, text: str, name: str = "rnn"):
    path = tmp_path / f"{name}.bp"
    path.write_text(text)
    return path


def _by_hand(feeds, params, last_only):
    """``||dL/dh_t||`` of the test RNN (loss: mean((h - y)^2) + sum(h[:, -1]^2)), the
    adjoint into step t from outside it, by a hand-written BPTT."""
    x, h0, y = feeds["x"], feeds["h0"], feeds["y"]
    wx, wh, b = params["Wx"], params["Wh"], params["b"]
    hs, h = [], h0
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    hs = np.stack(hs, axis=1)
    dh = 2 * (hs - y) / hs.size
    dh[:, -1] += 2 * hs[:, -1]
    if last_only:
        dh[:, :-1] = 0
    norms, carried = [], np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        d = dh[:, t] + carried
        norms.append(np.linalg.norm(d))
        carried = ((1 - hs[:, t] ** 2) * d) @ wh.T
    return norms[::-1]


def test_norms_per_step_are_backpropagation_through_time(tmp_path):
    prog = program_from_file(_spec(tmp_path, RNN + LOSS))
    rows = {r["layer"]: r for r in layer_stats(prog, batch=7, seed=3, steps=6)}
    feeds, params = stats_batch(prog, 7, 3, 6)
    assert feeds["x"].shape == (7, 6, 3)
    for key, last_only in (("grad_norm_per_step", False),
                           ("last_step_grad_norm_per_step", True)):
        assert np.allclose(rows["h"][key], _by_hand(feeds, params, last_only), rtol=1e-10)


def test_copy_task_rnn_gradient_vanishes_going_back(tmp_path):
    """A tanh RNN and an LSTM on the copy task's shapes, 11 steps, at initialization: of
    the last step's gradient, a few percent or less reaches the first step."""
    for text, name in ((COPY_RNN, "copy_rnn"), (COPY_LSTM, "copy_lstm")):
        rows = layer_stats(program_from_file(_spec(tmp_path, text, name)), batch=50,
                           steps=11)
        h = next(r for r in rows if r["layer"] == "h")
        last = h["last_step_grad_norm_per_step"]
        assert len(last) == len(h["grad_norm_per_step"]) == 11
        assert last[0] < 0.1 * last[-1]
        assert all(a < b for a, b in zip(last, last[1:]))  # smaller at every step back
        table = format_table(rows)
        assert "gradient norm per time step" in table and "h: last" in table


def test_cli_prints_the_table_and_json(tmp_path):
    spec = _spec(tmp_path, COPY_RNN, "copy_rnn")
    out = run_bpc("stats", str(spec), "--steps", "4", "--batch", "5")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert [r[0] for r in rows if r and r[0].isdigit()] == ["0", "1", "2", "3"]
    out = run_bpc("stats", str(spec), "--steps", "4", "--json")
    h = next(r for r in json.loads(out.stdout) if r["layer"] == "h")
    assert len(h["grad_norm_per_step"]) == 4
    out = run_bpc("stats", str(spec), "--steps", "0")
    assert out.returncode != 0 and "--steps" in out.stderr and "Traceback" not in out.stderr


def test_a_trained_models_norms_are_its_checkpoints_on_the_same_batch(tmp_path):
    """``--checkpoint``: the parameters a run trained, on the batch drawn at
    initialization (the norms by hand with those parameters); with --init it is refused."""
    spec = _spec(tmp_path, RNN + LOSS + "train { epochs = 2; batch = 4 }\n")
    prog = program_from_file(spec)
    feeds, initial = stats_batch(prog, 5, 1, 3)
    np.savez(tmp_path / "d.npz", **feeds)
    assert run_bpc("train", spec, "--data", tmp_path / "d.npz", "--out",
                   tmp_path / "run").returncode == 0
    from bpc.runtime.checkpoint import read_checkpoint_file

    trained = read_checkpoint_file(tmp_path / "run" / "checkpoint.npz").params
    assert not np.allclose(trained["Wh"], initial["Wh"])
    out = run_bpc("stats", spec, "--batch", "5", "--seed", "1", "--steps", "3", "--json",
                  "--checkpoint", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    h = next(r for r in json.loads(out.stdout) if r["layer"] == "h")
    assert np.allclose(h["grad_norm_per_step"], _by_hand(feeds, trained, False), rtol=1e-10)
    both = run_bpc("stats", spec, "--init", "he", "--checkpoint", tmp_path / "run")
    assert both.returncode != 0 and "--init and --checkpoint exclude each other" in both.stderr
