"""bpc's cache folder: ``$BPC_CACHE``, else ``$XDG_CACHE_HOME/bpc``, else ``~/.cache/bpc``.

Holds downloaded data sets, and can be deleted at any time; a folder that cannot be
written just means no caching. Compiling reads nothing from it: formatted code is never
remembered on disk (issue 22: a remembered module with the same syntax tree as the real
one can still be another program, through a coding cookie and a comment), and the parser
tables ship with bpc (``compiler/frontend/_lark_tables.py``), never Lark's pickled cache.
Also the atomic file writes every output of bpc goes through.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

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
    """Write via a temporary file in the same folder, an fsync and a rename: never half
    a file. The file gets the permissions of any new file (0666 less the umask), and a
    problem with the folder is a ``SpecError`` naming the path."""
    from .errors import Diagnostic, SpecError

    def fail(e: OSError, what: Path) -> SpecError:
        return SpecError(Diagnostic(f"cannot write {what}: {e.strerror or e}", None))

    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a folder should be
        raise SpecError(Diagnostic(f"cannot write {target}: {folder} or a folder above it "
                                   f"is a file, not a folder", None)) from None
    except OSError as e:
        raise fail(e, folder) from None
    if not folder.is_dir():
        raise SpecError(Diagnostic(f"cannot write {target}: {folder} is not a folder",
                                   None))
    if target.is_dir():
        raise SpecError(Diagnostic(f"cannot write {target}: it is a folder", None))
    _remove_stale_temporaries(target)
    try:
        replace_atomically(target, lambda f: f.write(text.encode("utf-8")))
    except OSError as e:
        raise fail(e, target) from None


def replace_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, rename it over
    ``path`` (a symlink there is replaced, never followed) and fsync the folder: ``path``
    is the old file or the new one, whatever stops the process. The file gets the
    permissions of any new file (0666 less the umask). Raises ``OSError``; no temporary
    file is left behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported here (some file systems, Windows)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_stale_temporaries(target: Path, age: float = 3600.0) -> None:
    """Temporary files of ``target`` left by a writer that was killed an hour or more ago."""
    now = time.time()
    try:
        leftovers = list(target.parent.glob(f".{_glob_escape(target.name)}.*.tmp"))
    except OSError:
        return
    for path in leftovers:
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > age:
                path.unlink()
        except OSError:
            pass


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def read_at_most(fd: int, limit: int) -> bytes | None:
    """Everything left in the open file ``fd``, or None when that is over ``limit``
    bytes (a file may grow while it is read: its size said nothing final)."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)
