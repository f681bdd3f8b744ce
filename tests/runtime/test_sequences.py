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


def _module(x_shape, t_shape):
    """The contract builtin() reads: one input and one target of these shapes."""
    from types import SimpleNamespace

    return SimpleNamespace(INPUTS={"x": x_shape}, TARGETS={"t": t_shape}, CONFIG={},
                           DEFAULTS={})


def _text(ids, chars):
    return ["".join(chars[i] for i in row) for row in ids]


@pytest.mark.parametrize("name, kwargs, x_shape, t_shape, n_test", [
    ("addition", {"n": 50}, (45, 7), (45, 5), 5),
    ("addition", {"n": 10, "digits": 1}, (9, 3), (9, 3), 1),
    ("zen", {}, (738, 32), (738, 32), 54),
    ("zen", {"steps": 5}, (765, 5), (765, 5), 81),
    ("sine_wave", {"n": 10, "steps": 4}, (8, 4, 1), (8, 4, 1), 2),
    ("copy", {"n": 10, "steps": 3, "symbols": 4}, (8, 7), (8, 7), 2),
    ("reverse", {"n": 10}, (8, 11), (8, 11), 2),
])
def test_sequence_data_sets_shapes_and_determinism(name, kwargs, x_shape, t_shape, n_test):
    module = _module(("N", "T") + ("D",) * (len(x_shape) == 3),
                     ("N", "S") + ("D",) * (len(t_shape) == 3))
    ds = data.builtin(name, module, seed=0, **kwargs)
    assert ds.train["x"].shape == x_shape and ds.train["t"].shape == t_shape
    assert len(ds.test["x"]) == n_test
    again = data.builtin(name, module, seed=0, **kwargs)
    for split in ("train", "test"):
        for k in ("x", "t"):
            np.testing.assert_array_equal(getattr(ds, split)[k], getattr(again, split)[k])


def test_addition_is_the_books_character_task():
    from bpc.runtime.datasets import ADDITION_CHARS, addition

    x, t, held_out = addition(np.random.default_rng(3), n=200)
    assert held_out == 0.1
    for question, answer in zip(_text(x, ADDITION_CHARS), _text(t, ADDITION_CHARS)):
        a, b = question.split("+")
        assert len(question) == 7 and len(answer) == 5 and answer[0] == "_"
        assert int(answer[1:]) == int(a) + int(b)


def test_zen_windows_predict_the_next_character():
    from bpc.runtime.datasets import zen, zen_text

    text = zen_text()
    assert text.startswith("The Zen of Python, by Tim Peters")
    chars = "".join(sorted(set(text)))
    x, t, x_test, t_test = zen(np.random.default_rng(0), steps=8)
    assert len(chars) == 45 and _text(x[:1], chars) == [text[:8]]
    assert _text(t[:1], chars) == [text[1:9]]
    assert _text(t_test[-1:], chars) == [text[-8:]]  # the test windows end the text


def test_sine_wave_targets_are_the_next_samples_and_copy_recalls_after_the_delimiter():
    from bpc.runtime.datasets import copy, reverse, sine_wave

    x, t, _ = sine_wave(np.random.default_rng(0), n=5, steps=6)
    np.testing.assert_array_equal(x[:, 1:], t[:, :-1])
    for task, order in ((copy, 1), (reverse, -1)):
        x, t, _ = task(np.random.default_rng(0), n=4, steps=3, symbols=5)
        assert np.all(x[:, 3] == 6) and not x[:, 4:].any() and not t[:, :4].any()
        np.testing.assert_array_equal(t[:, 4:], x[:, :3][:, ::order])


def test_copy_delay_puts_blanks_before_the_delimiter_and_draws_the_same_symbols():
    from bpc.runtime.datasets import copy, reverse

    for task, order in ((copy, 1), (reverse, -1)):
        x0, t0, _ = task(np.random.default_rng(0), n=4, steps=3, symbols=5)
        x, t, _ = task(np.random.default_rng(0), n=4, steps=3, symbols=5, delay=6)
        assert x.shape == t.shape == (4, 2 * 3 + 6 + 1)
        np.testing.assert_array_equal(x[:, :3], x0[:, :3])  # delay=0 is the same draw
        assert not x[:, 3:9].any() and np.all(x[:, 9] == 6) and not x[:, 10:].any()
        assert not t[:, :10].any()
        np.testing.assert_array_equal(t[:, 10:], x[:, :3][:, ::order])


def test_the_bigram_gallery_model_learns_the_zen(tmp_path):
    """The spec in the gallery: its training perplexity falls from 45 (uniform over the
    characters) well below 10."""
    from conftest import REPO

    run = run_bpc("train", REPO / "specs" / "bigram.bp", "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("bigram: loss"))
    assert float(line.split("(ppl ")[1].split(")")[0]) < 10


def test_dates_are_the_iso_dates_of_their_questions():
    """Each question, read back with the standard library's own parser for its format,
    is the date of its answer (a two-digit year 50..99 is 19yy, else 20yy), and a
    weekday named in it is that date's."""
    import datetime

    from bpc.runtime.datasets import DATE_CHARS, dates

    x, t, fraction = dates(np.random.default_rng(1), n=400)
    assert x.shape == (400, 29) and t.shape == (400, 10) and fraction == 0.1
    forms = ("%A, %B %d, %Y", "%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%m/%d/%Y", "%m/%d/%y")
    seen = set()
    for question, answer in zip(_text(x, DATE_CHARS), _text(t, DATE_CHARS)):
        iso = datetime.date.fromisoformat(answer)
        text = question.rstrip()
        for form in forms:
            try:
                read = datetime.datetime.strptime(text, form).date()
                break
            except ValueError:
                continue
        else:
            raise AssertionError(f"{text!r} is in none of the formats")
        seen.add(form)
        if form.endswith("%y"):  # strptime puts 50..68 in the 2000s; the task in the 1900s
            assert (read.month, read.day, read.year % 100) == (iso.month, iso.day,
                                                               iso.year % 100)
            assert iso.year == (1900 if iso.year % 100 >= 50 else 2000) + iso.year % 100
        else:
            assert read == iso, text
        if form.startswith("%A"):
            assert text.lower().startswith(iso.strftime("%A").lower() + ",")
    assert seen == set(forms)


def test_the_attention_gallery_models_learn(tmp_path):
    """The two attention specs of the gallery, trained briefly: the date converter's
    per-character perplexity falls from 66 (uniform over its characters) below 8 in one
    epoch, the language model's from 45 below 15 in three."""
    from conftest import REPO

    for name, epochs, bound in (("dates", 1, 8), ("tiny_gpt", 3, 15)):
        run = run_bpc("train", REPO / "specs" / f"{name}.bp", "--epochs", epochs,
                      "--out", tmp_path / name)
        assert run.returncode == 0, run.stderr
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith(f"{name}: loss"))
        assert float(line.split("(ppl ")[1].split(")")[0]) < bound, line
