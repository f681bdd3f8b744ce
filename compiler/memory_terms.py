"""The memory record's terms (``compiler/ir/memory.py`` writes them into a module's
CONFIG) read back as bytes at given sizes. A module of its own, importing nothing, so the
runtime reads the record before a training step without importing the IR (~12 ms)."""

from __future__ import annotations

import math


def value_at(terms: dict, sizes: dict[str, int]) -> int | None:
    """The bytes ``terms`` stand for when each symbolic dimension has its size in
    ``sizes``; None when one has none."""
    total = 0
    for key, size in terms.items():
        dims = key.split("*") if key else []
        if any(d not in sizes for d in dims):
            return None
        total += size * math.prod(sizes[d] for d in dims)
    return total
