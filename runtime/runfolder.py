"""The run folder (--out) and writing into it safely: the folder locked while a run uses
it, a run already there never overwritten unasked (``RunFolder.claim``), temporaries a
killed write left there removed, every file replaced atomically (``write_atomic``),
``history.csv`` appended to as rows come, and Ctrl-C deferred to the next step boundary
(``DeferredInterrupt``) so that an update is never half applied.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import threading
from pathlib import Path

from ..compiler.cache import replace_atomically

from . import files
from .errors import UserError
from .history import HISTORY_FIELDS

def write_failed(path: Path, e: OSError) -> UserError:
    return UserError(f"cannot write {path}: {e.strerror or e}",
                     "check that the --out folder is a writable folder with free space, or "
                     "give another --out")


def write_atomic(path: Path, write, durable: bool = True) -> None:
    """``write(file)`` replacing ``path`` atomically (``bpc.compiler.cache.replace_atomically``:
    fsynced unless not ``durable``, with the umask's permissions, never through a
    symlink); a problem names the file."""
    try:
        replace_atomically(path, write, durable)
    except OSError as e:
        raise write_failed(path, e) from None


def refuse_overwrite(out: Path, resume: bool, force: bool) -> None:
    """A new run (not ``resume``) into ``out`` where a run is (its checkpoint) is refused
    unless ``force``: asked by the run folder, and by a data parallel run before its
    workers start (each would refuse alone)."""
    if not resume and not force and os.path.lexists(Path(out) / "checkpoint.npz"):
        raise UserError(f"{out} holds a run already (its checkpoint.npz); a new run "
                        "would overwrite it",
                        "continue it with --resume, replace it with --force (in Python: "
                        "resume=True or force=True), or give another --out folder")


class RunFolder:
    """The --out folder of a run: locked while in use, its checkpoint and history.csv
    written as one consistent state (the checkpoint is the source of truth)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.checkpoint = self.out / "checkpoint.npz"
        self.history = self.out / "history.csv"
        self.best = self.out / "best.npz"
        self._lock = None
        self._csv = None
        self._writer = None
        self._pending: list[dict] = []  # rows appended, not yet written

    def __enter__(self) -> "RunFolder":
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"--out {self.out} is a file, not a folder",
                            "give a folder for the run's checkpoint and history") from None
        except OSError as e:
            raise UserError(f"cannot create the run folder {self.out}: {e.strerror or e}",
                            "give a writable --out folder") from None
        if not self.out.is_dir():
            raise UserError(f"--out {self.out} is not a folder",
                            "give a folder for the run's checkpoint and history")
        lock = self.out / ".lock"
        try:
            self._lock = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                                 | getattr(os, "O_NONBLOCK", 0), 0o666)
        except OSError as e:
            if os.path.islink(lock):
                raise UserError(f"{lock} is a symbolic link, not bpc's lock file",
                                "remove it (bpc keeps a run folder's lock there), or "
                                "use a new --out folder") from None
            raise UserError(f"cannot write in the run folder {self.out}: "
                            f"{e.strerror or e}", "give a writable --out folder") from None
        import stat as stat_mod

        if not stat_mod.S_ISREG(os.fstat(self._lock).st_mode):
            os.close(self._lock)
            self._lock = None
            raise UserError(f"{lock} is not a regular file (a FIFO, device or folder), so "
                            "it cannot be the run folder's lock",
                            "remove it (bpc keeps a run folder's lock there), or use a "
                            "new --out folder")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self._lock, 32, 0).decode(errors="replace").strip()
            os.close(self._lock)
            self._lock = None
            raise UserError(f"{self.out} is in use by another bpc train"
                            + (f" (process {other})" if other.isdigit() else ""),
                            "wait for it to finish (or stop it), or train into another "
                            "--out folder") from None
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, str(os.getpid()).encode(), 0)
        # Held by this run alone now: a temporary of its files left here was left by a
        # run that was killed while writing it.
        files.remove_temporaries(self.out, (self.checkpoint.name, self.history.name,
                                            self.best.name))
        return self

    def claim(self, resume: bool, force: bool) -> None:
        """The folder taken for a run: a resume continues the run there; a new run is
        refused where a run is (its checkpoint) unless ``force``, and removes the best
        epoch's file (``best.npz``) another run left."""
        if resume:
            return
        refuse_overwrite(self.out, resume, force)
        try:
            if os.path.lexists(self.best):
                os.unlink(self.best)
        except OSError as e:
            raise write_failed(self.best, e) from None

    def __exit__(self, *exc) -> None:
        try:
            if self._csv is not None:
                try:
                    self.flush_history()
                finally:
                    self._csv, csv_file = None, self._csv
                    csv_file.close()
        finally:
            if self._lock is not None:
                self._lock, lock = None, self._lock
                os.close(lock)  # releases the lock (as the end of the process would)

    def start_history(self, rows: list[list]) -> None:
        """history.csv rewritten (atomically) to exactly ``rows`` (as values:
        ``history.epoch_row``), then opened for appending (never through a symlink). Not
        fsynced: the lines appended after it are not either, and a resume rewrites the
        file from the checkpoint, the run's one durable record."""
        def write(f):
            text = io.StringIO(newline="")
            w = csv.writer(text)
            w.writerow(HISTORY_FIELDS)
            w.writerows(rows)
            f.write(text.getvalue().encode())
        write_atomic(self.history, write, durable=False)
        try:
            fd = os.open(self.history, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        except OSError as e:
            raise write_failed(self.history, e) from None
        self._csv = open(fd, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._csv)
        self._pending = []

    def append_history(self, row: list, flush: bool = True) -> None:
        """One row (a row every epoch); the rows since the last ``flush`` are written
        then, and when the folder is closed: a run of many short epochs formats its CSV
        lines in one go, not one an epoch. Rows not written yet are at most lost to a
        kill, never the run's: a resume rewrites the file from the checkpoint's rows."""
        self._pending.append(row)
        if flush:
            self.flush_history()

    def flush_history(self) -> None:
        """The rows appended since the last flush, written and flushed."""
        try:
            self._writer.writerows(self._pending)
            self._pending.clear()
            self._csv.flush()
        except OSError as e:
            raise write_failed(self.history, e) from None


class DeferredInterrupt:
    """Ctrl-C as a request: the handler sets ``requested``, the loop stops at the next
    step boundary; a second Ctrl-C raises KeyboardInterrupt at once. Installed only in
    the main thread, over Python's default handler (never over a caller's own)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        try:
            sys.stderr.write("\nbpc: stopping after this step (Ctrl-C again to stop at once)\n")
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread() and \
                _raises_keyboard_interrupt(signal.getsignal(signal.SIGINT)):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _raises_keyboard_interrupt(handler) -> bool:
    """Python's own Ctrl-C handler, or the command line's (which also remembers it):
    a handler somebody else installed (or SIG_IGN) is left alone."""
    return handler is signal.default_int_handler or \
        getattr(handler, "raises_keyboard_interrupt", False)


class NoFolder:
    """The run folder of a run without --out: nothing is written."""

    checkpoint = history = best = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def claim(self, resume, force):
        pass

    def start_history(self, rows):
        pass

    def append_history(self, row, flush=True):
        pass
