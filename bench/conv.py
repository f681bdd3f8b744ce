"""bpc conv benchmark: one training step of SimpleConvNet (batch 100, 1x28x28 images,
conv 30x5x5, ReLU, 2x2 max pooling, dense 100, ReLU, dense 10, softmax cross-entropy on
integer labels, then a plain SGD update) in float64 and float32, for

- the module bpc generates from the spec (``loss_and_grad`` with kept gradient buffers,
  as ``bpc train`` calls it);
- the book's layer classes (bench/conv_references.py ``BookConvNet``), as the book runs
  them (every backward, the first convolution's input gradient too) and without that
  input gradient;
- hand-written NumPy (``HandConvNet``);
- PyTorch eager and JAX jit, when installed.

    python3 bench/conv.py [--rounds 30] [--core 1] [--only step|memory]

Each dtype runs in its own process, pinned to one core with BLAS at one thread; inside
it the implementations take turns, round after round, and the median CPU time of a step
is reported with its ratio to the hand-written NumPy. ``--only memory`` measures the
peak memory of one step (tracemalloc) against the bytes of the activations the backward
must keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pinned import run_worker

ROOT = Path(__file__).resolve().parent.parent
N, LR = 100, 0.01


def spec_text(dtype: str) -> str:
    text = (ROOT / "specs" / "simple_convnet.bp").read_text()
    return text.replace("model simple_convnet", f"model bench_conv\ndtype {dtype}")


def generated(dtype: str):
    sys.path.insert(0, str(ROOT))
    from bpc.compiler.pipeline import compile_text
    from bpc.runtime.loader import load_model

    _, source = compile_text(spec_text(dtype), "bench_conv.bp")
    path = Path(tempfile.mkdtemp()) / "bench_conv.py"
    path.write_text(source)
    return load_model(path)


def setup(dtype: str):
    import numpy as np

    module = generated(dtype)
    rng = np.random.default_rng(0)
    params = {k: v.astype(dtype) for k, v in module.init_params(rng).items()}
    # MNIST-like inputs: values in [0, 1), most of them 0 (the background)
    x = rng.random((N, 1, 28, 28)) * (rng.random((N, 1, 28, 28)) < 0.2)
    return module, params, x.astype(dtype), rng.integers(0, 10, N)


def implementations(dtype: str):
    """name -> a function doing one step (loss, gradients, SGD update)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from conv_references import BookConvNet, HandConvNet

    module, params, x, t = setup(dtype)
    runs = {}

    def sgd(p, grads):
        for k, g in grads.items():
            p[k] -= LR * g

    gen_p = {k: v.copy() for k, v in params.items()}
    buffers = {k: np.empty_like(v) for k, v in params.items()}
    runs["generated"] = lambda: sgd(gen_p, module.loss_and_grad(gen_p, x, t, grads=buffers)[1])
    book = BookConvNet({k: v.copy() for k, v in params.items()})
    runs["book layers"] = lambda: sgd(book.params, book.loss_and_grad(x, t)[1])
    book2 = BookConvNet({k: v.copy() for k, v in params.items()}, input_grad=False)
    runs["book layers, no dx"] = lambda: sgd(book2.params, book2.loss_and_grad(x, t)[1])
    hand = HandConvNet({k: v.copy() for k, v in params.items()}, N, dtype)
    runs["hand NumPy"] = lambda: sgd(hand.params, hand.loss_and_grad(x, t)[1])
    try:
        runs["PyTorch eager"] = torch_step(params, x, t, dtype)
    except ImportError:
        pass
    try:
        runs["JAX jit"] = jax_step(params, x, t, dtype)
    except ImportError:
        pass
    return runs


def torch_step(params, x, t, dtype):
    import torch

    torch.set_num_threads(1)
    F = torch.nn.functional
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt, tt = torch.tensor(x), torch.tensor(t)

    def step():
        z = F.relu(F.conv2d(xt, p["W1"]) + p["b1"])
        z = F.max_pool2d(z, 2).flatten(1)
        z = F.relu(z @ p["W2"] + p["b2"])
        loss = F.cross_entropy(z @ p["W3"] + p["b3"], tt)
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for v, g in zip(p.values(), grads):
                v -= LR * g
        return float(loss.detach())
    return step


def jax_step(params, x, t, dtype):
    import jax
    import jax.numpy as jnp

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)

    def loss_fn(p, x, t):
        z = jax.lax.conv_general_dilated(x, p["W1"], (1, 1), "VALID") + p["b1"]
        z = jax.nn.relu(z)
        z = jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                  "VALID").reshape(x.shape[0], -1)
        z = jax.nn.relu(z @ p["W2"] + p["b2"])
        logp = jax.nn.log_softmax(z @ p["W3"] + p["b3"])
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    @jax.jit
    def update(p, x, t):
        loss, g = jax.value_and_grad(loss_fn)(p, x, t)
        return loss, jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g)

    state = {"p": {k: jnp.asarray(v) for k, v in params.items()}}
    xj, tj = jnp.asarray(x), jnp.asarray(t)

    def step():
        loss, state["p"] = update(state["p"], xj, tj)
        jax.block_until_ready(state["p"])
        return loss
    return step


def step_worker(dtype: str, rounds: int) -> dict:
    runs = implementations(dtype)
    for fn in runs.values():  # warm up (JAX compiles here)
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"dtype": dtype, "median_s": med,
            "ratio_to_hand": {k: v / med["hand NumPy"] for k, v in med.items()}}


def kept_bytes(dtype: str) -> int:
    """What the backward must keep: the patch matrix (for the filters' gradient), the
    conv layer's ReLU output (its mask, and the pooling argmax with the pooled values),
    the pooled values (= the flattened dense input), the hidden ReLU output, and the
    log-softmax."""
    import numpy as np

    col = N * 25 * 24 * 24
    z1 = N * 30 * 24 * 24
    p1 = N * 30 * 12 * 12
    return (col + z1 + p1 + N * 100 + N * 10) * np.dtype(dtype).itemsize


def memory_worker(dtype: str) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from conv_references import BookConvNet, HandConvNet

    module, params, x, t = setup(dtype)
    buffers = {k: np.empty_like(v) for k, v in params.items()}
    hand = HandConvNet({k: v.copy() for k, v in params.items()}, N, dtype)
    book = BookConvNet({k: v.copy() for k, v in params.items()})
    runs = {
        "generated, grads= buffers": lambda: module.loss_and_grad(params, x, t, grads=buffers),
        "generated, plain call": lambda: module.loss_and_grad(params, x, t),
        "book layers": lambda: book.loss_and_grad(x, t),
        "hand NumPy": lambda: hand.loss_and_grad(x, t),
    }
    out = {"dtype": dtype, "activations_kept": kept_bytes(dtype)}
    from step_peers import peak_bytes

    out.update(peak_bytes(runs))
    # The hand-written net allocated its working buffers (not its gradients) up front.
    out["hand NumPy"] += sum(a.nbytes for a in (
        hand.col, hand.a1, hand.p1, hand.ties, hand.share, hand.a2, hand.y, hand.da1,
        hand.dz2, hand.df1, hand.dfilters, hand.mask))
    return out



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--only", choices=["step", "memory"])
    ap.add_argument("--step-worker")
    ap.add_argument("--memory-worker")
    args = ap.parse_args()
    if args.step_worker:
        print(json.dumps(step_worker(args.step_worker, args.rounds)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker)))
        return
    results = {}
    if args.only in (None, "step"):
        print(f"SimpleConvNet training step, batch {N}: median CPU time over {args.rounds} "
              f"rounds, one core (taskset -c {args.core}), BLAS at one thread")
        for dtype in ("float64", "float32"):
            res = run_worker(__file__, "step", [dtype], args.core, args.rounds)
            results[f"step {dtype}"] = res
            print(f"  {dtype}:")
            for name, sec in res["median_s"].items():
                print(f"    {name:20s} {sec * 1e3:8.2f} ms  {res['ratio_to_hand'][name]:5.2f}x "
                      "hand NumPy")
    if args.only in (None, "memory"):
        print("peak memory of one loss_and_grad (tracemalloc, beyond inputs and parameters) "
              "against the activations the backward must keep")
        for dtype in ("float64", "float32"):
            res = run_worker(__file__, "memory", [dtype], args.core, 1)
            results[f"memory {dtype}"] = res
            kept = res["activations_kept"]
            print(f"  {dtype}: activations kept {kept / 1e6:.2f} MB")
            for name in ("generated, grads= buffers", "generated, plain call", "book layers",
                         "hand NumPy"):
                print(f"    {name:26s} {res[name] / 1e6:8.2f} MB  {res[name] / kept:5.2f}x")
    # --only replaces its own entries and keeps the other part's last figures.
    path = ROOT / "bench" / "conv_results.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**kept, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
