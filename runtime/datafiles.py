"""Data files: the arrays of an .npz (only those the spec names and their ``test_``
twins; flat image rows reshaped to a declared image shape) or the columns of a .csv (named
after the inputs and targets, one row an example). Every problem is an error naming the
file, and for a .csv the line and the column.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np

from .arrays import host_dtype
from .batching import Dataset, arrange, batch_axes
from .conform import data_names, shape_text
from .errors import UserError
from .files import bytes_text, memory_available, open_regular, read_npz


def load_file(path: str | Path, module, origin: str | None = None,
              targets: bool = True) -> Dataset:
    """The arrays in a .npz, .csv or .npy file; ``origin`` says where a relative path was
    resolved from, for the error when the file is missing. Of an .npz only the arrays
    the spec names (and their ``test_`` twins) are read. ``targets=False``: the inputs
    are enough (a file to predict on, without labels)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file {p} does not exist",
                        f"{origin}" if origin else None)
    try:
        return _load_file(p, module, targets)
    except MemoryError:  # a CSV's values, which no header announces
        size = p.stat().st_size
        raise UserError(f"data file {p} ({bytes_text(size)}) does not fit in memory "
                        f"({bytes_text(memory_available())} available)",
                        "use a smaller data set, or a machine with more memory") from None


def _load_file(p: Path, module, targets: bool = True) -> Dataset:
    if p.suffix == ".npy":
        return load_npy_files([(None, p)], module, targets)
    if p.suffix == ".npz":
        names = set(module.INPUTS) | set(module.TARGETS)
        listing: list[str] = []
        arrays = read_npz(p, lambda k: k in names or k[:5] == "test_" and k[5:] in names,
                          dtype=host_dtype(module), listing=listing)
        train = {k: v for k, v in arrays.items() if not k.startswith("test_")}
        defaults = getattr(module, "DEFAULTS", {}) or {}
        needed = names if targets else set(module.INPUTS)
        missing = [k for k in needed if k not in train and k not in defaults]
        if missing:
            raise UserError(f"data file {p} has no array for "
                            + ", ".join(f"'{k}'" for k in sorted(missing)),
                            "its arrays: " + (", ".join(sorted(listing)) or "none")
                            + "; name them after the spec's inputs and targets "
                              "(numpy.savez(path, x=..., t=...))")
        test = {k[5:]: v for k, v in arrays.items() if k.startswith("test_")}
        notes = unflatten_images(train, test, module, p.name)
        return Dataset(train, test, p.name, notes)
    if p.suffix == ".csv":
        return Dataset(_read_csv(p, module, targets), {}, p.name)
    raise UserError(f"data file {p} has an unknown type", "use .npz, .csv or .npy")


def load_npy_files(files: list[tuple[str | None, Path]], module,
                   targets: bool = True) -> Dataset:
    """One array per .npy file (``--data x.npy,t.npy`` or ``--data x=a.npy,t=b.npy``):
    a file given a name is that input or target, the others fill the rest of the
    inputs, then the targets, in the spec's order (``data_names``)."""
    names = data_names(module, targets)
    known = {**module.INPUTS, **module.TARGETS}
    given = {name: Path(path) for name, path in files if name is not None}
    for name in given:
        if name not in known:
            raise UserError(f"--data: '{name}' is not an input or target of the model",
                            "inputs: " + ", ".join(module.INPUTS) + "; targets: "
                            + (", ".join(module.TARGETS) or "none"))
    free = [n for n in names if n not in given]
    unnamed = [Path(path) for name, path in files if name is None]
    if len(unnamed) > len(free):
        raise UserError(f"--data: {len(files)} .npy files, but the model takes "
                        f"{len(names)} arrays ({', '.join(names)}, in this order)",
                        "name each file's array: --data x=inputs.npy,t=labels.npy")
    given.update(zip(free, unnamed))
    arrays = {}
    for name, path in given.items():
        if not path.exists():
            raise UserError(f"data file {path} does not exist")
        arrays[name] = _read_npy(path)
    notes = unflatten_images(arrays, {}, module, "the .npy files")
    return Dataset(arrays, {}, ",".join(p.name for p in given.values()), notes)


def _read_npy(p: Path) -> np.ndarray:
    """The array in a .npy file, its size checked against the memory available before it
    is read; never a pickled object."""
    hint = "save it with numpy.save(path, array) (a plain numeric array)"
    with open_regular(p, "data file") as f:
        try:
            version = np.lib.format.read_magic(f)
            header = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if header is None:
                raise ValueError(f"format version {version}")
            shape, _, dtype = header(f)
            need = math.prod(shape) * dtype.itemsize
            if need > memory_available():
                raise UserError(f"data file {p} holds {shape_text(list(shape))} {dtype}, "
                                f"about {bytes_text(need)}, more than the memory available",
                                "use a smaller data set, or a machine with more memory")
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"data file {p} is not a readable .npy file ({e})", hint) from None


def unflatten_images(train: dict, test: dict, module, filename: str) -> list[str]:
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
            f"{shape_text(shape)} as the spec declares (row-major, as NumPy's reshape)"
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


def _read_csv(p: Path, module, targets: bool = True) -> dict[str, np.ndarray]:
    """Columns named after inputs/targets, in any order: ``x`` for one column, ``x0``,
    ``x1`` … or ``x[0]``, ``x_0`` … for several, exactly one per value of an example
    (``x0`` to ``x{D-1}``: a missing, extra or repeated one is an error naming it). A row
    is one example: each array is arranged into its declared shape with the rows along
    the batch axis (``[2, N]`` takes ``x0, x1`` as its two rows). An input with a
    default may be left out (it takes its default), and so may the targets when
    ``targets`` is False (a file to predict on)."""
    header, values = _csv_table(p)
    axes = batch_axes(module)
    defaults = getattr(module, "DEFAULTS", {}) or {}
    optional = set(defaults) | (set() if targets else set(module.TARGETS))
    out = {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        if name in optional and not any(h == name or _column_index(h, name) is not None
                                        for h in header):
            continue
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
                    + (f" (one per value of an example of {shape_text(shape)})" if size else "")
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
        with open(p, newline="", encoding="utf-8-sig") as f:
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
    with open(p, newline="", encoding="utf-8-sig") as f:
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
                        f"declared shape {shape_text(shape)}",
                        f"give one column per value of an example: '{name}0', '{name}1', …"
                        ) from None
    return arrange(a, shape, axis)
