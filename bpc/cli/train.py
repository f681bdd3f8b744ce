"""``bpc train``: train a spec, or a generated module, on its data; print the summary."""

from __future__ import annotations

from pathlib import Path

from bpc.compiler.vocab import COUNT, OPTIMIZER_RANGES, OPTIMIZERS, RUNTIME_RANGES
from bpc.runtime import distributed
from bpc.runtime.errors import UserError

from .options import add_target_arguments, data_flag, number, target_of, train_flag

HELP = "train a spec (or a generated module) on its data"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC", help="a .bp spec, or a module written by bpc compile")
    p.add_argument("--data", type=data_flag,
                   help="a .npz or .csv file, or a built-in data set: xor, "
                        "spiral[:n=100,classes=3], sine[:n=200], digits, mnist")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=train_flag("epochs"),
                        help="passes over the training data")
    length.add_argument("--iters", type=train_flag("iters"),
                        help="minibatch steps (instead of --epochs)")
    p.add_argument("--batch", type=train_flag("batch"), help="minibatch size")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="the update rule")
    p.add_argument("--lr", type=number(OPTIMIZER_RANGES["lr"]), help="learning rate")
    p.add_argument("--seed", type=train_flag("seed"),
                   help="seed for initialization, shuffling and data")
    p.add_argument("--out", metavar="DIR",
                   help="where checkpoint.npz, history.csv (and curves.png) go "
                        "(default: runs/<spec name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint")
    p.add_argument("--eval-every", type=train_flag("eval_every"), metavar="K",
                   help="evaluate, record a history row and print a line every K epochs "
                        "(and at the end; default: the spec's eval_every, else as often "
                        "as costs about 5%% of the run)")
    p.add_argument("--checkpoint-every", type=number(RUNTIME_RANGES["checkpoint_every"]),
                   metavar="SECONDS",
                   help="write checkpoint.npz at most this often while training (default: "
                        "60); always at the end and on Ctrl-C")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="evaluate and print a line every epoch (unless --eval-every)")
    p.add_argument("--plot", action="store_true",
                   help="write loss/accuracy curves to DIR/curves.png (needs matplotlib)")
    add_target_arguments(p)
    p.add_argument("--workers", type=number(COUNT), default=1,
                   metavar="K", help="train in K processes, each on its share of every "
                   "batch (torch target; gloo on CPUs, NCCL on GPUs)")


def run(args) -> int:
    from bpc.runtime.arrays import target_of as module_target
    from bpc.runtime.loader import load_model
    from bpc.runtime.train import STUCK_HINT, run as train_run

    if args.plot:  # fail before training, not after
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UserError("--plot needs matplotlib, which is not installed",
                            "install it with: python3 -m pip install 'backprop-compiler[plot]'")
    module = load_model(args.spec, target=target_of(args))  # errors once, before workers
    if args.workers > 1 and module_target(module) != "torch":
        raise UserError("--workers needs the torch target", "add --target torch")
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    if args.workers > 1 and distributed.world() is None:
        from bpc.cli import run_parsed

        distributed.spawn(args.workers, run_parsed, (args,), out, args.device)
        return 0
    overrides = {"epochs": args.epochs, "iters": args.iters, "batch": args.batch,
                 "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed,
                 "eval_every": args.eval_every}
    if args.verbose and args.eval_every is None:
        overrides["eval_every"] = 1  # -v: a line for every epoch
    # Under torchrun (or spawned by --workers): a worker of a data parallel run.
    worker = distributed.world() if module_target(module) == "torch" else None
    if worker is None:
        result, settings, dataset = train_run(module, args.data, overrides, out,
                                              resume=args.resume, quiet=args.quiet,
                                              checkpoint_every=args.checkpoint_every,
                                              device=args.device)
    else:
        result, settings, dataset = _train_worker(module, args, overrides, out, *worker)
        if worker[0] > 0:
            return 130 if result.interrupted else 0
    if result.history:
        _print_summary(args.spec, result, out)
    for note in result.notes:
        print(f"note: {note}")
    if result.notes:
        print(f"hint: {STUCK_HINT}")
    if args.plot and result.history:
        _plot(module, settings, dataset, result, out)
    return 130 if result.interrupted else 0


def _train_worker(module, args, overrides, out: Path, rank: int, workers: int):
    """One worker's share of a data parallel run (``bpc train --workers``, or under
    ``torchrun``): worker 0 reports and writes the run folder."""
    import shutil

    from bpc.runtime.train import run as train_run

    device = distributed.start(args.device)
    folder, scratch = distributed.worker_folder(out, args.resume, rank)
    try:
        return train_run(distributed.Sharded(module, rank, workers, device), args.data,
                         overrides, folder, resume=args.resume,
                         quiet=args.quiet or rank > 0, log=print if rank == 0 else _silent,
                         checkpoint_every=args.checkpoint_every, device=device)
    finally:
        distributed.finish()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _silent(*_) -> None:
    """The log of a worker but the first: worker 0 says what the run does."""


def _print_summary(spec: str, result, out: Path) -> None:
    """The last row's measures with the run's steps and time, then the best row's."""
    from bpc.runtime.history import best_row, summary

    total = int(result.history[-1]["epoch"])
    last = summary(result.history[-1], total).text(position=False)
    print(f"{Path(spec).stem}: {last}  ({result.steps} steps, {result.seconds:.1f}s; "
          f"checkpoint and history in {out}/)")
    best = best_row(result.history)
    if best is not None and len(result.history) > 1:
        print(f"best: {summary(best, total).text(seconds=False)}")


def _plot(module, settings, dataset, result, out: Path) -> None:
    from bpc.runtime.devices import hosted
    from bpc.runtime.plots import plot_fit, plot_history, plot_title

    title = plot_title(module, settings)
    plot_history(result.history, out / "curves.png", title)
    print(f"wrote {out / 'curves.png'}")
    if plot_fit(hosted(module), result.params, dataset, out / "fit.png", title, result.state):
        print(f"wrote {out / 'fit.png'}")
