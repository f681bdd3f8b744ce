"""bpc's cache folder: ``$BPC_CACHE``, else ``$XDG_CACHE_HOME/bpc``, else ``~/.cache/bpc``.

Holds the parser tables Lark builds from the grammar, formatted modules keyed by the
exact unformatted text and black's version, and downloaded data sets. Everything there
can be deleted at any time; a folder that cannot be written just means no caching.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    root = os.environ.get("BPC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpc")
    return Path(root)


def writable_dir(*parts: str) -> Path | None:
    """A cache sub-folder, created if needed; None when it cannot be written."""
    path = cache_dir().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def write_text_atomic(target: Path, text: str) -> None:
    """Write via a temporary file in the same folder and a rename: never half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def memo_text(kind: str, key: str, compute: Callable[[], str]) -> str:
    """``compute()``, remembered on disk under ``key`` (a content hash is added)."""
    folder = writable_dir(kind)
    if folder is None:
        return compute()
    path = folder / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".txt")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    text = compute()
    try:
        write_text_atomic(path, text)
    except OSError:
        pass  # no cache this time
    return text
