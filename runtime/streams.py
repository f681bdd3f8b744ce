"""Batches that continue each other, for a model whose loops continue states
(``CONFIG["streams"]``, LANGUAGE.md "Stateful loops"): the windows, in the data's order,
cut into as many streams as the states have rows, so that row i of batch k + 1 is the
window after row i of batch k (DLFS2's truncated BPTT batching); and the states' reset,
at each epoch and before each evaluation."""

from __future__ import annotations

import numpy as np

from ..compiler import streaming
from .arrays import to_host
from .errors import UserError


def stream_names(module) -> list[str]:
    """The states the module's loops continue; [] for any other module."""
    return list((getattr(module, "CONFIG", {}) or {}).get("streams") or ())


def stream_rows(module) -> int | None:
    """The streams a batch holds (the states' rows), None without streams."""
    names = stream_names(module)
    return int(module.STATE[names[0]][0]) if names else None


def order(n: int, rows: int, what: str) -> np.ndarray:
    """The windows of an epoch in stream order: with S = n // rows windows per stream,
    position k * rows + i holds window i * S + k (the last n % rows windows left out)."""
    per_stream = n // rows
    if per_stream == 0:
        raise UserError(f"the {what} has {n} windows, fewer than the {rows} streams a "
                        "batch of the model's stateful loops holds",
                        "give more data, or declare the states with fewer rows")
    return np.arange(rows * per_stream).reshape(rows, per_stream).T.ravel()


def check_settings(module, shuffle: bool, batch: int, validation: float) -> None:
    """The run's settings against the streams (the spec's are checked when compiled; a
    flag can still change them)."""
    rows = stream_rows(module)
    if rows is None:
        return
    name = stream_names(module)[0]
    if shuffle:
        raise UserError(streaming.in_order(name), "train with shuffle = false")
    if batch != rows:
        raise UserError(streaming.rows(name, rows, batch), f"train with --batch {rows}")
    if validation:
        raise UserError(streaming.no_split(name), "leave --validation out")


def reset(module, state: dict | None) -> dict | None:
    """``state`` with its streams back at ``init_state()``'s values (in place; a torch
    module's on the device and in the dtype its state is in), the others (batch norm's
    running statistics) left as they are."""
    names = stream_names(module)
    if state is None or not names:
        return state
    start = module.init_state()
    for name in names:
        old, new = state.get(name), start[name]
        if isinstance(old, np.ndarray):  # kept on the host (devices.Hosted's calls)
            new = np.asarray(to_host(new), dtype=old.dtype)
        elif old is not None and hasattr(new, "to"):  # a tensor: where the run keeps it
            new = new.to(device=old.device, dtype=old.dtype)
        state[name] = new
    return state


def in_streams(module, arrays: dict, axes: dict[str, int], what: str):
    """Batches of ``arrays`` (windows in the data's order) in stream order, as many rows
    as the streams: what an evaluation of a stateful model runs through, from reset
    states."""
    from .batching import example_count, examples

    rows = stream_rows(module)
    idx = order(example_count(arrays, axes), rows, what)
    for start in range(0, len(idx), rows):
        yield examples(arrays, axes, idx[start:start + rows])
