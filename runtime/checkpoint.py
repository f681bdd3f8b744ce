"""Checkpoint files: writing one (``save_checkpoint``, atomically), reading one back
(``read_checkpoint_file``) and verifying every entry read before it is used
(``verified_meta``, ``verified_params``, ``verified_opt_state``, ``verified_state``), for
a resume (``load_checkpoint``) and for ``bpc predict``/``eval`` (``checkpoint_params``).

A checkpoint is an ``.npz``: ``param/NAME``, ``opt/NAME`` (the optimizer's state),
``state/NAME`` (the model's state, for a model with state), ``order`` (the order of the
epoch under way), for a run that selects its best epoch (``selection``) that epoch's
``best/NAME`` and ``best_state/NAME``, and ``meta``, one JSON text: the position, the
generator's state, the optimizer's name, the run's identity (``identity.run_identity``)
and the history rows. ``best.npz`` (``save_best``) holds the best epoch's parameters and
state as a checkpoint holds them, for ``bpc predict``/``eval``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import batching, files
from .arrays import generator_state, host_dtype, set_generator_state, to_host
from .errors import UserError
from .history import HISTORY_FIELDS, History, is_saved_row, saved_rows
from .modes import takes_state
from .runfolder import write_atomic

@dataclass
class Position:
    """Where a run is: everything besides the parameters, the optimizer's and the model's
    state and the history that a resume needs to continue bit for bit. The loop advances
    it; a checkpoint saves it whole (``meta`` and the ``order`` entry) and ``restored``
    reads it back whole."""
    rng: np.random.Generator  # the run's one generator: parameters, shuffles, dropout
    epoch: int = 0  # epochs completed
    batch_index: int = 0  # batches of the epoch under way done (all: its end pending)
    step: int = 0  # steps (updates) done
    loss_sum: float = 0.0  # training loss times examples, since the last history row
    seen: int = 0  # the examples counted in loss_sum
    start_loss: float | None = None  # the reference for divergence (None: not known yet)
    running: float | None = None  # the running loss (exponential average)
    # The epoch's order of examples, drawn from ``rng`` as the epoch begins (None: in
    # order); ``drawn`` while the epoch is under way, when a checkpoint must keep it.
    order: np.ndarray | None = None
    drawn: bool = False
    # The torch target's generator of dropout masks (on the device; None: the masks come
    # from ``rng``), recorded as ``meta["masks"]``.
    masks: object = None

    def meta(self) -> dict:
        """The position's entries of a checkpoint's ``meta``, the generator's state aside."""
        masks = {} if self.masks is None else {"masks": generator_state(self.masks)}
        return {"epoch": self.epoch, "batch_index": self.batch_index, "step": self.step,
                "loss_sum": self.loss_sum, "seen": self.seen, "start_loss": self.start_loss,
                "running_loss": self.running, "drawn": self.drawn, **masks}

    @classmethod
    def restored(cls, rng: np.random.Generator, meta: dict, order, n: int, shuffle: bool,
                 path: Path, masks=None) -> "Position":
        """The position a checkpoint recorded (``meta`` verified, ``order`` as read),
        ``rng`` set to the generator's state then (and ``masks``, when the checkpoint
        records it: a run of the NumPy target does not); ``n`` examples, shuffled or
        not."""
        pos = cls(rng, epoch=meta["epoch"], batch_index=meta["batch_index"],
                  step=meta["step"], loss_sum=meta["loss_sum"], seen=meta["seen"],
                  start_loss=meta.get("start_loss"), running=meta.get("running_loss"),
                  masks=masks)
        rng.bit_generator.state = meta["rng"]
        if masks is not None and "masks" in meta:
            try:
                set_generator_state(masks, meta["masks"])
            except ValueError as e:
                raise UserError(f"{path}: the 'meta' entry is damaged: 'masks' is not the "
                                f"state of a generator on this device ({e})",
                                DAMAGED_HINT) from None
        if "rng_start" in meta and pos.batch_index > 0:
            # An older checkpoint, which kept the generator as the epoch began.
            rng.bit_generator.state = meta["rng_start"]
            pos.order = batching.batch_order(n, rng if shuffle else None)
            pos.drawn = True
        elif meta.get("drawn"):
            pos.order, pos.drawn = (order if shuffle else None), True
            if shuffle and not is_permutation(pos.order, n):
                raise UserError(f"{path} is not a readable checkpoint (the order of its "
                                "epoch's examples is damaged)",
                                "train without --resume (or into a new --out folder)")
        return pos


def save_checkpoint(path: Path, params, optimizer, position: Position,
                    history: list[list] | None = None, run: dict | None = None,
                    state: dict | None = None, best: tuple[dict, dict] | None = None) -> None:
    """The run's state: parameters and optimizer state by name, the model's state
    (``state/NAME``, only for a model with state), the position (with the generator now
    and the order of the epoch under way, drawn as it began), the history (rows as
    values: ``history.epoch_row``) and ``best``, the best epoch's (params, state) of a
    run that selects one."""
    arrays = {}
    if best is not None:
        arrays.update({**_entries("best", best[0]), **_entries("best_state", best[1])})
    arrays.update(_entries("opt", optimizer.state_dict()))
    order = position.order if position.drawn else None
    if order is not None:
        arrays["order"] = order
    meta = {**position.meta(), "rng": position.rng.bit_generator.state,
            "optimizer": optimizer.name, "run": run}
    _write(path, params, state, meta, history or [], arrays)


def save_best(path: Path, params: dict, state: dict, meta: dict) -> None:
    """``best.npz``: the best epoch's parameters and state, in a checkpoint's form (what
    ``bpc predict``/``eval --checkpoint`` and ``bpc.load_checkpoint`` read), with ``meta``
    (the epoch, the metric, the history up to it)."""
    _write(path, params, state, meta, meta.get("history", []), {})


def _entries(prefix: str, arrays: dict) -> dict[str, np.ndarray]:
    """``arrays`` as a checkpoint's entries ``prefix/NAME``, on the host."""
    return {f"{prefix}/{k}": to_host(v) for k, v in arrays.items()}


def _write(path: Path, params: dict, state: dict | None, meta: dict, history: list[list],
           extra: dict) -> None:
    """A checkpoint-form file, atomically: the parameters and state by name, ``extra``
    entries, and ``meta`` with the ``history`` rows as saved."""
    arrays = {**_entries("param", params), **_entries("state", state or {}), **extra,
              "meta": np.array(json.dumps({**meta,
                                           "history": history}))}
    write_atomic(path, lambda f: np.savez(f, **arrays))


@dataclass
class CheckpointFile:
    """What a checkpoint file holds, as read (``state`` unverified: see ``verified_state``)."""
    path: Path  # the file itself (a run folder given: its checkpoint.npz)
    params: dict
    opt_state: dict
    state: dict  # the model's state, ``state/NAME`` entries ({} for a model without)
    meta: dict
    order: np.ndarray | None
    best: dict  # the best epoch's parameters and state (``best/``, ``best_state/``), or {}
    best_state: dict


def read_checkpoint_file(path: Path, missing_hint: str = "give the checkpoint.npz of a run "
                         "(bpc train writes it into its --out folder)") -> CheckpointFile:
    """Everything in a checkpoint file, whatever the model; every problem a UserError
    naming the file."""
    path = Path(path)
    if not os.path.lexists(path):
        raise UserError(f"{path}: no such checkpoint", missing_hint)
    if path.is_dir() and (path / "checkpoint.npz").is_file():
        path = path / "checkpoint.npz"  # the run folder given: its checkpoint
    if path.is_symlink() or not path.is_file():
        raise UserError(f"{path} is not a regular file" + (
            " but a symbolic link" if path.is_symlink() else ""),
            "bpc reads and writes only regular files in a run folder; remove it, or use a "
            "new --out folder")
    arrays = files.read_npz(
        path, lambda k: k in ("meta", "order") or k.split("/")[0] in _ENTRIES,
        what="", kind="checkpoint", nofollow=True, hint=DAMAGED_HINT)
    if "meta" not in arrays:
        raise UserError(f"{path} is not a readable checkpoint (it has no 'meta' entry)",
                        DAMAGED_HINT)
    meta = arrays.pop("meta")
    if meta.dtype.kind != "U" or meta.shape != () or meta.dtype.itemsize > META_LIMIT:
        raise UserError(f"{path}: the 'meta' entry is damaged (a {meta.dtype} array of "
                        f"shape {meta.shape}, not one JSON text)", DAMAGED_HINT)
    try:
        meta = json.loads(str(meta))
    except ValueError as e:  # json.JSONDecodeError
        raise UserError(f"{path}: the 'meta' entry is damaged (not JSON: {e})",
                        DAMAGED_HINT) from None
    except RecursionError:
        raise UserError(f"{path}: the 'meta' entry is damaged (nested too deeply)",
                        DAMAGED_HINT) from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: the 'meta' entry is damaged (a JSON "
                        f"{type(meta).__name__}, not an object)", DAMAGED_HINT)
    parts = {kind: {k.split("/", 1)[1]: v for k, v in arrays.items()
                    if k.split("/", 1)[0] == kind} for kind in _ENTRIES}
    return CheckpointFile(path, parts["param"], parts["opt"], parts["state"], meta,
                          arrays.get("order"), parts["best"], parts["best_state"])


_ENTRIES = ("param", "opt", "state", "best", "best_state")  # the NAME-keyed kinds of entry


STATE_HINT = ("the checkpoint is damaged or of another model; give the checkpoint of a "
              "run of this spec (or train again)")


DAMAGED_HINT = ("it is damaged or not from bpc; train without --resume (or into a new --out "
                "folder)")


META_LIMIT = 256 << 20  # the 'meta' entry's text (history rows included), in bytes


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What a resume reads from a checkpoint's metadata: key -> (check, what it must be).
# Keys absent from older checkpoints are optional (``None`` allowed where noted).
_META = {"epoch": (_whole, "a whole number ≥ 0"),
         "batch_index": (_whole, "a whole number ≥ 0"),
         "step": (_whole, "a whole number ≥ 0"),
         "seen": (_whole, "a whole number ≥ 0"),
         "loss_sum": (_number, "a finite number"),
         "rng": (lambda v: isinstance(v, dict), "the generator's state (an object)"),
         "optimizer": (lambda v: isinstance(v, str), "an optimizer's name")}


_META_OPTIONAL = {
    "start_loss": (lambda v: v is None or _number(v), "a finite number or null"),
    "running_loss": (lambda v: v is None or _number(v), "a finite number or null"),
    "drawn": (lambda v: isinstance(v, bool), "true or false"),
    "masks": (lambda v: isinstance(v, str), "a generator's state (hex text)"),
    "rng_start": (lambda v: isinstance(v, dict), "the generator's state (an object)"),
    "history": (lambda v: isinstance(v, list) and all(is_saved_row(r) for r in v),
        f"a list of rows of {len(HISTORY_FIELDS)} values"),
    "run": (lambda v: v is None or isinstance(v, dict) and all(
        isinstance(v.get(k, {}), dict) for k in ("opt", "model", "params")),
        "an object describing the run")}


def verified_meta(path: Path, meta: dict) -> dict:
    """A checkpoint's metadata as a resume reads it: each entry present and of its kind,
    the generator's state one a generator accepts, the history rows numbers; else a
    UserError naming the file and the entry."""
    def bad(key, want, value):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return UserError(f"{path}: the 'meta' entry is damaged: '{key}' is {shown}, not "
                         f"{want}", DAMAGED_HINT)

    for key, (ok, want) in _META.items():
        if key not in meta:
            raise UserError(f"{path}: the 'meta' entry is damaged: it lacks '{key}'",
                            DAMAGED_HINT)
        if not ok(meta[key]):
            raise bad(key, want, meta[key])
    for key, (ok, want) in _META_OPTIONAL.items():
        if key in meta and not ok(meta[key]):
            raise bad(key, want, meta[key])
    for key in ("rng", "rng_start"):
        if key in meta:
            try:
                np.random.default_rng().bit_generator.state = meta[key]
            except (TypeError, ValueError, KeyError, OverflowError) as e:
                raise bad(key, f"a generator's state ({type(e).__name__}: {e})",
                          meta[key]) from None
    try:
        History(saved_rows(meta.get("history", [])))
    except (TypeError, ValueError, OverflowError):
        raise bad("history", "rows of numbers", meta["history"]) from None
    return meta


def verified_state(path: Path, state: dict, module, exact_dtype: bool = False
                   ) -> dict[str, np.ndarray]:
    """The model's state from a checkpoint's ``state/NAME`` entries, checked against
    ``module.STATE``: the same names, each of its declared shape, a floating dtype (the
    module's own with ``exact_dtype``, as a resume needs) and finite values. Any problem
    is a UserError naming the checkpoint file and the entry. {} for a model without
    state (whose checkpoint must hold none)."""
    if not takes_state(module):
        if state:
            raise UserError(f"{path} holds state entries ({', '.join(sorted(state))}) but "
                            "the model has no state", STATE_HINT)
        return {}
    expected = {k: tuple(v) for k, v in module.STATE.items()}
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"{path} lacks the state entr{'ies' if len(missing) > 1 else 'y'} "
                        + ", ".join(f"'state/{k}'" for k in missing)
                        + f" (the model's STATE: {', '.join(expected)})", STATE_HINT)
    extra = sorted(set(state) - set(expected))
    if extra:
        raise UserError(f"{path} has the state entr{'ies' if len(extra) > 1 else 'y'} "
                        + ", ".join(f"'state/{k}'" for k in extra)
                        + f", which the model does not have (its STATE: "
                        f"{', '.join(expected)})", STATE_HINT)
    dtype = host_dtype(module)
    nonnegative = nonnegative_state(module)
    out = {}
    for k, shape in expected.items():
        v = state[k]
        if all(isinstance(d, int) for d in shape) and v.shape != shape:
            raise UserError(f"{path}: the state entry 'state/{k}' has shape {v.shape}, the "
                            f"model's STATE says {shape}", STATE_HINT)
        _check_values(path, f"state entry 'state/{k}'", v, dtype, exact_dtype)
        if k in nonnegative and v.size and np.min(v) < 0:
            raise UserError(f"{path}: the state entry 'state/{k}' is a running variance, "
                            f"but has negative values ({int(np.sum(v < 0))} of {v.size}, "
                            f"the least {float(np.min(v)):.6g})", STATE_HINT)
        out[k] = v.astype(dtype, copy=False)
    return out


def nonnegative_state(module) -> set[str]:
    """The states the compiler says are never negative (batch norm's running
    variances: ``CONFIG["nonnegative"]``)."""
    names = (getattr(module, "CONFIG", {}) or {}).get("nonnegative") or ()
    return {k for k in names if isinstance(k, str)}


def _check_values(path: Path, entry: str, v: np.ndarray, dtype, exact_dtype: bool) -> None:
    """A parameter's or state's entry holds finite floats (of the model's own dtype with
    ``exact_dtype``), else a UserError naming the file and ``entry``."""
    if v.dtype.kind != "f" or exact_dtype and v.dtype != dtype:
        raise UserError(f"{path}: the {entry} is {v.dtype.name}, the model computes in "
                        f"{dtype.name}", STATE_HINT)
    if not np.all(np.isfinite(v)):
        raise UserError(f"{path}: the {entry} has values that are not finite", STATE_HINT)


def verified_params(path: Path, params: dict, module, exact_dtype: bool = False
                    ) -> dict[str, np.ndarray]:
    """The parameters of a checkpoint, checked against ``module.PARAMS``: the same
    names, each of its declared shape, a floating dtype (the module's own with
    ``exact_dtype``) and finite values; else a UserError naming the file and entry."""
    expected = {k: tuple(v) for k, v in module.PARAMS.items()}
    if set(params) != set(expected):
        raise UserError(f"{path} is a checkpoint of another model: its parameters are "
                        f"{', '.join(sorted(params)) or 'none'}, the model's "
                        f"{', '.join(sorted(expected)) or 'none'}",
                        "give the checkpoint of a run of this spec")
    dtype = host_dtype(module)
    for k, shape in expected.items():
        v = params[k]
        if all(isinstance(d, int) for d in shape) and v.shape != shape:
            raise UserError(f"{path} is a checkpoint of another model: its parameter {k} "
                            f"has shape {v.shape}, the model's {shape}",
                            "give the checkpoint of a run of this spec")
        _check_values(path, f"parameter entry 'param/{k}'", v, dtype, exact_dtype)
    return {k: v.astype(dtype, copy=False) for k, v in params.items()}


def verified_opt_state(path: Path, saved: dict, optimizer) -> dict[str, np.ndarray]:
    """The optimizer's state of a checkpoint, checked against the optimizer's own
    (``state_dict``): the same entries, each of exactly its shape and dtype (a moment
    of shape ``(1,)`` or ``()`` would broadcast), finite, a step count ``t`` a whole
    number ≥ 0, and the slots that are sums of squares (``Optimizer.nonnegative``)
    never negative; else a UserError naming the file and the entry."""
    expected = {k: to_host(v) for k, v in optimizer.state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        raise UserError(f"{path}: the optimizer's state does not match {optimizer.name}'s: "
                        + "; ".join(
                            ([f"it lacks {', '.join(repr('opt/' + k) for k in missing)}"]
                             if missing else []) +
                            ([f"it has {', '.join(repr('opt/' + k) for k in extra)}, which "
                              f"{optimizer.name} does not keep"] if extra else [])),
                        DAMAGED_HINT)
    for k, want in expected.items():
        v = saved[k]
        if v.shape != want.shape or v.dtype != want.dtype:
            raise UserError(f"{path}: the optimizer entry 'opt/{k}' is {v.dtype.name} of "
                            f"shape {v.shape}, {optimizer.name} keeps {want.dtype.name} of "
                            f"shape {want.shape}", DAMAGED_HINT)
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise UserError(f"{path}: the optimizer entry 'opt/{k}' has values that are "
                            "not finite", DAMAGED_HINT)
        if (k == "t" or k.split("/")[0] in optimizer.nonnegative) and v.size and \
                np.min(v) < 0:
            raise UserError(f"{path}: the optimizer entry 'opt/{k}' is negative"
                            + (" (a sum of squares)" if k != "t" else " (a step count)"),
                            DAMAGED_HINT)
    return saved


def load_checkpoint(path: Path, module) -> CheckpointFile:
    """The checkpoint a resume continues, its meta, state and best epoch's entries
    verified: the parameters' names and the state must be the model's."""
    c = read_checkpoint_file(path, "train without --resume first, or give the --out folder "
                             "of a run")
    if set(c.params) != set(module.PARAMS):
        raise UserError(f"{c.path} was written for other parameters "
                        f"({', '.join(sorted(c.params))})", "use a new --out folder")
    for k, v in c.params.items():  # shapes and dtype: resume_problems, as another run
        if v.dtype.kind != "f":
            raise UserError(f"{c.path}: the parameter entry 'param/{k}' is {v.dtype.name}, "
                            "not floating-point numbers", DAMAGED_HINT)
        if not np.all(np.isfinite(v)):
            raise UserError(f"{c.path}: the parameter entry 'param/{k}' has values that "
                            "are not finite", DAMAGED_HINT)
    c.state = verified_state(c.path, c.state, module, exact_dtype=True)
    if c.best:
        c.best = verified_params(c.path, c.best, module, exact_dtype=True)
        c.best_state = verified_state(c.path, c.best_state, module, exact_dtype=True)
    c.meta = verified_meta(c.path, c.meta)
    return c


def checkpoint_state(path: Path, module) -> dict[str, np.ndarray]:
    """The trained state of ``module`` from a checkpoint, verified ({} without state)."""
    c = read_checkpoint_file(path)
    return verified_state(c.path, c.state, module)


def checkpoint_params(path: Path, module) -> tuple[dict, dict, dict]:
    """(params, state, run) of ``module`` trained, from a checkpoint (``bpc predict``/
    ``eval``): refused, naming what differs, when the checkpoint is of another model;
    the state verified against the model's STATE; ``run`` what the run recorded of
    itself (``identity.run_identity``; {} when nothing)."""
    c = read_checkpoint_file(path)
    run = c.meta.get("run") if isinstance(c.meta.get("run"), dict) else {}
    return verified_params(c.path, c.params, module), verified_state(c.path, c.state, module), run


def is_permutation(order, n: int) -> bool:
    """Whether ``order`` (read back from a checkpoint) is an order of ``n`` examples."""
    return isinstance(order, np.ndarray) and order.shape == (n,) and \
        order.dtype.kind in "iu" and np.array_equal(np.sort(order), np.arange(n))
