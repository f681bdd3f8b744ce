"""One-off costs as whole processes: ``bpc compile`` of a model's spec against a process
that imports a source-to-source or compiling peer, builds its gradient and takes one step."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from step_peers import NETS, ONE_THREAD, ROOT, TOY, spec_text, toy_spec_text

ONE_OFF_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {bench!r}]
import numpy as np
import bench
model, dtype, peer = sys.argv[1], sys.argv[2], sys.argv[3]
_, _, x, t, module, params = bench._setup(model, dtype)
depth = bench.TOY if model == bench.TOY else len(params) // 2
step, convert = bench.PEER_MAKERS[peer][0](params, dtype, depth)
step(convert(x), convert(t))
"""


def bench_one_off(runs: int) -> dict:
    """The one-off cost of each source-to-source or compiling tool as a whole process:
    ``bpc compile`` of the model's spec, against a process that imports the peer, builds
    its gradient (tangent's generation; PyTensor's graph and compilation, from an empty
    compile folder) and takes one step. The peer's processes also compile the model with
    bpc (for its initial parameters), which the figure includes: a few hundred ms."""
    script = ONE_OFF_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "bench"))
    out: dict = {}
    print(f"\none-off costs as whole processes, median of {runs} (seconds)")
    print(f"  {'model':<18}{'bpc compile':>13}" + "".join(f"{p:>12}" for p in
                                                      ("tangent", "pytensor")))
    with tempfile.TemporaryDirectory() as tmp:
        for model, text in ((TOY, toy_spec_text("float64")),
                            ("784-50-10", spec_text(NETS["784-50-10"][0], "float64"))):
            spec = Path(tmp) / "one_off.bp"
            spec.write_text(text)
            cmds = {"bpc compile": [sys.executable, "-m", "bpc", "compile", "-q",
                                    "-o", tmp, str(spec)]}
            for peer, package in (("tangent", "tangent"), ("pytensor", "pytensor")):
                try:
                    __import__(package)
                except ImportError:
                    continue
                cmds[peer] = [sys.executable, "-c", script, model, "float64", peer]
            times = {k: [] for k in cmds}
            for _ in range(runs):
                for name, cmd in cmds.items():
                    with tempfile.TemporaryDirectory() as compiledir, \
                            tempfile.TemporaryDirectory() as cache:
                        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT),
                               "PYTENSOR_FLAGS": f"compiledir={compiledir}",
                               "BPC_CACHE": cache}
                        start = time.perf_counter()
                        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
                        times[name].append(time.perf_counter() - start)
            out[model] = {k: statistics.median(v) for k, v in times.items()}
            print(f"  {model:<18}" + "".join(f"{out[model].get(k, float('nan')):>12.2f}"
                                             for k in ("bpc compile", "tangent", "pytensor")))
    return out
