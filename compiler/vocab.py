"""The spec language's vocabulary beyond expressions: initializers, layers, optimizers,
training settings, data sets and dtypes. One table each; the checker validates specs
against them and the runtime reads its defaults from them, so the two never disagree.

Built-in *functions* (``exp``, ``mean``, ``softmax_cross_entropy`` …) live in
``compiler/functions.py`` beside the primitives they lower to.
"""

from __future__ import annotations

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

# Layers inside ``layers IN -> OUT { … }``.
ACTIVATIONS = {"relu", "sigmoid", "tanh", "softplus", "leaky_relu", "softmax"}
RELU_FAMILY = {"relu", "leaky_relu"}
LAYERS: dict[str, Signature] = {
    "dense": sig("units", ("init", None), ("bias", "zeros"),
                 doc="W{k} : [fan_in, units], b{k} : [units], a{k} = h @ W{k} + b{k}"),
    "relu": sig(),
    "sigmoid": sig(),
    "tanh": sig(),
    "softplus": sig(),
    "leaky_relu": sig(("alpha", 0.01)),
    "softmax": sig(),
}


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


@dataclass(frozen=True)
class SettingSpec:
    kind: type
    default: object
    doc: str
    minimum: float | None = None


TRAIN_SETTINGS: dict[str, SettingSpec] = {
    "epochs": SettingSpec(int, 10, "passes over the training data", 1),
    "iters": SettingSpec(int, None, "minibatch steps (replaces epochs)", 1),
    "batch": SettingSpec(int, 100, "minibatch size", 1),
    "seed": SettingSpec(int, 0, "seed for initialization, shuffling and data", 0),
    "shuffle": SettingSpec(bool, True, "reshuffle the training data every epoch"),
    "eval_every": SettingSpec(int, 1, "evaluate every K epochs", 1),
}

DATASETS: dict[str, Signature] = {
    "xor": sig(doc="the four XOR points"),
    "spiral": sig(("n", 100), ("classes", 3), ("noise", 0.2),
                  doc="n points per class on interleaved spirals (2-D)"),
    "sine": sig(("n", 200), ("noise", 0.1), doc="y = sin(x) + noise on [-pi, pi]"),
    "digits": sig(doc="scikit-learn's 8x8 handwritten digits (needs scikit-learn)"),
    "mnist": sig(doc="MNIST, downloaded once to a cache and checksum-verified"),
}

DTYPES = {"float64", "float32"}
