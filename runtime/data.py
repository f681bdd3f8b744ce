"""Data for training, the entry point: ``load`` takes a ``--data`` flag or the spec's data
line and gives a ``Dataset`` of named arrays (the spec's inputs and targets) for training,
plus optional held-out arrays for testing.

The jobs are in their own modules: the batch axis, examples and minibatches
(``batching``), the checks against the declared shapes (``conform``), the built-in data
sets (``datasets``), .npz and .csv files (``datafiles``) and reading any file safely
(``files``). The names a caller trains with are importable from here.
"""

from __future__ import annotations

from pathlib import Path

from ..compiler.vocab import DATASET_RANGES

from .batching import (Dataset, arrange, batch_at, batch_axes, batch_dim, batch_order,
                       batches, example_count, examples)
from .conform import conform, say_label_warnings
from .datafiles import load_file, load_npy_files
from .datasets import GENERATORS, builtin, digits, fetch, mnist
from .errors import UserError

# What callers train with, from one place; digits, mnist and fetch for their tests.
__all__ = ["Dataset", "arrange", "batch_at", "batch_axes", "batch_dim", "batch_order",
           "batches", "builtin", "conform", "data_flag_problem", "data_problem", "digits",
           "example_count", "examples", "fetch", "load", "load_file", "mnist",
           "parse_data_flag", "spec_folder", "training_examples"]


def load(source: dict | str | None, module, seed: int = 0, targets: bool = True) -> Dataset:
    """Data from a --data flag (a string: a path, relative to the working directory,
    .npy files, or a built-in name with optional args) or the spec's data line
    (CONFIG's dict: a path there is relative to the spec's folder, see
    ``spec_folder``). ``targets=False``: a file without the targets will do (to predict
    on). Data sets that hold labels are checked against the model's classes
    (``label_warnings``, said on standard error)."""
    dataset = _load(source, module, seed, targets)
    say_label_warnings(module, dataset)
    return dataset


def training_examples(module, source: str | None = None, seed: int = 0
                      ) -> tuple[dict, int, str]:
    """(arrays, example count, data set name): the training split of ``source`` (a --data
    string) else the spec's data line, drawn from ``seed`` and conformed to the model as
    training sees it (labels as one-hot rows where the spec wants them), in its order."""
    config = getattr(module, "CONFIG", {}) or {}
    dataset = load(source if source else config.get("data"), module, seed)
    arrays = conform(dataset.train, module, f"training data ({dataset.name})")
    return arrays, example_count(arrays, batch_axes(module)), dataset.name


def _load(source: dict | str | None, module, seed: int, targets: bool) -> Dataset:
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
                         "folder); or pass --data PATH", targets)
    if "npy" in source:
        return load_npy_files([(k, Path(v)) for k, v in source["npy"]], module, targets)
    if "path" in source:
        return load_file(source["path"], module, targets=targets)
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
    """``--data spiral``, ``--data spiral:n=50,classes=4``, ``--data file.npz`` or .npy
    files, one array each: ``--data x.npy,t.npy`` (the inputs, then the targets, in the
    spec's order) or ``--data x=inputs.npy,t=labels.npy``."""
    files = [item.partition("=")[::2] if "=" in item and
             item.partition("=")[0].strip().isidentifier() else ("", item)
             for item in text.split(",")]
    if all(path.endswith(".npy") for _, path in files) and \
            (len(files) > 1 or files[0][0]):
        return {"npy": [[name.strip() or None, path] for name, path in files]}
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
