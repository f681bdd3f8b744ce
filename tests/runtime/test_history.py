"""The history table: a run's rows kept as values and read as numbers."""

import pytest

from bpc.runtime.history import HISTORY_FIELDS, History, best_row, epoch_row, saved_rows


def rows_as_values() -> list[list]:
    """Four epochs, the even ones evaluated (a training accuracy, no test split)."""
    return [epoch_row(e, 2 * e, 1 / e, 0.1, 0.01,
                      {"train_acc": e / 4, "test_loss": None} if e % 2 == 0 else None)
            for e in range(1, 5)]


def test_rows_kept_as_values_read_as_the_rows_converted_at_once():
    values = rows_as_values()
    lazy, eager = History.of_values(values), History(saved_rows(values))
    assert lazy == eager and list(lazy) == list(eager) and lazy[1:3] == eager[1:3]
    assert all(lazy[k] == eager[k] for k in HISTORY_FIELDS)
    assert lazy["train_acc"] == [None, 0.5, None, 1.0] and lazy["epoch"] == [1, 2, 3, 4]
    assert lazy.columns() == eager.columns() == ["epoch", "step", "loss", "train_acc", "lr",
                                                   "seconds"]
    assert lazy.best() == eager.best() == best_row(saved_rows(values)) == eager[3]
    assert lazy.scored() == ("train_acc", [1, 3])
    assert str(History.of_values(values)) == str(eager)


def test_a_row_is_converted_only_when_it_is_read():
    values = rows_as_values()
    values[0][HISTORY_FIELDS.index("lr")] = "not a number"
    history = History.of_values(values)
    assert history[-1]["epoch"] == 4 and history.best()["epoch"] == 4
    assert history["loss"][0] == 1.0
    with pytest.raises(ValueError):
        history[0]
    with pytest.raises(ValueError):
        History(saved_rows(values))  # all at once: the damaged row is found at once
