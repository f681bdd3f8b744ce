"""The training loop's progress bar: none where it would not show, and tqdm's bar opened
only once a run has lasted BAR_DELAY seconds."""

import io
import sys
from types import SimpleNamespace

import pytest

from bpc.runtime import progress as progress_mod
from bpc.runtime.progress import progress

pytest.importorskip("tqdm", reason="the bar is tqdm's")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


PLAN = SimpleNamespace(total_steps=10, total_epochs=5, steps_per_epoch=2)


@pytest.fixture(autouse=True)
def outside_a_notebook(monkeypatch):
    """As in a terminal or a log: an earlier test (the notebook's) may have loaded
    ipykernel into this process, which makes the bar a notebook's."""
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)


def test_no_bar_in_a_log_or_a_quiet_run(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress(PLAN, quiet=False) is None
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress(PLAN, quiet=True) is None


def test_the_bar_opens_once_the_run_has_lasted_its_delay(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(progress_mod, "BAR_DELAY", 3600.0)
    bar = progress(PLAN, quiet=False)
    pos = SimpleNamespace(step=1, epoch=0, running=0.5)
    bar.advance(pos)
    assert bar.bar is None and screen.getvalue() == ""  # a short run: no bar, no tqdm
    bar.due = 0.0  # the delay has passed
    pos.step = 3
    bar.advance(pos)
    assert bar.bar.n == 3 and "epoch 1/5" in screen.getvalue()
    pos.step, pos.epoch = 5, 2
    bar.advance(pos)
    assert bar.bar.n == 4 and "epoch 3/5" in bar.bar.desc and "loss 0.5" in str(bar.bar)
    bar.close()
