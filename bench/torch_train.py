"""Whole training runs, as ``bpc train`` does them, on the NumPy target and on the torch
target's devices: the loop, optimizer, evaluation and checkpoint included.

    python3 bench/torch_train.py [--spec specs/digits.bp] [--epochs 5] [--batch N]
                                 [--dtype float32] [--threads K]

Each run trains the spec on its data line, loaded once (the same initial parameters and
shuffles on every target: a torch run is the NumPy run on another engine), into a fresh
run folder, after an untimed one-epoch warm-up, and prints its seconds, steps per second
and final loss; the CUDA row is printed when PyTorch sees a GPU (skipped otherwise,
saying so).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def whole_run(spec: Path, target: str, device: str | None, overrides: dict, dtype,
              dataset):
    """(seconds, steps, final training loss) of one run into a temporary folder."""
    from bpc.runtime.loader import load_model
    from bpc.runtime.train import run

    module = load_model(spec, dtype, target=target)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result, _, _ = run(module, dataset, overrides, Path(out), quiet=True, device=device)
        seconds = time.perf_counter() - start
    return seconds, result.steps, result.history[-1]["loss"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "digits.bp"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--dtype", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, help="torch's CPU threads (default: its own)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from bpc.runtime.data import load
    from bpc.runtime.loader import load_model

    spec = Path(args.spec)
    module = load_model(spec, args.dtype)
    config = module.CONFIG
    dataset = load(config.get("data"), module, (config.get("train") or {}).get("seed", 0))
    overrides = {"epochs": args.epochs, "batch": args.batch}
    rows = [("numpy", None), ("torch", "cpu")]
    if torch.cuda.is_available():
        rows.append(("torch", "cuda"))
    for target, device in rows:  # warm-up: first calls, kernels, allocator
        whole_run(spec, target, device, {**overrides, "epochs": 1}, args.dtype, dataset)
    print(f"bpc train {Path(args.spec).name}, {args.epochs} epochs"
          + (f", batch {args.batch}" if args.batch else "") + (f", {args.dtype}"
                                                               if args.dtype else ""))
    print(f"{'target':<8} {'device':<28} {'seconds':>8} {'steps/s':>9} {'loss':>10}")
    for target, device in rows:
        seconds, steps, loss = whole_run(spec, target, device, overrides, args.dtype,
                                         dataset)
        name = torch.cuda.get_device_name() if device == "cuda" else device or "cpu"
        print(f"{target:<8} {name[:28]:<28} {seconds:8.2f} {steps / seconds:9.1f} "
              f"{loss:10.6g}")
    if not torch.cuda.is_available():
        print("cuda: skipped (torch.cuda.is_available() is False here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
