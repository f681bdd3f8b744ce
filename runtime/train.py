"""The training loop: minibatches, optimizer, progress, divergence, checkpoints, resume.

Reproducible: one ``np.random.Generator`` seeded by ``seed`` draws the initial
parameters and then every epoch's shuffle. A checkpoint holds the parameters, the
optimizer's state, the position (epoch, batch within the epoch, global step), the
generator's state at the start of the epoch and now, the running loss and the history
rows, so a resumed run continues bit for bit, from an epoch boundary or from wherever
Ctrl-C stopped it.

Interruption is safe at every point. Ctrl-C (SIGINT) only sets a flag, honoured at the
next step boundary, so an update is never half applied (a second Ctrl-C stops at once,
keeping the last checkpoint). The checkpoint is the run's one source of truth, replaced
atomically (a temporary file, fsync, rename): ``history.csv`` is appended to as epochs
end, and rewritten from the checkpoint's rows on resume, so a SIGKILL at any moment
leaves neither a lost, a duplicated nor a partial row. The checkpoint also records what
the run is (parameter shapes, dtype, settings, a hash of the data, the compiled model
itself: ``model_identity``), and a resume that would continue another run is refused,
naming what differs; every entry read back is verified first (``verified_meta``,
``verified_params``, ``verified_opt_state``, ``verified_state``). The run folder is
locked while a run uses it, and temporaries a killed write left there are removed.

A model with state (batch norm's running statistics; ``module.STATE``) starts from
``module.init_state()``; every training step updates it (``loss_and_grad(..., state=)``),
evaluation reads it (inference mode), and the checkpoint holds it as ``state/NAME``
beside the parameters, read back verified against ``STATE``.

The loop's other jobs each have a module beside it: ``settings`` (``Settings``),
``evaluate`` (accuracy, mean loss, predictions over chunks), ``checkpoint`` (writing,
reading and verifying checkpoints), ``identity`` (what a run is; whether a resume
continues it), ``runfolder`` (the lock, atomic writes, Ctrl-C deferral), ``history``
(the rows, ``history.csv``, the ``History`` table) and ``plots``.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as data_mod
from .arrays import initial_params, namespace
from .checkpoint import (DAMAGED_HINT, Position, load_checkpoint, save_checkpoint,
                         verified_opt_state)
from .errors import UserError
from .evaluate import accuracy, chance_accuracy, mean_loss, no_accuracy_note, task_kind
from .history import HISTORY_FIELDS, History, history_row, old_history, summary_line
from .identity import (_contract_hash, legacy_note, lr_change, resume_problems, retargeted,
                       run_identity)
from .identity import model_identity  # noqa: F401 - docs/API.md: bpc.runtime.train.model_identity
from .loader import model_name
from .modes import initial_state, takes_rng, takes_state, training_kwargs
from .optimizers import learning_rate, make_optimizer, pack
from .points import check_memory, eval_chunk
from .runfolder import DeferredInterrupt, NoFolder, RunFolder
from .settings import Settings, auto_eval_every


class Diverged(UserError):
    """The loss or a gradient stopped being finite, or the loss grew far beyond its start."""


# Divergence without a NaN: a stable log-softmax keeps the loss finite at any step size,
# so a run whose running loss (an exponential average, SMOOTHING the newest step's weight)
# exceeds GROWTH times the loss at the start (counted as at least FLOOR, for a loss that
# starts near 0) has diverged. Far above the ripples of any run that is learning.
DIVERGENCE_GROWTH = 1e4
DIVERGENCE_FLOOR = 1e-2
SMOOTHING = 0.1
# The final summary's notes: a loss that moved less than STUCK_CHANGE of its start, or
# rose, or a train accuracy within CHANCE_MARGIN of the way from chance to 100%: the run
# learned nothing.
STUCK_CHANGE = 1e-3
CHANCE_MARGIN = 0.05
# A checkpoint is written at the end of the run, on Ctrl-C, and at step boundaries or
# epoch ends at least CHECKPOINT_SECONDS apart (--checkpoint-every; and at least
# CHECKPOINT_OVERHEAD times the last write's duration apart, so writing costs a few
# percent at most): a SIGKILL loses the steps since then, never the consistency of the run.
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_OVERHEAD = 20


@dataclass
class Result:
    params: dict[str, np.ndarray]
    history: list[dict]
    epochs: int
    steps: int
    seconds: float
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # a run that learned nothing, and why
    # The trained state (name -> array; {} for a model without state): what predict and
    # loss read in inference mode, ``model.predict(result.params, x, state=result.state)``.
    state: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the loop
def nonfinite_reasons(value: float, optimizer) -> list[str]:
    """Why a step diverged: the loss, a gradient, or else a parameter not finite."""
    what = [f"the loss is {value}"] if not math.isfinite(value) else []
    bad = optimizer.nonfinite("grads")
    if bad:
        return what + [f"the gradient of '{bad}' is not finite"]
    bad = optimizer.nonfinite("params")
    return what + ([f"parameter '{bad}' is no longer finite"] if bad else [])


def diverged(step: int, epoch: int, what: list[str]) -> Diverged:
    return Diverged(f"training diverged at step {step + 1} (epoch {epoch + 1}): "
                    + " and ".join(what), "lower the learning rate (--lr), or clip gradients "
                    "(optimizer ...(clip=1.0))")


def divergence_limit(start: float) -> float:
    """The running loss above which a run that started at ``start`` has diverged."""
    return DIVERGENCE_GROWTH * max(abs(start), DIVERGENCE_FLOOR)


def progress_notes(start: float | None, end: float, train_acc: float | None,
                   chance: float | None) -> list[str]:
    """What the final summary points out about a run that learned nothing."""
    notes = []
    if start is not None and start != 0 and abs(end - start) <= STUCK_CHANGE * abs(start):
        notes.append(f"the training loss has not moved ({start:.6g} at the start, "
                     f"{end:.6g} at the end)")
    elif start is not None and end > start + STUCK_CHANGE * abs(start):
        notes.append(f"the training loss ended higher than it started ({start:.6g} at the "
                     f"start, {end:.6g} at the end)")
    if train_acc is not None and chance is not None and \
            train_acc <= chance + CHANCE_MARGIN * (1 - chance):
        notes.append(f"train accuracy {100 * train_acc:.1f}% is no better than chance "
                     f"({100 * chance:.1f}%, always answering the most common class)")
    return notes


STUCK_HINT = ("check the learning rate (--lr; try 10x smaller if the loss rose, 10x larger if "
              "it has not moved) and the initialization scale (bpc stats SPEC shows each "
              "layer's activations and gradients at the start)")


def train(module, dataset: data_mod.Dataset, settings: Settings, out: Path | None,
          resume: bool = False, quiet: bool = False, log=print,
          checkpoint_every: float = CHECKPOINT_SECONDS, device: str | None = None) -> Result:
    for note in getattr(dataset, "notes", ()):
        if not quiet:
            log(f"note: {note}")
    train_arrays = data_mod.conform(dataset.train, module, f"training data ({dataset.name})")
    test_arrays = data_mod.conform(dataset.test, module, f"test data ({dataset.name})") \
        if dataset.test else {}
    # The target's arrays (NumPy's, or torch's on ``device``): the parameters, the
    # optimizer's buffers, the state and a copy of the data live there, the data moved once.
    xp = namespace(module, device)
    train_data, test_data = xp.to_device(train_arrays), xp.to_device(test_arrays)
    axes = data_mod.batch_axes(module)  # the batch dimension's axis in each array
    n = data_mod.example_count(train_arrays, axes)
    if n == 0:
        raise UserError("the training data is empty")
    if resume and out is None:
        raise UserError("--resume needs --out DIR, the folder of the run to continue")
    if resume and not Path(out).is_dir():
        raise UserError(f"nothing to resume: {out} is not a folder",
                        "train without --resume first, or give the --out folder of a run")
    steps_per_epoch = -(-n // settings.batch)  # whole-number ceil: exact for any batch
    if takes_state(module):
        # Batch norm's training mode normalizes each feature over the batch's examples:
        # over one example every value becomes 0 (PyTorch refuses such a batch).
        if min(settings.batch, n) == 1:
            raise UserError("batch norm normalizes each feature over the examples of a "
                            "batch, so a batch of one example makes every value 0 and "
                            "trains nothing", "use --batch 2 or more (and 2 or more "
                            "training examples)")
        if n % settings.batch == 1:  # the short last batch would hold one example
            steps_per_epoch -= 1
            if not quiet:
                log(f"note: {n} examples in batches of {settings.batch} would leave a last "
                    "batch of one, which batch norm cannot use: each epoch leaves out its "
                    "last shuffled example")
    total_steps = settings.iters if settings.iters is not None else \
        (settings.epochs or 10) * steps_per_epoch
    total_epochs = -(-total_steps // steps_per_epoch)
    # Memory, before anything is allocated: a step over a batch, and the evaluation's
    # chunks (as many examples as fit, 2048 at most).
    check_memory(module, min(settings.batch, n), "a training step", "use a smaller --batch")
    chunk = eval_chunk(module)
    kind = task_kind(module, train_arrays)
    no_accuracy = no_accuracy_note(module, train_arrays)
    if no_accuracy and not quiet:  # once, before the run: no accuracy column, and why
        log(f"note: {no_accuracy}")

    rng = np.random.default_rng(settings.seed)
    # The parameters are views into one buffer per dtype: the optimizer updates them all
    # in a few whole-buffer operations (runtime/optimizers.py).
    params = pack({k: xp.array(v, dtype=module.DTYPE)
                   for k, v in initial_params(module, rng, settings.seed).items()})
    optimizer = make_optimizer(settings.optimizer, params, **settings.opt)
    # A module that can compute gradients into given arrays writes them straight into the
    # optimizer's flat gradient buffer, the same arrays every step.
    buffers = {}
    if "grads" in inspect.signature(module.loss_and_grad).parameters:
        buffers = {"grads": optimizer.grad_buffers}
    # Training mode draws dropout masks from the run's generator, whose state every
    # checkpoint records (resume stays exact). A model with state: the run's state
    # (init_state(), then as each step's loss_and_grad assigns it), evaluated with and
    # checkpointed beside the parameters; None for a model without, whose calls and
    # checkpoints are as they always were.
    state = xp.to_device(initial_state(module)) if takes_state(module) else None
    # Dropout's masks: the torch target draws them on the device (None: from rng).
    masks = xp.mask_generator(settings.seed) if takes_rng(module) else None
    buffers.update(training_kwargs(module, state, rng if masks is None else masks))
    # Training mode changes the generator or the state inside the call: an interruption
    # there must not record them half a step ahead of the parameters.
    moves_inside = "rng" in buffers or state is not None
    n_test = data_mod.example_count(test_arrays, axes)
    eval_every = settings.eval_every or auto_eval_every(n, n_test, settings.batch,
                                                        steps_per_epoch)
    # The reference for divergence: the loss at the start, over minibatches of the training
    # size (a loss that sums over its batch is compared like with like).
    start_loss = _full_loss(module, params, train_data, settings.batch, state)
    # Where the run is (epoch, batch, step, running loss, generator, the epoch's order):
    # what a checkpoint saves and a resume restores, whole.
    pos = Position(rng, start_loss=start_loss, running=start_loss, masks=masks)
    history: list[dict] = []
    run = run_identity(module, settings, optimizer, params, train_arrays, test_arrays) \
        if out is not None else None
    if run is not None and state is not None:
        run["state"] = {k: list(v.shape) for k, v in state.items()}
    # Ctrl-C deferred first: it cannot land between locking the folder and unlocking it.
    with DeferredInterrupt() as stop, \
            (RunFolder(out) if out is not None else NoFolder()) as folder:
        if resume:
            saved, opt_state, meta, saved_order, saved_state = load_checkpoint(
                folder.checkpoint, module)
            if meta.get("optimizer") != optimizer.name:
                raise UserError(f"the checkpoint was trained with {meta.get('optimizer')}, "
                                f"not {optimizer.name}", "resume with the same --optimizer")
            problems = resume_problems(meta.get("run"), retargeted(run, meta.get("run"),
                                                                   module), saved, params,
                                       meta.get("start_loss"), start_loss,
                                       _contract_hash(module))
            if problems:
                raise UserError(f"cannot resume the run in {out}: it is another run: "
                                + "; ".join(problems),
                                "resume with the run's own spec, data and settings, or "
                                "start a new run in another --out folder")
            for note in (legacy_note(folder.checkpoint, meta.get("run")),
                         lr_change(meta.get("run"), run)):
                if note:
                    log(note)
            opt_state = verified_opt_state(folder.checkpoint, opt_state, optimizer)
            # batch_index == steps_per_epoch: every batch done, the epoch's end (its
            # evaluation and history row) still pending when the run was interrupted.
            if meta["batch_index"] > steps_per_epoch:
                raise UserError(f"{folder.checkpoint}: the 'meta' entry is damaged: "
                                f"'batch_index' is {meta['batch_index']}, but an epoch has "
                                f"{steps_per_epoch} batches", DAMAGED_HINT)
            for k in params:
                xp.assign(params[k], saved[k])
            if state is not None:  # the same dict: loss_and_grad's state= keeps it
                state.update(xp.to_device({k: v.copy() for k, v in saved_state.items()}))
            optimizer.load_state_dict(opt_state)
            pos = Position.restored(rng, meta, saved_order, n, settings.shuffle,
                                    folder.checkpoint, masks)
            if "history" in meta:
                history = [dict(zip(HISTORY_FIELDS, row)) for row in meta["history"]]
            else:  # a checkpoint from before history was kept in it
                history = old_history(folder.history, pos.epoch)
        folder.start_history(history)

        if pos.step >= total_steps and pos.batch_index == 0:
            log(f"nothing to do: the run already has {pos.step} steps (of {total_steps})")
        start_time = row_start = time.perf_counter()
        interrupted = False
        dirty = False  # inside an update: the state is not one a checkpoint may record
        bar = None
        save_due = time.monotonic() + checkpoint_every
        scheduled = optimizer.cfg.get("schedule", "constant") != "constant"

        def save(final: bool = False):
            nonlocal save_due
            now = time.monotonic()
            if folder.checkpoint is None or not final and now < save_due:
                return
            save_checkpoint(folder.checkpoint, params, optimizer, pos, history, run, state)
            end = time.monotonic()
            save_due = end + max(checkpoint_every, CHECKPOINT_OVERHEAD * (end - now))

        tqdm = progress_bar()
        if not quiet:
            lr_text = f"lr {optimizer.lr:g}" + (f" ({optimizer.cfg['schedule']})"
                                                 if scheduled else "")
            log(f"{model_name(module)}: {n} training examples"
                + (f", {n_test} test" if n_test else "")
                + f"; {optimizer.name} {lr_text}, batch {settings.batch}; "
                f"{total_epochs} epochs ({total_steps} steps); a line every "
                + (f"{eval_every} epochs" if eval_every > 1 else "epoch"))

        # Non-finite values are reported (Diverged), not warned about: NumPy's warnings are
        # off in the loop.
        errstate = np.errstate(all="ignore")
        errstate.__enter__()
        try:
            if tqdm is not None and not quiet:
                bar = tqdm(total=total_steps, initial=min(pos.step, total_steps), unit="step",
                           leave=False, dynamic_ncols=True, file=sys.stderr,
                           disable=None if "ipykernel" not in sys.modules else False,
                           desc=f"epoch {pos.epoch + 1}/{total_epochs}")
                # disable=None: shown on a terminal, silent in logs; always in a notebook
            # An epoch is pending while batch_index > 0: its end (evaluation, history row)
            # is still to come, also when the step budget ran out inside it.
            while pos.step < total_steps or pos.batch_index > 0:
                if stop.requested:
                    raise KeyboardInterrupt
                if not pos.drawn:  # the epoch's one draw; kept until the epoch ends
                    dirty = True
                    pos.order = data_mod.batch_order(n, rng if settings.shuffle else None)
                    pos.drawn, dirty = True, False
                last = min(steps_per_epoch, pos.batch_index + max(total_steps - pos.step, 0))
                for i in range(pos.batch_index, last):
                    if stop.requested:
                        raise KeyboardInterrupt
                    b = data_mod.batch_at(train_data, axes, pos.order, settings.batch, i)
                    lr = learning_rate(optimizer.cfg, pos.step / steps_per_epoch,
                                       total_epochs) if scheduled else optimizer.lr
                    if moves_inside:
                        dirty = True
                    value, grads = module.loss_and_grad(params, **b, **buffers)
                    value = float(value)  # a torch module's loss is a tensor
                    optimizer.gather(grads)
                    if not math.isfinite(value):
                        raise diverged(pos.step, pos.epoch,
                                       nonfinite_reasons(value, optimizer))
                    dirty = True
                    optimizer.update(params, lr)
                    # One check of the parameters a step: a non-finite gradient makes them
                    # non-finite too, and is named then (the run stops at this update).
                    if optimizer.nonfinite("params"):
                        raise diverged(pos.step, pos.epoch,
                                       nonfinite_reasons(value, optimizer))
                    if pos.start_loss is None:  # resumed from a checkpoint that lacks it
                        pos.start_loss = pos.running = value
                    pos.running += SMOOTHING * (value - pos.running)
                    if pos.running > divergence_limit(pos.start_loss):
                        raise diverged(pos.step, pos.epoch, [
                            f"the loss grew from {pos.start_loss:.4g} to {pos.running:.4g} "
                            f"(running average), over {DIVERGENCE_GROWTH:g} times its start"])
                    m = min(settings.batch, n - i * settings.batch)  # the last is short
                    pos.loss_sum += value * m
                    pos.seen += m
                    pos.step += 1
                    pos.batch_index += 1
                    dirty = False
                    if bar is not None:
                        if pos.step % steps_per_epoch == 1 or steps_per_epoch == 1:
                            bar.set_description(f"epoch {pos.step // steps_per_epoch + 1}/"
                                                f"{total_epochs}", refresh=False)
                            bar.set_postfix_str(f"loss {pos.running:.4g}", refresh=False)
                        bar.update(1)
                    if pos.batch_index < last and time.monotonic() >= save_due:
                        save()
                if pos.batch_index < steps_per_epoch and pos.step < total_steps:
                    continue  # cannot happen without an interruption
                if stop.requested:
                    raise KeyboardInterrupt  # before the evaluation: the epoch end is pending
                # An epoch is complete (or the step budget ended inside it). Every
                # eval_every epochs, and at the end, it is evaluated and gets a history row
                # (its loss the mean training loss since the last row).
                row = None
                if (pos.epoch + 1) % eval_every == 0 or pos.step >= total_steps:
                    seconds = time.perf_counter() - row_start
                    lr_now = learning_rate(optimizer.cfg, pos.step / steps_per_epoch,
                                           total_epochs)
                    train_acc = accuracy(module, params, train_data, kind, state, chunk)
                    test_acc = accuracy(module, params, test_data, kind, state, chunk)
                    test_loss = mean_loss(module, params, test_data, chunk, state) \
                        if test_arrays else None
                    row = history_row(pos.epoch + 1, pos.step, pos.loss_sum / max(pos.seen, 1),
                                      train_acc, test_acc, test_loss, lr_now, seconds)
                dirty = True
                pos.epoch += 1
                pos.batch_index = 0
                pos.drawn = False
                if row is not None:
                    history.append(row)
                    pos.loss_sum, pos.seen = 0.0, 0
                dirty = False
                if row is not None:
                    folder.append_history(row)
                    if not quiet:
                        if bar is not None:
                            bar.clear()
                        log(summary_line(row, total_epochs))
                    row_start = time.perf_counter()
                save(final=pos.step >= total_steps)
            if bar is not None:
                bar.close()
        except KeyboardInterrupt:
            interrupted = True
            if bar is not None:
                bar.close()
            if folder.checkpoint is not None and not dirty:
                save(final=True)
                folder.start_history(history)  # whatever a second Ctrl-C cut short
                log(f"interrupted at step {pos.step}; saved {folder.checkpoint} "
                    f"(continue with --resume --out {out})")
            elif folder.checkpoint is not None:
                log(f"interrupted inside step {pos.step + 1}; the last checkpoint, "
                    f"{folder.checkpoint}, is kept (continue with --resume --out {out})")
            else:
                log(f"interrupted at step {pos.step}")
        finally:
            errstate.__exit__(None, None, None)
    notes = [] if interrupted or not history else _final_notes(
        module, params, train_data, pos.start_loss, history[-1], kind, settings.batch, state)
    return Result(params, history, pos.epoch, pos.step, time.perf_counter() - start_time,
                  interrupted, notes, state if state is not None else {})


def _full_loss(module, params, arrays, batch: int, state=None) -> float | None:
    """The mean minibatch loss over all of ``arrays`` (inference mode, reading ``state``),
    None when it is not finite."""
    with np.errstate(all="ignore"):
        value = float(mean_loss(module, params, arrays, batch, state))
    return value if math.isfinite(value) else None


def _final_notes(module, params, train_arrays, start_loss, last: dict, kind,
                 batch: int, state=None) -> list[str]:
    end = _full_loss(module, params, train_arrays, batch, state)
    acc = float(last["train_acc"]) if last.get("train_acc") else None
    if end is None:
        return []
    return progress_notes(start_loss, end, acc, chance_accuracy(kind, train_arrays))


def run(module, data=None, overrides: dict | None = None, out: Path | None = None,
        resume: bool = False, quiet: bool = False, log=print,
        checkpoint_every: float | None = None, device: str | None = None
        ) -> tuple[Result, Settings, "data_mod.Dataset"]:
    """One training run as ``bpc train`` does it (and ``Model.train``): settings from the
    spec overridden by ``overrides``, data from ``data`` (a --data string, or a Dataset)
    else the spec's data line, then ``train`` (a torch module's on ``device``)."""
    settings = Settings.from_module(module, overrides or {})
    config = getattr(module, "CONFIG", {}) or {}
    # Before the data is loaded: a model whose step cannot fit even one example (train
    # checks the batch it will use once it knows how many examples there are).
    check_memory(module, 1, "a training step", "use a smaller --batch")
    if isinstance(data, data_mod.Dataset):
        dataset = data
    else:
        dataset = data_mod.load(data if data else config.get("data"), module, settings.seed)
    every = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}
    result = train(module, dataset, settings, out, resume=resume, quiet=quiet, log=log,
                   device=device, **every)
    result.history = History(result.history)
    return result, settings, dataset


def progress_bar():
    """tqdm's bar class: its widget in a notebook when ipywidgets is there to draw it (the
    ``notebook`` extra), else its text bar, never ``tqdm.auto``'s warning that the widget
    cannot be drawn; None without tqdm."""
    import importlib.util

    try:
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm

