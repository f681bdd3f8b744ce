"""The built-in data sets (``data spiral(n=50)``, ``--data mnist``, the sequence tasks
``addition``, ``addition_seq2seq``, ``zen``, ``dates``, ``sine_wave``, ``copy`` and
``reverse``): their generators, the download of mnist into the cache, and ``builtin``,
which names their arrays after the module's inputs and target, splits off the test set
and arranges them in the declared layout; ``validation_split``, the held-out part of any training data;
``alphabet``, the characters of a character task's ids; and ``synthetic``, random data
of the module's declared shapes.

Both splits are drawn from the run's data seed (``Settings.data_seed``), never from the
seed of its initialization: runs of several seeds hold out the same examples.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path

import numpy as np

from ..compiler.cache import cache_dir
from ..compiler.vocab import DATASET_RANGES, DATASETS, whole_number

from .batching import Dataset, arrange, batch_axes, batch_dim, example_count, examples
from .conform import labels_of, onehot_of, step_limits_of
from .errors import UserError
from .files import open_regular, remove_temporaries
from .streams import stream_rows


def _split(arrays: dict[str, np.ndarray], rng: np.random.Generator,
           test_fraction: float) -> tuple[dict, dict]:
    """(training, test): ``test_fraction`` of the examples (rows) drawn from ``rng``."""
    n = len(next(iter(arrays.values())))
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return ({k: v[train] for k, v in arrays.items()},
            {k: v[test] for k, v in arrays.items()} if n_test else {})


def validation_split(arrays: dict[str, np.ndarray], axes: dict[str, int], fraction: float,
                     seed: int) -> tuple[dict, dict]:
    """(training, validation): ``fraction`` of the examples of ``arrays`` (along their
    batch ``axes``) held out, drawn from ``seed``; both parts keep the examples' order."""
    n = example_count(arrays, axes)
    n_val = int(round(n * fraction))
    if not 1 <= n_val < n:
        raise UserError(f"a validation fraction of {fraction:g} of {n} training examples "
                        f"holds out {n_val}", "give a fraction that holds out at least one "
                        "example and leaves at least one to train on")
    # A stream of its own (the seed and 1): not the draw of a built-in set's test split.
    order = np.random.default_rng([seed, 1]).permutation(n)
    return (examples(arrays, axes, np.sort(order[n_val:])),
            examples(arrays, axes, np.sort(order[:n_val])))


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
    train, test = _split({"x": x, "t": t}, rng, fraction)
    return train["x"][:n], train["t"][:n], test["x"], test["t"]


# ----------------------------------------------------------------------------- sequences
# DLFS2's addition task: questions "57+8" and answers "_65" as character ids, padded with
# spaces to fixed lengths (the book's dataset/addition.txt: 7 and 5 characters, "_" the
# decoder's start).
ADDITION_CHARS = "0123456789+ _"


def addition(rng: np.random.Generator, n: int = 50000, digits: int = 3):
    """``n`` sums of two numbers below 10^digits: x the question's ids [n, 2 * digits + 1],
    t the answer's, "_" first, [n, digits + 2]; 10% held out, as in the book."""
    a, b = rng.integers(0, 10 ** digits, size=(2, n))
    width = 2 * digits + 1
    questions = [f"{p}+{q}".ljust(width) for p, q in zip(a, b)]
    answers = [f"_{p + q}".ljust(digits + 2) for p, q in zip(a, b)]
    return _char_ids(questions, ADDITION_CHARS), _char_ids(answers, ADDITION_CHARS), 0.1


def addition_seq2seq(rng: np.random.Generator, n: int = 50000, digits: int = 3):
    """``addition`` for an encoder-decoder trained with teacher forcing: two inputs, the
    question [n, 2 * digits + 1] and the decoder's input, the answer shifted right one
    ("_65 ", "_" the start, [n, digits + 1]), and the target, the answer ("65  ")."""
    x, t, fraction = addition(rng, n, digits)
    return (x, t[:, :-1]), t[:, 1:], fraction


# A data set whose model's last input is a decoder's, fed the answer shifted right one
# after this start id (teacher forcing); at evaluation it can be fed its own prediction
# instead (runtime/decoding.py).
DECODER_START = {"addition_seq2seq": ADDITION_CHARS.index("_")}


def _char_ids(lines: list[str], chars: str) -> np.ndarray:
    table = np.zeros(128, dtype=np.int64)
    table[[ord(c) for c in chars]] = np.arange(len(chars))
    return table[np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8)].reshape(
        len(lines), -1)


def zen_text() -> str:
    """The Zen of Python, read from the standard library's ``this`` module without
    importing it (an import prints it): its rot13 string, decoded."""
    import ast
    import codecs
    import importlib.util

    spec = importlib.util.find_spec("this")
    if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
        raise UserError("the 'zen' data set reads the Zen of Python from the standard "
                        "library's this.py, which this Python does not have")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    text = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) == "s")
    return codecs.decode(text, "rot13")


def zen(rng: np.random.Generator, steps: int = 32, stride: int = 1):
    """A character-level language model's data: a window of ``steps`` characters of the
    Zen of Python every ``stride`` characters (x, ids [n, steps]; every window by default,
    consecutive ones with ``stride=steps``) and the character after each (t, the window
    shifted by one). Ids number the text's 45 distinct characters in sorted order. The
    last 10% of the text is the test set (windows within it only: none straddles)."""
    text = zen_text()
    ids = _char_ids([text], alphabet("zen"))[0]
    cut = int(len(ids) * 0.9)

    def windows(part: np.ndarray):
        starts = np.arange(0, len(part) - steps, stride)[:, None] + np.arange(steps)
        return part[starts], part[starts + 1]

    return (*windows(ids[:cut]), *windows(ids[cut:]))


def sine_wave(rng: np.random.Generator, n: int = 200, steps: int = 25, noise: float = 0.0):
    """Forecasting: ``n`` windows of ``steps`` samples of sin (20 per period) from random
    phases, plus ``noise``, x [n, steps, 1], and the sample after each, t [n, steps, 1]."""
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1))
    wave = np.sin(phase + 2 * math.pi / 20 * np.arange(steps + 1))
    wave = wave + noise * rng.normal(size=wave.shape)
    return wave[:, :-1, None], wave[:, 1:, None], 0.2


def copy(rng: np.random.Generator, n: int = 1000, steps: int = 5, symbols: int = 8,
         delay: int = 0, reverse: bool = False):
    """The copy-memory task: ``steps`` random symbols (ids 1..symbols), ``delay`` blanks
    (0), a delimiter (symbols + 1), then ``steps`` blanks; the target is blanks until the
    delimiter, then the symbols again (``reverse``: backwards). x and t are
    [n, 2 * steps + delay + 1] ids, of a vocabulary of symbols + 2; ``ignore=0`` scores
    the recall alone. The delay, not the number of symbols, is what makes it hard for a
    net whose gradient fades over time (Hochreiter & Schmidhuber's copy-memory)."""
    seq = rng.integers(1, symbols + 1, size=(n, steps))
    blank = np.zeros((n, steps), dtype=np.int64)
    wait = np.zeros((n, delay + 1), dtype=np.int64)  # the delay and the delimiter's step
    delimiter = np.full((n, 1), symbols + 1)
    recalled = seq[:, ::-1] if reverse else seq
    return (np.concatenate([seq, wait[:, 1:], delimiter, blank], axis=1),
            np.concatenate([blank, wait, recalled], axis=1), 0.2)


def reverse(rng: np.random.Generator, n: int = 1000, steps: int = 5, symbols: int = 8,
            delay: int = 0):
    """``copy``, the symbols recalled backwards."""
    return copy(rng, n, steps, symbols, delay, reverse=True)


# DLFS2 ch. 8's date-format conversion (its dataset/date.txt, generated here): a date in
# one of many human formats, padded with spaces to 29 characters, and its ISO form.
DATE_CHARS = " ,-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DATE_WIDTH = 29  # "WEDNESDAY, SEPTEMBER 27, 1994", the longest
DATE_FORMATS = ("{month} {d}, {Y}", "{Month} {d}, {Y}", "{MONTH} {d}, {Y}", "{Mon} {d}, {Y}",
                "{MON} {d}, {Y}", "{m}/{d}/{y}", "{mm}/{dd}/{Y}", "{d} {Month} {Y}",
                "{weekday}, {month} {d}, {Y}", "{Weekday}, {Month} {d}, {Y}",
                "{WEEKDAY}, {MONTH} {d}, {Y}")


def _date_text(day, form: str) -> str:
    month, weekday = day.strftime("%B"), day.strftime("%A")
    return form.format(month=month.lower(), Month=month, MONTH=month.upper(),
                       Mon=month[:3], MON=month[:3].upper(), weekday=weekday.lower(),
                       Weekday=weekday, WEEKDAY=weekday.upper(), d=day.day,
                       dd=f"{day.day:02d}", m=day.month, mm=f"{day.month:02d}",
                       y=f"{day.year % 100:02d}", Y=day.year)


def dates(rng: np.random.Generator, n: int = 10000):
    """``n`` dates from 1950-01-01 to 2049-12-31 (a two-digit year is 19yy from 50, else
    20yy) in DATE_FORMATS, drawn uniformly: x the text's ids [n, 29], padded with spaces
    (id 0), t the ISO date's [n, 10]; 10% held out."""
    import datetime

    first = datetime.date(1950, 1, 1).toordinal()
    days = rng.integers(first, datetime.date(2049, 12, 31).toordinal() + 1, size=n)
    forms = rng.integers(0, len(DATE_FORMATS), size=n)
    texts = [_date_text(datetime.date.fromordinal(int(d)), DATE_FORMATS[f])
             for d, f in zip(days, forms)]
    isos = [datetime.date.fromordinal(int(d)).isoformat() for d in days]
    return (_char_ids([t.ljust(DATE_WIDTH) for t in texts], DATE_CHARS),
            _char_ids(isos, DATE_CHARS), 0.1)


def alphabet(name: str) -> str | None:
    """The characters a character task's ids number (id k is the k-th), or None for a data
    set that is not text: the labels of an attention picture's axes."""
    if name == "zen":
        return "".join(sorted(set(zen_text())))
    return {"addition": ADDITION_CHARS, "addition_seq2seq": ADDITION_CHARS,
            "dates": DATE_CHARS}.get(name)


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
    import urllib.request  # here: its SSL and HTTP modules cost every run ~25 ms

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
              "digits_subset": digits_subset, "mnist": mnist, "addition": addition,
              "addition_seq2seq": addition_seq2seq,
              "zen": zen, "dates": dates, "sine_wave": sine_wave, "copy": copy, "reverse": reverse}
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
    ranges = DATASET_RANGES.get(name, {})
    for key, value in kwargs.items():  # a count written 1e3 or 100.0: 1000, 100
        whole = whole_number(value) if key in ranges and ranges[key].kind is int else None
        if whole is not None:
            kwargs[key] = whole
    inputs, targets = list(module.INPUTS), list(module.TARGETS)
    n_inputs = 2 if name in DECODER_START else 1
    if len(inputs) != n_inputs or len(targets) != 1:
        gives = ("two inputs (the question, then the decoder's input) and one target"
                 if n_inputs == 2 else "one input and one target")
        raise UserError(f"built-in data set '{name}' gives {gives}, but the model has "
                        f"inputs {inputs} and targets {targets}",
                        "give a data file instead: --data file.npz")
    per_n = {"spiral": int(kwargs.get("classes", 3)), "sine": 1}.get(name)
    if per_n is not None:  # before generating it: a data set that would not fit
        from .points import check_dataset_memory

        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        n = int(kwargs.get("n", DATASETS[name].defaults()["n"]))
        check_dataset_memory(f"{name}({args})", n * per_n, module, per_n)
    rng = np.random.default_rng(seed)
    out = GENERATORS[name](rng, **kwargs)
    named = (lambda x, t: {**dict(zip(inputs, x if isinstance(x, tuple) else (x,))),
                           targets[0]: t})
    if len(out) == 4:
        x, t, xt, tt = out
        train, test = named(x, t), named(xt, tt)
    else:
        x, t, fraction = out
        train, test = _split(named(x, t), rng, fraction)
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


def synthetic(module, rng: np.random.Generator, n: int = 3) -> dict[str, np.ndarray]:
    """Random data shaped from the module's contract (symbolic dimensions = n, or fewer
    where a table of positions holds fewer; the batch as many rows as the streams of a
    model whose loops continue states)."""
    out = {}
    limits = dict(step_limits_of(module))
    rows = stream_rows(module)
    if rows is not None:
        limits[batch_dim(module)] = (rows,)
        n = max(n, rows)
    label_names = labels_of(module)
    defaults = getattr(module, "DEFAULTS", {}) or {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        if name in defaults:
            out[name] = np.asarray(defaults[name], dtype=np.float64)
            continue
        dims = tuple(min(n, limits.get(d, (n,))[0]) if isinstance(d, str) else d
                     for d in shape)
        if name in label_names:
            out[name] = rng.integers(0, label_names[name], size=dims)
        elif name in onehot_of(module):
            classes = onehot_of(module)[name]
            out[name] = np.eye(classes)[rng.integers(0, classes, size=dims[:-1])]
        else:
            out[name] = rng.normal(size=dims)
    return out
