"""Model selection while training: the best epoch by a watched metric, its parameters and
state kept (``best.npz``, as Keras' ``ModelCheckpoint(save_best_only)``: with ``--keep
best`` or early stopping), and early stopping once the metric has not improved for
``patience`` epochs, the best epoch's parameters restored (as Keras' ``EarlyStopping
(restore_best_weights)``).

The ``Selector`` reads the history's rows as they are written (the text of each
value), so what the history says is what was compared, and a resume replays the rows
its checkpoint holds to the same state; only the best epoch's arrays are saved with the
checkpoint (its ``best/`` entries).
"""

from __future__ import annotations

from .arrays import is_tensor
from .errors import UserError
from .history import better_key, numeric_row
from .settings import METRICS, Settings, metric_sign


class Selector:
    """The best epoch by ``metric`` so far (of equals, the one of lower training loss,
    then the later: ``history.best_row`` with the metric), and, with a ``patience``,
    whether the run should stop: ``patience`` epochs after the last row that improved
    the metric by more than ``min_delta``."""

    def __init__(self, metric: str, patience: int | None, min_delta: float):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.sign = metric_sign(metric)
        self.best: dict | None = None  # the best row, as numbers
        self.arrays: tuple[dict, dict] | None = None  # its (params, state), copies
        self.reference: float | None = None  # the metric at its last improvement
        self.improved = 0  # the epoch of that improvement
        self.stopped: str | None = None  # why the run stopped early
        self.unsaved = False  # the best changed since best.npz was written

    def observe(self, row: dict) -> bool:
        """Take a history row in; True when it is the new best (``keep`` its arrays)."""
        r = numeric_row(row)
        value = r[self.metric]
        if value is None:
            return False
        if self.reference is None or self.sign * (self.reference - value) > self.min_delta:
            self.reference, self.improved = value, r["epoch"]
        new_best = self.best is None or \
            better_key(r, self.metric, self.sign) < better_key(self.best, self.metric, self.sign)
        if new_best:
            self.best = r
        if self.patience is not None and r["epoch"] - self.improved >= self.patience:
            self.stopped = (f"{self.metric} has not improved"
                            + (f" by more than {self.min_delta:g}" if self.min_delta else "")
                            + f" for {r['epoch'] - self.improved} epochs (since epoch "
                            f"{self.improved}, {self.metric} {self.reference:.6g})")
        return new_best

    def keep(self, params: dict, state: dict | None) -> None:
        """The new best epoch's parameters and state, copied."""
        self.arrays = ({k: _copy(v) for k, v in params.items()},
                       {k: _copy(v) for k, v in (state or {}).items()})
        self.unsaved = True

    def replay(self, rows: list[dict], best: dict, best_state: dict, path) -> None:
        """The state after ``rows`` (a resumed run's history), with the best epoch's
        arrays as its checkpoint saved them."""
        for row in rows:
            self.observe(row)
        if self.best is not None:
            if not best:
                raise UserError(f"{path} lacks the best epoch's parameters ('best/' "
                                "entries) of a run that selects its best epoch",
                                "it is damaged; train without --resume (or into a new "
                                "--out folder)")
            self.arrays, self.unsaved = (best, best_state), True

    def best_meta(self, history: list[list], run: dict | None) -> dict:
        """best.npz's metadata: the epoch, the metric and the history (rows as values,
        ``history.epoch_row``) up to the epoch."""
        epoch = self.best["epoch"]
        return {"epoch": epoch, "step": self.best["step"], "metric": self.metric,
                "value": self.best[self.metric], "run": run,
                "history": [r for r in history if int(r[0]) <= epoch]}


def selector(settings: Settings, has: dict[str, bool]) -> Selector | None:
    """The run's selector (None when it neither stops early nor keeps its best), its
    metric checked against what the run measures: ``has`` says whether it has a
    validation split ("val"), a test split ("test") and an accuracy ("acc")."""
    if settings.early_stop is None and settings.keep != "best":
        return None
    metric = settings.early_stop if settings.early_stop not in (None, "auto") else \
        "val_loss" if has["val"] else "loss"
    missing = _lacks(metric, has)
    if missing:
        measured = [k for k in METRICS if not _lacks(k, has)]
        raise UserError(f"cannot watch {metric}: the run has no {missing}",
                        "give --validation FRACTION" if missing == "validation split"
                        else "watch one of " + ", ".join(measured))
    return Selector(metric, settings.patience if settings.early_stop else None,
                    settings.min_delta)


def _lacks(metric: str, has: dict[str, bool]) -> str | None:
    """What a run needs to measure ``metric`` and lacks, in words; None if nothing."""
    for what, key, needed in (("validation split", "val", metric.startswith("val_")),
                              ("test split", "test", metric.startswith("test_")),
                              ("accuracy (it is not a classifier)", "acc",
                               metric.endswith("_acc"))):
        if needed and not has[key]:
            return what
    return None


def _copy(a):
    """A copy of an array or a tensor, where it is (a torch run's stays on its device)."""
    return a.clone() if is_tensor(a) else a.copy()
