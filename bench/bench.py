"""bpc benchmarks: generated code vs hand-written NumPy and the peers (PyTorch, JAX,
tangent, PyTensor, autograd); whole training runs; memory; compile time.

    python3 bench/bench.py            # everything (~45 minutes on two cores)
    python3 bench/bench.py --quick    # fewer rounds
    python3 bench/bench.py --only step|rows|table|train|startup|memory|compile|one-off

Each (model, dtype) configuration runs in its own process pinned to one core with BLAS at
one thread; inside it the implementations take turns, round after round, and the median
time of one training step (``loss_and_grad`` plus an SGD update) is reported, with ratios
to the hand-fused reference and the fraction of the roofline: the step's matmul FLOPs over
a large-matmul rate measured in the same process. Each peer's one-off cost (tangent's
generation, PyTensor's graph compilation, JAX's first call) is recorded beside it.

This file is the driver: it starts the workers and prints their results. What they
measure is in step_peers.py (one step, memory; the peers and the shared constants),
whole_runs.py (bpc train against a plain loop) and one_off.py (one-off costs as
whole processes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model_rows import ROWS, row_worker
from one_off import bench_one_off
from step_peers import MODELS, NETS, ONE_THREAD, ROOT, memory_worker, worker
# Read as ``bench.NAME`` by one_off's script processes and by tests/bench/.
from step_peers import (PEER_MAKERS, TOY, _setup, matmul_flops,  # noqa: F401
                        spec_text, toy_spec_text)
from whole_runs import TRAIN_RUNS, startup_runs, startup_worker, train_worker


class WorkerFailed(SystemExit):
    """A benchmark worker's process failed (uncaught, the benchmark ends with its
    standard error, ``stderr``)."""

    def __init__(self, stderr: str):
        super().__init__(f"benchmark worker failed:\n{stderr}")
        self.stderr = stderr


def run_worker(mode: str, *args: str) -> dict:
    with tempfile.TemporaryDirectory() as compiledir:  # PyTensor compiles from scratch
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT),
               "PYTENSOR_FLAGS": f"compiledir={compiledir}"}
        r = subprocess.run([sys.executable, __file__, f"--{mode}", *args], env=env,
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise WorkerFailed(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_steps(seconds: float, models=None) -> list[dict]:
    results = []
    for net in models or MODELS:
        for dtype in ("float64", "float32"):
            res = run_worker("worker", net, dtype, str(seconds))
            res.update(label=net, dtype=dtype)
            results.append(res)
            ref, gen = res["us"]["hand-fused"], res["us"]["generated"]
            print(f"\n{net}, batch {res['batch']}, {dtype} (NumPy matmul rate "
                  f"{res['gflops']:.1f} GFLOP/s, {res['pinned']}; step = "
                  f"{res['flops'] / 1e6:.1f} MFLOP of matmuls; median of {res['rounds']} "
                  f"rounds of ~20 ms each)")
            print(f"  {'implementation':<16}{'us/step':>12}{'vs fused':>10}{'vs bpc':>9}"
                  f"{'roofline':>10}{'wall us':>12}{'one-off s':>11}")
            for name, us in sorted(res["us"].items(), key=lambda kv: kv[1]):
                setup = res["setup_s"].get(name)
                print(f"  {name:<16}{us:>12.1f}{us / ref:>9.2f}x{us / gen:>8.2f}x"
                      f"{res['roofline'][name]:>9.0%}{res['wall_us'][name]:>12.1f}"
                      + (f"{setup:>11.2f}" if setup is not None else ""))
            for name, gflops in res["framework_gflops"].items():
                print(f"  {name} matmul rate: {gflops:.1f} GFLOP/s "
                      f"({gflops / res['gflops']:.2f}x NumPy's)")
            for note in res["notes"]:
                print(f"  note: {note}")
    return results


def bench_rows(seconds: float, rows=None, compiled: bool = True) -> list[dict]:
    """Issue 27's rows: per (row, dtype) a NumPy-only worker (generated, hand-fused, peak
    memory) and a PyTorch worker (generated again, eager, torch.compile); each ratio is
    peer time / bpc time within one process, so above 1 bpc is faster."""
    results = []
    try:
        import torch  # noqa: F401 - only whether it is installed
        peers = "torch+compile" if compiled else "torch"
    except ImportError:
        peers = None
    if os.environ.get("BPC_BENCH_FRAMEWORKS") == "0":
        peers = None
    print("\nsteps of issue 27's rows, batch 100 (median CPU us per step; ratios are the "
          "other's time / bpc's, in the same process: above 1, bpc is faster; faults: page "
          "faults per generated step)")
    print(f"  {'row':<20}{'dtype':<9}{'bpc us':>9}{'hand-fused':>12}{'torch eager':>13}"
          f"{'torch.compile':>15}{'bpc peak MB':>13}{'hand MB':>9}{'faults':>8}")
    for row in rows or ROWS:
        for dtype in ("float64", "float32"):
            res = {"numpy": run_worker("row", row, dtype, str(seconds), "none")}
            if peers:
                res["torch"] = run_worker("row", row, dtype, str(seconds), peers)
            res.update(label=row, dtype=dtype)
            results.append(res)
            us, peak = res["numpy"]["us"], res["numpy"]["peak_bytes"]
            tus = res.get("torch", {}).get("us", {})

            def ratio(times, name):
                return f"{times[name] / times['generated']:.2f}x" if name in times else "-"
            print(f"  {row:<20}{dtype:<9}{us['generated']:>9.0f}{ratio(us, 'hand-fused'):>12}"
                  f"{ratio(tus, 'torch eager'):>13}{ratio(tus, 'torch.compile'):>15}"
                  f"{peak['generated'] / 1e6:>13.2f}{peak['hand-fused'] / 1e6:>9.2f}"
                  f"{res['numpy']['faults_per_step']:>8.0f}")
            if "torch.compile" in res.get("torch", {}).get("setup_s", {}):
                print(f"    torch.compile's first step (compilation): "
                      f"{res['torch']['setup_s']['torch.compile']:.1f} s")
    if peers is None:
        print("  note: no peer columns (torch not installed, or BPC_BENCH_FRAMEWORKS=0)")
    elif not compiled:
        print("  note: torch.compile not run (--quick)")
    return results


def print_table(steps: list[dict], rows: list[dict]) -> None:
    """Every row of the step benchmark and of issue 27's, from the runs above, in one
    table: bpc's step and every other implementation's time over it, measured in the same
    process as bpc's (above 1, bpc is faster; '-' where it did not run)."""
    entries = [(r["label"], r["dtype"], r["us"]) for r in steps]
    for r in rows:  # the torch worker's peers over the bpc step timed beside them
        tus = r.get("torch", {}).get("us", {})
        times = {k: v / tus["generated"] * r["numpy"]["us"]["generated"]
                 for k, v in tus.items() if k != "generated"}
        entries.append((r["label"], r["dtype"], {**r["numpy"]["us"], **times}))
    names = sorted({k for _, _, us in entries for k in us if k != "generated"})
    print("\nevery row: bpc's step (median CPU us) and the others' time / bpc's")
    print(f"  {'row':<20}{'dtype':<9}{'bpc us':>9}" + "".join(f"{n:>15}" for n in names))
    for label, dtype, us in entries:
        print(f"  {label:<20}{dtype:<9}{us['generated']:>9.1f}" + "".join(
            f"{us[n] / us['generated']:>14.2f}x" if n in us else f"{'-':>15}" for n in names))


def bench_train(rounds: int) -> list[dict]:
    results = []
    print("\nwhole training runs: bpc train against a plain NumPy loop over the same steps "
          "(same module, data, initial parameters, shuffled batches, epochs, optimizer "
          f"arithmetic); median (and best) of {rounds} alternating runs, one core")
    print(f"  {'spec':<8}{'steps':>7}{'rows':>6}{'plain s':>10}{'bpc s':>9}{'ratio':>8}"
          f"{'best':>8}{'cpu ratio':>11}{'plain proc s':>14}{'bpc proc s':>12}{'ratio':>8}"
          f"{'best':>8}")
    for spec in TRAIN_RUNS:
        res = run_worker("train", spec, str(rounds))
        results.append(res)
        w, c, p = res["wall_s"], res["cpu_s"], res["process_s"]
        bw, bp = res["best_wall_s"], res["best_process_s"]
        print(f"  {spec:<8}{res['steps']:>7}{res['rows']:>6}{w['plain loop']:>10.3f}"
              f"{w['bpc train']:>9.3f}{w['bpc train'] / w['plain loop']:>7.2f}x"
              f"{bw['bpc train'] / bw['plain loop']:>7.2f}x"
              f"{c['bpc train'] / c['plain loop']:>10.2f}x{p['plain loop']:>14.3f}"
              f"{p['bpc train']:>12.3f}{p['bpc train'] / p['plain loop']:>7.2f}x"
              f"{bp['bpc train'] / bp['plain loop']:>7.2f}x")
    return results


def bench_startup(rounds: int, specs=None) -> list[dict]:
    results = []
    print("\nbpc train as a whole process against a plain script over the same steps (the "
          f"compiled module, references.plain_loop); median (best) of {rounds} alternating "
          "runs, seconds; 'spec' reuses the module compiled by an earlier run, 'first' is a "
          "run with an empty cache folder; 'vs reporting': against the plain script that "
          "also computes what bpc train reports at the end (losses and accuracies over the "
          "training and test data, greedy decoding's exact match)")
    print(f"  {'spec':<16}{'plain':>14}{'bpc train spec':>20}{'ratio':>14}"
          f"{'bpc train module':>20}{'ratio':>8}{'first':>8}{'cpu ratio':>11}"
          f"{'vs reporting':>14}")
    for spec in specs or startup_runs():
        try:
            res = run_worker("startup", spec, str(rounds))
        except WorkerFailed as e:  # a new spec the plain script cannot run: say why
            lines = e.stderr.strip().splitlines() or ["no message"]
            print(f"  {spec:<16}skipped: {lines[-1]}")
            continue
        results.append(res)
        m, b = res["median_s"], res["best_s"]
        plain = m["plain script"]
        print(f"  {spec:<16}{plain:>7.3f} ({b['plain script']:.3f})"
              f"{m['bpc train spec']:>12.3f} ({b['bpc train spec']:.3f})"
              f"{m['bpc train spec'] / plain:>6.2f}x "
              f"({b['bpc train spec'] / b['plain script']:.2f}x)"
              f"{m['bpc train module']:>13.3f} ({b['bpc train module']:.3f})"
              f"{m['bpc train module'] / plain:>7.2f}x{res['cold_spec_s']:>8.3f}"
              f"{res['cpu_s']['bpc train spec'] / res['cpu_s']['plain script']:>10.2f}x"
              f"{m['bpc train spec'] / m['plain script, reporting']:>13.2f}x")
    return results


def bench_memory() -> list[dict]:
    results = []
    print("\npeak memory of one loss_and_grad (tracemalloc, beyond inputs and parameters), "
          "against the activations the backward must keep (every layer's output)")
    for net in NETS:
        for dtype in ("float64", "float32"):
            res = run_worker("memory", net, dtype)
            results.append(res)
            kept, grads = res["activations_kept"], res["gradient_bytes"]
            print(f"  {net} {dtype}: activations kept {kept / 1e6:.3f} MB; the gradients "
                  f"themselves are {grads / 1e6:.2f} MB")
            for name in ("generated, grads= buffers", "generated, plain call", "hand-fused"):
                peak = res[name]
                extra = " (gradients included)" if name == "generated, plain call" else ""
                if name == "hand-fused":
                    extra = " (its preallocated working buffers)"
                print(f"    {name:<28} {peak / 1e6:8.3f} MB = {peak / kept:5.2f}x{extra}")
    return results


def bench_compile(runs: int) -> dict:
    """Whole-process `bpc compile` per gallery spec, against the import floor run just
    before it each time (paired, so the machine's drift cancels): with an empty cache
    folder (the very first compile on a machine) and a warm one (later compiles: black's
    output remembered by content, for the modules that need black at all).

    Python's own bytecode cache is on for both, as in any installed package (pip writes
    the .pyc files at install; a checkout writes them on first import): a machine that
    sets PYTHONDONTWRITEBYTECODE would otherwise recompile bpc's sources, and not the
    floor's already-installed ones, in every timed run.
    """
    def once(cmd, cache):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(ROOT), BPC_CACHE=cache)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
        return time.perf_counter() - start

    floor_cmd = [sys.executable, "-c", "import lark, jinja2, black"]
    once(floor_cmd, "")  # bring the files into the page cache; not timed
    print(f"\ncompile as a whole process, median of {runs} runs, each paired with the import "
          "floor `python -c 'import lark, jinja2, black'` run just before it")
    print(f"  {'spec':<12}{'floor':>9}{'empty cache':>18}{'warm cache':>18}")
    out = {"cold": {}, "warm": {}, "floor": {}}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        for spec in sorted((ROOT / "specs").glob("*.bp")):
            cmd = [sys.executable, "-m", "bpc", "compile", "-q", "-o", tmp,
                   str(spec.relative_to(ROOT))]
            floors, cold, warm = [], [], []
            once(cmd, cache)  # fill the warm cache (and write bytecode); not timed
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as empty:
                    f = once(floor_cmd, empty)
                    floors.append(f)
                    cold.append(once(cmd, empty) / f)
                f = once(floor_cmd, cache)
                warm.append(once(cmd, cache) / f)
            name = spec.stem
            out["floor"][name] = statistics.median(floors)
            out["cold"][name], out["warm"][name] = statistics.median(cold), statistics.median(warm)
            print(f"  {name:<12}{out['floor'][name] * 1e3:7.0f} ms{out['cold'][name]:>14.2f}x"
                  f"{out['warm'][name]:>17.2f}x")
    return out


def pin_to_one_core() -> str:
    """Hold this process (and every thread a framework starts) to a single core: thread
    flags are not honoured by every library (XLA starts a pool of its own)."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", choices=["step", "rows", "table", "train", "startup",
                                           "memory", "compile", "one-off"],
                        help="table: step and rows, then every row in one table")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="step: only these")
    parser.add_argument("--rows", nargs="+", choices=ROWS, help="rows: only these")
    parser.add_argument("--specs", nargs="+", metavar="SPEC",
                        help="startup: only these gallery specs (default: every spec in "
                             "specs/ whose data is at hand)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--train", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--row", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--startup", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # A worker process (started by this script): one measurement, printed as JSON; the
    # timing workers pinned to one core, the memory worker not.
    pinned_workers = {
        "worker": lambda a: worker(a[0], a[1], float(a[2])),
        "startup": lambda a: startup_worker(a[0], int(a[1])),
        "row": lambda a: row_worker(a[0], a[1], float(a[2]), a[3]),
        "train": lambda a: train_worker(a[0], int(a[1])),
    }
    for flag, run in pinned_workers.items():
        if getattr(args, flag):
            pinned = pin_to_one_core()
            result = run(getattr(args, flag))
            result["pinned"] = pinned
            print(json.dumps(result))
            return
    if args.memory:
        print(json.dumps(memory_worker(*args.memory)))
        return
    results = {}
    if args.only in (None, "step", "table"):
        results["step"] = bench_steps(1.0 if args.quick else 4.0, args.models)
    if args.only in (None, "rows", "table"):
        results["rows"] = bench_rows(1.0 if args.quick else 4.0, args.rows,
                                     compiled=not args.quick)
    if args.only in (None, "table"):
        print_table(results["step"], results["rows"])
    if args.only in (None, "train"):
        results["train"] = bench_train(3 if args.quick else 7)
    if args.only in (None, "startup"):
        results["startup"] = bench_startup(3 if args.quick else 7, args.specs)
    if args.only in (None, "memory"):
        results["memory"] = bench_memory()
    if args.only in (None, "compile"):
        results["compile"] = bench_compile(3 if args.quick else 5)
    if args.only in (None, "one-off"):
        results["one_off"] = bench_one_off(1 if args.quick else 3)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
