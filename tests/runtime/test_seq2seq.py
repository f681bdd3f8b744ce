"""The encoder-decoder's data (``addition_seq2seq``: the question, the decoder's input fed
the answer shifted right, the answer) and its scoring under greedy decoding, where the
decoder is fed its own previous prediction instead of the answer."""

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run_bpc
from bpc.runtime import data
from bpc.runtime.datasets import ADDITION_CHARS
from bpc.runtime.decoding import decoder_of, exact_match, greedy_decode
from bpc.runtime.errors import UserError

SEQ2SEQ = """\
model s2s
input q : [N, 7]
input d : [N, 4]
target t : [N, 4]
layers q -> enc {
  embedding 13 4
  lstm 6 last
}
layers d -> y {
  embedding 13 4
  lstm 6 init=enc
  dense 13
}
loss L = softmax_cross_entropy(y, t)
train { epochs = 1; batch = 50 }
data addition_seq2seq(n=200)
"""


@pytest.fixture(scope="module")
def s2s():
    import bpc

    return bpc.compile(SEQ2SEQ)


def _text(ids):
    return ["".join(ADDITION_CHARS[i] for i in row) for row in ids]


def test_the_decoder_is_fed_the_answer_shifted_right(s2s):
    ds = data.builtin("addition_seq2seq", s2s, seed=4, n=300)
    assert {k: v.shape for k, v in ds.train.items()} == {"q": (270, 7), "d": (270, 4),
                                                         "t": (270, 4)}
    assert len(ds.test["q"]) == 30
    for q, d, t in zip(_text(ds.train["q"]), _text(ds.train["d"]), _text(ds.train["t"])):
        a, b = q.split("+")
        assert t.rstrip() == str(int(a) + int(b)) and d == "_" + t[:-1]
    again = data.builtin("addition_seq2seq", s2s, seed=4, n=300)
    other = data.builtin("addition_seq2seq", s2s, seed=5, n=300)
    for k in ("q", "d", "t"):
        np.testing.assert_array_equal(ds.test[k], again.test[k])
    assert not np.array_equal(ds.train["q"], other.train["q"])


def test_a_model_of_another_shape_is_told_what_the_data_set_gives():
    one_input = SimpleNamespace(INPUTS={"x": ("N", 7)}, TARGETS={"t": ("N", 4)}, CONFIG={},
                                DEFAULTS={})
    with pytest.raises(UserError, match=r"'addition_seq2seq' gives two inputs \(the "
                                        r"question, then the decoder's input\) and one target"):
        data.builtin("addition_seq2seq", one_input, n=10)


@pytest.mark.parametrize("option, message", [
    ("digits=0", "'digits' of 'addition_seq2seq' must be a whole number in [1, 9], not 0"),
    ("n=1", "'n' of 'addition_seq2seq' must be a whole number in [2, 200000], not 1"),
    ("steps=3", "data set 'addition_seq2seq' has no argument 'steps'"),
])
def test_bad_options_are_errors_naming_the_option(tmp_path, option, message):
    spec = tmp_path / "s2s.bp"
    spec.write_text(SEQ2SEQ.replace("(n=200)", f"({option})"))
    run = run_bpc("check", spec)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert message in run.stdout + run.stderr


def _fake(predict):
    """A decoder's contract around ``predict``: labels [N, 2] scored per position."""
    return SimpleNamespace(INPUTS={"q": ("N", 1), "d": ("N", 2)}, TARGETS={"t": ("N", 2)},
                           CONFIG={"accuracy": {"target": "t", "kind": "labels",
                                                "class_axis": -1, "logits": True}},
                           DEFAULTS={}, predict=predict)


def _onehot(ids):
    return np.eye(13)[ids]


def test_greedy_decoding_feeds_the_decoder_its_own_output():
    """A decoder that answers each fed id plus one: greedy decoding from start 0 says
    1, 2 whatever the data's decoder input, which teacher forcing would have read."""
    counting = _fake(lambda params, q, d: _onehot(d + 1))
    inputs = {"q": np.zeros((2, 1), int), "d": np.array([[0, 5], [0, 1]])}
    np.testing.assert_array_equal(greedy_decode(counting, {}, inputs, "d", 0),
                                  [[1, 2], [1, 2]])
    assert exact_match(counting, {}, {**inputs, "t": np.array([[1, 6], [1, 2]])}, "d",
                       0) == 0.5


def test_a_decoder_that_looks_ahead_is_never_shown_the_answer():
    peeking = _fake(lambda params, q, d: _onehot(d[:, ::-1]))  # position 0 reads d[:, 1]
    inputs = {"q": np.zeros((1, 1), int), "d": np.array([[12, 7]])}
    np.testing.assert_array_equal(greedy_decode(peeking, {}, inputs, "d", 12), [[12, 12]])
    assert exact_match(peeking, {}, {**inputs, "t": np.array([[7, 12]])}, "d", 12) == 0.0


def test_a_causal_decoders_greedy_answer_is_its_own_teacher_forced_prediction(s2s):
    """Fed start and its greedy answer but the last, the LSTM decoder predicts that answer
    again at every position: each position read only what was decoded before it."""
    ds = data.builtin("addition_seq2seq", s2s, seed=0, n=200)
    params = s2s.init_params(np.random.default_rng(1))
    params = {k: v * 30 for k, v in params.items()}  # sharp, varied predictions
    decoder = decoder_of(s2s, "addition_seq2seq")
    assert decoder == ("d", ADDITION_CHARS.index("_"))
    inputs = {k: ds.test[k] for k in ("q", "d")}
    answers = greedy_decode(s2s, params, inputs, *decoder)
    fed = np.concatenate([np.full((len(answers), 1), decoder[1]), answers[:, :-1]], axis=1)
    forced = np.argmax(s2s.predict(params, q=ds.test["q"], d=fed), axis=-1)
    np.testing.assert_array_equal(forced, answers)
    assert len(np.unique(answers)) > 2
    assert decoder_of(s2s, "addition") is None


def test_train_and_eval_report_the_exact_match_of_greedy_answers(tmp_path):
    spec = tmp_path / "s2s.bp"
    spec.write_text(SEQ2SEQ)
    run = run_bpc("train", spec, "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("greedy decoding"))
    assert "exact match " in line and "of 20 test answers" in line
    assert "test_acc is per character with the true answer fed in (teacher forcing)" in line
    ev = run_bpc("eval", spec, "--checkpoint", tmp_path / "run")
    assert ev.returncode == 0 and "exact match (greedy) " in ev.stdout


@pytest.mark.parametrize("name, options, bound", [
    ("addition", ("--data", "addition_seq2seq:n=10000", "--epochs", "1"), 8.0),
    ("copy_rnn", ("--data", "copy:n=400,steps=2,delay=30", "--epochs", "3"), 9.0),
    ("copy_lstm", ("--data", "copy:n=400,steps=2,delay=30", "--epochs", "3"), 9.0),
])
def test_the_sequence_gallery_models_learn(tmp_path, name, options, bound):
    """Trained briefly, the test perplexity per character falls from the uniform one (13
    characters for addition, 10 ids for copy) below ``bound``."""
    from conftest import REPO

    run = run_bpc("train", REPO / "specs" / f"{name}.bp", *options, "--out", tmp_path / "r")
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith(f"{name}: loss"))
    assert float(line.split("test_loss")[1].split("(ppl ")[1].split(")")[0]) < bound, line
    assert ("greedy decoding" in run.stdout) == (name == "addition")


def test_model_evaluate_reports_the_exact_match_on_the_built_in_data(s2s):
    params = s2s.init_params(np.random.default_rng(0))
    scores = s2s.evaluate(params=params)
    assert set(scores) == {"loss", "accuracy", "examples", "exact_match"}
    assert scores["examples"] == 20 and 0 <= scores["exact_match"] <= scores["accuracy"]
    ds = data.builtin("addition_seq2seq", s2s, n=20)
    assert "exact_match" not in s2s.evaluate(params=params, data=ds.train)
