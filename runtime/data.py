"""Data for training: files (.npz, .csv), built-in generators, checking and batching.

A data set is a ``Dataset`` of named arrays (the spec's inputs and targets) for training,
plus optional held-out arrays for testing. Arrays are checked against the module's
declared shapes: fixed dimensions must match, and a symbolic dimension (``N``) must bind
to one size across every input and target, else the error names the input and the
dimension. Integer labels are accepted where one-hot targets are declared and the other
way round.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.cache import cache_dir
from compiler.vocab import DATASETS

from .errors import UserError


@dataclass
class Dataset:
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "data"

    def size(self, split: str = "train") -> int:
        arrays = self.train if split == "train" else self.test
        return len(next(iter(arrays.values()))) if arrays else 0


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
                        "install it with: python3 -m pip install 'bpc[digits]' "
                        "(or: python3 -m pip install scikit-learn)") from None
    bunch = load_digits()
    return bunch.data / 16.0, bunch.target.astype(np.int64), 0.2


MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, filename: str, digest: str, timeout: float = 30.0) -> Path:
    """Download ``url`` once into the cache, verifying its SHA-256; reuse it afterwards."""
    target = cache_dir() / filename
    if target.exists():
        if sha256(target) == digest:
            return target
        target.unlink()  # corrupt or truncated: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not download {filename} from {url} ({e})",
                        f"check the network, or place the file at {target} "
                        f"(set BPC_CACHE to use another folder)") from None
    if sha256(tmp) != digest:
        tmp.unlink(missing_ok=True)
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


GENERATORS = {"xor": xor, "spiral": spiral, "sine": sine, "digits": digits, "mnist": mnist}
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
    return Dataset(train, test, name)


# ----------------------------------------------------------------------------- files
def load_file(path: str | Path, module) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file {p} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (ValueError, OSError) as e:
            raise UserError(f"{p} is not a readable .npz file ({e})") from None
        train = {k: v for k, v in arrays.items() if not k.startswith("test_")}
        test = {k[5:]: v for k, v in arrays.items() if k.startswith("test_")}
        return Dataset(train, test, p.name)
    if p.suffix == ".csv":
        return Dataset(_read_csv(p, module), {}, p.name)
    raise UserError(f"data file {p} has an unknown type", "use .npz or .csv")


def _read_csv(p: Path, module) -> dict[str, np.ndarray]:
    """Columns named after inputs/targets: ``x`` for one column, ``x0``, ``x1`` … or
    ``x[0]``, ``x_0`` … for several."""
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise UserError(f"{p} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    try:
        values = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise UserError(f"{p}: every value after the header must be a number ({e})") from None
    out = {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        single = [i for i, h in enumerate(header) if h == name]
        multi = sorted(((int(h[len(name):].strip("[]_")), i) for i, h in enumerate(header)
                        if h.startswith(name) and h[len(name):].strip("[]_").isdigit()))
        if single:
            out[name] = values[:, single[0]]
            if len(shape) == 2 and shape[1] == 1:
                out[name] = out[name][:, None]
        elif multi:
            out[name] = values[:, [i for _, i in multi]]
        else:
            raise UserError(f"{p} has no column for '{name}'",
                            f"name the columns '{name}' or '{name}0', '{name}1', …")
    return out


def load(source: dict | str | None, module, seed: int = 0) -> Dataset:
    """Data from a --data flag (a path or a built-in name with optional args) or CONFIG."""
    if source is None:
        raise UserError("no data: the spec has no 'data' line and no --data was given",
                        "add e.g. 'data \"train.npz\"' or 'data spiral' to the spec, "
                        "or pass --data")
    if isinstance(source, str):
        source = parse_data_flag(source)
    if "path" in source:
        return load_file(source["path"], module)
    args = {k: v for k, v in source.items() if k != "name"}
    return builtin(source["name"], module, seed, **args)


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
        a = np.asarray(arrays[name])
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
        if name in label_names:
            out[name] = a.astype(np.int64, copy=False)
        else:
            out[name] = a.astype(module.DTYPE, copy=False)
        if name in onehot_of(module) and a.size and not np.allclose(
                np.sum(out[name], axis=-1), 1.0, atol=1e-4):
            raise UserError(f"{where}: '{name}' feeds softmax_cross_entropy, so each row must "
                            "be one-hot or a probability distribution (summing to 1)",
                            f"give class labels instead by declaring 'target {name} : [N]'")
    return out


def _labels_or_one_hot(name, a, shape, wants_labels, where):
    if wants_labels and a.ndim == len(shape) + 1 and a.shape[-1] > 1:
        return np.argmax(a, axis=-1)  # one-hot given where labels are declared
    if not wants_labels and a.ndim == len(shape) - 1 and len(shape) >= 1 \
            and isinstance(shape[-1], int) and shape[-1] > 1 and np.issubdtype(a.dtype,
                                                                               np.integer):
        k = shape[-1]
        if a.size and (a.min() < 0 or a.max() >= k):
            raise UserError(f"{where}: labels of '{name}' must lie in 0..{k - 1}, found "
                            f"{a.min()}..{a.max()}")
        return np.eye(k)[a]  # integer labels given where one-hot is declared
    if wants_labels and np.issubdtype(a.dtype, np.floating):
        if not np.all(a == np.round(a)):
            raise UserError(f"{where}: '{name}' holds class labels, but the values are not "
                            "whole numbers")
    return a


def _fmt(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def batches(arrays: dict[str, np.ndarray], batch: int, rng: np.random.Generator | None):
    """Minibatches of every array, in a shuffled order when ``rng`` is given."""
    n = len(next(iter(arrays.values())))
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        yield {k: v[idx] for k, v in arrays.items()}


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
