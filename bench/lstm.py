"""bpc LSTM benchmark: one training step of an LSTM language model (embedding, one LSTM
layer over T = 35 steps, an affine layer to the vocabulary, softmax cross-entropy over
every token, then a plain SGD update), batch N = 20, in float64 and float32, for

- the module bpc generates from ``spec_text`` (``loss_and_grad`` with kept gradient
  buffers and ``scale=-lr``, as ``bpc train`` calls it);
- *Deep Learning from Scratch 2*'s layer classes (bench/lstm_references.py
  ``BookRnnlm``), as the book runs them;
- the same step hand-fused in NumPy (``FusedRnnlm``: buffers kept across steps, the input
  projection one product before the loop, gates, softmax and update in place);
- PyTorch eager (``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``), when installed.

    python3 bench/lstm.py [--rounds 20] [--core 1] [--only step|memory]

Sizes: DLFS2 ch. 6's PTB ``Rnnlm`` (V 10,000, D = H = 100) and the same with V 1,000.
Each configuration runs in its own process, pinned to one core with BLAS at one thread and
freed memory kept in the heap (``keep_freed_memory``, as ``bpc train`` sets it);
the implementations take turns, round after round, and the median CPU time of a step is
reported with its ratio to the generated one. ``--only memory`` measures the peak memory
of one ``loss_and_grad`` (tracemalloc) and what each keeps per time step.
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
N, T, LR = 20, 35, 0.1
SIZES = [(1000, 100), (10000, 100)]


def spec_text(vocab: int, hidden: int, dtype: str) -> str:
    """The book's Rnnlm as equations: gates f, g, i, o in one affine map, as DLFS2."""
    H = hidden
    gates = "\n".join(f"{name}[t] = {fn}(a[t][:, {k * H}:{(k + 1) * H}])" for k, (name, fn)
                      in enumerate([("f", "sigmoid"), ("g", "tanh"), ("i", "sigmoid"),
                                    ("o", "sigmoid")]))
    return f"""model bench_lstm
dtype {dtype}
input ids : [N, T]
input h0 : [N, {H}]
input c0 : [N, {H}]
target y : [N, T]
param E : [{vocab}, {H}] = normal(std=0.01)
param Wx : [{H}, {4 * H}] = normal(std=0.1)
param Wh : [{H}, {4 * H}] = normal(std=0.1)
param b : [{4 * H}] = zeros
param Wo : [{H}, {vocab}] = normal(std=0.1)
param bo : [{vocab}] = zeros
x = embed(ids, E)
a[t] = x[:, t] @ Wx + h[t-1] @ Wh + b
{gates}
c[t] = f[t] * c[t-1] + g[t] * i[t] from c0
h[t] = o[t] * tanh(c[t]) from h0
z = h @ Wo + bo
loss L = softmax_cross_entropy(z, y)
"""


def setup(vocab: int, hidden: int, dtype: str):
    """The generated module, its parameters and a batch (ids, zero states, targets)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bpc.compiler.pipeline import compile_text
    from bpc.runtime.loader import load_model

    _, source = compile_text(spec_text(vocab, hidden, dtype), "bench_lstm.bp")
    path = Path(tempfile.mkdtemp()) / "bench_lstm.py"
    path.write_text(source)
    module = load_model(path)
    rng = np.random.default_rng(0)
    params = module.init_params(rng)
    ids = rng.integers(0, vocab, (N, T))
    zeros = np.zeros((N, hidden), dtype=dtype)
    return module, params, (ids, zeros, zeros), rng.integers(0, vocab, (N, T))


def torch_step(params, ids, t, dtype):
    """PyTorch eager with the same weights: nn.LSTM's gates are i, f, g, o."""
    import torch

    torch.set_num_threads(1)
    H = params["Wh"].shape[0]
    order = [2, 0, 1, 3]  # the book's f, g, i, o blocks in PyTorch's order i, f, g, o
    perm = [k * H + j for k in order for j in range(H)]
    embed = torch.nn.Embedding.from_pretrained(torch.tensor(params["E"]), freeze=False)
    lstm = torch.nn.LSTM(H, H, batch_first=True).to(getattr(torch, dtype))
    affine = torch.nn.Linear(H, params["Wo"].shape[1]).to(getattr(torch, dtype))
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(params["Wx"][:, perm].T))
        lstm.weight_hh_l0.copy_(torch.tensor(params["Wh"][:, perm].T))
        lstm.bias_ih_l0.copy_(torch.tensor(params["b"][perm]))
        lstm.bias_hh_l0.zero_()
        affine.weight.copy_(torch.tensor(params["Wo"].T))
        affine.bias.copy_(torch.tensor(params["bo"]))
    weights = [*embed.parameters(), *lstm.parameters(), *affine.parameters()]
    ids_t, t_t = torch.tensor(ids), torch.tensor(t)

    def step():
        z = affine(lstm(embed(ids_t))[0])
        loss = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), t_t.reshape(-1))
        grads = torch.autograd.grad(loss, weights)
        with torch.no_grad():
            for w, g in zip(weights, grads):
                w -= LR * g
        return float(loss.detach())
    return step


def implementations(vocab: int, hidden: int, dtype: str):
    """name -> a function doing one step (loss, gradients, SGD update) and returning the
    loss; every first loss is checked against the generated one."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from lstm_references import BookRnnlm, FusedRnnlm

    module, params, inputs, t = setup(vocab, hidden, dtype)
    gen_p = {k: v.copy() for k, v in params.items()}
    buffers = {k: np.empty_like(v) for k, v in params.items()}

    def generated():
        loss, grads = module.loss_and_grad(gen_p, *inputs, t, scale=-LR, grads=buffers)
        for k, g in grads.items():
            gen_p[k] += g
        return loss

    book = BookRnnlm({k: v.copy() for k, v in params.items()})

    def book_step():
        loss, grads = book.loss_and_grad(inputs[0], t)
        for k, g in grads.items():
            book.params[k] -= LR * g
        return loss

    fused = FusedRnnlm({k: v.copy() for k, v in params.items()}, N, T)
    runs = {"generated": generated, "book layers": book_step,
            "hand-fused": lambda: fused.step(inputs[0], t, LR)}
    try:
        runs["PyTorch eager"] = torch_step(params, inputs[0], t, dtype)
    except ImportError:
        pass
    first = {name: fn() for name, fn in runs.items()}
    for name, loss in first.items():
        rtol = 1e-4 if dtype == "float32" else 1e-9
        if not np.isclose(loss, first["generated"], rtol=rtol):
            raise SystemExit(f"{name}: first loss {loss} != generated {first['generated']}")
    return runs


def step_worker(vocab: int, hidden: int, dtype: str, rounds: int) -> dict:
    from bpc.runtime.allocator import keep_freed_memory

    keep_freed_memory()  # as bpc train runs; every implementation in the process gains
    runs = implementations(vocab, hidden, dtype)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"median_s": med, "ratio": {k: v / med["generated"] for k, v in med.items()}}


def memory_worker(vocab: int, hidden: int, dtype: str) -> dict:
    """Peak bytes of one loss_and_grad, and the bytes each keeps per time step: the
    book's LSTM cache (x, h_prev, c_prev, i, f, g, o, c_next) against the values of the
    generated step that its backward pass reads, as the compiler's program says
    (``kept_values``): those with a time axis, less the logits, which both keep; for N
    examples, as the book's cache holds."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from lstm_references import BookRnnlm
    from step_peers import peak_bytes

    from bpc.compiler.compilation import Compilation
    from bpc.compiler.ir.memory import itemsize, kept_values

    module, params, inputs, t = setup(vocab, hidden, dtype)
    buffers = {k: np.empty_like(v) for k, v in params.items()}
    book = BookRnnlm({k: v.copy() for k, v in params.items()})
    out = peak_bytes({
        "generated, grads= buffers": lambda: module.loss_and_grad(params, *inputs, t,
                                                                  grads=buffers),
        "book layers": lambda: book.loss_and_grad(inputs[0], t)})
    prog = Compilation.from_text(spec_text(vocab, hidden, dtype), "bench_lstm.bp").coded
    out["generated per step"] = N * sum(
        itemsize(v, dtype) * v.shape[-1] for v in kept_values(prog)
        if v.shape[:2] == ("N", "T") and len(v.shape) == 3 and v.dtype != "int"
        and v.shape[-1] != vocab)
    out["book per step"] = book.kept_per_step()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--only", choices=["step", "memory"])
    ap.add_argument("--step-worker", nargs=3)
    ap.add_argument("--memory-worker", nargs=3)
    args = ap.parse_args()
    if args.step_worker or args.memory_worker:
        v, h, dtype = args.step_worker or args.memory_worker
        result = (step_worker(int(v), int(h), dtype, args.rounds) if args.step_worker
                  else memory_worker(int(v), int(h), dtype))
        print(json.dumps(result))
        return
    results = {}
    for vocab, hidden in SIZES:
        for dtype in ("float64", "float32"):
            label = f"V {vocab}, D = H {hidden}, {dtype}"
            if args.only in (None, "step"):
                res = run_worker(__file__, "step", [vocab, hidden, dtype], args.core,
                                 args.rounds)
                results[f"step {label}"] = res
                print(f"LSTM LM step, N {N}, T {T}, {label} (median CPU time of "
                      f"{args.rounds} rounds, one core):")
                for name, sec in res["median_s"].items():
                    print(f"  {name:16s} {sec * 1e3:8.2f} ms  {res['ratio'][name]:5.2f}x "
                          "generated")
            if args.only in (None, "memory"):
                res = run_worker(__file__, "memory", [vocab, hidden, dtype], args.core, 1)
                results[f"memory {label}"] = res
                print(f"LSTM LM loss_and_grad peak memory, {label}:")
                for name, size in res.items():
                    print(f"  {name:26s} {size / 1e6:8.3f} MB")
    path = ROOT / "bench" / "lstm_results.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**kept, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
