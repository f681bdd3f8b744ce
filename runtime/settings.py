"""A run's settings: ``Settings`` (epochs or steps, batch, the seeds, shuffle, the
validation split, evaluation cadence, model selection, optimizer and its settings) from
the spec's ``CONFIG`` and the flags, held to the range table (``compiler/vocab.py``), and
the evaluation cadence when none is given (``auto_eval_every``).

Two seeds: ``seed`` draws the initial parameters, every epoch's shuffle and dropout's
masks; ``data_seed`` draws the data (a built-in data set's examples, its test split and
the validation split), so runs of several seeds train and are measured on the same
examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..compiler.vocab import (OPTIMIZER_RANGES, OPTIMIZERS, RUNTIME_RANGES, TRAIN_SETTINGS,
                              optimizer_defaults)

from .errors import UserError

# Evaluations (the measures of a history row) come every eval_every epochs; unless the
# spec or a flag says, eval_every is the smallest K for which an evaluation is estimated to cost at most
# EVAL_SHARE of the K epochs' steps. The estimate is counted, not timed, so a run's
# history does not depend on the machine's speed: a forward pass costs about a third of a
# training step per example, and a row's fixed part (its evaluation calls, the CSV line,
# the printed line) about EVAL_CALLS steps.
EVAL_SHARE = 0.05


EVAL_CALLS = 8

# What --keep keeps: the last state alone (checkpoint.npz), or also the best (best.npz).
KEEP = ("last", "best")
# The history's columns that measure the model, each better low or high: what
# --early-stop and --keep best may watch.
METRICS = {"loss": "min", "train_acc": "max", "val_loss": "min", "val_acc": "max",
           "test_loss": "min", "test_acc": "max"}


def metric_sign(metric: str) -> int:
    """1 where a metric is better low (a loss), -1 where high (an accuracy)."""
    return 1 if METRICS[metric] == "min" else -1


def spec_data_seed(module) -> int:
    """The data seed the spec's ``train { }`` block sets (0 when it sets none): how the
    spec's data is drawn outside a run (evaluation, prediction)."""
    return ((getattr(module, "CONFIG", {}) or {}).get("train") or {}).get("data_seed") or 0


@dataclass
class Settings:
    epochs: int | None = None
    iters: int | None = None
    batch: int = 100
    seed: int = 0
    shuffle: bool = True
    eval_every: int | None = None  # None: auto_eval_every
    optimizer: str = "sgd"
    opt: dict = field(default_factory=dict)
    data_seed: int = 0
    validation: float = 0.0  # the fraction of the training data held out (0: none)
    early_stop: str | None = None  # the metric, "auto" (val_loss, else loss) or None
    patience: int = 5  # epochs without an improvement before an early stop
    min_delta: float = 0.0  # what counts as an improvement of the early-stop metric
    keep: str = "last"

    @classmethod
    def from_module(cls, module, overrides: dict) -> "Settings":
        """Spec values (the module's CONFIG), then defaults, overridden by flags."""
        config = getattr(module, "CONFIG", {}) or {}
        train = {k: v for k, v in config.get("train", {}).items() if v is not None}
        opt = dict(config.get("optimizer", {}) or {"name": "sgd"})
        name = overrides.get("optimizer") or opt.pop("name", "sgd")
        opt.pop("name", None)
        if name not in OPTIMIZERS:
            raise UserError(f"unknown optimizer '{name}'",
                            "optimizers: " + ", ".join(sorted(OPTIMIZERS)))
        if overrides.get("optimizer") and overrides["optimizer"] != config.get(
                "optimizer", {}).get("name"):
            opt = {}  # another optimizer: the spec's settings were for the old one
        allowed = optimizer_defaults(name)
        opt = {k: v for k, v in opt.items() if k in allowed}
        if overrides.get("lr") is not None:
            opt["lr"] = overrides["lr"]
        values = {k: spec.default for k, spec in TRAIN_SETTINGS.items()}
        if "iters" in train:  # the spec counts steps, not epochs
            values["epochs"] = None
        from .streams import stream_rows  # imports NumPy: not while the CLI is parsed

        rows = stream_rows(module)
        if rows is not None:  # loops continue states: batches of its streams, in order
            values.update(shuffle=False, batch=rows)
        values.update(train)
        # A flag wins; --epochs and --iters replace each other.
        for key, other in (("epochs", "iters"), ("iters", "epochs"), ("batch", None),
                           ("seed", None), ("eval_every", None), ("data_seed", None),
                           ("validation", None)):
            if overrides.get(key) is not None:
                values[key] = overrides[key]
                if other:
                    values[other] = None
        _check_ranges(values, opt)
        selection = _selection(overrides)
        return cls(epochs=values.get("epochs"), iters=values.get("iters"),
                   batch=int(values["batch"]), seed=int(values["seed"]),
                   shuffle=bool(values["shuffle"]),
                   eval_every=None if values["eval_every"] is None else int(values["eval_every"]),
                   optimizer=name, opt=opt, data_seed=int(values["data_seed"]),
                   validation=float(values["validation"]), **selection)


def _selection(overrides: dict) -> dict:
    """The model-selection settings among ``overrides`` (early_stop, patience, min_delta,
    keep), checked: a flag's parser checks them too, a Python caller only here.
    ``patience`` or ``min_delta`` alone turn early stopping on."""
    out = {}
    for key in ("patience", "min_delta"):
        if overrides.get(key) is not None:
            problem = RUNTIME_RANGES[key].problem(overrides[key])
            if problem:
                raise UserError(f"{key} {problem}")
            out[key] = RUNTIME_RANGES[key].coerce(overrides[key])
    metric = overrides.get("early_stop")
    if metric is not None and metric not in (*METRICS, "auto"):
        raise UserError(f"cannot stop early on {metric!r}: it is not a measure in the "
                        "history", "metrics: " + ", ".join(METRICS))
    if metric is not None or out:
        out["early_stop"] = metric or "auto"
    keep = overrides.get("keep")
    if keep is not None:
        if keep not in KEEP:
            raise UserError(f"keep must be one of {', '.join(KEEP)}, not {keep!r}")
        out["keep"] = keep
    return out


def auto_eval_every(n_train: int, n_test: int, batch: int, steps_per_epoch: int,
                    n_val: int = 0) -> int:
    """The evaluation cadence in epochs when none is given: the smallest K for which one
    evaluation (train accuracy, test and validation accuracy and loss: forward passes over
    n_train + 2 (n_test + n_val) examples, a third of a step's work per example, plus
    EVAL_CALLS steps' worth of calls and output) is at most EVAL_SHARE of K epochs of
    steps."""
    evaluation = (n_train + 2 * (n_test + n_val)) / (3 * batch) + EVAL_CALLS  # in steps
    return max(1, math.ceil(evaluation / (EVAL_SHARE * steps_per_epoch)))


def _check_ranges(train: dict, opt: dict) -> None:
    """The settings against the spec's range table: a hand-edited module's CONFIG or a
    Python caller is held to what ``bpc check`` and the flags enforce."""
    checks = [(f"training setting '{k}'", TRAIN_SETTINGS[k].range, v) for k, v in train.items()
              if v is not None and k in TRAIN_SETTINGS and TRAIN_SETTINGS[k].range]
    checks += [(f"optimizer setting '{k}'", OPTIMIZER_RANGES[k], v) for k, v in opt.items()
               if k in OPTIMIZER_RANGES]
    for what, rng, value in checks:
        problem = rng.problem(value)
        if problem:
            raise UserError(f"{what} {problem}")
