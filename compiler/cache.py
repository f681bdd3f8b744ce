"""bpc's cache folder: ``$BPC_CACHE``, else ``$XDG_CACHE_HOME/bpc``, else ``~/.cache/bpc``.

Holds downloaded data sets, the modules ``bpc train`` compiled and the identities of
module texts (``runtime/identity.py``), and can be deleted at any time; a folder that cannot be written just means no caching. Compiling reads nothing
from it: formatted code is never remembered on disk (issue 22: a remembered module with
the same syntax tree as the real one can still be another program, through a coding
cookie and a comment), and the parser tables ship with bpc
(``compiler/frontend/_lark_tables.py``), never Lark's pickled cache.

**Verified entries.** ``bpc train SPEC.bp`` reuses the module it compiled from the same
spec bytes, options and compiler files (``entry_key``), skipping the compiler's imports
and stages (~0.1 s a run). An entry is used only when its keyed BLAKE2b MAC, made with a
32-byte secret in ``modules/key``, matches its whole content: a file created by this
user, readable by no one else (mode 0600, not a link) in a folder only this user can
write; otherwise there is no caching. A planted entry (another user's, a cache folder
copied from elsewhere without its key, an edited text) fails the check, is ignored and
recompiled: it never runs. A process that can read this user's key could equally edit
the spec or bpc itself; that is outside what a cache can defend.

Also the atomic file writes every output of bpc goes through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

MAX_ENTRY_BYTES = 256 << 20  # a cached module's entry; larger ones are not cached

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


def entry_key(*parts: str | bytes) -> str:
    """The cache key of a compilation: a SHA-256 of ``parts`` (the spec's bytes and the
    options) and of the compiler itself (every file under its folder and the checkout's
    grammar, by name, size and modification time; the Python version)."""
    h = hashlib.sha256(b"bpc-entry-1\0" + sys.version.encode() + b"\0")
    here = Path(__file__).resolve().parent
    for root in (here, here.parent / "grammar"):
        paths = []
        for folder, dirs, files in os.walk(root):
            # Pruned while walking (a sorted walk would be over before it is pruned): the
            # bytecode Python writes as it imports is not the compiler, and would change
            # the key whenever a module is first imported.
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            paths += [os.path.join(folder, name) for name in files]
        for path in sorted(paths):
            st = os.stat(path)
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def read_entry(kind: str, key: str) -> dict | None:
    """The verified entry ``key`` of the sub-folder ``kind``; None when there is none,
    or it cannot be read, or its MAC is not this user's (never an error)."""
    secret = _secret(kind)
    if secret is None:
        return None
    try:
        fd = os.open(cache_dir() / kind / f"{key}.json", os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        data = read_at_most(fd, MAX_ENTRY_BYTES) if stat.S_ISREG(os.fstat(fd).st_mode) \
            else None
    except OSError:
        data = None
    finally:
        os.close(fd)
    try:
        mac, _, body = (data or b"").partition(b"\n")
        if not hmac.compare_digest(mac, _mac(secret, key, body).encode("ascii")):
            return None
        entry = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def write_entry(kind: str, key: str, entry: dict) -> None:
    """Keep ``entry`` (JSON data) as ``key`` in the sub-folder ``kind``, with its MAC;
    nothing when the folder or its key is not usable."""
    secret = _secret(kind)
    if secret is None:
        return
    body = json.dumps(entry).encode("utf-8")
    if len(body) > MAX_ENTRY_BYTES:
        return
    data = _mac(secret, key, body).encode("ascii") + b"\n" + body
    try:
        replace_atomically(cache_dir() / kind / f"{key}.json", lambda f: f.write(data),
                           durable=False)
    except OSError:
        pass


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _mac(secret: bytes, key: str, body: bytes) -> str:
    return hashlib.blake2b(key.encode("ascii") + b"\0" + body, key=secret).hexdigest()


def _secret(kind: str) -> bytes | None:
    """The 32-byte secret of the sub-folder ``kind``, made on first use; None unless the
    folder and the key file are this user's alone (or where there are no user ids)."""
    if not hasattr(os, "getuid") or not _NOFOLLOW:
        return None
    folder = cache_dir() / kind
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        if not _private(os.lstat(folder), stat.S_ISDIR, 0o022):
            return None
        path = folder / "key"
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            os.write(fd, os.urandom(32))
            os.lseek(fd, 0, os.SEEK_SET)
        try:
            st = os.fstat(fd)
            secret = os.read(fd, 33) if _private(st, stat.S_ISREG, 0o077) else b""
        finally:
            os.close(fd)
    except OSError:
        return None
    return secret if len(secret) == 32 else None


def _private(st: os.stat_result, kind: Callable[[int], bool], others: int) -> bool:
    """Owned by this user, of the right kind, and without the permission bits ``others``."""
    return kind(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & others


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


def replace_atomically(path: Path, write: Callable[[BinaryIO], object],
                       durable: bool = True) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync it, rename it over
    ``path`` (a symlink there is replaced, never followed) and fsync the folder: ``path``
    is the old file or the new one, whatever stops the process. The file gets the
    permissions of any new file (0666 less the umask). Raises ``OSError``; no temporary
    file is left behind. Not ``durable``: no fsync, for a file whose loss or damage in a
    crash of the machine costs nothing (a cache entry, which then fails its check)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
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
