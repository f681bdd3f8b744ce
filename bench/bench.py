"""bpc benchmarks: generated code vs hand-written NumPy and the peers (PyTorch, JAX,
tangent, PyTensor, autograd); whole training runs; memory; compile time.

    python3 bench/bench.py            # everything (~20 minutes on two cores)
    python3 bench/bench.py --quick    # fewer rounds
    python3 bench/bench.py --only step|train|memory|compile

Each (model, dtype) configuration runs in its own process pinned to one core with BLAS at
one thread; inside it the implementations take turns, round after round, and the median
time of one training step (``loss_and_grad`` plus an SGD update) is reported, with ratios
to the hand-fused reference and the fraction of the roofline: the step's matmul FLOPs over
a large-matmul rate measured in the same process. Each peer's one-off cost (tangent's
generation, PyTensor's graph compilation, JAX's first call) is recorded beside it.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
ONE_THREAD["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
NETS = {"784-50-10": ([784, 50, 10], 100), "784-1024-1024-10": ([784, 1024, 1024, 10], 256)}
TOY = "UDL toy"  # specs/toy.bp: eight scalar parameters, one example per step
MODELS = [TOY, *NETS]
LR = 0.01
PEERS = ("torch eager", "jax jit", "tangent", "pytensor", "autograd")
TRAIN_RUNS = ("xor", "sine", "digits")


def toy_spec_text(dtype: str) -> str:
    """specs/toy.bp in the given dtype."""
    text = (ROOT / "specs" / "toy.bp").read_text()
    return text.replace("model toy\n", f"model toy\ndtype {dtype}\n", 1)


def spec_text(sizes: list[int], dtype: str) -> str:
    layers = []
    for units in sizes[1:-1]:
        layers += [f"  dense {units}", "  relu"]
    layers.append(f"  dense {sizes[-1]}")
    return (f"model bench_mlp\ndtype {dtype}\ninput x : [N, {sizes[0]}]\n"
            f"target t : [N, {sizes[-1]}]\nlayers x -> y {{\n" + "\n".join(layers)
            + "\n}\nloss L = softmax_cross_entropy(y, t)\n")


def matmul_flops(sizes: list[int], n: int) -> int:
    """Forward, weight gradients, and input gradients of every layer but the first."""
    pairs = list(zip(sizes, sizes[1:]))
    return sum(2 * n * a * b for a, b in pairs) * 3 - 2 * n * sizes[0] * sizes[1]


# ----------------------------------------------------------------------------- in one process
def _generated(text: str, tmp):
    sys.path.insert(0, str(ROOT))
    from bpc.compiler.pipeline import compile_text

    _, source = compile_text(text, "bench_model.bp")
    path = Path(tmp) / "bench_model.py"
    path.write_text(source)
    from bpc.runtime.loader import load_model

    return load_model(path)


# Each peer in its own idiom: ``maker(params, dtype, model)`` returns ``step(x, t)`` (one
# gradient and SGD update, returning the loss before it) and a converter for the data.
# ``model`` is TOY or the MLP's depth (layers).
def _torch_step(params, dtype, model):
    import torch

    torch.set_num_threads(1)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    tp = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}

    def loss_fn(x, t):
        if model == TOY:
            return (_toy_forward(tp, x, torch) - t) ** 2
        h = x
        for k in range(1, model + 1):
            h = h @ tp[f"W{k}"] + tp[f"b{k}"]
            if k < model:
                h = torch.relu(h)
        return -(t * torch.log_softmax(h, dim=1)).sum() / x.shape[0]

    def step(x, t):
        loss = loss_fn(x, t)
        loss.backward()
        with torch.no_grad():
            for p in tp.values():
                p -= LR * p.grad
                p.grad = None
        return loss.item()

    return step, (lambda a: torch.as_tensor(a, dtype=tdtype))


def _toy_forward(p, x, lib):
    """The toy's forward pass, for any library with sin, exp and cos."""
    f0 = p["beta0"] + p["omega0"] * x
    f1 = p["beta1"] + p["omega1"] * lib.sin(f0)
    f2 = p["beta2"] + p["omega2"] * lib.exp(f1)
    return p["beta3"] + p["omega3"] * lib.cos(f2)


def _mlp_loss(p, x, t, depth, lib, relu, log_softmax):
    h = x
    for k in range(1, depth + 1):
        h = h @ p[f"W{k}"] + p[f"b{k}"]
        if k < depth:
            h = relu(h)
    return -lib.sum(t * log_softmax(h)) / x.shape[0]


def _jax_step(params, dtype, model):
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss_fn(p, x, t):
        if model == TOY:
            return (_toy_forward(p, x, jnp) - t) ** 2
        return _mlp_loss(p, x, t, model, jnp, jax.nn.relu,
                         lambda h: jax.nn.log_softmax(h, axis=1))

    @jax.jit
    def update(p, x, t):
        loss, g = jax.value_and_grad(loss_fn)(p, x, t)
        return loss, jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g)

    state = {"p": {k: jnp.asarray(v) for k, v in params.items()}}

    def step(x, t):
        loss, state["p"] = update(state["p"], x, t)
        loss.block_until_ready()
        return float(loss)

    return step, (lambda a: jnp.asarray(a, dtype=dtype))


def _autograd_step(params, dtype, model):
    """HIPS autograd: ``value_and_grad`` of a function of the parameter dict, traced at
    every call; the update in place, parameter by parameter."""
    import autograd.numpy as anp
    from autograd import value_and_grad
    from autograd.scipy.special import logsumexp

    p = {k: v.copy() for k, v in params.items()}

    def loss_fn(p, x, t):
        if model == TOY:
            return (_toy_forward(p, x, anp) - t) ** 2
        return _mlp_loss(p, x, t, model, anp, lambda h: anp.maximum(h, 0),
                         lambda h: h - logsumexp(h, axis=1, keepdims=True))

    grad_fn = value_and_grad(loss_fn)

    def step(x, t):
        loss, g = grad_fn(p, x, t)
        for k, v in p.items():
            v -= LR * g[k]
        return float(loss)

    return step, (lambda a: np.asarray(a, dtype=dtype))


def _tangent_source(model):
    """The loss as a plain function of positional arrays, which is what tangent reads."""
    if model == TOY:
        def toy(beta0, omega0, beta1, omega1, beta2, omega2, beta3, omega3, x, y):
            f0 = beta0 + omega0 * x
            h1 = np.sin(f0)
            f1 = beta1 + omega1 * h1
            h2 = np.exp(f1)
            f2 = beta2 + omega2 * h2
            h3 = np.cos(f2)
            f3 = beta3 + omega3 * h3
            return (f3 - y) * (f3 - y)
        return toy

    def mlp2(W1, b1, W2, b2, x, t):
        h = np.maximum(np.dot(x, W1) + b1, 0.0)
        y = np.dot(h, W2) + b2
        z = y - np.max(y, axis=1, keepdims=True)
        log_p = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
        return -np.sum(t * log_p) / x.shape[0]

    def mlp3(W1, b1, W2, b2, W3, b3, x, t):
        h1 = np.maximum(np.dot(x, W1) + b1, 0.0)
        h2 = np.maximum(np.dot(h1, W2) + b2, 0.0)
        y = np.dot(h2, W3) + b3
        z = y - np.max(y, axis=1, keepdims=True)
        log_p = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
        return -np.sum(t * log_p) / x.shape[0]

    return {2: mlp2, 3: mlp3}[model]


def _tangent_step(params, dtype, model):
    """tangent-ad: source-to-source reverse mode of a NumPy function (``tangent.grad``),
    generated once; the update in place, parameter by parameter."""
    import tangent

    f = _tangent_source(model)
    names = list(params)
    df = tangent.grad(f, wrt=tuple(range(len(names))), preserve_result=True, verbose=0)
    p = [params[k].copy() for k in names]
    if model == TOY:  # NumPy scalars, updated by rebinding: faster than 0-d arrays
        p = [v[()] for v in p]

    def step(x, t):
        *g, loss = df(*p, x, t)
        if model == TOY:
            p[:] = [v - LR * gv for v, gv in zip(p, g)]
        else:
            for v, gv in zip(p, g):
                v -= LR * gv
        return float(loss)

    return step, (lambda a: np.asarray(a, dtype=dtype))


def _pytensor_step(params, dtype, model):
    """PyTensor: a symbolic graph, ``pytensor.grad``, and one compiled function whose
    ``updates`` apply SGD to shared variables (the default backend)."""
    import pytensor
    import pytensor.tensor as pt

    shared = {k: pytensor.shared(np.array(v, dtype=dtype), name=k) for k, v in params.items()}
    if model == TOY:
        x, t = pt.scalar("x", dtype=dtype), pt.scalar("y", dtype=dtype)
        loss = (_toy_forward(shared, x, pt) - t) ** 2
    else:
        x, t = pt.matrix("x", dtype=dtype), pt.matrix("t", dtype=dtype)
        loss = _mlp_loss(shared, x, t, model, pt, lambda h: pt.maximum(h, 0),
                         lambda h: pt.special.log_softmax(h, axis=1))
    grads = pytensor.grad(loss, list(shared.values()))
    lr = np.asarray(LR, dtype=dtype)
    fn = pytensor.function([x, t], loss, updates=[(p, p - lr * g)
                                                  for p, g in zip(shared.values(), grads)])

    def step(x, t):
        return float(fn(x, t))

    return step, (lambda a: np.asarray(a, dtype=dtype))


PEER_MAKERS = {"torch eager": (_torch_step, "torch"), "jax jit": (_jax_step, "jax"),
               "tangent": (_tangent_step, "tangent"), "pytensor": (_pytensor_step, "pytensor"),
               "autograd": (_autograd_step, "autograd")}


def matmul_rate(dtype: str, size: int = 2048, runs: int = 5) -> float:
    """Best single-core FLOP/s of one large matmul, measured before any framework loads."""
    import numpy as np

    rng = np.random.default_rng(2)
    a = rng.normal(size=(size, size)).astype(dtype)
    b = rng.normal(size=(size, size)).astype(dtype)
    return _best_rate(lambda: a @ b, size, runs)


def _best_rate(run, size: int, runs: int) -> float:
    """Best FLOP/s of ``run`` (one size³ matmul) over ``runs`` timed calls after a warm-up."""
    run()
    best = 0.0
    for _ in range(runs):
        start = time.process_time()
        run()
        best = max(best, 2 * size ** 3 / (time.process_time() - start))
    return best


def _setup(model: str, dtype: str):
    """The model's sizes, batch, data (x, one-hot t; the toy's one example), generated
    module and initial params."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    rng = np.random.default_rng(0)
    if model == TOY:
        sizes, n = None, 1
        x, t = np.dtype(dtype).type(0.5), np.dtype(dtype).type(1.0)  # NumPy scalars
        text = toy_spec_text(dtype)
    else:
        sizes, n = NETS[model]
        x = rng.normal(size=(n, sizes[0])).astype(dtype)
        t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
        text = spec_text(sizes, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        module = _generated(text, tmp)
    params = {k: np.array(v, dtype) for k, v in module.init_params(np.random.default_rng(1)).items()}
    return sizes, n, x, t, module, params


def worker(model: str, dtype: str, seconds: float) -> dict:
    rate = matmul_rate(dtype)
    sizes, n, x, t, module, base = _setup(model, dtype)
    from references import FusedNet, LayerNet, ToyNet
    from bpc.runtime.optimizers import make_optimizer, pack

    copy = lambda: {k: v.copy() for k, v in base.items()}  # noqa: E731

    # As runtime/train.py steps it: parameters packed into one buffer, gradients computed
    # into the optimizer's flat gradient buffer, the runtime's SGD.
    gen_params = pack(copy())
    sgd = make_optimizer("sgd", gen_params, lr=LR)
    buffers = {"grads": sgd.grad_buffers} if model != TOY else {}

    def gen_step(x, t):
        loss, grads = module.loss_and_grad(gen_params, x, t, **buffers)
        sgd.step(gen_params, grads)
        return loss

    depth = TOY if model == TOY else len(sizes) - 1
    if model == TOY:
        fused = ToyNet(copy(), dtype)
        refs = {"hand-fused": (fused, module.loss(base, x, t))}
    else:
        fused = FusedNet(copy(), depth, n, dtype)
        layer = LayerNet(copy(), depth)
        refs = {"hand-fused": (FusedNet(copy(), depth, n, dtype), module.loss(base, x, t)),
                "layer objects": (LayerNet(copy(), depth), module.loss(base, x, t))}
    impls = {"generated": (gen_step, x, t),
             "hand-fused": (lambda x, t: fused.step(x, t, LR), x, t)}
    if model != TOY:
        impls["layer objects"] = (lambda x, t: layer.step(x, t, LR), x, t)
    notes = []
    # Everyone computes the same first loss (a sanity check, not a timing).
    want = float(module.loss(base, x, t))
    for name, (ref, _) in refs.items():
        got = ref.loss_and_grad(x, t)[0]
        assert abs(got - want) <= 1e-3 * abs(want), (name, got, want)
    framework_rates, setup_seconds = {}, {}
    peers = PEERS
    if os.environ.get("BPC_BENCH_FRAMEWORKS") == "0":
        peers = ()
        notes.append("peers not run (BPC_BENCH_FRAMEWORKS=0)")
    for name in peers:
        maker, package = PEER_MAKERS[name]
        try:
            __import__(package)
        except ImportError:
            notes.append(f"{name} skipped: {package} is not installed")
            continue
        xs_t = None
        start = time.perf_counter()
        step, convert = maker(copy(), dtype, depth)
        xs_t = (convert(x), convert(t))
        first = step(*xs_t)  # the first call: JIT compilation for jax
        setup_seconds[name] = time.perf_counter() - start
        assert abs(first - want) <= 1e-3 * abs(want), (name, first, want)
        impls[name] = (step, *xs_t)
        if model != TOY and name in ("torch eager", "jax jit"):
            framework_rates[name] = _framework_matmul_rate(name, dtype)

    for step, xs, ts in impls.values():  # warm up (JIT compilation, allocator)
        for _ in range(3):
            step(xs, ts)
    # Rounds of ~20 ms per implementation, alternating, until each has had ``seconds``.
    # CPU time of this process is the measure: the worker is pinned to one core, so it
    # counts every thread's work (JAX's too) but not time the hypervisor or another
    # process took from that core. Wall time is reported beside it.
    # Each implementation's round is as many steps as take ~20 ms of its own (the toy's
    # steps range from ~10 us to ~1 ms).
    cpu = {name: [] for name in impls}
    wall = {name: [] for name in impls}
    reps = {name: max(1, int(0.02 / _one(impl))) for name, impl in impls.items()}
    rounds = max(15, int(seconds / max(0.02, _one(impls["hand-fused"]))))
    for _ in range(rounds):
        for name, (step, xs, ts) in impls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(reps[name]):
                step(xs, ts)
            cpu[name].append((time.process_time() - start_cpu) / reps[name])
            wall[name].append((time.perf_counter() - start) / reps[name])
    medians = {name: statistics.median(v) for name, v in cpu.items()}
    flops = matmul_flops(sizes, n) if sizes else 0
    return {"net": model, "dtype": dtype, "batch": n,
            "us": {k: v * 1e6 for k, v in medians.items()},
            "wall_us": {k: statistics.median(v) * 1e6 for k, v in wall.items()},
            "roofline": {k: flops / rate / v for k, v in medians.items()},
            "gflops": rate / 1e9, "flops": flops, "notes": notes, "reps": reps, "rounds": rounds,
            "setup_s": setup_seconds,
            "framework_gflops": {k: v / 1e9 for k, v in framework_rates.items()}}


def _framework_matmul_rate(name: str, dtype: str, size: int = 2048, runs: int = 5) -> float:
    """The same large matmul through the framework's own kernels (its BLAS or XLA's)."""
    import numpy as np

    a = np.random.default_rng(2).normal(size=(size, size)).astype(dtype)
    if name.startswith("torch"):
        import torch

        ta = torch.from_numpy(a)
        run = lambda: ta @ ta  # noqa: E731
    else:
        import jax
        import jax.numpy as jnp

        ja = jnp.asarray(a)
        f = jax.jit(lambda m: m @ m)
        run = lambda: f(ja).block_until_ready()  # noqa: E731
    return _best_rate(run, size, runs)


def _one(impl) -> float:
    step, xs, ts = impl
    start = time.perf_counter()
    step(xs, ts)
    return max(time.perf_counter() - start, 1e-6)


def peak_bytes(runs: dict) -> dict:
    """Peak memory each call allocates beyond what was live before it (tracemalloc),
    after one call to warm up; the result is dropped before the next one runs."""
    import tracemalloc

    out = {}
    for name, fn in runs.items():
        fn()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del result
        out[name] = peak - base
    return out

def memory_worker(net: str, dtype: str) -> dict:
    import numpy as np

    sizes, n, x, t, module, params = _setup(net, dtype)
    from references import FusedNet

    itemsize = np.dtype(dtype).itemsize
    # What the backward must keep: each hidden layer's output (it also gives the ReLU
    # mask) and the softmax's probabilities.
    kept = n * sum(sizes[1:]) * itemsize
    grad_bytes = sum(v.nbytes for v in params.values())
    out = {"net": net, "dtype": dtype, "activations_kept": kept, "gradient_bytes": grad_bytes}
    fused = FusedNet({k: v.copy() for k, v in params.items()}, len(sizes) - 1, n, dtype)
    buffers = {k: np.empty_like(v) for k, v in params.items()}
    runs = {
        # what bpc train runs: gradients computed into buffers kept across steps
        "generated, grads= buffers": lambda: module.loss_and_grad(params, x, t, grads=buffers),
        # a plain call: the returned gradients are new arrays
        "generated, plain call": lambda: module.loss_and_grad(params, x, t),
        "hand-fused": lambda: fused.loss_and_grad(x, t),
    }
    out.update(peak_bytes(runs))
    # The hand-fused net allocated its working buffers (not its gradients) up front.
    out["hand-fused"] += sum(a.nbytes for a in fused.z + fused.g + fused.mask) + fused.m.nbytes
    return out


# ----------------------------------------------------------------------------- whole runs
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
plain_loop(m, data.conform(ds.train, m, "training data"), settings, data.batch_axes(m))
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
    module = _generated((ROOT / "specs" / f"{spec}.bp").read_text(), tmp)
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


# ----------------------------------------------------------------------------- one-off costs
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


# ----------------------------------------------------------------------------- driver
def run_worker(mode: str, *args: str) -> dict:
    with tempfile.TemporaryDirectory() as compiledir:  # PyTensor compiles from scratch
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT),
               "PYTENSOR_FLAGS": f"compiledir={compiledir}"}
        r = subprocess.run([sys.executable, __file__, f"--{mode}", *args], env=env,
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_steps(seconds: float, models=None) -> list[dict]:
    results = []
    for net in models or MODELS:
        for dtype in ("float64", "float32"):
            res = run_worker("worker", net, dtype, str(seconds))
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
    parser.add_argument("--only", choices=["step", "train", "memory", "compile", "one-off"])
    parser.add_argument("--models", nargs="+", choices=MODELS, help="step: only these")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--train", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        pinned = pin_to_one_core()
        result = worker(args.worker[0], args.worker[1], float(args.worker[2]))
        result["pinned"] = pinned
        print(json.dumps(result))
        return
    if args.memory:
        print(json.dumps(memory_worker(*args.memory)))
        return
    if args.train:
        pinned = pin_to_one_core()
        result = train_worker(args.train[0], int(args.train[1]))
        result["pinned"] = pinned
        print(json.dumps(result))
        return
    results = {}
    if args.only in (None, "step"):
        results["step"] = bench_steps(1.0 if args.quick else 4.0, args.models)
    if args.only in (None, "train"):
        results["train"] = bench_train(3 if args.quick else 7)
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
