"""Training runs interrupted at a chosen profiler event, resumed, and compared whole.

``run`` trains, raising SIGINT at event ``interrupt_at``; ``finish`` resumes what it left;
``state`` is everything a run ends with but the timings; ``assert_same`` compares two.
"""

import json
import random
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bpc.runtime.history import HISTORY_FIELDS
from bpc.runtime.train import train


def distinct_points(rng: random.Random, span: int, count: int) -> list[int]:
    """``count`` different events from 1 to ``span``, in order (each point gets its own
    folder, ``at{k}``: a point drawn twice would resume the first one's finished run)."""
    return sorted(rng.sample(range(1, span + 1), min(count, span)))


FIRST_STEP = {}  # the last run's event count at its first training step's call


def run(m, ds, settings, out, resume=False, interrupt_at=None):
    """Train; with ``interrupt_at``, SIGINT arrives at that profiler event. Returns the
    number of events and whether the run was interrupted (KeyboardInterrupt out of train
    counts: Ctrl-C before the run began). ``interrupt_at=-1`` counts a whole run's events
    (the span to draw points from) after an uncounted run of the same, so that what is
    done once a process and then cached (the model's identity) is not counted: the runs
    interrupted later do not repeat it, and points drawn past their end never fire."""
    if interrupt_at == -1:
        with tempfile.TemporaryDirectory() as warm:
            train(m, ds, settings, Path(warm) / "run", quiet=True, log=lambda *_: None,
                  checkpoint_every=0)
    count = 0
    FIRST_STEP.pop("at", None)

    def hook(frame, event, arg):
        nonlocal count
        count += 1
        if event == "call" and "at" not in FIRST_STEP and \
                frame.f_code.co_name == "loss_and_grad":
            FIRST_STEP["at"] = count
        if count == interrupt_at:
            signal.raise_signal(signal.SIGINT)

    try:  # a late Ctrl-C (after train's handler is gone) surfaces anywhere in here
        sys.setprofile(hook if interrupt_at else None)
        try:
            result = train(m, ds, settings, out, resume=resume, quiet=True,
                           log=lambda *_: None, checkpoint_every=0)
            stopped = result.interrupted
        finally:
            sys.setprofile(None)
    except KeyboardInterrupt:
        stopped = True
    return count, stopped


def finish(m, ds, settings, out):
    """Resume the run in ``out`` to its end (a fresh run when nothing was saved yet)."""
    if (out / "checkpoint.npz").exists():
        run(m, ds, settings, out, resume=True)
    else:
        run(m, ds, settings, out)


def state(out):
    """Everything a run ends with but the timings: the checkpoint's arrays (and those of
    best.npz, when there is one, as ``best.npz/NAME``), its meta and history.csv."""
    with np.load(out / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "meta"}
        meta = json.loads(str(f["meta"]))
    seconds = HISTORY_FIELDS.index("seconds")
    meta["history"] = [r[:seconds] + r[seconds + 1:] for r in meta["history"]]
    if (out / "best.npz").exists():
        with np.load(out / "best.npz") as f:
            arrays.update({f"best.npz/{k}": f[k] for k in f.files if k != "meta"})
            meta["best.npz"] = json.loads(str(f["meta"]))
        meta["best.npz"]["history"] = [r[:seconds] + r[seconds + 1:]
                                       for r in meta["best.npz"]["history"]]
    lines = (out / "history.csv").read_text().splitlines()
    csv_rows = [",".join(c for i, c in enumerate(line.split(",")) if i != seconds)
                for line in lines]
    return arrays, meta, csv_rows


def assert_same(a, b, what, evaluated=(False, True, True)):
    """Two runs' ``state`` are the same; ``evaluated`` says which epochs' rows have
    their measures (by default 3 epochs, every 2nd evaluated, and the last)."""
    arrays_a, meta_a, csv_a = a
    arrays_b, meta_b, csv_b = b
    assert set(arrays_a) == set(arrays_b), what
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=f"{what}: {k}")
    assert meta_a == meta_b, what
    assert csv_a == csv_b, what
    assert len(csv_a) == 1 + len(evaluated), what  # the header and a row every epoch
    assert tuple(bool(line.split(",")[3]) for line in csv_a[1:]) == tuple(evaluated), what


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test. A process started in the background (a
    script's ``cmd &``, nohup) has SIGINT ignored; train rightly leaves that alone, so no
    point would interrupt anything and the test would compare uninterrupted runs."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
