"""Data for training: files (.npz, .csv), built-in generators, checking and batching.

A data set is a ``Dataset`` of named arrays (the spec's inputs and targets) for training,
plus optional held-out arrays for testing. Arrays are checked against the module's
declared shapes: fixed dimensions must match, and a symbolic dimension (``N``) must bind
to one size across every input and target, else the error names the input and the
dimension. Integer labels are accepted where one-hot targets are declared and the other
way round. Every value must be a finite real number, and a label a class that exists:
anything else is an error naming the array, never a silent cast.

Examples are counted, batched and evaluated along the *batch axis*: wherever the
declared shape puts the batch dimension (``[N, 2]`` or, in the column convention,
``[2, N]``). Built-in data sets and .csv files are row-major (one example per row) and are
arranged into the declared layout; an .npz must already have it.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import stat
import time
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..compiler.cache import cache_dir
from ..compiler.vocab import DATASET_RANGES, DATASETS

from .errors import UserError


@dataclass
class Dataset:
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "data"
    notes: list[str] = field(default_factory=list)  # said once when training starts

    def size(self, module, split: str = "train") -> int:
        """Examples in a split, counted along the batch axis of the arrays the module
        names (never of an extra array that happens to be in the file)."""
        arrays = self.train if split == "train" else self.test
        return example_count(arrays, batch_axes(module))


# ----------------------------------------------------------------------------- the batch axis
def batch_dim(module) -> str | None:
    """The symbolic dimension that counts examples: the one declared exactly once in every
    input (but those with a default) and every target. None when there is no such
    dimension: the data is then a single example, trained on whole at every step. When
    several qualify, the one named ``N``; without one, which to batch along is a guess,
    so it is an error."""
    declared = {**module.INPUTS, **module.TARGETS}
    defaults = getattr(module, "DEFAULTS", {}) or {}
    shapes = [tuple(shape) for name, shape in declared.items() if name not in defaults]
    if not shapes:
        return None
    candidates = [d for d in dict.fromkeys(shapes[0]) if isinstance(d, str)
                  and all(shape.count(d) == 1 for shape in shapes)]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    if "N" in candidates:
        return "N"
    raise UserError("cannot tell which dimension counts the examples: every input and "
                    "target has " + " and ".join(candidates),
                    "name the batch dimension N (e.g. 'input x : [N, T]')")


def batch_axes(module) -> dict[str, int]:
    """Input/target name -> the axis of its batch dimension. Arrays without it are absent
    here: every batch gets them whole."""
    dim = batch_dim(module)
    return {name: tuple(shape).index(dim)
            for name, shape in {**module.INPUTS, **module.TARGETS}.items()
            if dim is not None and tuple(shape).count(dim) == 1}


def example_count(arrays: dict[str, np.ndarray], axes: dict[str, int]) -> int:
    """How many examples ``arrays`` hold: the size of the batch axis of a named array;
    1 when none has one (the data is one example); 0 for no arrays."""
    if not arrays:
        return 0
    for name, axis in axes.items():
        if name in arrays and np.ndim(arrays[name]) > axis:
            return int(np.shape(arrays[name])[axis])
    return 1


def arrange(a: np.ndarray, shape, axis: int | None) -> np.ndarray:
    """A row-major array (examples along axis 0, as built-ins and .csv rows give them) in
    the declared layout: the example axis moved to the batch axis ``axis``."""
    if axis is None or axis == 0 or a.ndim != len(shape):
        return a
    return np.ascontiguousarray(np.moveaxis(a, 0, axis))


def examples(arrays: dict[str, np.ndarray], axes: dict[str, int], index) -> dict:
    """The examples ``index`` (an index array, or a slice: a view) of every array, along
    its batch axis; arrays without one whole."""
    return {k: _take(v, axes.get(k), index) for k, v in arrays.items()}


def _take(a: np.ndarray, axis: int | None, index) -> np.ndarray:
    if axis is None:
        return a
    if axis == 0:  # the usual layout, without building an index tuple (once a step)
        return a[index]
    # Indexing, not np.take: take copies the whole of a non-C-ordered array first (a
    # CSV's columns are Fortran-ordered), per batch.
    return a[(slice(None),) * axis + (index,)]


# ----------------------------------------------------------------------------- built-ins
def _split(x: np.ndarray, t: np.ndarray, rng: np.random.Generator, test_fraction: float,
           names=("x", "t")) -> tuple[dict, dict]:
    order = rng.permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return ({names[0]: x[train], names[1]: t[train]},
            {names[0]: x[test], names[1]: t[test]} if n_test else {})


def xor(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0]])
    return x, t, 0.0  # four points: train and evaluate on all of them


def spiral(rng: np.random.Generator, n: int = 100, classes: int = 3, noise: float = 0.2):
    """``n`` points per class on ``classes`` interleaved spirals (CS231n)."""
    x = np.zeros((n * classes, 2))
    t = np.zeros(n * classes, dtype=np.int64)
    for k in range(classes):
        r = np.linspace(0.0, 1.0, n)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, n) + rng.normal(size=n) * noise
        x[k * n:(k + 1) * n] = np.c_[r * np.sin(theta), r * np.cos(theta)]
        t[k * n:(k + 1) * n] = k
    return x, t, 0.2


def sine(rng: np.random.Generator, n: int = 200, noise: float = 0.1):
    x = rng.uniform(-math.pi, math.pi, size=(n, 1))
    return x, np.sin(x) + noise * rng.normal(size=(n, 1)), 0.2


def digits(rng: np.random.Generator):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the 'digits' data set needs scikit-learn, which is not installed",
                        "install it with: python3 -m pip install 'backprop-compiler[digits]' "
                        "(or: python3 -m pip install scikit-learn)") from None
    bunch = load_digits()
    return bunch.data / 16.0, bunch.target.astype(np.int64), 0.2


def digits_subset(rng: np.random.Generator, n: int = 300):
    """``digits`` with only ``n`` of its training examples (DLFS ch. 6's overfitting
    experiments); the test set is the same 20% as ``digits``' with the same seed."""
    x, t, fraction = digits(rng)
    train, test = _split(x, t, rng, fraction)
    return train["x"][:n], train["t"][:n], test["x"], test["t"]


MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, filename: str, digest: str, timeout: float = 30.0) -> Path:
    """Download ``url`` once into the cache, verifying its SHA-256; reuse it afterwards.
    Only a regular file there is read (a link, FIFO or device is removed, never
    followed), and the download goes into a fresh temporary file renamed over it."""
    import tempfile

    target = cache_dir() / filename
    remove_temporaries(target.parent, (filename,), 3600.0, ".part")  # a killed download's
    if os.path.lexists(target):
        try:
            if stat.S_ISREG(os.lstat(target).st_mode) and sha256(target) == digest:
                return target
            target.unlink()  # corrupt, truncated or not a file: fetch again
        except (OSError, UserError):
            pass
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{filename}.", suffix=".part")
    except OSError as e:
        raise UserError(f"cannot write {target.parent}: {e.strerror or e}",
                        "set BPC_CACHE to a writable folder") from None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                os.fdopen(fd, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"could not download {filename} from {url} ({e})",
                        f"check the network, or place the file at {target} "
                        f"(set BPC_CACHE to use another folder)") from None
    if sha256(Path(tmp)) != digest:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"the download of {filename} is corrupt (checksum mismatch)",
                        "try again; if it persists the server's copy has changed")
    os.replace(tmp, target)
    return target


def mnist(rng: np.random.Generator):
    path = fetch(MNIST_URL, "mnist.npz", MNIST_SHA256)
    with np.load(path) as f:
        x_train, t_train = f["x_train"], f["y_train"]
        x_test, t_test = f["x_test"], f["y_test"]
    flat = (lambda a: a.reshape(len(a), -1).astype(np.float64) / 255.0)
    return (flat(x_train), t_train.astype(np.int64), flat(x_test), t_test.astype(np.int64))


GENERATORS = {"xor": xor, "spiral": spiral, "sine": sine, "digits": digits,
              "digits_subset": digits_subset, "mnist": mnist}
assert set(GENERATORS) == set(DATASETS), "data set table and generators disagree"


def builtin(name: str, module, seed: int = 0, **kwargs) -> Dataset:
    """A built-in data set, its arrays named after the module's first input and target."""
    if name not in GENERATORS:
        raise UserError(f"unknown data set '{name}'",
                        "built-in data sets: " + ", ".join(sorted(GENERATORS)))
    allowed = DATASETS[name].names
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise UserError(f"data set '{name}' has no argument " + ", ".join(sorted(unknown)),
                        f"'{name}' takes: {', '.join(allowed) or 'nothing'}")
    inputs, targets = list(module.INPUTS), list(module.TARGETS)
    if len(inputs) != 1 or len(targets) != 1:
        raise UserError(f"built-in data set '{name}' gives one input and one target, but the "
                        f"model has inputs {inputs} and targets {targets}",
                        "give a data file instead: --data file.npz")
    per_n = {"spiral": int(kwargs.get("classes", 3)), "sine": 1}.get(name)
    if per_n is not None:  # before generating it: a data set that would not fit
        from .points import check_dataset_memory

        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        n = int(kwargs.get("n", DATASETS[name].defaults()["n"]))
        check_dataset_memory(f"{name}({args})", n * per_n, module, per_n)
    rng = np.random.default_rng(seed)
    out = GENERATORS[name](rng, **kwargs)
    names = (inputs[0], targets[0])
    if len(out) == 4:
        x, t, xt, tt = out
        train, test = {names[0]: x, names[1]: t}, {names[0]: xt, names[1]: tt}
    else:
        x, t, fraction = out
        train, test = _split(x, t, rng, fraction, names)
        if not test and fraction == 0.0:
            test = {}
    return Dataset(_arranged(train, module), _arranged(test, module), name)


def _arranged(arrays: dict[str, np.ndarray], module) -> dict[str, np.ndarray]:
    """Row-major arrays in the layouts the module declares: each example reshaped to the
    declared shape of one example when the sizes agree (sine's ``(n, 1)`` for ``[N]``,
    mnist's 784 pixels for ``[N, 28, 28]``), then ``arrange``-d. Labels for one-hot
    targets are left for ``conform`` to convert."""
    declared = {**module.INPUTS, **module.TARGETS}
    axes = batch_axes(module)
    out = {}
    for k, v in arrays.items():
        shape, axis = tuple(declared[k]), axes.get(k)
        example = [d for i, d in enumerate(shape) if i != axis]
        if axis is not None and v.ndim >= 1 and all(isinstance(d, int) for d in example) \
                and math.prod(v.shape[1:]) == math.prod(example):
            v = v.reshape((len(v), *example))
        out[k] = arrange(v, shape, axis)
    return out


# ----------------------------------------------------------------------------- files
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


def _gb(n: int) -> str:
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
                sizes = ", ".join(f"'{k}' {_fmt(list(h[0]))} {h[1]}" for k, h in
                                  headers.items())
                raise UserError(f"{label} is too large to load: its arrays ({sizes}) "
                                f"need about {_gb(need)} of memory, and {_gb(available)} "
                                "is available", "use a smaller data set, or a machine "
                                "with more memory")
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
                        f"{_fmt(list(shape))} {dt} ({math.prod(shape) * dt.itemsize} bytes), "
                        f"the file holds {max(info.file_size - start, 0)} bytes of it", hint)
    return tuple(shape), dt


def load_file(path: str | Path, module, origin: str | None = None) -> Dataset:
    """The arrays in a .npz or .csv file; ``origin`` says where a relative path was
    resolved from, for the error when the file is missing. Of an .npz only the arrays
    the spec names (and their ``test_`` twins) are read."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file {p} does not exist",
                        f"{origin}" if origin else None)
    try:
        return _load_file(p, module)
    except MemoryError:  # a CSV's values, which no header announces
        size = p.stat().st_size
        raise UserError(f"data file {p} ({_gb(size)}) does not fit in memory "
                        f"({_gb(memory_available())} available)",
                        "use a smaller data set, or a machine with more memory") from None


def _load_file(p: Path, module) -> Dataset:
    if p.suffix == ".npz":
        names = set(module.INPUTS) | set(module.TARGETS)
        listing: list[str] = []
        arrays = read_npz(p, lambda k: k in names or k[:5] == "test_" and k[5:] in names,
                          dtype=module.DTYPE, listing=listing)
        train = {k: v for k, v in arrays.items() if not k.startswith("test_")}
        defaults = getattr(module, "DEFAULTS", {}) or {}
        missing = [k for k in names if k not in train and k not in defaults]
        if missing:
            raise UserError(f"data file {p} has no array for "
                            + ", ".join(f"'{k}'" for k in sorted(missing)),
                            "its arrays: " + (", ".join(sorted(listing)) or "none")
                            + "; name them after the spec's inputs and targets "
                              "(numpy.savez(path, x=..., t=...))")
        test = {k[5:]: v for k, v in arrays.items() if k.startswith("test_")}
        notes = _unflatten_images(train, test, module, p.name)
        return Dataset(train, test, p.name, notes)
    if p.suffix == ".csv":
        return Dataset(_read_csv(p, module), {}, p.name)
    raise UserError(f"data file {p} has an unknown type", "use .npz or .csv")


def _unflatten_images(train: dict, test: dict, module, filename: str) -> list[str]:
    """Flat image rows [N, H*W] (or [N, C*H*W]) where the spec declares an image batch
    such as [N, C, H, W] (batch first, fixed sizes after it): reshaped row-major, in
    place, when the sizes agree. Returns the note saying so (once for both splits)."""
    declared = {**module.INPUTS, **module.TARGETS}
    axes = batch_axes(module)
    done: dict[str, tuple[int, tuple]] = {}  # name -> (flat row length, declared shape)
    for name, shape in declared.items():
        shape = tuple(shape)
        if len(shape) < 3 or axes.get(name) != 0 or \
                not all(isinstance(d, int) for d in shape[1:]):
            continue
        for arrays in (train, test):
            a = arrays.get(name)
            if a is not None and a.ndim == 2 and a.shape[1] == math.prod(shape[1:]):
                arrays[name] = a.reshape((len(a), *shape[1:]))
                done.setdefault(name, (a.shape[1], shape))
    return [f"'{name}' in {filename} holds flat rows of {flat} values; reshaped to "
            f"{_fmt(shape)} as the spec declares (row-major, as NumPy's reshape)"
            for name, (flat, shape) in done.items()]


CSV_FIELD_LIMIT = 128 * 1024  # csv's own limit: a longer cell is not a number
CSV_HEADER_LIMIT = 1024 * 1024


def _column_index(header_cell: str, name: str) -> int | None:
    """k when the column holds value k of ``name``: ``x3``, ``x[3]`` or ``x_3``."""
    import re

    if not header_cell.startswith(name):
        return None
    m = re.fullmatch(r"(\d+)|\[(\d+)\]|_(\d+)", header_cell[len(name):])
    return int(next(g for g in m.groups() if g is not None)) if m else None


def _read_csv(p: Path, module) -> dict[str, np.ndarray]:
    """Columns named after inputs/targets: ``x`` for one column, ``x0``, ``x1`` … or
    ``x[0]``, ``x_0`` … for several, exactly one per value of an example (``x0`` to
    ``x{D-1}``: a missing, extra or repeated one is an error naming it). A row is one
    example: each array is arranged into its declared shape with the rows along the
    batch axis (``[2, N]`` takes ``x0, x1`` as its two rows)."""
    header, values = _csv_table(p)
    axes = batch_axes(module)
    out = {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        single = [i for i, h in enumerate(header) if h == name]
        multi: dict[int, int] = {}
        for i, h in enumerate(header):
            k = _column_index(h, name)
            if k is None:
                continue
            if k in multi:
                raise UserError(f"{p}: two columns hold value {k} of '{name}' "
                                f"('{header[multi[k]]}' and '{h}')",
                                "give each column once")
            multi[k] = i
        if len(single) > 1:
            raise UserError(f"{p}: the column '{name}' appears {len(single)} times",
                            "give each column once")
        if single and multi:
            raise UserError(f"{p}: '{name}' is given both as one column '{name}' and as "
                            f"numbered columns ({', '.join(header[i] for i in multi.values())})",
                            f"use '{name}' for a single value, '{name}0', '{name}1', … for "
                            "several")
        axis = axes.get(name)
        example = [d for i, d in enumerate(tuple(shape)) if i != axis]
        size = math.prod(example) if all(isinstance(d, int) for d in example) else None
        if single:
            columns = values[:, single]
        elif multi:
            want = size if size is not None else max(multi) + 1
            missing = [f"{name}{k}" for k in range(want) if k not in multi]
            extra = [header[i] for k, i in sorted(multi.items()) if k >= want]
            if missing or extra:
                def few(names):
                    return ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
                wrong = ([f"missing {few(missing)}"] if missing else []) + \
                    ([f"extra {few(extra)}"] if extra else [])
                raise UserError(
                    f"{p}: the columns for '{name}' must be {name}0 … {name}{want - 1}"
                    + (f" (one per value of an example of {_fmt(shape)})" if size else "")
                    + ": " + "; ".join(wrong),
                    f"name the columns '{name}0', '{name}1', … with no gap")
            columns = values[:, [multi[k] for k in range(want)]]
        else:
            raise UserError(f"{p} has no column for '{name}'",
                            f"name the columns '{name}' or '{name}0', '{name}1', …")
        out[name] = _csv_layout(p, name, columns, tuple(shape), axis)
    return out


def _csv_table(p: Path) -> tuple[list[str], np.ndarray]:
    """The header and the data rows as numbers. NumPy's C parser reads the rows straight
    into one array (a 180 MB file in seconds, without a list of strings per cell); when
    it refuses the file, the rows are read again one at a time to name the line and
    column at fault."""
    open_regular(p).close()  # a FIFO or device is an error, never a read that blocks
    try:
        with open(p, newline="", encoding="utf-8") as f:
            line = f.readline(CSV_HEADER_LIMIT)
            if len(line) >= CSV_HEADER_LIMIT and not line.endswith("\n"):
                raise UserError(f"{p}:1: the header line is over "
                                f"{CSV_HEADER_LIMIT // 1024} KiB",
                                "the first line names the columns, comma-separated")
            try:
                first = next(csv.reader([line]), [])
            except csv.Error as e:
                raise UserError(f"{p}:1: the header is not readable CSV ({e})") from None
            header = [h.strip() for h in first]
            if not header:
                raise UserError(f"{p} needs a header row and at least one data row")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "input contained no data": below
                    values = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2,
                                        comments=None, quotechar='"')
            except ValueError:
                values = None
    except UnicodeDecodeError as e:
        raise UserError(f"{p} is not a UTF-8 text file ({e.reason} at byte {e.start})",
                        "give a comma-separated text file") from None
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    if values is None or (values.size and values.shape[1] != len(header)):
        values = _csv_values(p, header)  # raises, naming the line and column
    if len(values) == 0:
        raise UserError(f"{p} needs a header row and at least one data row")
    return header, values


def _csv_values(p: Path, header: list[str]) -> np.ndarray:
    """The data rows as numbers, row by row; an error names the row and column of a bad
    cell."""
    values = []
    with open(p, newline="", encoding="utf-8") as f:
        rows = _checked_rows(p, csv.reader(f))
        next(rows, None)
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(f"{p}:{number}: {len(row)} values, but the header names "
                                f"{len(header)} columns")
            try:
                values.append([float(v) for v in row])
            except ValueError:
                column = next(h for h, v in zip(header, row) if not _is_number(v))
                raise UserError(f"{p}:{number}: column '{column}' is not a number "
                                f"({row[header.index(column)]!r})",
                                "every value after the header must be a number") from None
    return np.array(values, dtype=np.float64).reshape(len(values), len(header))


def _checked_rows(p: Path, reader):
    """The rows of a csv reader; a row it cannot read (a cell over its field limit, 128
    KiB) is an error naming the file and the line."""
    old = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise UserError(f"{p}:{reader.line_num}: not readable as CSV ({e})",
                                "every value after the header must be a number") from None
            yield row
    finally:
        csv.field_size_limit(old)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_layout(p: Path, name: str, columns: np.ndarray, shape: tuple,
                axis: int | None) -> np.ndarray:
    """``columns`` (rows × columns of one array) in the declared shape: one row per
    example along the batch axis, or, without a batch axis, the whole block."""
    if axis is None:
        target = tuple(d if isinstance(d, int) else -1 for d in shape)
    else:
        target = (len(columns),) + tuple(d if isinstance(d, int) else -1
                                         for i, d in enumerate(shape) if i != axis)
    try:
        a = np.ascontiguousarray(columns).reshape(target)  # columns of a row-major table
    except ValueError:
        raise UserError(f"{p}: the {columns.shape[1]} column(s) for '{name}' do not fit its "
                        f"declared shape {_fmt(shape)}",
                        f"give one column per value of an example: '{name}0', '{name}1', …"
                        ) from None
    return arrange(a, shape, axis)


def load(source: dict | str | None, module, seed: int = 0) -> Dataset:
    """Data from a --data flag (a string: a path, relative to the working directory, or a
    built-in name with optional args) or the spec's data line (CONFIG's dict: a path
    there is relative to the spec's folder, see ``spec_folder``)."""
    if source is None:
        raise UserError("no data: the spec has no 'data' line and no --data was given",
                        "add e.g. 'data \"train.npz\"' or 'data spiral' to the spec, "
                        "or pass --data")
    if isinstance(source, str):
        source = parse_data_flag(source)
    elif "path" in source and not Path(source["path"]).is_absolute():
        folder = spec_folder(module)
        return load_file(folder / source["path"], module,
                         f"the spec's data path \"{source['path']}\" is read from the "
                         f"spec's folder ({folder}/; for a compiled module, the module's "
                         "folder); or pass --data PATH")
    if "path" in source:
        return load_file(source["path"], module)
    problem = data_problem(source)
    if problem:  # a hand-edited module's CONFIG, or a caller's dict (a flag is refused sooner)
        raise UserError(f"the data set in CONFIG: {problem}")
    args = {k: v for k, v in source.items() if k != "name"}
    return builtin(source["name"], module, seed, **args)


def data_problem(source: dict) -> str | None:
    """What is out of range in a built-in data set's arguments, by the spec's range table
    (``spiral(classes=1)``), None if nothing is."""
    ranges = DATASET_RANGES.get(source.get("name"), {})
    for key, value in source.items():
        problem = ranges[key].problem(value) if key in ranges else None
        if problem:
            return f"'{key}' of '{source['name']}' {problem}"
    return None


def spec_folder(module) -> Path:
    """The folder a spec's relative data path is read from: the spec's own folder, or for
    a compiled module its own folder (``bpc compile`` copies no data, so a module and its
    data travel together). Set by ``loader.load_model``; otherwise the module's file's
    folder, or the working directory."""
    folder = getattr(module, "_bpc_folder", None)
    if folder is not None:
        return Path(folder)
    file = getattr(module, "__file__", None)
    return Path(file).parent if file and Path(file).exists() else Path(".")


def parse_data_flag(text: str) -> dict:
    """``--data spiral``, ``--data spiral:n=50,classes=4`` or ``--data file.npz``."""
    name, _, rest = text.partition(":")
    if name in GENERATORS:
        args = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            try:
                args[key.strip()] = float(value) if "." in value or "e" in value else int(value)
            except ValueError:
                raise UserError(f"--data {text}: '{item}' is not key=number") from None
        return {"name": name, **args}
    return {"path": text}


def data_flag_problem(text: str) -> str | None:
    """What is wrong with a ``--data`` string, None if nothing is: a built-in data set's
    arguments are checked against the spec's ranges (``spiral:classes=1`` is refused as
    ``data spiral(classes=1)`` is)."""
    try:
        return data_problem(parse_data_flag(text))
    except UserError as e:
        return e.message


# ----------------------------------------------------------------------------- checking
def onehot_of(module) -> dict[str, int]:
    """Targets of softmax cross-entropy given as rows of probabilities -> classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("onehot", {}))


def labels_of(module) -> dict[str, int]:
    """Targets that hold integer class labels -> their number of classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("labels", {}))


def conform(arrays: dict[str, np.ndarray], module, where: str = "data") -> dict[str, np.ndarray]:
    """Check arrays against the declared shapes; convert labels <-> one-hot; cast dtype."""
    declared = {**module.INPUTS, **module.TARGETS}
    defaults = getattr(module, "DEFAULTS", {}) or {}
    missing = [n for n in declared if n not in arrays and n not in defaults]
    if missing:
        raise UserError(f"{where} has no array for " + ", ".join(f"'{m}'" for m in missing),
                        "available: " + (", ".join(sorted(arrays)) or "none"))
    label_names = labels_of(module)
    out: dict[str, np.ndarray] = {}
    bound: dict[str, tuple[int, str, int]] = {}
    for name, shape in declared.items():
        if name not in arrays:
            continue
        a = _numbers(name, np.asarray(arrays[name]), where)
        a = _labels_or_one_hot(name, a, tuple(shape), name in label_names, where)
        if a.ndim != len(shape):
            raise UserError(f"{where}: '{name}' has shape {tuple(a.shape)}, but the spec "
                            f"declares {_fmt(shape)} ({len(shape)} dimensions)")
        for axis, (want, got) in enumerate(zip(shape, a.shape)):
            if isinstance(want, str):
                if want in bound and bound[want][0] != got:
                    size, other, other_axis = bound[want]
                    raise UserError(
                        f"{where}: dimension {want} of '{name}' (axis {axis}) is {got}, but "
                        f"'{other}' (axis {other_axis}) has {size}",
                        f"every use of {want} must have the same size")
                bound.setdefault(want, (got, name, axis))
            elif want != got:
                raise UserError(f"{where}: '{name}' has {got} at axis {axis}, but the spec "
                                f"declares {want} there (shape {_fmt(shape)})")
        if name in label_names:  # checked as read, before a cast could wrap them
            _check_labels(name, a, label_names[name], where)
            out[name] = a.astype(np.int64, copy=False)
        else:
            with np.errstate(over="ignore"):
                out[name] = a.astype(module.DTYPE, copy=False)
            _check_finite(name, out[name], where, cast_from=a.dtype)
        if name in onehot_of(module) and a.size and not np.allclose(
                np.sum(out[name], axis=-1), 1.0, atol=1e-4):
            raise UserError(f"{where}: '{name}' feeds softmax_cross_entropy, so each row must "
                            "be one-hot or a probability distribution (summing to 1)",
                            f"give class labels instead by declaring 'target {name} : [N]'")
    return out


def _numbers(name: str, a: np.ndarray, where: str) -> np.ndarray:
    """``a`` if it holds finite real numbers (booleans and integers included); an error
    naming the array otherwise, before any cast could drop an imaginary part, parse text
    or carry a NaN into training."""
    if a.dtype.kind == "c":
        raise UserError(f"{where}: '{name}' holds complex numbers ({a.dtype})",
                        "bpc trains on real numbers: give the real part, the magnitude, or "
                        "both as separate columns")
    if a.dtype.kind not in "biuf":
        raise UserError(f"{where}: '{name}' holds {a.dtype} values, not numbers",
                        "store numbers (integers or floats) in the data file")
    if a.dtype.kind == "f":
        _check_finite(name, a, where)
    return a


def _check_finite(name: str, a: np.ndarray, where: str, cast_from=None) -> None:
    """An error naming the array and the first bad entry when ``a`` holds NaN or an
    infinity; ``cast_from`` (the dtype before a cast) tells an overflow of the cast apart."""
    if not a.size or (math.isfinite(np.max(a)) and math.isfinite(np.min(a))):
        return
    bad = ~np.isfinite(a)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    at = f"at index {first[0] if len(first) == 1 else first}"
    if cast_from is not None and np.dtype(cast_from).kind == "f" and \
            np.dtype(cast_from).itemsize > a.dtype.itemsize:
        raise UserError(f"{where}: '{name}' has values too large for {a.dtype} "
                        f"({int(bad.sum())} of {a.size}, the first {at})",
                        "rescale the data, or compute in float64 (dtype float64 in the spec)")
    nan = int(np.isnan(a).sum())
    kinds = ", ".join(f"{k} {what}" for k, what in ((nan, "NaN"),
                                                     (int(bad.sum()) - nan, "infinite")) if k)
    raise UserError(f"{where}: '{name}' has values that are not finite numbers ({kinds}, "
                    f"of {a.size}), the first {at}",
                    "remove or fill in those entries: training on them gives NaN")


def _check_labels(name: str, labels: np.ndarray, classes: int, where: str) -> None:
    """Class labels must be classes that exist: 0..classes-1 (a -1 would silently pick
    the last class through indexing)."""
    bad = (labels < 0) | (labels >= classes)
    if not bad.any():
        return
    values = np.unique(labels[bad])
    shown = ", ".join(map(str, values[:6])) + (", …" if len(values) > 6 else "")
    raise UserError(f"{where}: '{name}' holds class labels, which must lie in "
                    f"0..{classes - 1} ({classes} classes), but it has {shown} "
                    f"({int(bad.sum())} of {labels.size} labels)",
                    "labels count classes from 0; relabel the data or give the model "
                    "more classes")


def _labels_or_one_hot(name, a, shape, wants_labels, where):
    if wants_labels and a.ndim == len(shape) + 1 and a.shape[-1] > 1:
        if a.size and not (np.all((a == 0) | (a == 1)) and np.all(np.sum(a, axis=-1) == 1)):
            raise UserError(f"{where}: '{name}' holds class labels, but is given as rows of "
                            f"{a.shape[-1]} values that are not one-hot",
                            "give integer labels, or rows with a single 1")
        return np.argmax(a, axis=-1)  # one-hot given where labels are declared
    if not wants_labels and a.ndim == len(shape) - 1 and len(shape) >= 1 \
            and isinstance(shape[-1], int) and shape[-1] > 1 and np.issubdtype(a.dtype,
                                                                               np.integer):
        k = shape[-1]
        _check_labels(name, a, k, where)
        return np.eye(k)[a]  # integer labels given where one-hot is declared
    if wants_labels and np.issubdtype(a.dtype, np.floating):
        if not np.all(a == np.round(a)):
            raise UserError(f"{where}: '{name}' holds class labels, but the values are not "
                            "whole numbers")
    return a


def _fmt(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def batches(arrays: dict[str, np.ndarray], batch: int, rng: np.random.Generator | None,
            axes: dict[str, int] | None = None):
    """Minibatches of every array, taken along each array's batch axis (``axes``, from
    ``batch_axes``; axis 0 of every array when not given), in a shuffled order when
    ``rng`` is given. Arrays without a batch axis go whole into every batch. One batch at
    a time: views (slices) in order, or the examples of one batch gathered when shuffled;
    never a copy of the whole data set."""
    if axes is None:
        axes = {k: 0 for k in arrays}
    n = example_count(arrays, axes)
    order = batch_order(n, rng)
    for i in range(-(-n // batch)):
        yield batch_at(arrays, axes, order, batch, i)


def batch_order(n: int, rng: np.random.Generator | None) -> np.ndarray | None:
    """The order of an epoch's examples: a permutation drawn from ``rng``, or None (in
    order). The only draw an epoch makes."""
    return rng.permutation(n) if rng is not None else None


def batch_at(arrays: dict[str, np.ndarray], axes: dict[str, int], order, batch: int,
             i: int) -> dict[str, np.ndarray]:
    """Batch ``i`` of an epoch in ``order`` (``batch_order``): a view when in order."""
    start = i * batch
    idx = order[start:start + batch] if order is not None else slice(start, start + batch)
    return examples(arrays, axes, idx)


def synthetic(module, rng: np.random.Generator, n: int = 3) -> dict[str, np.ndarray]:
    """Random data shaped from the module's contract (symbolic dimensions = n)."""
    out = {}
    label_names = labels_of(module)
    defaults = getattr(module, "DEFAULTS", {}) or {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        if name in defaults:
            out[name] = np.asarray(defaults[name], dtype=np.float64)
            continue
        dims = tuple(n if isinstance(d, str) else d for d in shape)
        if name in label_names:
            out[name] = rng.integers(0, label_names[name], size=dims)
        elif name in onehot_of(module):
            classes = onehot_of(module)[name]
            out[name] = np.eye(classes)[rng.integers(0, classes, size=dims[:-1])]
        else:
            out[name] = rng.normal(size=dims)
    return out
