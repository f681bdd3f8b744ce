"""What a run will do, settled before it starts (``plan_run``): the data checked against
the model and split (the validation split taken, drawn from the data seed), the steps
and epochs, the evaluation's cadence and the memory a step needs; the run's ``Plan``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import data as data_mod
from .batching import dimension_sizes, example_count
from .datasets import validation_split
from .errors import UserError
from .evaluate import no_accuracy_note, task_kind
from .modes import takes_state
from .points import check_memory, eval_chunk
from .settings import Settings, auto_eval_every
from .streams import check_settings, order, stream_rows


@dataclass
class Plan:
    """What a run will do, from its data and settings: the arrays of each split (in the
    module's layout), their sizes, the steps and epochs, and the evaluation's cadence."""
    train: dict
    test: dict
    val: dict
    axes: dict[str, int]  # the batch dimension's axis in each array
    n: int
    steps_per_epoch: int
    total_steps: int
    total_epochs: int
    eval_every: int
    kind: tuple | None  # the classifier's kind (evaluate.task_kind), None without accuracy
    chunk: int  # examples per evaluation call

    def sizes(self) -> tuple[int, int]:
        return example_count(self.test, self.axes), example_count(self.val, self.axes)


def plan_run(module, dataset: data_mod.Dataset, settings: Settings, quiet: bool,
             log) -> Plan:
    """The run's ``Plan``, its notes said; the data checked against the model, and the
    validation split taken (``settings.validation`` of the training data)."""
    for note in getattr(dataset, "notes", ()):
        if not quiet:
            log(f"note: {note}")
    rows = stream_rows(module)
    check_settings(module, settings.shuffle, settings.batch, settings.validation)
    train_arrays = data_mod.conform(dataset.train, module, f"training data ({dataset.name})")
    test_arrays = data_mod.conform(dataset.test, module, f"test data ({dataset.name})") \
        if dataset.test else {}
    axes = data_mod.batch_axes(module)
    val_arrays = data_mod.conform(dataset.validation, module,
                                  f"validation data ({dataset.name})") \
        if dataset.validation else {}
    if settings.validation:
        if val_arrays:
            raise UserError("validation data is given twice: as arrays and as a fraction "
                            f"({settings.validation:g}) of the training data",
                            "give one of them")
        if example_count(train_arrays, axes):
            train_arrays, val_arrays = validation_split(train_arrays, axes,
                                                        settings.validation, settings.data_seed)
    n = example_count(train_arrays, axes)
    if n == 0:
        raise UserError("the training data is empty")
    steps_per_epoch = -(-n // settings.batch)  # whole-number ceil: exact for any batch
    if rows is not None:  # batches continue each other: whole streams only
        steps_per_epoch = len(order(n, rows, "training data")) // rows
        if n % rows and not quiet:
            log(f"note: {n} windows make {rows} streams of {n // rows}: the last "
                f"{n % rows} are left out")
    elif takes_state(module):
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
    # Memory, before anything is allocated: a step over a batch, and the evaluation's
    # chunks (as many examples as fit, 2048 at most).
    check_memory(module, min(settings.batch, n), "a training step", "use a smaller --batch",
                 sizes=dimension_sizes(module, train_arrays))
    no_accuracy = no_accuracy_note(module, train_arrays)
    if no_accuracy and not quiet:  # once, before the run: no accuracy column, and why
        log(f"note: {no_accuracy}")
    eval_every = settings.eval_every or auto_eval_every(
        n, example_count(test_arrays, axes), settings.batch, steps_per_epoch,
        example_count(val_arrays, axes))
    if settings.early_stop is not None and not settings.eval_every:
        # Evaluated at least every `patience` epochs: a stop comes in time.
        eval_every = min(eval_every, max(1, settings.patience))
    return Plan(train_arrays, test_arrays, val_arrays, axes, n, steps_per_epoch, total_steps,
                -(-total_steps // steps_per_epoch), eval_every,
                task_kind(module, train_arrays), eval_chunk(module, train_arrays))
