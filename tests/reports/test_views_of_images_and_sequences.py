"""The views (trace, stats, graph, explain) on values of rank 3 and 4: a sequence
``[N, T, D]`` and images through per-axis windows that leave pixels out. Each value
too large for a line is a summary (shape, norm, min, max): no view crashes or floods."""

import math
import re

import pytest

from bpc.compiler.compilation import Compilation
from bpc.reports.explain import report
from bpc.reports.graph import build, to_svg
from bpc.reports.stats import layer_stats
from bpc.reports.trace import format_trace, point, trace
from html_page import Page

SEQUENCE = """model seq
input x : [N, T, 4]
target t : [N, T, 4]
param w : [4] = normal
h = tanh(x * w)
loss L = mean((h - t)^2)
"""

IMAGES = """model windows
input x : [N, 2, 9, 8]
target t : [N]
layers x -> y {
  conv 3 size=[3, 2] stride=[2, 1] pad=[1, 0]
  relu
  maxpool size=[2, 3]
  flatten
  dense 4
}
loss L = softmax_cross_entropy(y, t)
"""

MOST_NUMBERS = 12  # in one line of a view: more is a flood


def _numbers(text: str) -> int:
    return len(re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text))


@pytest.fixture(params=[SEQUENCE, IMAGES], ids=["sequence", "images"])
def spec(request, tmp_path):
    path = tmp_path / "view.bp"
    path.write_text(request.param)
    return path


def test_trace_summarizes_what_does_not_fit_a_line(spec):
    comp = Compilation.from_file(spec)
    feeds, params, where = point(comp)
    text = format_trace(trace(comp, feeds, params, where))
    lines = text.splitlines()
    assert all(_numbers(line) <= MOST_NUMBERS for line in lines), text
    summaries = [line for line in lines if re.search(r"\[\d+×\d+×\d+(×\d+)?\] norm", line)]
    assert any(line.lstrip().startswith("x = ") for line in summaries), text
    assert any(line.lstrip().startswith("dL_d") for line in summaries), text


def test_stats_has_a_row_per_layer_with_its_full_shape(spec):
    rows = layer_stats(Compilation.from_file(spec).program, batch=6)
    assert rows and all(r["shape"][0] == 6 and r["act_std"] > 0 and
                        math.isfinite(r["grad_std"]) for r in rows)
    assert any(len(r["shape"]) >= 3 for r in rows)


def test_graph_labels_are_summaries(spec):
    comp = Compilation.from_file(spec)
    feeds, params, _ = point(comp)
    svg = to_svg(build(comp, feeds, params))
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert any(" norm " in label for label in labels), labels
    assert all(_numbers(label) <= MOST_NUMBERS for label in labels), labels


def test_explain_page_parses_and_does_not_flood(spec):
    page = report(spec, batch=4)
    assert not Page(page).stack, "unclosed tags"
    text = re.sub(r"<[^>]+>", "\n", re.sub(r"<(script|style).*?</\1>", "", page, flags=re.S))
    assert all(_numbers(line) <= MOST_NUMBERS for line in text.splitlines())
