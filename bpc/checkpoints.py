"""``bpc.load_checkpoint``: a run's checkpoint.npz read for the Python API, its parameters
and state verified against the model given (``bpc.Checkpoint``)."""

from __future__ import annotations

import types


class Checkpoint(types.SimpleNamespace):
    """``params`` (name -> array), ``state`` (the model's state, name -> array: batch
    norm's running statistics; {} for a model without state), ``opt_state`` (the
    optimizer's), ``history`` (a ``History`` of numbers) and ``meta`` (position,
    settings) of a checkpoint.npz."""


def load_checkpoint(path, model=None) -> Checkpoint:
    """A checkpoint.npz (or the run folder holding it). Given the ``model`` it was
    trained from, its parameters and state are verified against ``model.PARAMS`` and
    ``model.STATE`` (names, shapes, dtype, finite values, no negative running variance:
    a UserError naming the file and the entry otherwise)."""
    from bpc.runtime.checkpoint import read_checkpoint_file, verified_params, verified_state
    from bpc.runtime.errors import UserError
    from bpc.runtime.history import History, is_saved_row, saved_rows

    from .api import Model, _path

    if model is not None and not isinstance(model, Model):
        raise UserError(f"bpc.load_checkpoint: model= takes a bpc model (bpc.compile, "
                        f"bpc.load), not {type(model).__name__}")
    c = read_checkpoint_file(_path(path, "bpc.load_checkpoint"))
    params = c.params if model is None else verified_params(c.path, c.params, model)
    state = c.state if model is None else verified_state(c.path, c.state, model)
    rows = c.meta.get("history", [])
    try:
        if not isinstance(rows, list) or not all(is_saved_row(r) for r in rows):
            raise TypeError
        history = History(saved_rows(rows))  # an older checkpoint's rows too (no val_)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{c.path}: the 'meta' entry is damaged: its history rows are not "
                        "rows of numbers", "it is damaged or not from bpc") from None
    return Checkpoint(params=params, state=state, opt_state=c.opt_state, history=history,
                      meta=c.meta)
