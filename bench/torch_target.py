"""bpc's PyTorch target against PyTorch eager autograd: one training step (loss, gradient,
SGD update) of the same model, in one run, float32 and float64.

    python3 bench/torch_target.py [--device cpu|cuda] [--rounds 30] [--threads 1]

Models: the MLPs of bench/bench.py (784-50-10 at batch 100, 784-1024-1024-10 at batch 256,
softmax cross-entropy on one-hot targets) and SimpleConvNet (specs/simple_convnet.bp:
conv 30x5x5, ReLU, 2x2 max pooling, dense 100, ReLU, dense 10, integer labels, batch 100).

- ``torch target``: the module ``bpc compile --target torch`` writes, ``loss_and_grad``
  computing into kept gradient buffers (``grads=``), then ``p.add_(g, alpha=-lr)``;
- ``target nn.Module``: the same module's ``Model`` with ``torch.optim.SGD``
  (``loss.backward()`` through its autograd.Function);
- ``torch eager``: the model written idiomatically (nn.Linear / nn.Conv2d / nn.MaxPool2d,
  ``F.cross_entropy``), ``loss.backward()`` and ``torch.optim.SGD``.

All start from the same parameters; the first losses are checked to agree before timing.
After a warm-up the implementations take turns, in a rotating order, round after round;
the median time of a step and its ratio to eager are printed (on CUDA each step is
synchronized). With ``--device cuda`` and no CUDA device it says so and exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LR = 0.01
MLPS = {"MLP 784-50-10, batch 100": ([784, 50, 10], 100),
        "MLP 784-1024-1024-10, batch 256": ([784, 1024, 1024, 10], 256)}
CONV = "SimpleConvNet, batch 100"


def _spec(name: str, dtype: str) -> str:
    from step_peers import spec_text

    if name == CONV:
        text = (ROOT / "specs" / "simple_convnet.bp").read_text()
        return text.replace("model simple_convnet", f"model simple_convnet\ndtype {dtype}")
    return spec_text(MLPS[name][0], dtype)


def _eager(name: str, params: dict, torch):
    """The model written the way a PyTorch user writes it, holding ``params``."""
    nn = torch.nn
    if name == CONV:
        layers = [nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10)]
    else:
        sizes = MLPS[name][0]
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.pop()
    net = nn.Sequential(*layers)
    linear = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for k, m in enumerate(linear, start=1):
            w, b = params[f"W{k}"], params[f"b{k}"]
            m.weight.copy_(w.T if isinstance(m, nn.Linear) else w)
            m.bias.copy_(b.reshape(-1))
    return net


def _data(name: str, dtype, device, torch):
    g = torch.Generator().manual_seed(0)
    if name == CONV:
        x = torch.rand((100, 1, 28, 28), generator=g, dtype=dtype)
        t = torch.randint(0, 10, (100,), generator=g)
        return x.to(device), t.to(device), t.to(device)
    sizes, n = MLPS[name]
    x = torch.randn((n, sizes[0]), generator=g, dtype=dtype)
    labels = torch.randint(0, sizes[-1], (n,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, sizes[-1]).to(dtype)
    return x.to(device), onehot.to(device), labels.to(device)


def steps(name: str, dtype_name: str, device: str):
    """{implementation: a function running one step}, their first losses checked."""
    import torch

    from bpc.compiler.compilation import Compilation

    dtype = getattr(torch, dtype_name)
    module = Compilation.from_text(_spec(name, dtype_name), "bench.bp",
                                   target="torch").new_module()
    start = module.init_params(torch.Generator().manual_seed(0), dtype, device)
    x, t, labels = _data(name, dtype, device, torch)

    params = {k: v.clone() for k, v in start.items()}
    buffers = {k: torch.empty_like(v) for k, v in params.items()}

    def target():
        value, grads = module.loss_and_grad(params, x, t, grads=buffers)
        for k, g in grads.items():
            params[k].add_(g, alpha=-LR)
        return value

    model = module.Model(start, dtype=dtype, device=device)
    sgd_model = torch.optim.SGD(model.parameters(), lr=LR)

    def wrapped():
        sgd_model.zero_grad(set_to_none=True)
        value = model(x, t)
        value.backward()
        sgd_model.step()
        return value

    net = _eager(name, start, torch).to(device=device, dtype=dtype)
    sgd = torch.optim.SGD(net.parameters(), lr=LR)

    def eager():
        sgd.zero_grad(set_to_none=True)
        value = torch.nn.functional.cross_entropy(net(x), labels)
        value.backward()
        sgd.step()
        return value

    impls = {"torch target": target, "target nn.Module": wrapped, "torch eager": eager}
    first = {k: float(f()) for k, f in impls.items()}
    if max(first.values()) - min(first.values()) > 1e-3 * abs(first["torch eager"]):
        raise SystemExit(f"{name} {dtype_name}: first losses differ: {first}")
    return impls


def timed(impls: dict, rounds: int, sync) -> dict[str, float]:
    """Median seconds per step, the implementations taking turns in a rotating order."""
    names = list(impls)
    times = {k: [] for k in names}
    for _ in range(3):  # warm-up
        for f in impls.values():
            f()
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            sync()
            t0 = time.perf_counter()
            impls[k]()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's CPU threads (default 1: one core per step)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("skipped: PyTorch is not installed (pip install 'backprop-compiler[torch]')")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device here (torch.cuda.is_available() is False)")
        return 0
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"CPU, {args.threads} thread(s)"
    print(f"torch {torch.__version__}, {where}; median of {args.rounds} rounds, ms per step; "
          f"ratio: eager / this (> 1: faster than eager)")
    for name in [*MLPS, CONV]:
        for dtype in ("float32", "float64"):
            medians = timed(steps(name, dtype, args.device), args.rounds, sync)
            eager = medians["torch eager"]
            cells = "  ".join(f"{k} {v * 1e3:8.3f} ({eager / v:4.2f}x)"
                              for k, v in medians.items())
            print(f"{name:34s} {dtype}  {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
