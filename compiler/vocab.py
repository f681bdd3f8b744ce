"""The spec language's vocabulary beyond expressions: initializers, optimizers,
training settings, data sets and dtypes. One table each; the checker validates specs
against them and the runtime reads its defaults from them, so the two never disagree.

Built-in *functions* (``exp``, ``mean``, ``softmax_cross_entropy`` …) live in
``compiler/ir/functions.py`` beside the primitives they lower to; the layer kinds of a
``layers`` stack in ``compiler/frontend/layers/``, one unit each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REQUIRED = object()  # a parameter without a default


@dataclass(frozen=True)
class Signature:
    """Parameters of a callable spec word: ``(name, default)`` in positional order."""

    params: tuple[tuple[str, object], ...] = ()
    doc: str = ""

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.params]

    def defaults(self) -> dict[str, object]:
        return {n: d for n, d in self.params if d is not REQUIRED}

    def usage(self, name: str) -> str:
        parts = [n if d is REQUIRED else f"{n}={d!r}" for n, d in self.params]
        return f"{name}({', '.join(parts)})"


def sig(*params, doc: str = "") -> Signature:
    return Signature(tuple(p if isinstance(p, tuple) else (p, REQUIRED) for p in params), doc)


# Initializers: name -> signature.  A number or a matrix literal is also an initializer.
INITIALIZERS: dict[str, Signature] = {
    "zeros": sig(doc="every element 0"),
    "ones": sig(doc="every element 1"),
    "constant": sig("value", doc="every element equals value"),
    "normal": sig(("mean", 0.0), ("std", 1.0), doc="normal(mean, std)"),
    "uniform": sig(("low", -1.0), ("high", 1.0), doc="uniform on [low, high)"),
    "xavier": sig(doc="normal with std = sqrt(1 / fan_in)"),
    "glorot": sig(doc="same as xavier"),
    "xavier_uniform": sig(doc="uniform on ±sqrt(6 / (fan_in + fan_out))"),
    "he": sig(doc="normal with std = sqrt(2 / fan_in)"),
    "kaiming": sig(doc="same as he"),
    "lecun": sig(doc="normal with std = sqrt(1 / fan_in)"),
}
INIT_ALIASES = {"glorot": "xavier", "kaiming": "he"}
FAN_INITIALIZERS = {"xavier", "xavier_uniform", "he", "lecun"}

# Optimizers: every one also takes the common keys.
COMMON_OPT_KEYS = {"lr": 0.01, "weight_decay": 0.0, "clip": 0.0, "schedule": "constant",
                   "gamma": 0.1, "step": 10, "min_lr": 0.0}
OPTIMIZERS: dict[str, dict[str, object]] = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01, "eps": 1e-8},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
SCHEDULES = {"constant", "step", "exponential", "cosine"}


def optimizer_defaults(name: str) -> dict[str, object]:
    return {**COMMON_OPT_KEYS, **OPTIMIZERS[name]}


# ----------------------------------------------------------------------------- ranges
def whole_number(value) -> int | None:
    """A count written as a number: ``3``, ``3.0`` or ``3e0`` is 3; anything else (2.5,
    inf, a truth value, a list) is None. The one rule for flags, a spec's counts and a
    built-in data set's arguments."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: finite, whole for ``kind=int``, within optional bounds.

    One table of these serves both the spec checker (located errors in ``bpc check``) and
    the command line (usage errors naming the flag), so ``adam(beta1=1.5)`` and a flag
    ``--lr -1`` are refused with the same words, and no value outside its range reaches the
    optimizer or the data generators to give a quietly wrong run."""

    kind: type = float  # int: a whole number (3.0 is accepted as 3)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded: "> low" rather than ">= low"
    high_open: bool = False

    def describe(self) -> str:
        noun = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return (f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        return f"a finite {noun[2:]}" if self.kind is float else noun

    def problem(self, value) -> str | None:
        """None if ``value`` is in range, else what is wrong: ``must be …, not …``."""
        if self.contains(value):
            return None
        return f"must be {self.describe()}, not {shown(value)}"

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not (math.isfinite(value) and (
                self.kind is float or value.is_integer())):
            return False
        if isinstance(value, int) and self.kind is float and abs(value) > 1e308:
            return False  # a whole number too large for a float
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def parse(self, text: str):
        """A flag's text as a value (not yet range-checked); ValueError if not a number."""
        try:
            return int(text)
        except ValueError:
            value = float(text)  # raises ValueError for text that is no number
        whole = whole_number(value) if self.kind is int else None
        return value if whole is None else whole  # --epochs 1e3: 1000

    def coerce(self, value):
        """An in-range value as its kind (3.0 -> 3 for a whole number)."""
        return int(value) if self.kind is int else float(value)


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value) if abs(value) < 10 ** 15 else f"{value:.3e}" if abs(value) < 1e308 \
            else f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, list):
        return "a list"
    return repr(value)


ANY_NUMBER = Range()
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
FRACTION = Range(low=0, high=1, high_open=True)  # a decay rate: [0, 1)
COUNT = Range(int, low=1)
STEPS = Range(int, low=1, high=1e15)  # more would take longer than anyone can wait
SEED = Range(int, low=0)

# Every numeric optimizer setting.  lr > 0 (0 would train nothing); decay rates < 1
# (1 would never forget, and Adam's bias correction divides by 1 - beta ** t).
OPTIMIZER_RANGES: dict[str, Range] = {
    "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "clip": NON_NEGATIVE, "gamma": POSITIVE,
    "step": COUNT, "min_lr": NON_NEGATIVE, "momentum": FRACTION, "rho": FRACTION,
    "beta1": FRACTION, "beta2": FRACTION, "eps": POSITIVE,
}
assert {k for name in OPTIMIZERS for k in optimizer_defaults(name)} - {"schedule"} \
    == set(OPTIMIZER_RANGES), "every numeric optimizer setting needs a range"

# Numeric initializer arguments, and pairs that must be ordered (low < high).
INIT_RANGES: dict[str, dict[str, Range]] = {
    "constant": {"value": ANY_NUMBER},
    "normal": {"mean": ANY_NUMBER, "std": NON_NEGATIVE},
    "uniform": {"low": ANY_NUMBER, "high": ANY_NUMBER},
}
INIT_ORDERED: dict[str, tuple[str, str]] = {"uniform": ("low", "high")}


@dataclass(frozen=True)
class SettingSpec:
    kind: type
    default: object
    doc: str
    range: Range | None = None


TRAIN_SETTINGS: dict[str, SettingSpec] = {
    "epochs": SettingSpec(int, 10, "passes over the training data", STEPS),
    "iters": SettingSpec(int, None, "minibatch steps (replaces epochs)", STEPS),
    "batch": SettingSpec(int, 100, "minibatch size", COUNT),
    "seed": SettingSpec(int, 0, "seed for initialization, shuffling and dropout", SEED),
    "data_seed": SettingSpec(int, 0, "seed for the data: a built-in data set's examples and "
                             "its test and validation splits", SEED),
    "validation": SettingSpec(float, 0.0, "the fraction of the training data held out to "
                              "validate on (0: none)", FRACTION),
    "shuffle": SettingSpec(bool, True, "reshuffle the training data every epoch"),
    "eval_every": SettingSpec(int, None, "evaluate (the measures of a history row) every K epochs; "
                              "default: often enough to cost about 5% of the run", COUNT),
}

# Numeric flags of the runtime commands that have no spec counterpart (bpc gradcheck's,
# bpc stats' batch and steps); bpc train's flags take the ranges of the settings they override.
STATS_STEPS = 20  # bpc stats' default length of the random sequences a loop steps through
RUNTIME_RANGES: dict[str, Range] = {
    "eps": POSITIVE, "tol": POSITIVE, "samples": COUNT, "batch": COUNT, "seed": SEED,
    "steps": Range(int, low=1, high=10000),
    "row": Range(int, low=0), "digits": Range(int, low=3, high=17),
    "checkpoint_every": NON_NEGATIVE, "patience": Range(int, low=0),
    "min_delta": NON_NEGATIVE, "length": Range(int, low=1, high=100000),
    "temperature": NON_NEGATIVE, "context": COUNT, "threads": Range(int, low=1, high=1024),
}

DATASETS: dict[str, Signature] = {
    "xor": sig(doc="the four XOR points"),
    "spiral": sig(("n", 100), ("classes", 3), ("noise", 0.2),
                  doc="n points per class on interleaved spirals (2-D)"),
    "sine": sig(("n", 200), ("noise", 0.1), doc="y = sin(x) + noise on [-pi, pi]"),
    "digits": sig(doc="scikit-learn's 8x8 handwritten digits (needs scikit-learn)"),
    "digits_subset": sig(("n", 300), doc="digits with only n training examples, the "
                                         "same test set"),
    "mnist": sig(doc="MNIST, downloaded once to a cache and checksum-verified"),
    "addition": sig(("n", 50000), ("digits", 3), doc="DLFS2's addition task: '57+8' -> "
                    "'_65' as character ids, padded with spaces"),
    "addition_seq2seq": sig(("n", 50000), ("digits", 3), doc="addition for an encoder-"
                            "decoder: the question, the decoder's input '_65 ' and the "
                            "answer '65  '"),
    "zen": sig(("steps", 32), ("stride", 1), doc="the Zen of Python, windows of characters "
               "(one every stride characters) and the next character of each (a "
               "character-level language model)"),
    "dates": sig(("n", 10000), doc="DLFS2's date conversion: 'september 27, 1994' -> "
                  "'1994-09-27' as character ids, padded with spaces"),
    "sine_wave": sig(("n", 200), ("steps", 25), ("noise", 0.0),
                     doc="windows of a sine wave [N, T, 1] and the next sample of each"),
    "copy": sig(("n", 1000), ("steps", 5), ("symbols", 8), ("delay", 0),
                doc="recall a sequence of symbols after a delay and a delimiter"),
    "reverse": sig(("n", 1000), ("steps", 5), ("symbols", 8), ("delay", 0),
                   doc="recall a sequence of symbols backwards after a delay and a "
                       "delimiter"),
}
DATASET_RANGES: dict[str, dict[str, Range]] = {
    "spiral": {"n": COUNT, "classes": Range(int, low=2), "noise": NON_NEGATIVE},
    "sine": {"n": COUNT, "noise": NON_NEGATIVE},
    "digits_subset": {"n": Range(int, low=1, high=1438)},  # all of digits' training split
    # The sequence tasks' sizes are bounded so that a data set stays below ~100 MB.
    **{task: {"n": Range(int, low=2, high=200000), "digits": Range(int, low=1, high=9)}
       for task in ("addition", "addition_seq2seq")},
    # the test part is 86 characters
    "zen": {"steps": Range(int, low=1, high=64), "stride": Range(int, low=1, high=64)},
    "dates": {"n": Range(int, low=2, high=200000)},
    "sine_wave": {"n": Range(int, low=2, high=100000), "steps": Range(int, low=1, high=200),
                  "noise": NON_NEGATIVE},
    **{task: {"n": Range(int, low=2, high=100000), "steps": Range(int, low=1, high=100),
              "symbols": Range(int, low=1, high=1000), "delay": Range(int, low=0, high=200)}
       for task in ("copy", "reverse")},
}
assert all(set(DATASET_RANGES.get(k, {})) == set(s.names) for k, s in DATASETS.items()), \
    "every data set argument needs a range"

DTYPES = {"float64", "float32"}
