"""The compiler pipeline as plain calls: each stage is a pure function of the last."""

from __future__ import annotations

from pathlib import Path

from .frontend import load_file


def check_file(path: str | Path):
    """Everything ``bpc check`` runs; raises ``SpecError`` with all problems found."""
    return load_file(path)
