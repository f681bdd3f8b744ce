"""The step rows of issue 27: the batch-norm MLP 64-(100, BN, ReLU)x5-10, the 784-50-10
sigmoid MLP and SimpleConvNet, batch 100, float64 and float32. Each row is measured in two
worker processes: one that imports NumPy only (the generated step as ``bpc train`` takes
it, against the hand-fused NumPy reference, and their peak memory), and one that also
runs PyTorch, eager and ``torch.compile`` (with the generated step again, so every ratio
is taken within one process)."""

from __future__ import annotations

import numpy as np

from step_peers import ROOT, alternate, generated_module, peak_bytes, spec_text

ROWS = ("BN MLP", "784-50-10 sigmoid", "SimpleConvNet")
BATCH, LR = 100, 0.01
BN_DEPTH = 5


def row_spec(row: str, dtype: str) -> str:
    if row == "SimpleConvNet":
        text = (ROOT / "specs" / "simple_convnet.bp").read_text()
        body = text[text.index("input"):text.index("optimizer")]
        return f"model bench_row\ndtype {dtype}\n" + body
    if row == "BN MLP":
        return spec_text([64] + [100] * BN_DEPTH + [10], dtype, ("batchnorm", "relu"),
                         "bench_row")
    return spec_text([784, 50, 10], dtype, ("sigmoid",), "bench_row")


def row_setup(row: str, dtype: str, tmp: str):
    """The generated module, its initial parameters and state, and one batch (x, t):
    one-hot targets for the MLPs, labels for the convolutional net (its spec's)."""
    module = generated_module(row_spec(row, dtype), tmp)
    rng = np.random.default_rng(0)
    params = {k: np.array(v, dtype) for k, v in module.init_params(rng).items()}
    state = module.init_state() if hasattr(module, "init_state") else None
    if row == "SimpleConvNet":  # MNIST-like: values in [0, 1), most of them 0
        x = rng.random((BATCH, 1, 28, 28)) * (rng.random((BATCH, 1, 28, 28)) < 0.2)
        t = rng.integers(0, 10, BATCH)
    else:
        x = rng.normal(size=(BATCH, 64 if row == "BN MLP" else 784))
        t = np.eye(10)[rng.integers(0, 10, BATCH)].astype(dtype)
    return module, params, state, x.astype(dtype), t


def generated_step(module, params, state):
    """One step as bpc train takes it: packed parameters, gradients into the optimizer's
    flat buffer, the learning rate folded into the seed (``scale=-lr``), the runtime's
    SGD. Returns (step, the packed parameters)."""
    from bpc.runtime.optimizers import make_optimizer, pack

    packed = pack({k: v.copy() for k, v in params.items()})
    sgd = make_optimizer("sgd", packed, lr=LR)
    kw = {"grads": sgd.grad_buffers, **({"scale": -LR} if sgd.fold_lr() else {})}
    if state is not None:
        kw["state"] = {k: v.copy() for k, v in state.items()}

    def step(x, t):
        loss, grads = module.loss_and_grad(packed, x, t, **kw)
        sgd.step(packed, grads)
        return loss
    return step, packed


def hand_fused(row: str, params, state, dtype: str):
    """The hand-fused NumPy reference of ``row`` on copies of ``params`` and ``state``."""
    copy = {k: v.copy() for k, v in params.items()}
    if row == "SimpleConvNet":
        from conv_references import HandConvNet

        net = HandConvNet(copy, BATCH, dtype)

        def conv_step(x, t):
            loss, grads = net.loss_and_grad(x, t)
            for k, g in grads.items():
                g *= LR
                net.params[k] -= g
            return loss
        conv_step.net = net
        return conv_step
    from fused_references import FusedBNNet, FusedSigmoidNet

    if row == "BN MLP":
        net = FusedBNNet(copy, {k: v.copy() for k, v in state.items()}, BN_DEPTH, BATCH,
                         dtype)
    else:
        net = FusedSigmoidNet(copy, BATCH, dtype)

    def step(x, t):
        return net.step(x, t, LR)
    step.net = net
    return step


def torch_steps(row: str, params, dtype: str, compiled: bool) -> dict:
    """PyTorch eager, and ``torch.compile`` of the same step when ``compiled``: the
    model in torch's own layers' maths, ``loss.backward()``, in-place SGD."""
    import torch

    torch.set_num_threads(1)
    F = torch.nn.functional
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]

    def make():
        p = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
        running = {k: torch.zeros(100, dtype=tdtype) for k in range(1, BN_DEPTH + 1)}
        ones = {k: torch.ones(100, dtype=tdtype) for k in range(1, BN_DEPTH + 1)}

        def forward(x):
            if row == "SimpleConvNet":
                z = F.relu(F.conv2d(x, p["W1"]) + p["b1"])
                z = F.max_pool2d(z, 2).flatten(1)
                z = F.relu(z @ p["W2"] + p["b2"])
                return z @ p["W3"] + p["b3"]
            if row == "784-50-10 sigmoid":
                return torch.sigmoid(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            h = x
            for k in range(1, BN_DEPTH + 1):
                h = F.batch_norm(h @ p[f"W{k}"] + p[f"b{k}"], running[k], ones[k],
                                 p[f"bn{k}_gamma"], p[f"bn{k}_beta"], training=True,
                                 momentum=0.1, eps=1e-6)
                h = F.relu(h)
            return h @ p[f"W{BN_DEPTH + 1}"] + p[f"b{BN_DEPTH + 1}"]

        def step(x, t):
            logits = forward(x)
            loss = F.cross_entropy(logits, t) if row == "SimpleConvNet" else \
                -(t * F.log_softmax(logits, dim=1)).sum() / x.shape[0]
            loss.backward()
            with torch.no_grad():
                for v in p.values():
                    v -= LR * v.grad
                    v.grad = None
            return loss.detach()
        return step

    eager = make()
    out = {"torch eager": lambda x, t: float(eager(x, t))}
    if compiled:
        fn = torch.compile(make())
        out["torch.compile"] = lambda x, t: float(fn(x, t))
    return out


def row_worker(row: str, dtype: str, seconds: float, peers: str) -> dict:
    """One row's timings in this process: ``peers`` "none" (NumPy only: generated and
    hand-fused, and peak memory), "torch" (eager) or "torch+compile"."""
    import os
    import tempfile
    import time

    from bpc.runtime.allocator import keep_freed_memory

    # As bpc train sets it (process-wide: the references' steps too), unless
    # BPC_BENCH_ALLOCATOR=0 asks for glibc's defaults, the "before" of bench/README.md.
    kept = os.environ.get("BPC_BENCH_ALLOCATOR") != "0" and keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        module, params, state, x, t = row_setup(row, dtype, tmp)
    gen, _ = generated_step(module, params, state)
    want = float(module.loss_and_grad(params, x, t, **({"state": {
        k: v.copy() for k, v in state.items()}} if state is not None else {}))[0])
    impls = {"generated": (gen, x, t)}
    notes, setup = [], {}
    if peers == "none":
        impls["hand-fused"] = (hand_fused(row, params, state, dtype), x, t)
    else:
        import torch

        tx, tt = torch.as_tensor(x), torch.as_tensor(t)
        start = time.perf_counter()
        for name, step in torch_steps(row, params, dtype, "compile" in peers).items():
            first = step(tx, tt)
            setup[name] = time.perf_counter() - start
            start = time.perf_counter()
            assert abs(first - want) <= 1e-3 * abs(want), (name, first, want)
            impls[name] = (step, tx, tt)
    for name, (step, xs, ts) in impls.items():
        if name != "generated" and not name.startswith("torch"):
            first = step(xs, ts)
            assert abs(first - want) <= 1e-3 * abs(want), (name, first, want)
    cpu, wall, reps, rounds = alternate(impls, seconds)
    out = {"row": row, "dtype": dtype, "peers": peers, "batch": BATCH,
           "us": {k: v * 1e6 for k, v in cpu.items()},
           "wall_us": {k: v * 1e6 for k, v in wall.items()}, "reps": reps, "rounds": rounds,
           "setup_s": setup, "allocator_kept": kept, "notes": notes}
    if peers == "none":
        out["faults_per_step"] = faults_per_step(gen, x, t)
        out["peak_bytes"] = row_memory(row, module, params, state, x, t, dtype)
    return out


def faults_per_step(step, x, t, steps: int = 20) -> float:
    """Minor page faults of this process per call of ``step`` (the kernel's count)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step(x, t)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def row_memory(row, module, params, state, x, t, dtype) -> dict:
    """Peak bytes of one generated ``loss_and_grad`` with ``grads=`` buffers (as bpc
    train calls it) and of the hand-fused step's call, its kept buffers counted."""
    buffers = {k: np.empty_like(v) for k, v in params.items()}
    kw = {"grads": buffers}
    if state is not None:
        kw["state"] = {k: v.copy() for k, v in state.items()}
    ref = hand_fused(row, params, state, dtype)
    net = ref.net
    out = peak_bytes({"generated": lambda: module.loss_and_grad(params, x, t, **kw),
                      "hand-fused": lambda: net.loss_and_grad(x, t)})
    out["hand-fused"] += sum(a.nbytes for a in vars(net).values()
                             if isinstance(a, np.ndarray)) + sum(
        a.nbytes for v in vars(net).values() if isinstance(v, list)
        for a in v if isinstance(a, np.ndarray))
    return out
