"""``bpc sample`` / ``model.sample``: a trained language model's text, each next id drawn
from its prediction at the last step. Checked against loops written here over the
generated ``predict``: greedy decoding over the whole text (the window for a model
without streams; from the initial state for one whose loops carry state, which it must
equal when the state is carried one id at a time), the frequencies of the ids drawn
against the model's probabilities at temperatures 1 and 0.5, and the errors a user can
cause, by name, on the command line without a traceback."""

import numpy as np
import pytest

import bpc
from bpc.runtime.errors import UserError
from bpc.runtime.evaluate import probabilities
from bpc.runtime.loader import load_model
from bpc.runtime.sampling import decode, default_context, encode, sample
from conftest import REPO, run_bpc

SPECS = REPO / "specs"


def _model(name):
    module = load_model(SPECS / f"{name}.bp")
    return module, module.init_params(np.random.default_rng(3))


def _next_ids(module, params, text):
    y = module.predict(params, ids=text, **({"state": module.init_state()}
                                            if hasattr(module, "init_state") else {}))
    return y[:, -1]


def test_greedy_is_the_most_likely_id_given_the_window():
    module, params = _model("charlm")
    prompt = encode("Beautiful is", "zen", 45)
    got = sample(module, params, prompt, 40, temperature=0, samples=2, context=8)
    text = np.tile(prompt, (2, 1))
    for _ in range(40):
        nxt = np.argmax(_next_ids(module, params, text[:, -8:]), axis=1)
        text = np.concatenate([text, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(got, text[:, len(prompt):])


def test_a_stateful_model_carries_its_state_one_id_at_a_time():
    """zen_lm is fed the prompt once and then one id a step: the same ids as running the
    whole text from the initial state at every step, and its 4 streams write 4 samples."""
    module, params = _model("zen_lm")
    prompt = encode("Simple", "zen", 45)
    got = sample(module, params, prompt, 30, temperature=0, samples=4)
    assert got.shape == (4, 30)
    text = np.tile(prompt, (4, 1))
    for _ in range(30):
        nxt = np.argmax(_next_ids(module, params, text), axis=1)
        text = np.concatenate([text, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(got, text[:, len(prompt):])


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_ids_are_drawn_with_the_model_s_probabilities(temperature):
    module, params = _model("charlm")
    prompt = encode("Errors", "zen", 45)
    p = probabilities(module, module.predict(params, ids=np.array([prompt]))[:, -1:])[0, 0]
    want = p ** (1 / temperature) / np.sum(p ** (1 / temperature))
    ids = sample(module, params, prompt, 1, temperature=temperature, samples=20000, seed=1)
    seen = np.bincount(ids[:, 0], minlength=45) / 20000
    assert np.max(np.abs(seen - want)) < 0.015
    again = sample(module, params, prompt, 1, temperature=temperature, samples=20000, seed=1)
    np.testing.assert_array_equal(ids, again)


LEARNED = """model pos
input ids : [N, T]
target t : [N, T]
param E : [10, 4] = normal(std=0.1)
param P : [12, 4] = normal(std=0.1)
param W : [4, 10] = xavier
y = (embed(ids, E) + first_rows(P, T)) @ W
loss L = softmax_cross_entropy(y, t)
"""


def test_the_window_and_the_text(tmp_path):
    """The window: a table of positions' rows, else the data line's window length, else
    everything; the text: the data set's characters, or ids for data that is not text."""
    assert default_context(load_model(SPECS / "tiny_gpt.bp")) == 32  # zen(steps=32)
    (tmp_path / "pos.bp").write_text(LEARNED)
    learned = load_model(tmp_path / "pos.bp")
    assert default_context(learned) == 12
    (tmp_path / "none.bp").write_text(LEARNED.replace(" + first_rows(P, T)", "")
                                      .replace("param P : [12, 4] = normal(std=0.1)\n", ""))
    assert default_context(load_model(tmp_path / "none.bp")) is None
    params = learned.init_params(np.random.default_rng(0))
    assert sample(learned, params, [1] * 20, 5, temperature=0, context=12).shape == (1, 5)
    assert decode(encode("Now is better", "zen", 45), "zen") == "Now is better"
    assert encode("3 1 4", "copy", 10) == [3, 1, 4] and decode([3, 1, 4], "copy") == "3 1 4"


def test_errors_name_what_is_wrong():
    module, params = _model("zen_lm")
    with pytest.raises(UserError, match="carry 4 streams, so it writes 4 samples at once"):
        sample(module, params, [1], 5, samples=9)
    with pytest.raises(UserError, match="the prompt is empty"):
        sample(module, params, [], 5)
    with pytest.raises(UserError, match=r"the prompt has '~', 'é', which zen's alphabet"):
        encode("ab~é", "zen", 45)
    with pytest.raises(UserError, match="is not ids"):
        encode("abc", "copy", 10)
    with pytest.raises(UserError, match="id 12 is outside the vocabulary 0..9"):
        encode("1 12", "copy", 10)
    xor, _ = _model("xor")
    with pytest.raises(UserError, match=r"needs a language model.*'x' \[N, 2\]"):
        sample(xor, {}, [1], 5)


def test_the_command_line_and_the_api_write_the_same_text(tmp_path):
    run = tmp_path / "run"
    r = run_bpc("train", SPECS / "zen_lm.bp", "--epochs", "2", "--out", run, "--quiet")
    assert r.returncode == 0, r.stderr
    r = run_bpc("sample", SPECS / "zen_lm.bp", "--checkpoint", run, "--prompt", "Flat is",
                "--length", "50", "--samples", "3", "--seed", "7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("Flat is")[1:]
    assert len(lines) == 3 and r.stdout.startswith("Flat is")
    model = bpc.compile(SPECS / "zen_lm.bp")
    ck = bpc.load_checkpoint(run)
    texts = model.sample("Flat is", length=50, samples=3, seed=7, params=ck.params,
                         state=ck.state)
    assert r.stdout == "".join(t + "\n" for t in texts)
    assert all(len(t) == len("Flat is") + 50 for t in texts)
    for args, message in [(["--prompt", "x~"], "which zen's alphabet does not"),
                          (["--prompt", "a", "--temperature", "-1"], "--temperature"),
                          (["--prompt", "a", "--samples", "5"], "use --samples 4 or fewer")]:
        r = run_bpc("sample", SPECS / "zen_lm.bp", "--checkpoint", run, *args)
        assert r.returncode in (1, 2) and message in r.stderr and "Traceback" not in r.stderr
    r = run_bpc("sample", SPECS / "xor.bp", "--checkpoint", run, "--prompt", "a")
    assert r.returncode == 1 and "needs a language model" in r.stderr
