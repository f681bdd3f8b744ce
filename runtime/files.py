"""Files read without trusting them: only a regular file is opened (a FIFO or device is
an error, never a read that blocks); an .npz's members are checked against their headers
and the memory available before any is read; the temporaries a killed writer left behind
are removed. Data files, checkpoints, ``history.csv`` and plots go through here.
"""

from __future__ import annotations

import math
import os
import stat
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .conform import shape_text
from .errors import UserError


def memory_available() -> int:
    """Bytes of memory this process may still take: the system's available memory
    (``MemAvailable``), less under an address-space limit (``ulimit -v``)."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            available = 1 << 62  # unknown: no limit but the file's own
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            available = min(available, soft)
    except (ImportError, OSError, ValueError):
        pass
    return int(available)


def bytes_text(n: int) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def remove_temporaries(folder: Path, names, age: float = 0.0, suffix: str = ".tmp"
                       ) -> list[Path]:
    """Remove the temporary files bpc makes for ``names`` in ``folder`` (``.NAME.XXXXXXXX``
    and ``suffix``: ``tempfile``'s eight characters; ``.tmp`` for ``write_atomic``,
    ``.part`` for a download) that a process killed while writing left behind: only
    regular files of exactly that pattern, and only those ``age`` seconds old or older
    (0: the caller knows no writer is alive, as a run holding its folder's lock does).
    Returns what was removed."""
    import re

    patterns = [re.compile(r"\." + re.escape(name) + r"\.[a-z0-9_]{8}" + re.escape(suffix))
                for name in names]
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not any(p.fullmatch(entry.name) for p in patterns):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= age:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def open_regular(p: Path, what: str = "file", nofollow: bool = False):
    """``p`` opened for reading (binary) when it is a regular file (after following a
    link, unless ``nofollow``: a data file may be one); a FIFO, device or folder is an
    error naming it, never a read that blocks."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (
        getattr(os, "O_NOFOLLOW", 0) if nofollow else 0)
    label = f"{what} {p}".strip()
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise UserError(f"cannot read {label}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{label} is not a regular file (a folder, FIFO or device)",
                        "give a file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


NPY_MAGIC = b"\x93NUMPY"


def read_npz(p: Path, wanted, what: str = "data file", dtype=None,
             hint: str | None = None, listing: list | None = None, kind: str = ".npz file",
             nofollow: bool = False) -> dict[str, np.ndarray]:
    """The members ``wanted(name)`` selects of an .npz file, by name (``x`` for
    ``x.npy``); any other member is never decompressed. Each member's size is taken from
    the zip header and its shape from its .npy header, and checked to agree and to fit
    in memory (with room for a cast to ``dtype``) before any is read. Every problem (not
    a zip, a .npy renamed, truncated, damaged, a pickled object) is a UserError naming
    the file and the member."""
    hint = hint or "save it with numpy.savez (plain numeric arrays)"
    label = f"{what} {p}".strip()
    with open_regular(p, what, nofollow) as f:
        head = f.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            raise UserError(f"{label} is a .npy file (one array) named .npz",
                            "save the arrays with numpy.savez(path, x=..., t=...), which "
                            "names each one")
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
                ValueError) as e:
            empty = os.fstat(f.fileno()).st_size == 0
            raise UserError(f"{label} is not a readable {kind} ("
                            + ("it is empty" if empty else f"not a zip archive: {e}")
                            + ")", hint) from None
        with zf:
            members = {}
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else None
                if listing is not None:
                    listing.append(name or info.filename)
                if name is not None and wanted(name):
                    if name in members:
                        raise UserError(f"{label} holds the array '{name}' twice", hint)
                    members[name] = info
            headers, need = {}, 0
            for name, info in members.items():
                headers[name] = _npy_header(label, zf, info, name, hint)
                shape, dt = headers[name]
                count = math.prod(shape)
                need += count * dt.itemsize + (
                    count * np.dtype(dtype).itemsize if dtype is not None else 0)
            available = memory_available()
            if need > available:
                sizes = ", ".join(f"'{k}' {shape_text(list(h[0]))} {h[1]}" for k, h in
                                  headers.items())
                raise UserError(f"{label} is too large to load: its arrays ({sizes}) "
                                f"need about {bytes_text(need)} of memory, and "
                                f"{bytes_text(available)} is available",
                                "use a smaller data set, or a machine with more memory")
            out = {}
            for name, info in members.items():
                try:
                    with zf.open(info) as member:
                        out[name] = np.lib.format.read_array(member, allow_pickle=False)
                except (ValueError, OSError, EOFError, zipfile.BadZipFile,
                        NotImplementedError, RuntimeError) as e:
                    raise UserError(f"{label}: the array '{name}' is damaged "
                                    f"({type(e).__name__}: {e})", hint) from None
                except zlib.error as e:
                    raise UserError(f"{label}: the array '{name}' is damaged "
                                    f"(zlib: {e})", hint) from None
    return out


def _npy_header(label, zf, info, name, hint):
    """(shape, dtype) of a member from its .npy header, checked against the size the zip
    header gives it: an array that cannot be what the header says is damaged."""
    try:
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dt = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dt = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            start = member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError,
            RuntimeError, zlib.error, SyntaxError) as e:
        raise UserError(f"{label}: the array '{name}' is damaged or not a plain array "
                        f"({type(e).__name__}: {e})", hint) from None
    if dt.hasobject:
        raise UserError(f"{label}: the array '{name}' holds Python objects, which bpc "
                        "does not load (it would run code from the file)", hint)
    if any(d < 0 for d in shape) or math.prod(shape) * dt.itemsize != info.file_size - start:
        raise UserError(f"{label}: the array '{name}' is damaged: its header says "
                        f"{shape_text(list(shape))} {dt} ({math.prod(shape) * dt.itemsize} bytes), "
                        f"the file holds {max(info.file_size - start, 0)} bytes of it", hint)
    return tuple(shape), dt
