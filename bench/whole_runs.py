"""Whole training runs: ``bpc train`` of gallery specs against ``references.plain_loop``
over the same steps, in one process and as whole processes; and ``bpc train SPEC.bp`` as
a user runs it (the spec compiled before: its module reused from the cache) against a
plain script, for every gallery spec that trains on data at hand."""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from step_peers import ROOT, generated_module

TRAIN_RUNS = ("xor", "sine", "digits")
# Data sets that are downloaded (two_layer and simple_convnet train on MNIST): not at
# hand, so their specs are not in the start-up runs.
DOWNLOADED = ("mnist",)
# The optimizers references.plain_loop writes out.
PLAIN_OPTIMIZERS = ("sgd", "adam")


def startup_runs() -> list[str]:
    """Every gallery spec (``specs/*.bp``) with a data line whose data is at hand and an
    optimizer the plain script writes out: a spec added to the gallery is in the
    start-up benchmark without a change here."""
    runs = []
    for path in sorted((ROOT / "specs").glob("*.bp")):
        text = path.read_text()
        data = re.search(r"^data\s+(\w+)", text, re.M)
        optimizer = re.search(r"^optimizer\s+(\w+)", text, re.M)
        if data and data[1] not in DOWNLOADED and optimizer and \
                optimizer[1] in PLAIN_OPTIMIZERS:
            runs.append(path.stem)
    return runs


PLAIN_SCRIPT = """
import sys, time
start = time.perf_counter()
sys.path[:0] = [{root!r}, {bench!r}]
from references import plain_loop
from bpc.runtime import data
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
m = load_model(sys.argv[1])
settings = Settings.from_module(m, {{}})
ds = data.load(m.CONFIG.get("data"), m, settings.seed)
train = data.conform(ds.train, m, "training data")
params = plain_loop(m, train, settings, data.batch_axes(m))
{report}"""

# What ``bpc train`` reports at the end, computed after the plain loop by the runtime's
# own functions: the loss and accuracy over the training data, the test split's, and
# the exact match of greedy decoding where the data set has a decoder.
REPORT = """from bpc.runtime.decoding import decoder_of, exact_match
from bpc.runtime.evaluate import accuracy, mean_loss, task_kind
test = data.conform(ds.test, m, "test data") if ds.test else {}
for split in filter(None, (train, test)):
    print(mean_loss(m, params, split), accuracy(m, params, split, task_kind(m, split)))
decoder = decoder_of(m, ds.name)
if decoder and test:
    print(exact_match(m, params, test, *decoder))
"""


def train_worker(spec: str, rounds: int) -> dict:
    """``bpc train``'s run of a gallery spec against ``references.plain_loop`` over the
    same steps, in turns: in one process (the run itself: ``train()`` against the loop,
    each from the loaded module and data), and as whole processes (``bpc train MODULE``
    against ``python`` running the loop, startup and imports included)."""
    from references import plain_loop
    from bpc.runtime import data
    from bpc.runtime.settings import Settings
    from bpc.runtime.train import train

    tmp = tempfile.mkdtemp()
    module = generated_module((ROOT / "specs" / f"{spec}.bp").read_text(), tmp)
    module_path = str(Path(tmp) / "bench_model.py")
    settings = Settings.from_module(module, {})
    dataset = data.load(module.CONFIG.get("data"), module, settings.seed)
    axes = data.batch_axes(module)
    lines: list[str] = []
    runs = {"bpc train": [], "plain loop": []}
    cpu = {"bpc train": [], "plain loop": []}
    info = {}

    def bpc(i):
        result = train(module, dataset, settings, Path(tmp) / f"run{i}", log=lines.append)
        info.update(steps=result.steps, rows=len(result.history),
                    loop_seconds=result.seconds)

    def plain(i):
        plain_loop(module, data.conform(dataset.train, module, "training data"), settings,
                   axes)

    for i in range(rounds):
        for name, fn in (("bpc train", bpc), ("plain loop", plain)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(i)
            runs[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    # Whole processes: the CLI on the compiled module, against a script running the loop.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    script = PLAIN_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "bench"))
    procs = {"bpc train": [], "plain loop": []}
    for i in range(rounds):
        for name, cmd in (("bpc train", [sys.executable, "-m", "bpc", "train",
                                         module_path, "--out", str(Path(tmp) / f"p{i}")]),
                          ("plain loop", [sys.executable, "-c", script, module_path])):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
            procs[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"spec": spec, "rounds": rounds, "wall_s": med,
            "best_wall_s": {k: min(v) for k, v in runs.items()},
            "best_process_s": {k: min(v) for k, v in procs.items()},
            "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "process_s": {k: statistics.median(v) for k, v in procs.items()},
            "steps": info["steps"], "rows": info["rows"], "eval_every": settings.eval_every,
            "optimizer": settings.optimizer}


def startup_worker(spec: str, rounds: int) -> dict:
    """Whole processes, in turns: ``bpc train specs/SPEC.bp`` (its module reused from a
    cache folder filled by one untimed run, as every run after a spec's first), ``bpc
    train`` of the compiled module, and a plain script running the same steps on that
    module; plus the spec's first run with an empty cache folder. Medians and bests of
    wall time, medians of CPU time (the child's user and system time: what other
    processes on the machine take is not in it)."""
    tmp = tempfile.mkdtemp()
    module_path = Path(tmp) / f"{spec}.py"
    module_path.write_text(generated_module((ROOT / "specs" / f"{spec}.bp").read_text(),
                                            tmp).source)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(ROOT), BPC_CACHE=str(Path(tmp) / "cache"))
    script = PLAIN_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "bench"), report="")
    reporting = PLAIN_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "bench"), report=REPORT)
    train = [sys.executable, "-m", "bpc", "train"]
    cmds = {"plain script": [sys.executable, "-c", script, str(module_path)],
            "plain script, reporting": [sys.executable, "-c", reporting, str(module_path)],
            "bpc train spec": [*train, str(ROOT / "specs" / f"{spec}.bp")],
            "bpc train module": [*train, str(module_path)]}

    def once(name: str, cmd: list[str], i, cache: str | None = None) -> tuple[float, float]:
        """Wall and CPU seconds (the child's user and system time) of one run."""
        out = [] if name.startswith("plain") else ["--out", str(Path(tmp) / f"{name}{i}")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd + out, check=True, capture_output=True, cwd=ROOT,
                       env={**env, "BPC_CACHE": cache} if cache else env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    cold = []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as empty:
            cold.append(once("bpc train spec", cmds["bpc train spec"], f"c{i}", empty)[0])
    once("bpc train spec", cmds["bpc train spec"], "warm")  # fills the cache; untimed
    times = {name: [] for name in cmds}
    cpu = {name: [] for name in cmds}
    for i in range(rounds):
        for name, cmd in cmds.items():
            wall, used = once(name, cmd, i)
            times[name].append(wall)
            cpu[name].append(used)
    return {"spec": spec, "rounds": rounds,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "best_s": {k: min(v) for k, v in times.items()},
            "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "cold_spec_s": statistics.median(cold)}
