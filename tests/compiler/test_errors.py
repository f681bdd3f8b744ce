"""Golden tests for error messages: exact text, location, caret and hint."""

import pytest

from bpc.compiler.errors import SpecError, did_you_mean, edit_distance
from bpc.compiler.pipeline import check_file
from conftest import GOLDEN, check_golden

CASES = sorted((GOLDEN / "errors").glob("*.bp"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_error_golden(case, monkeypatch):
    monkeypatch.chdir(case.parent)
    with pytest.raises(SpecError) as info:
        check_file(case.name)
    check_golden(case.with_suffix(".err"), info.value.render() + "\n")


def test_there_are_at_least_15_distinct_messages():
    firsts = {c.with_suffix(".err").read_text().splitlines()[0].split(": error: ")[1]
              for c in CASES}
    assert len(firsts) >= 15


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("param", "parm") == 1
    assert edit_distance("ab", "ba") == 1  # transposition
    assert did_you_mean("sigmod", ["sigmoid", "softmax", "sin"]) == ["sigmoid"]
    assert did_you_mean("zzzz", ["sigmoid"]) == []
