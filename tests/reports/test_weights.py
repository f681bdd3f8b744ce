"""``bpc trace --plot NAME=FILE``: a value's last two axes as a heat map, the characters of
the example on the axes, from a trained checkpoint's parameters."""

import numpy as np
import pytest

from conftest import REPO, run_bpc
from bpc.compiler.compilation import Compilation
from bpc.reports import weights
from bpc.reports.trace import point, trace
from bpc.runtime.datasets import alphabet, zen_text
from bpc.runtime.errors import UserError

GPT = REPO / "specs" / "tiny_gpt.bp"


@pytest.fixture(scope="module")
def gpt_trace():
    comp = Compilation.from_file(str(GPT))
    feeds, params, where = point(comp, row=7)
    return trace(comp, feeds, params, where), feeds


def test_each_head_is_a_panel_with_the_window_on_both_axes(gpt_trace, monkeypatch, tmp_path):
    tr, feeds = gpt_trace
    drawn = {}
    monkeypatch.setattr(weights, "plot_weights", lambda panels, rows, cols, path, title:
                        drawn.update(panels=panels, rows=rows, cols=cols, title=title))
    said = weights.plot_value(tr, "a", tmp_path / "a.png", feeds, "zen")
    assert said.startswith(f"wrote {tmp_path / 'a.png'}: 'a' [1, 2, 32, 32] at row 7")
    window = list(zen_text()[7:39])  # row 7 of the training windows
    assert drawn["rows"] == drawn["cols"] == window
    assert [name for name, _ in drawn["panels"]] == ["a, head 0", "a, head 1"]
    for _, matrix in drawn["panels"]:  # causal: no weight above the diagonal, rows sum to 1
        assert not np.triu(matrix, 1).any()
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_axes_without_a_sequence_of_their_length_or_alphabet_have_no_labels(gpt_trace):
    _, feeds = gpt_trace
    chars = alphabet("zen")
    assert weights._labels(feeds, 31, chars) is None
    assert weights._labels(feeds, 32, None) is None
    assert alphabet("spiral") is None and alphabet("dates")[0] == " "


@pytest.mark.parametrize("name, message", [
    ("nope", "'nope' is not a value of the forward pass"),
    ("n1_mu", None),  # [1, 32, 1]: drawable, a column
    ("L_log_softmax", None),
])
def test_what_can_be_drawn(gpt_trace, monkeypatch, tmp_path, name, message):
    tr, feeds = gpt_trace
    monkeypatch.setattr(weights, "plot_weights", lambda *a: None)
    if message is None:
        assert weights.plot_value(tr, name, tmp_path / "v.png", feeds, "zen")
        return
    with pytest.raises(UserError, match=message) as e:
        weights.plot_value(tr, name, tmp_path / "v.png", feeds, "zen")
    assert "a, " in e.value.hint or ", a," in e.value.hint


def test_a_scalar_is_refused_and_the_flag_needs_a_file(gpt_trace, tmp_path):
    tr, feeds = gpt_trace
    scalar = next(ln.name for ln in tr.lines if ln.section == "forward" and ln.value.ndim == 0)
    with pytest.raises(UserError, match="0-dimensional; a picture needs 2 to 4 axes"):
        weights.plot_value(tr, scalar, tmp_path / "v.png", feeds, "zen")
    with pytest.raises(UserError, match="give a value and an image, NAME=FILE"):
        weights.parse_plot("a")


def test_the_picture_of_a_trained_model_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    run = run_bpc("train", GPT, "--iters", 3, "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    out = run_bpc("trace", GPT, "--row", 5, "--checkpoint", tmp_path / "run", "--plot",
                  f"a={tmp_path / 'a.png'}")
    assert out.returncode == 0, out.stderr
    assert f"parameters of {tmp_path / 'run'}" in out.stdout
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
