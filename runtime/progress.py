"""The training loop's progress bar: tqdm's, on a terminal or in a notebook, opened once
the run has lasted ``BAR_DELAY`` seconds.

tqdm's import costs ~20-30 ms (its package pulls in ``importlib.metadata``, the email
package and logging), a sixth of a short run; a run over before a bar could be read
imports none, and a log (standard error not a terminal) never does. The bar is cleared
when the run ends (``leave=False``), so what stays on the screen is the same either way.
"""

from __future__ import annotations

import sys
import time

# A run that ends sooner shows no bar: tqdm's own ``delay``, without importing tqdm.
BAR_DELAY = 0.5


def progress(plan, quiet: bool) -> Progress | None:
    """The bar of a run of ``plan`` (``plan.Plan``), None when it would not show: ``quiet``,
    or outside a notebook with standard error not a terminal (a log)."""
    if quiet or "ipykernel" not in sys.modules and not sys.stderr.isatty():
        return None
    return Progress(plan)


class Progress:
    """The bar, opened by the first step that ends ``BAR_DELAY`` seconds after it was
    made; ``advance`` after every step, ``clear`` before a line is printed, ``close``."""

    def __init__(self, plan):
        self.plan = plan
        self.due = time.perf_counter() + BAR_DELAY
        self.bar = None

    def advance(self, pos) -> None:
        """Step ``pos.step`` done (``checkpoint.Position``): counted, and at an epoch's
        first step its number and the running loss shown."""
        bar, plan = self.bar, self.plan
        if bar is None:
            if time.perf_counter() >= self.due:
                self._open(pos)
            return
        steps = plan.steps_per_epoch
        if pos.step % steps == 1 or steps == 1:
            bar.set_description(f"epoch {pos.step // steps + 1}/{plan.total_epochs}",
                                refresh=False)
            bar.set_postfix_str(f"loss {pos.running:.4g}", refresh=False)
        bar.update(1)

    def _open(self, pos) -> None:
        self.due = float("inf")  # once: without tqdm there is no bar to open
        tqdm, plan = bar_class(), self.plan
        if tqdm is None:  # pragma: no cover - tqdm is a dependency
            return
        # disable=None: shown on a terminal, silent in logs; always in a notebook
        self.bar = tqdm(total=plan.total_steps, initial=min(pos.step, plan.total_steps),
                        unit="step", leave=False, dynamic_ncols=True, file=sys.stderr,
                        disable=None if "ipykernel" not in sys.modules else False,
                        desc=f"epoch {pos.epoch + 1}/{plan.total_epochs}",
                        postfix=f"loss {pos.running:.4g}")

    def clear(self) -> None:
        if self.bar is not None:
            self.bar.clear()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def bar_class():
    """tqdm's bar class: its widget in a notebook when ipywidgets is there to draw it (the
    ``notebook`` extra), else its text bar, never ``tqdm.auto``'s warning that the widget
    cannot be drawn; None without tqdm."""
    import importlib.util

    try:
        if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm
