"""A run's history: its rows (``HISTORY_FIELDS``), as text in ``history.csv`` and as
numbers in the ``History`` table, the printed line of each, and the best row.

Every epoch has a row: its ``loss`` is the epoch's mean training loss, its ``lr`` and
``seconds`` the epoch's; the measures of an evaluation (accuracies, test and validation
losses) fill the rows of the epochs evaluated (every ``eval_every`` epochs and the
last) and are empty in the others. ``history.csv`` is written by the run folder
(``runfolder.RunFolder``); it is read back here, complete rows only, as far as the file
can be read.
"""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import files
from .errors import UserError
from .settings import metric_sign

HISTORY_FIELDS = ["epoch", "step", "loss", "train_acc", "test_acc", "test_loss", "val_acc",
                  "val_loss", "lr", "seconds"]
# The columns of checkpoints written before the validation split, whose rows are shorter.
OLD_FIELDS = [k for k in HISTORY_FIELDS if not k.startswith("val_")]
# What an evaluation measures (``epoch_row``'s ``measured``); losses get more digits.
MEASURES = ("train_acc", "test_acc", "test_loss", "val_acc", "val_loss")


def epoch_row(epoch: int, step: int, loss: float, lr: float, seconds: float,
              measured: dict | None = None) -> list:
    """A row in the form a checkpoint and history.csv keep it: HISTORY_FIELDS' values,
    as text but for the epoch and step. ``measured`` (name -> value or None; None for an
    epoch that was not evaluated) fills the MEASURES, the others stay empty. Built every
    epoch, so kept lean: a list, written out as it is (a run of many one-step epochs
    counts each microsecond); ``row_dict`` names its values where a row is read."""
    row = [epoch, step, f"{loss:.8g}", "", "", "", "", "", f"{lr:.6g}", f"{seconds:.3f}"]
    for k, v in (measured or {}).items():
        if v is not None:
            row[_COLUMN[k]] = f"{v:.8g}" if k.endswith("loss") else f"{v:.6g}"
    return row


_COLUMN = {k: i for i, k in enumerate(HISTORY_FIELDS)}


def row_dict(values: list) -> dict:
    """A row kept as values (``epoch_row``, a checkpoint's) as a dict of HISTORY_FIELDS
    (or of an older checkpoint's OLD_FIELDS, whose rows are shorter)."""
    return dict(zip(HISTORY_FIELDS if len(values) == len(HISTORY_FIELDS) else OLD_FIELDS,
                    values))


def saved_rows(rows: list[list]) -> list[dict]:
    """Rows kept as values (a checkpoint's, ``epoch_row``'s) as dicts."""
    return [row_dict(r) for r in rows]


def saved_row(row: dict) -> list:
    """A row as a dict (``row_dict``'s, a history.csv's) as values."""
    try:
        return list(_saved_values(row))
    except KeyError:  # an older checkpoint's row: "" for val_
        return [row.get(k, "") for k in HISTORY_FIELDS]


_saved_values = operator.itemgetter(*HISTORY_FIELDS)


def is_saved_row(r) -> bool:
    """Whether ``r`` has the form of a checkpoint's history row (its values unchecked)."""
    return isinstance(r, list) and len(r) in (len(HISTORY_FIELDS), len(OLD_FIELDS))


def old_history(path: Path, epoch: int) -> list[dict]:
    """The rows of a history.csv up to ``epoch``, for a checkpoint that does not hold
    them: complete rows only, in order, without duplicates."""
    return _history_rows(path, lambda e, rows: e == len(rows) + 1 and e <= epoch)


def csv_history(path: Path) -> list[dict]:
    """The complete rows of a history.csv, in increasing epochs (a run evaluated every K
    epochs has rows at K, 2K, …); a damaged or repeated row is left out."""
    return _history_rows(path, lambda e, rows: e > (int(rows[-1]["epoch"]) if rows else 0))


def _history_rows(path: Path, follows) -> list[dict]:
    """The complete rows of a history.csv whose epoch ``follows(epoch, rows so far)``,
    as far as the file can be read (a damaged file gives the rows before the damage)."""
    rows: list[dict] = []
    try:
        with io.TextIOWrapper(files.open_regular(path), encoding="utf-8",
                              newline="") as f:  # never a FIFO's endless wait
            for row in csv.DictReader(f):
                try:
                    e = int(row.get("epoch") or "")
                except ValueError:
                    continue
                if follows(e, rows) and None not in row.values():
                    rows.append({k: row.get(k) or "" for k in HISTORY_FIELDS})
    except (OSError, UnicodeDecodeError, csv.Error, UserError):
        pass
    return rows


@dataclass(frozen=True)
class Summary:
    """A history row's printed line in its parts: the position (``epoch 3/10``), the
    measures (``loss 0.1234``, ``test_acc 91.0%``, ...) and the time (``1.23s``). A run's
    final summary prints some of them (its own position and time stand beside them)."""

    position: str
    measures: tuple[str, ...]
    seconds: str

    def text(self, position: bool = True, seconds: bool = True) -> str:
        parts = [self.position] * position + [*self.measures] + [self.seconds] * seconds
        return "  ".join(parts)


def summary(row: dict, total_epochs: int, perplexity: bool = False) -> Summary:
    """``perplexity``: each loss (a language model's mean per token) followed by its
    exponential, ``loss 1.2345 (ppl 3.44)``."""
    measures = []
    for k in ("loss", "val_loss", "test_loss"):
        if row.get(k) not in (None, ""):
            loss = float(row[k])
            # min: math.exp overflows past e^709, a loss no language model reaches
            ppl = f" (ppl {math.exp(min(loss, 700.0)):.4g})" if perplexity else ""
            measures.append(f"{k} {loss:.4f}{ppl}")
    for k in ("train_acc", "val_acc", "test_acc"):
        if row.get(k) not in (None, ""):
            measures.append(f"{k} {100 * float(row[k]):.1f}%")
    return Summary(f"epoch {row['epoch']}/{total_epochs}", tuple(measures),
                   f"{float(row['seconds']):.2f}s")


def summary_line(row: dict, total_epochs: int, perplexity: bool = False) -> str:
    return summary(row, total_epochs, perplexity).text()


class History(Sequence):
    """A run's history rows as numbers (``history.csv`` keeps the text): each row a dict
    of HISTORY_FIELDS, ``None`` where a value does not apply (no test split, a regression
    has no accuracy). ``h["loss"]`` is a column; ``str(h)`` and ``_repr_html_`` a table
    with the columns that have values, no pandas needed.

    ``History(rows)`` converts dicts (of text or numbers) at once, so a value that is not
    a number raises ValueError there; ``History.of_values`` holds a run's own rows as the
    run keeps them (``epoch_row``'s values) and makes each row a dict when it is first
    read: a run of many epochs whose caller reads a few rows converts a few."""

    def __init__(self, rows=()):
        self._values: list[list] | None = None
        self._rows: list[dict | None] = [numeric_row(r) for r in rows]

    @classmethod
    def of_values(cls, values: list[list]) -> "History":
        """The rows ``values`` (``epoch_row``'s, with today's columns; kept, not copied:
        the run has ended and adds none), converted as they are read."""
        history = cls()
        history._values, history._rows = values, [None] * len(values)
        return history

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.column(key)
        if isinstance(key, slice):
            return [self._row(i) for i in range(*key.indices(len(self)))]
        return self._row(key)

    def _row(self, i: int) -> dict:
        row = self._rows[i]
        if row is None:
            row = self._rows[i] = numeric_row(row_dict(self._values[i]))
        return row

    def __iter__(self):
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, (History, list)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # equal by its rows, which are mutable dicts: unhashable, as a list

    def __repr__(self) -> str:
        return repr(list(self))

    def column(self, key: str) -> list:
        """The values of ``key`` (a HISTORY_FIELDS name), one a row; read from the run's
        values where the rows were not all converted."""
        if self._values is None or None not in self._rows:
            return [row[key] for row in self]
        kind, i = (int if key in ("epoch", "step") else float), _COLUMN[key]
        return [None if v == "" else kind(v) for v in (r[i] for r in self._values)]

    def columns(self) -> list[str]:
        return [k for k in HISTORY_FIELDS if any(v is not None for v in self.column(k))]

    def scored(self, metric: str | None = None) -> tuple[str | None, list[int]]:
        """(the measure the best row is chosen by: ``metric``, else the first of BEST_BY
        that rows have; the indices of the rows that have it)."""
        for key in [metric] if metric else BEST_BY:
            found = [i for i, v in enumerate(self.column(key)) if v is not None]
            if found:
                return key, found
        return None, []

    def best(self, metric: str | None = None) -> dict | None:
        return best_row(self, metric)

    def _cells(self):
        cols = self.columns()
        return cols, [["" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(
            row[k], float) else str(row[k])) for k in cols] for row in self]

    def __str__(self) -> str:
        cols, cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        cols, cells = self._cells()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>"
                       for r in cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def numeric_row(row: dict) -> dict:
    get = row.get
    out = {"epoch": _number(get("epoch"), int), "step": _number(get("step"), int)}
    for k in _FLOAT_FIELDS:
        v = get(k)
        out[k] = None if v is None or v == "" else float(v)
    return out


_FLOAT_FIELDS = HISTORY_FIELDS[2:]


def _number(v, kind):
    return None if v is None or v == "" else kind(v)


# The measure the best row is chosen by when a run names none (the first one present):
# the validation loss, else the test accuracy, ... (better low or high: settings.METRICS).
BEST_BY = ("val_loss", "test_acc", "test_loss", "train_acc", "loss")


def best_row(history, metric: str | None = None) -> dict | None:
    """The best row by ``metric`` (any of settings.METRICS), else by the first measure of
    BEST_BY the rows have; of equals, the one of lower training loss, then the later."""
    return best_of(*scored_rows(history, metric))


def best_of(key: str | None, scored: list[dict]) -> dict | None:
    """The best of ``scored``, rows (as numbers) that have the measure ``key``:
    ``scored_rows``' answer, for a caller that also counts them."""
    return min(scored, key=lambda r: better_key(r, key, metric_sign(key))) if scored \
        else None


def scored_rows(history, metric: str | None = None) -> tuple[str | None, list[dict]]:
    """(the measure the best row is chosen by, the rows that have it, as numbers)."""
    history = history if isinstance(history, History) else History(history)
    key, found = history.scored(metric)
    return key, [history[i] for i in found]


def better_key(row: dict, metric: str, sign: int) -> tuple:
    """What rows are ordered by, the best first: the metric, then the training loss
    (a tie of accuracies is broken by the loss), then the later epoch."""
    loss = row["loss"] if row["loss"] is not None else float("inf")
    return sign * row[metric], loss, -row["epoch"]
