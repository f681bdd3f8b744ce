"""One training step, timed: the generated module against the hand-written references and
the peers (PyTorch, JAX, tangent, PyTensor, autograd), each peer in its own idiom, in a
worker process pinned to one core; and the peak memory of one ``loss_and_grad``. Also the
benchmark's shared constants and the spec texts it compiles."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pinned import ONE_THREAD, ROOT  # noqa: F401 - the drivers take them from here
NETS = {"784-50-10": ([784, 50, 10], 100), "784-1024-1024-10": ([784, 1024, 1024, 10], 256)}
TOY = "UDL toy"  # specs/toy.bp: eight scalar parameters, one example per step
MODELS = [TOY, *NETS]
LR = 0.01
PEERS = ("torch eager", "jax jit", "tangent", "pytensor", "autograd")


def toy_spec_text(dtype: str) -> str:
    """specs/toy.bp in the given dtype."""
    text = (ROOT / "specs" / "toy.bp").read_text()
    return text.replace("model toy\n", f"model toy\ndtype {dtype}\n", 1)


def spec_text(sizes: list[int], dtype: str, hidden: tuple[str, ...] = ("relu",),
              name: str = "bench_mlp") -> str:
    """An MLP of ``sizes`` with softmax cross-entropy on one-hot targets: every hidden
    ``dense`` layer followed by the layer words ``hidden`` (ReLU; batch norm then ReLU, …)."""
    layers = []
    for units in sizes[1:-1]:
        layers += [f"  dense {units}", *(f"  {word}" for word in hidden)]
    layers.append(f"  dense {sizes[-1]}")
    return (f"model {name}\ndtype {dtype}\ninput x : [N, {sizes[0]}]\n"
            f"target t : [N, {sizes[-1]}]\nlayers x -> y {{\n" + "\n".join(layers)
            + "\n}\nloss L = softmax_cross_entropy(y, t)\n")


def matmul_flops(sizes: list[int], n: int) -> int:
    """Forward, weight gradients, and input gradients of every layer but the first."""
    pairs = list(zip(sizes, sizes[1:]))
    return sum(2 * n * a * b for a, b in pairs) * 3 - 2 * n * sizes[0] * sizes[1]


# ----------------------------------------------------------------------------- in one process
def generated_module(text: str, tmp):
    """The module bpc compiles from ``text``, written into ``tmp`` and loaded."""
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
        module = generated_module(text, tmp)
    init = module.init_params(np.random.default_rng(1))
    params = {k: np.array(v, dtype) for k, v in init.items()}
    return sizes, n, x, t, module, params


def worker(model: str, dtype: str, seconds: float) -> dict:
    rate = matmul_rate(dtype)
    sizes, n, x, t, module, base = _setup(model, dtype)
    from references import FusedNet, LayerNet, ToyNet
    from bpc.runtime.optimizers import make_optimizer, pack

    copy = lambda: {k: v.copy() for k, v in base.items()}  # noqa: E731

    # As runtime/train.py steps it: parameters packed into one buffer, gradients computed
    # into the optimizer's flat gradient buffer, the learning rate folded into the
    # backward pass's seed (scale=-lr, the update adds), the runtime's SGD.
    gen_params = pack(copy())
    sgd = make_optimizer("sgd", gen_params, lr=LR)
    buffers = {"grads": sgd.grad_buffers} if model != TOY else {}
    if sgd.fold_lr():
        buffers["scale"] = -LR

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

    medians, wall, reps, rounds = alternate(impls, seconds)
    flops = matmul_flops(sizes, n) if sizes else 0
    return {"net": model, "dtype": dtype, "batch": n,
            "us": {k: v * 1e6 for k, v in medians.items()},
            "wall_us": {k: v * 1e6 for k, v in wall.items()},
            "roofline": {k: flops / rate / v for k, v in medians.items()},
            "gflops": rate / 1e9, "flops": flops, "notes": notes, "reps": reps, "rounds": rounds,
            "setup_s": setup_seconds,
            "framework_gflops": {k: v / 1e9 for k, v in framework_rates.items()}}


def alternate(impls: dict, seconds: float) -> tuple[dict, dict, dict, int]:
    """Median CPU and wall seconds of one step of each of ``impls`` (name -> (step, x,
    t)), the steps a round and the rounds. After three warm-up steps each (JIT
    compilation, the allocator), rounds of ~20 ms per implementation alternate until each
    has had ``seconds``. CPU time of this process is the measure: the worker is pinned to
    one core, so it counts every thread's work (JAX's too) but not time the hypervisor or
    another process took from that core. Each implementation's round is as many steps as
    take ~20 ms of its own (the toy's steps range from ~10 us to ~1 ms)."""
    for step, xs, ts in impls.values():
        for _ in range(3):
            step(xs, ts)
    cpu = {name: [] for name in impls}
    wall = {name: [] for name in impls}
    reps = {name: max(1, int(0.02 / _one(impl))) for name, impl in impls.items()}
    rounds = max(15, int(seconds / max(0.02, _one(impls["generated"]))))
    for _ in range(rounds):
        for name, (step, xs, ts) in impls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(reps[name]):
                step(xs, ts)
            cpu[name].append((time.process_time() - start_cpu) / reps[name])
            wall[name].append((time.perf_counter() - start) / reps[name])
    return ({name: statistics.median(v) for name, v in cpu.items()},
            {name: statistics.median(v) for name, v in wall.items()}, reps, rounds)


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
