"""The training loop: minibatches, optimizer, progress, divergence, evaluation,
checkpoints, resume, early stopping.

``train`` reads as the run's outline: ``plan.plan_run`` (the data, its validation split,
the steps, the evaluation's cadence), then a ``Trainer``, whose methods are the loop's jobs:
``resume``, ``run_epochs``, ``step``, ``end_epoch`` (the history row, ``measure`` and
model selection), ``save`` and ``on_interrupt``.

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
reading and verifying checkpoints), ``plan`` (what a run will do), ``identity`` (what a
run is; whether a resume continues it), ``runfolder`` (the lock, atomic writes, Ctrl-C
deferral), ``history`` (the rows, ``history.csv``, the ``History`` table),
``selection`` (the best epoch, early stopping), ``progress`` (the bar) and ``plots``.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import data as data_mod, streams
from .arrays import initial_params, namespace
from .checkpoint import (DAMAGED_HINT, Position, load_checkpoint, save_best, save_checkpoint,
                         verified_opt_state)
from .errors import UserError
from .evaluate import accuracy, chance_accuracy, has_perplexity, mean_loss
from .history import (History, epoch_row, old_history, row_dict, saved_row, saved_rows,
                      summary_line)
from .identity import (_contract_hash, legacy_note, lr_change, resume_problems, retargeted,
                       run_identity)
from .identity import model_identity  # noqa: F401 - docs/API.md: bpc.runtime.train.model_identity
from .loader import model_name
from .modes import initial_state, takes_rng, takes_state, training_kwargs
from .optimizers import learning_rate, make_optimizer, pack
from .plan import Plan, plan_run
from .points import check_memory
from .progress import progress
from .runfolder import DeferredInterrupt, NoFolder, RunFolder
from .selection import selector
from .settings import Settings


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
# The loss is checked for NaN and infinities every step; the parameters (a dot product
# over all of them: ~11% of the toy's step) every PARAM_CHECK_EVERY steps, before an
# evaluation and before a checkpoint is written, so nothing non-finite is evaluated or
# saved. A run whose parameters stop being finite is stopped within PARAM_CHECK_EVERY
# steps of that update, in practice at the next step: the loss they give is not finite.
PARAM_CHECK_EVERY = 16


@dataclass
class Result:
    params: dict[str, np.ndarray]
    history: History  # the rows as numbers, each converted when first read
    epochs: int
    steps: int
    seconds: float
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # a run that learned nothing, and why
    # The trained state (name -> array; {} for a model without state): what predict and
    # loss read in inference mode, ``model.predict(result.params, x, state=result.state)``.
    state: dict[str, np.ndarray] = field(default_factory=dict)
    # The measure the best epoch is chosen by (None: history.BEST_BY's first), and why
    # the run stopped early (None: it did not; its params are then the best epoch's).
    best_metric: str | None = None
    stopped: str | None = None


# ----------------------------------------------------------------------------- the loop
def nonfinite_reasons(value: float | None, optimizer) -> list[str]:
    """Why a step diverged: the loss (``value``, when known), a gradient, or else a
    parameter not finite."""
    what = [f"the loss is {value}"] if value is not None and not math.isfinite(value) \
        else []
    bad = optimizer.nonfinite("grads")
    if bad:
        return what + [f"the gradient of '{bad}' is not finite"]
    bad = optimizer.nonfinite("params")
    return what + ([f"parameter '{bad}' is no longer finite"] if bad else [])


def diverged(step: int, epoch: int, what: list[str]) -> Diverged:
    return Diverged(f"training diverged at step {step + 1} (epoch {epoch + 1}): "
                    + " and ".join(what), "lower the learning rate (--lr), or clip gradients "
                    "(optimizer ...(clip=1.0))")


def params_check_due(step: int) -> bool:
    """Whether the parameters are checked for non-finite values after step ``step``
    (0-based) in the loop: every PARAM_CHECK_EVERY steps (an evaluation and a checkpoint
    check them themselves: ``check_params``)."""
    return step % PARAM_CHECK_EVERY == PARAM_CHECK_EVERY - 1


def check_params(optimizer, step: int, epoch: int, value: float | None = None) -> None:
    """Raises ``Diverged`` (at 0-based step ``step``, whose loss was ``value``) when a
    parameter is no longer finite."""
    if optimizer.nonfinite("params"):
        raise diverged(step, epoch, nonfinite_reasons(value, optimizer))


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
          checkpoint_every: float = CHECKPOINT_SECONDS, force: bool = False,
          device: str | None = None) -> Result:
    """Train ``module`` on ``dataset`` as ``settings`` say, into the run folder ``out``
    (None: nothing written): a new run, or with ``resume`` the run there continued. A
    folder that holds a run is refused for a new one unless ``force``. A torch module
    trains on ``device``."""
    if resume and out is None:
        raise UserError("--resume needs --out DIR, the folder of the run to continue")
    if resume and not Path(out).is_dir():
        raise UserError(f"nothing to resume: {out} is not a folder",
                        "train without --resume first, or give the --out folder of a run")
    plan = plan_run(module, dataset, settings, quiet, log)
    n_test, n_val = plan.sizes()
    trainer = Trainer(module, plan, settings, out, log, quiet, checkpoint_every,
                      device)
    # Ctrl-C deferred first: it cannot land between locking the folder and unlocking it.
    with DeferredInterrupt() as stop, \
            (RunFolder(out) if out is not None else NoFolder()) as folder:
        folder.claim(resume, force)
        if resume:
            trainer.resume(folder)
        folder.start_history(trainer.history)
        stopped_before = trainer.stopped
        if stopped_before:
            log(f"nothing to do: the run stopped early at epoch {trainer.pos.epoch}: "
                f"{stopped_before}")
        elif trainer.pos.step >= plan.total_steps and trainer.pos.batch_index == 0:
            log(f"nothing to do: the run already has {trainer.pos.step} steps "
                f"(of {plan.total_steps})")
        if not quiet:
            log(trainer.header(n_test, n_val))
        start_time = time.perf_counter()
        trainer.run_epochs(stop, folder)
    pos, history = trainer.pos, trainer.history
    params, state = trainer.params, trainer.state
    if trainer.stopped and trainer.selector.arrays is not None:
        params, state = trainer.selector.arrays  # the best epoch's, restored
        if not quiet and not stopped_before:
            log(f"stopped early at epoch {pos.epoch}: {trainer.stopped}; the parameters "
                f"of epoch {trainer.selector.best['epoch']} restored")
    history = History.of_values(history)  # rows made dicts as they are read
    notes = [] if trainer.interrupted or not history else _final_notes(
        module, params, trainer.data["train"], pos.start_loss, history[-1],
        plan.kind, settings.batch, state)
    select = trainer.selector
    return Result(params, history, pos.epoch, pos.step,
                  time.perf_counter() - start_time, trainer.interrupted, notes,
                  state if state is not None else {},
                  best_metric=select.metric if select else ("val_loss" if n_val else None),
                  stopped=trainer.stopped)


class Trainer:
    """A run under way: its parameters, optimizer, model state, position and history,
    and the jobs of its loop, one method each: restoring a checkpoint (``resume``), the
    epochs (``run_epochs``), one step (``step``), an epoch's end (``end_epoch``: its
    history row, evaluated every ``eval_every`` epochs by ``measure``, and model
    selection), and writing the checkpoint (``save``)."""

    def __init__(self, module, plan: Plan, settings: Settings, out, log, quiet: bool,
                 checkpoint_every: float, device: str | None = None):
        self.module, self.plan, self.settings, self.out = module, plan, settings, out
        self.log, self.quiet, self.checkpoint_every = log, quiet, checkpoint_every
        # The target's arrays (NumPy's, or torch's on ``device``): the parameters, the
        # optimizer's buffers, the state and a copy of the data live there, the data
        # moved once (``data``: the plan's splits there).
        self.xp = xp = namespace(module, device)
        self.data = {split: xp.to_device(arrays) for split, arrays in
                     (("train", plan.train), ("test", plan.test), ("val", plan.val))}
        self.rng = np.random.default_rng(settings.seed)
        # The parameters are views into one buffer per dtype: the optimizer updates them
        # all in a few whole-buffer operations (runtime/optimizers.py).
        self.params = pack({k: xp.array(v, dtype=module.DTYPE) for k, v in
                            initial_params(module, self.rng, settings.seed).items()})
        self.optimizer = make_optimizer(settings.optimizer, self.params, **settings.opt)
        # A module that can compute gradients into given arrays writes them straight into
        # the optimizer's flat gradient buffer, the same arrays every step.
        self.buffers = {}
        takes = inspect.signature(module.loss_and_grad).parameters
        if "grads" in takes:
            self.buffers = {"grads": self.optimizer.grad_buffers}
        # The SGD family folds the learning rate into the backward pass's seed:
        # loss_and_grad(..., scale=-lr) gives -lr g, which the update adds to the
        # parameters (one pass over them, not two). A module compiled before the seed
        # was an argument gets the update of g.
        self.folds = "scale" in takes and self.optimizer.fold_lr()
        if self.folds:
            self.buffers["scale"] = -self.optimizer.lr
        # Training mode draws dropout masks from the run's generator, whose state every
        # checkpoint records (resume stays exact). A model with state: the run's state
        # (init_state(), then as each step's loss_and_grad assigns it), evaluated with and
        # checkpointed beside the parameters; None for a model without, whose calls and
        # checkpoints are as they always were.
        self.state = xp.to_device(initial_state(module)) if takes_state(module) else None
        # Dropout's masks: the torch target draws them on the device (None: from rng).
        self.masks = xp.mask_generator(settings.seed) if takes_rng(module) else None
        self.buffers.update(training_kwargs(module, self.state,
                                            self.rng if self.masks is None else self.masks))
        # Training mode changes the generator or the state inside the call: an
        # interruption there must not record them half a step ahead of the parameters.
        self.moves_inside = "rng" in self.buffers or self.state is not None
        # Loops that continue states: batches in stream order, the streams reset at each
        # epoch (runtime/streams.py).
        self.streamed = streams.stream_rows(module) is not None
        # The reference for divergence: the loss at the start, over minibatches of the
        # training size (a loss that sums over its batch is compared like with like).
        start_loss = _full_loss(module, self.params, self.data["train"], settings.batch,
                                self.state)
        # Where the run is (epoch, batch, step, running loss, generator, the epoch's
        # order): what a checkpoint saves and a resume restores, whole.
        self.pos = Position(self.rng, start_loss=start_loss, running=start_loss,
                            masks=self.masks)
        # The rows as values (history.epoch_row): as the checkpoint and history.csv
        # keep them, made and written without naming their values each epoch.
        self.history: list[list] = []
        n_test, _ = plan.sizes()
        self.selector = selector(settings, {"val": bool(plan.val), "test": bool(n_test),
                                            "acc": plan.kind is not None})
        self.run = run_identity(module, settings, self.optimizer, self.params, plan.train,
                                plan.test, plan.val,
                                self.selector.metric if self.selector else None) \
            if out is not None else None
        if self.run is not None and self.state is not None:
            self.run["state"] = {k: list(v.shape) for k, v in self.state.items()}
        self.scheduled = self.optimizer.cfg.get("schedule", "constant") != "constant"
        self.dirty = False  # inside an update: the state is not one a checkpoint may record
        self.interrupted = False
        self.progress = None  # the bar (progress.Progress), where one shows
        self.save_due = time.perf_counter() + checkpoint_every
        self.row_start = time.perf_counter()

    @property
    def stopped(self) -> str | None:
        return self.selector.stopped if self.selector else None

    def header(self, n_test: int, n_val: int) -> str:
        plan, opt = self.plan, self.optimizer
        lr_text = f"lr {opt.lr:g}" + (f" ({opt.cfg['schedule']})" if self.scheduled else "")
        return (f"{model_name(self.module)}: {plan.n} training examples"
                + (f", {n_val} validation" if n_val else "")
                + (f", {n_test} test" if n_test else "")
                + f"; {opt.name} {lr_text}, batch {self.settings.batch}; "
                f"{plan.total_epochs} epochs ({plan.total_steps} steps); a line every "
                + (f"{plan.eval_every} epochs" if plan.eval_every > 1 else "epoch")
                + (f"; stopping early on {self.selector.metric} (patience "
                   f"{self.selector.patience})" if self.stopped is None and self.selector
                   and self.selector.patience is not None else ""))

    # ------------------------------------------------------------------ resume
    def resume(self, folder: RunFolder) -> None:
        """The run continued from its folder's checkpoint, refused (naming what differs)
        when it is another run; the selector replays the history to its state."""
        c = load_checkpoint(folder.checkpoint, self.module)
        meta, optimizer, out = c.meta, self.optimizer, self.out
        if meta.get("optimizer") != optimizer.name:
            raise UserError(f"the checkpoint was trained with {meta.get('optimizer')}, "
                            f"not {optimizer.name}", "resume with the same --optimizer")
        problems = resume_problems(meta.get("run"), retargeted(self.run, meta.get("run"),
                                                               self.module),
                                   c.params, self.params,
                                   meta.get("start_loss"), self.pos.start_loss,
                                   _contract_hash(self.module))
        if problems:
            raise UserError(f"cannot resume the run in {out}: it is another run: "
                            + "; ".join(problems),
                            "resume with the run's own spec, data and settings, or "
                            "start a new run in another --out folder")
        for note in (legacy_note(folder.checkpoint, meta.get("run")),
                     lr_change(meta.get("run"), self.run)):
            if note:
                self.log(note)
        opt_state = verified_opt_state(folder.checkpoint, c.opt_state, optimizer)
        # batch_index == steps_per_epoch: every batch done, the epoch's end (its
        # evaluation and history row) still pending when the run was interrupted.
        if meta["batch_index"] > self.plan.steps_per_epoch:
            raise UserError(f"{folder.checkpoint}: the 'meta' entry is damaged: "
                            f"'batch_index' is {meta['batch_index']}, but an epoch has "
                            f"{self.plan.steps_per_epoch} batches", DAMAGED_HINT)
        for k in self.params:
            self.xp.assign(self.params[k], c.params[k])
        if self.state is not None:  # the same dict: loss_and_grad's state= keeps it
            self.state.update(self.xp.to_device({k: v.copy() for k, v in c.state.items()}))
        optimizer.load_state_dict(opt_state)
        self.pos = Position.restored(self.rng, meta, c.order, self.plan.n,
                                     self.settings.shuffle, folder.checkpoint, self.masks)
        if self.streamed and self.pos.drawn:  # not drawn: the same order, from the plan
            self.pos.order = self.stream_order()
        if "history" in meta:
            rows = saved_rows(meta["history"])
        else:  # a checkpoint from before history was kept in it
            rows = old_history(folder.history, self.pos.epoch)
        self.history = [saved_row(r) for r in rows]  # an older row gets today's columns
        if self.selector is not None:
            self.selector.replay(rows, self.xp.to_device(c.best),
                                 self.xp.to_device(c.best_state), folder.checkpoint)

    # ------------------------------------------------------------------ the loop
    def run_epochs(self, stop: DeferredInterrupt, folder) -> None:
        """Epochs until the step budget is spent or the run stops early; Ctrl-C saves
        (between steps) and returns with ``interrupted`` set."""
        plan, pos = self.plan, self.pos
        self.progress = progress(plan, self.quiet)
        # Non-finite values are reported (Diverged), not warned about: NumPy's warnings
        # are off in the loop.
        errstate = np.errstate(all="ignore")
        errstate.__enter__()
        try:
            # An epoch is pending while batch_index > 0: its end (evaluation, history row)
            # is still to come, also when the step budget ran out inside it.
            while (pos.step < plan.total_steps or pos.batch_index > 0) and not self.stopped:
                if stop.requested:
                    raise KeyboardInterrupt
                if not pos.drawn:  # the epoch's one draw; kept until the epoch ends
                    self.dirty = True
                    pos.order = self.stream_order() if self.streamed else \
                        data_mod.batch_order(plan.n, self.rng if self.settings.shuffle
                                             else None)
                    streams.reset(self.module, self.state)  # each epoch afresh
                    pos.drawn, self.dirty = True, False
                last = min(plan.steps_per_epoch,
                           pos.batch_index + max(plan.total_steps - pos.step, 0))
                for i in range(pos.batch_index, last):
                    if stop.requested:
                        raise KeyboardInterrupt
                    self.step(i)
                    if pos.batch_index < last and time.perf_counter() >= self.save_due:
                        self.save(folder)
                if pos.batch_index < plan.steps_per_epoch and pos.step < plan.total_steps:
                    continue  # cannot happen without an interruption
                if stop.requested:
                    raise KeyboardInterrupt  # before the evaluation: the epoch end is pending
                self.end_epoch(folder)
            if self.progress is not None:
                self.progress.close()
        except KeyboardInterrupt:
            self.on_interrupt(folder)
        finally:
            errstate.__exit__(None, None, None)

    def stream_order(self):
        """An epoch's windows in stream order: row i of batch k + 1 continues row i of
        batch k."""
        return streams.order(self.plan.n, self.settings.batch, "training data")

    def step(self, i: int) -> None:
        """Batch ``i`` of the epoch: one update, checked for divergence."""
        plan, pos, optimizer, settings = self.plan, self.pos, self.optimizer, self.settings
        b = data_mod.batch_at(self.data["train"], plan.axes, pos.order, settings.batch, i)
        lr = optimizer.lr
        if self.scheduled:
            lr = learning_rate(optimizer.cfg, pos.step / plan.steps_per_epoch,
                               plan.total_epochs)
            if self.folds:
                self.buffers["scale"] = -lr
        if self.moves_inside:
            self.dirty = True
        value, grads = self.module.loss_and_grad(self.params, **b, **self.buffers)
        value = float(value)  # a torch module's loss is a tensor
        optimizer.gather(grads)
        if not math.isfinite(value):
            raise diverged(pos.step, pos.epoch, nonfinite_reasons(value, optimizer))
        self.dirty = True
        optimizer.update(self.params, lr)
        # A non-finite gradient makes the parameters non-finite too, and is named when
        # they are checked (PARAM_CHECK_EVERY).
        if params_check_due(pos.step):
            check_params(optimizer, pos.step, pos.epoch, value)
        if pos.start_loss is None:  # resumed from a checkpoint that lacks it
            pos.start_loss = pos.running = value
        pos.running += SMOOTHING * (value - pos.running)
        if pos.running > divergence_limit(pos.start_loss):
            raise diverged(pos.step, pos.epoch, [
                f"the loss grew from {pos.start_loss:.4g} to {pos.running:.4g} "
                f"(running average), over {DIVERGENCE_GROWTH:g} times its start"])
        m = min(settings.batch, plan.n - i * settings.batch)  # the last is short
        pos.loss_sum += value * m
        pos.seen += m
        pos.step += 1
        pos.batch_index += 1
        self.dirty = False
        if self.progress is not None:
            self.progress.advance(pos)

    def end_epoch(self, folder) -> None:
        """An epoch is complete (or the step budget ended inside it): its history row,
        with its mean training loss, measured (``measure``) every eval_every epochs and
        at the end, taken in by the selector; the checkpoint saved when due."""
        plan, pos, select = self.plan, self.pos, self.selector
        lr_now = learning_rate(self.optimizer.cfg, pos.step / plan.steps_per_epoch,
                               plan.total_epochs) if self.scheduled else self.optimizer.lr
        seconds = time.perf_counter() - self.row_start

        def row_of(measured):
            return epoch_row(pos.epoch + 1, pos.step, pos.loss_sum / max(pos.seen, 1),
                             lr_now, seconds, measured)

        evaluated = (pos.epoch + 1) % plan.eval_every == 0 or pos.step >= plan.total_steps
        row = row_of(self.measure() if evaluated else None)
        if select is not None and select.observe(row_dict(row)):
            select.keep(self.params, self.state)
        if select is not None and select.stopped and not evaluated:
            evaluated = True  # the last row is always evaluated (its loss is the same)
            row = row_of(self.measure())
        self.dirty = True
        pos.epoch += 1
        pos.batch_index = 0
        pos.drawn = False
        self.history.append(row)
        pos.loss_sum, pos.seen = 0.0, 0
        self.dirty = False
        folder.append_history(row, flush=evaluated)  # flushed as each line is printed
        if evaluated and not self.quiet:
            if self.progress is not None:
                self.progress.clear()
            self.log(summary_line(row_dict(row), plan.total_epochs,
                                  has_perplexity(self.module)))
        self.row_start = time.perf_counter()
        final = pos.step >= plan.total_steps or bool(self.stopped)
        if final or self.row_start >= self.save_due:  # save()'s test, without the call
            self.save(folder, final)

    def measure(self) -> dict:
        """The evaluation of an epoch: accuracies and losses over the splits (inference
        mode), None where a split or an accuracy is missing."""
        module, params, state, plan = self.module, self.params, self.state, self.plan
        check_params(self.optimizer, self.pos.step - 1, self.pos.epoch)  # never evaluated
        out = {}
        for split, arrays in self.data.items():
            out[f"{split}_acc"] = accuracy(module, params, arrays, plan.kind, state, plan.chunk)
            if split != "train":
                out[f"{split}_loss"] = mean_loss(module, params, arrays, plan.chunk, state) \
                    if arrays else None
        return out

    # ------------------------------------------------------------------ keeping
    def save(self, folder, final: bool = False) -> None:
        """The checkpoint (and best.npz when the best epoch changed), when due: at least
        checkpoint_every seconds since the last, or ``final``."""
        now = time.perf_counter()
        if folder.checkpoint is None or not final and now < self.save_due:
            return
        check_params(self.optimizer, self.pos.step - 1, self.pos.epoch)  # never saved
        select = self.selector
        if select is not None and select.unsaved:
            save_best(folder.best, *select.arrays, select.best_meta(self.history, self.run))
            select.unsaved = False
        save_checkpoint(folder.checkpoint, self.params, self.optimizer, self.pos, self.history,
                        self.run, self.state, select.arrays if select else None)
        folder.flush_history()  # the rows so far, as the checkpoint holds them
        end = time.perf_counter()
        self.save_due = end + max(self.checkpoint_every, CHECKPOINT_OVERHEAD * (end - now))

    def on_interrupt(self, folder) -> None:
        """Ctrl-C: the state saved unless it fell inside an update (then the last
        checkpoint stands), and how to continue said."""
        self.interrupted = True
        if self.progress is not None:
            self.progress.close()
        out, pos = self.out, self.pos
        if folder.checkpoint is not None and not self.dirty:
            self.save(folder, final=True)
            folder.start_history(self.history)  # whatever a second Ctrl-C cut short
            self.log(f"interrupted at step {pos.step}; saved {folder.checkpoint} "
                     f"(continue with --resume --out {out})")
        elif folder.checkpoint is not None:
            self.log(f"interrupted inside step {pos.step + 1}; the last checkpoint, "
                     f"{folder.checkpoint}, is kept (continue with --resume --out {out})")
        else:
            self.log(f"interrupted at step {pos.step}")


def _full_loss(module, params, arrays, batch: int, state=None) -> float | None:
    """The mean minibatch loss over all of ``arrays`` (inference mode, reading ``state``),
    None when it is not finite."""
    with np.errstate(all="ignore"):
        value = float(mean_loss(module, params, arrays, batch, state))
    return value if math.isfinite(value) else None


def _final_notes(module, params, train_arrays, start_loss, last: dict, kind,
                 batch: int, state=None) -> list[str]:
    end = _full_loss(module, params, train_arrays, batch, state)
    acc = last["train_acc"]
    if end is None:
        return []
    return progress_notes(start_loss, end, acc, chance_accuracy(kind, train_arrays, module))


def run(module, data=None, overrides: dict | None = None, out: Path | None = None,
        resume: bool = False, quiet: bool = False, log=print,
        checkpoint_every: float | None = None, force: bool = False,
        device: str | None = None) -> tuple[Result, Settings, "data_mod.Dataset"]:
    """One training run as ``bpc train`` does it (and ``Model.train``): settings from the
    spec overridden by ``overrides``, data from ``data`` (a --data string, or a Dataset)
    else the spec's data line (drawn from the data seed), then ``train`` (a torch module's
    on ``device``)."""
    settings = Settings.from_module(module, overrides or {})
    config = getattr(module, "CONFIG", {}) or {}
    # Before the data is loaded: a model whose step cannot fit even one example (train
    # checks the batch it will use once it knows how many examples there are).
    check_memory(module, 1, "a training step", "use a smaller --batch")
    if isinstance(data, data_mod.Dataset):
        dataset = data
    else:
        dataset = data_mod.load(data if data else config.get("data"), module,
                                settings.data_seed)
    every = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}
    result = train(module, dataset, settings, out, resume=resume, quiet=quiet, log=log,
                   force=force, device=device, **every)
    return result, settings, dataset

