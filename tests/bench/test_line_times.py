"""The line timer the bench's profiles come from: the same results, every statement timed."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from line_times import timed  # noqa: E402


def _sample(xs):
    total = 0
    for x in xs:
        if x > 1:
            total += x * x
    return total + 1


def test_timed_function_computes_the_same_and_times_each_statement():
    fn, acc = timed(_sample, {})
    assert fn([1, 2, 3]) == _sample([1, 2, 3]) == 14
    assert set(acc) == {"total = 0", "total += x * x", "return total + 1"}
    assert all(v >= 0 for v in acc.values())
