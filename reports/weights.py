"""The picture of one value of a worked example (``bpc trace --plot NAME=FILE``): its last
two axes as heat maps — attention weights ``[T_out, T_in]``, a panel per head — with the
characters of a character data set's example on the axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtime.datasets import alphabet
from ..runtime.errors import UserError
from ..runtime.plots import plot_weights

from .trace import Trace


def parse_plot(text: str) -> tuple[str, Path]:
    """``NAME=FILE`` of ``--plot``."""
    name, eq, path = text.partition("=")
    if not eq or not name.strip() or not path.strip():
        raise UserError(f"--plot {text!r}: give a value and an image, NAME=FILE",
                        "e.g. --plot a=attention.png")
    return name.strip(), Path(path.strip())


def plot_value(tr: Trace, name: str, path: Path, feeds: dict, data_name: str | None) -> str:
    """Draw value ``name`` of the trace ``tr`` into ``path``; the line saying what was
    drawn. ``feeds`` are the point's inputs and targets (ids label the axes whose length
    they share: inputs first), ``data_name`` the data set they come from."""
    forward = [ln for ln in tr.lines if ln.section == "forward"]
    line = next((ln for ln in forward if ln.name == name), None)
    if line is None or not 2 <= line.value.ndim <= 4:
        drawable = [ln.name for ln in forward if 2 <= ln.value.ndim <= 4]
        what = "is not a value of the forward pass" if line is None else \
            f"is {line.value.ndim}-dimensional; a picture needs 2 to 4 axes"
        raise UserError(f"--plot: '{name}' {what}",
                        "values to draw: " + (", ".join(drawable) or "none"))
    value = line.value if line.value.ndim == 2 else line.value[0]  # the example's
    heads = [(name, value)] if value.ndim == 2 else \
        [(f"{name}, head {h}", m) for h, m in enumerate(value)]
    chars = alphabet(data_name) if data_name else None
    rows, cols = (_labels(feeds, n, chars) for n in value.shape[-2:])
    plot_weights(heads, rows, cols, path, f"{tr.model}: {name} at {tr.point}")
    return f"wrote {path}: '{name}' {list(line.value.shape)} at {tr.point}"


def _labels(feeds: dict, length: int, chars: str | None) -> list[str] | None:
    """The characters of the first sequence of ids in ``feeds`` with ``length`` steps."""
    if chars is None:
        return None
    for value in feeds.values():
        ids = np.asarray(value)
        if ids.ndim == 2 and ids.shape == (1, length) and np.all(ids == np.round(ids)) \
                and ids.min() >= 0 and ids.max() < len(chars):
            return [chars[int(i)] for i in ids[0]]
    return None
