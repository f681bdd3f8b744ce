"""A benchmark's worker process: one BLAS thread, pinned to one core, its result the
JSON object on the last line of its output (what conv.py and lstm.py time with)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
# XLA ignores the thread variables and starts a pool of its own
ONE_THREAD["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def run_worker(script: str, mode: str, config: list, core: int, rounds: int) -> dict:
    """``script --MODE-worker CONFIG… --rounds ROUNDS`` on ``core``: its JSON result."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, script, f"--{mode}-worker", *map(str, config), "--rounds",
           str(rounds)]
    r = subprocess.run(["taskset", "-c", str(core), *cmd], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"worker {mode} {config} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])
