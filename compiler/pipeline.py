"""The compiler pipeline as plain calls: each stage is a pure function of the last."""

from __future__ import annotations

from pathlib import Path

from .frontend import load_file, load_text


def check_file(path: str | Path):
    """Everything ``bpc check`` runs; raises ``SpecError`` with all problems found."""
    return load_file(path)


def check_text(text: str, path: str = "<spec>"):
    """``check_file`` for text in memory."""
    return load_text(text, path)
