"""Data parallel training on PyTorch's engine: K worker processes joined by
``torch.distributed`` (gloo on CPUs, NCCL on GPUs), each running the one training loop.

Every worker loads the same data and draws the same shuffles (the run's NumPy generator,
seeded alike), so each sees every global batch; ``Sharded`` hands the model's
``loss_and_grad`` only this worker's part of it (a contiguous shard, sizes differing by
one at most), and one all-reduce per step sums, weighted so that the sum is the global
batch's: the gradients and the loss (weight m_r/m for a loss that is a mean over the
batch's m examples, 1 for a sum) and the model's state (batch norm's running statistics,
weight m_r/m). The parameters and the optimizer's state therefore stay equal on every
worker without being sent. Batch norm normalizes each shard by its own statistics, as
DDP without SyncBatchNorm does; the running mean so averaged is the global batch's, the
running variance the mean of the shards' variances. Dropout's masks come from a generator
per worker, seeded each step from the run's mask generator (the same on every worker,
and in the checkpoint), so a resume is exact.

Worker 0 writes the checkpoint and history into the run folder; the others write theirs
into a temporary folder that is discarded (on a resume, a copy of the run's checkpoint is
what they start from). ``spawn`` starts K workers and ends the whole run when one ends
early; ``torchrun`` starts them itself (its environment: RANK, WORLD_SIZE, ...).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
from pathlib import Path

from . import batching
from .arrays import import_torch, namespace
from .errors import UserError
from .modes import inference_kwargs, initial_state

ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def world() -> tuple[int, int] | None:
    """(rank, workers) when this process is a worker of a distributed run, else None."""
    if not all(k in os.environ for k in ENV):
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def start(device: str | None) -> str:
    """Joins this worker to the run (gloo, or NCCL on CUDA); the device it computes on
    (a GPU of its own: LOCAL_RANK's)."""
    torch = import_torch("--workers")
    import torch.distributed as dist

    device = device or "cpu"
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    else:  # the machine's cores shared out: workers that each take all of them crowd
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def worker_folder(out: Path | None, resume: bool, rank: int):
    """(the folder this worker trains into, a temporary folder to remove or None): the
    run's for worker 0; a copy of its checkpoint for another worker that resumes."""
    import torch.distributed as dist

    if rank == 0 or out is None:
        dist.barrier()
        return out, None
    scratch = Path(tempfile.mkdtemp(prefix=f"bpc-worker{rank}-"))
    if resume and (Path(out) / "checkpoint.npz").is_file():
        shutil.copyfile(Path(out) / "checkpoint.npz", scratch / "checkpoint.npz")
    dist.barrier()  # every copy taken before worker 0 can write a new checkpoint
    return scratch, scratch


class Sharded:
    """``module`` as one worker of ``workers`` sees it: ``loss_and_grad`` computes on
    this worker's shard of the batch it is given and returns the global batch's loss
    and gradient (one all-reduce); everything else is the module's own."""

    def __init__(self, module, rank: int, workers: int, device: str):
        self._module, self._rank, self._workers = module, rank, workers
        self._xp = namespace(module, device)
        self._axes = batching.batch_axes(module)
        self._reduction = None  # "mean" or "sum", found on the first batch
        self._masks = None  # this worker's generator of dropout masks
        self.__doc__ = module.__doc__

        def loss_and_grad(params, **kwargs):
            return self._loss_and_grad(params, **kwargs)
        self.loss_and_grad = functools.wraps(module.loss_and_grad)(loss_and_grad)

    def __getattr__(self, name):
        return getattr(self._module, name)

    def _loss_and_grad(self, params, **kwargs):
        import torch.distributed as dist

        torch = self._xp.torch
        data = {k: v for k, v in kwargs.items() if k in self._module.INPUTS
                or k in self._module.TARGETS}
        options = {k: v for k, v in kwargs.items() if k not in data}
        m = batching.example_count(data, self._axes)
        if self._reduction is None:
            self._reduction = self._find_reduction(params, data, m)
        lo, hi = m * self._rank // self._workers, m * (self._rank + 1) // self._workers
        if "rng" in options:
            options["rng"] = self._worker_masks(options["rng"])
        state = options.get("state")
        grads_into = options.get("grads", {})
        if hi > lo:
            shard = batching.examples(data, self._axes, slice(lo, hi))
            value, grads = self._module.loss_and_grad(params, **shard, **options)
            grads = [grads[k] for k in grads_into or grads]
        else:  # more workers than examples: this one adds nothing
            value = torch.zeros((), dtype=self._xp.dtype(self._module.DTYPE))
            grads = [torch.zeros_like(g) for g in grads_into.values()]
        weight = (hi - lo) / m if self._reduction == "mean" else 1.0
        share = (hi - lo) / m
        parts = [g.reshape(-1) * weight for g in grads]
        parts.append(torch.as_tensor(value, dtype=parts[0].dtype,
                                     device=parts[0].device).reshape(1) * weight)
        parts += [v.reshape(-1) * share for v in (state or {}).values()]
        flat = torch.cat(parts)
        try:
            dist.all_reduce(flat)
        except RuntimeError as e:  # a worker ended: the run cannot go on
            raise UserError(f"worker {self._rank}: the other workers stopped answering "
                            f"({str(e).splitlines()[0][:200]})") from None
        out, start = {}, 0
        names = list(grads_into) if grads_into else list(self._module.PARAMS)
        for k, g in zip(names, grads):
            out[k] = flat[start:start + g.numel()].reshape(g.shape)
            start += g.numel()
        total = flat[start]
        start += 1
        for v in (state or {}).values():
            v.copy_(flat[start:start + v.numel()].reshape(v.shape))
            start += v.numel()
        return total, out

    def _worker_masks(self, run_masks):
        """This worker's mask generator, reseeded from the run's (which advances alike on
        every worker, and which the checkpoint records)."""
        torch = self._xp.torch
        if self._masks is None:
            self._masks = torch.Generator(device=run_masks.device)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=run_masks,
                                 device=run_masks.device))
        return self._masks.manual_seed(seed + self._rank)

    def _find_reduction(self, params, data: dict, m: int) -> str:
        """Whether the loss is a mean over the batch's examples or their sum: the loss of
        two examples together against each one's (inference mode)."""
        kw = inference_kwargs(self._module, self._xp.to_device(initial_state(self._module)),
                              "loss")

        def at(lo, hi):
            return float(self._module.loss(params, **batching.examples(
                data, self._axes, slice(lo, hi)), **kw))

        for i in range(m - 1):
            one, two, both = at(i, i + 1), at(i + 1, i + 2), at(i, i + 2)
            if math.isclose(one + two, (one + two) / 2, abs_tol=1e-12):
                continue  # both zero: this pair cannot tell
            if math.isclose(both, (one + two) / 2, rel_tol=1e-6, abs_tol=1e-12):
                return "mean"
            if math.isclose(both, one + two, rel_tol=1e-6, abs_tol=1e-12):
                return "sum"
            break
        if m < 2:
            return "mean"  # one example: one worker computes it all, weight 1 either way
        raise UserError("--workers needs a loss that is the mean or the sum of the batch's "
                        "examples' losses; this model's loss couples the examples",
                        "train it without --workers")


def spawn(workers: int, fn, args: tuple, out: Path | None, device: str | None) -> None:
    """``fn(*args)`` in ``workers`` new processes, as workers 0..K-1 of one run (the
    environment torchrun would give them), waiting for all; one that ends early ends
    them all, with a UserError saying which and where the run can continue from.
    Forked where the system can and the workers compute on the CPU (they start without
    importing torch again); spawned for GPUs, which a forked CUDA runtime cannot use."""
    import logging  # here, with socket: every bpc train imports this module

    import_torch("--workers")
    import torch.multiprocessing as mp

    # torch's own note that it ends the other workers: the UserError below says more.
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    port = _free_port()
    fork = "fork" in mp.get_all_start_methods() and not (device or "").startswith("cuda")
    ctx = mp.start_processes(_worker, (workers, port, fn, args), nprocs=workers,
                             join=False, start_method="fork" if fork else "spawn")
    try:
        try:
            while not ctx.join():
                pass
        except KeyboardInterrupt:  # Ctrl-C reached the workers too: each saves and stops
            for process in ctx.processes:
                process.join()
            raise
    except (mp.ProcessExitedException, mp.ProcessRaisedException) as e:
        how = f"was killed ({e.signal_name})" if getattr(e, "signal_name", None) else \
            f"failed (exit status {e.exit_code})" if hasattr(e, "exit_code") else \
            "raised an error:\n" + str(e)
        where = (f"; the last checkpoint in {out} is kept: continue with --resume --out "
                 f"{out}") if out is not None else ""
        raise UserError(f"worker {e.error_index} of {workers} {how}, so the run stopped"
                        + where) from None


def _worker(rank: int, workers: int, port: int, fn, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(workers),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = fn(*args)
    if code:
        raise SystemExit(code)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
