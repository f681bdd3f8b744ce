"""``bpc train``: train a spec, or a generated module, on its data; print the summary."""

from __future__ import annotations

import gc
from pathlib import Path

from bpc.compiler.vocab import COUNT, OPTIMIZER_RANGES, OPTIMIZERS, RUNTIME_RANGES
from bpc.runtime.settings import KEEP, METRICS
from bpc.runtime.errors import UserError

from .options import add_target_arguments, data_flag, number, target_of, train_flag

HELP = "train a spec (or a generated module) on its data"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC", help="a .bp spec, or a module written by bpc compile")
    p.add_argument("--data", type=data_flag,
                   help="a .npz or .csv file, .npy files (x.npy,t.npy: the inputs then "
                        "the targets, in the spec's order; or x=a.npy,t=b.npy), or a "
                        "built-in data set: xor, spiral[:n=100,classes=3], sine[:n=200], "
                        "digits, mnist")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=train_flag("epochs"),
                        help="passes over the training data")
    length.add_argument("--iters", type=train_flag("iters"),
                        help="minibatch steps (instead of --epochs)")
    p.add_argument("--batch", type=train_flag("batch"), help="minibatch size")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="the update rule")
    p.add_argument("--lr", type=number(OPTIMIZER_RANGES["lr"]), help="learning rate")
    p.add_argument("--seed", type=train_flag("seed"),
                   help="seed for initialization, shuffling and dropout")
    p.add_argument("--data-seed", type=train_flag("data_seed"), metavar="SEED",
                   help="seed for the data: a built-in data set's examples and the test and "
                        "validation splits (default 0: the same for every --seed)")
    p.add_argument("--validation", type=train_flag("validation"), metavar="FRACTION",
                   help="hold out this fraction of the training data, measured as "
                        "val_loss and val_acc (e.g. 0.1)")
    p.add_argument("--early-stop", nargs="?", const="auto", choices=[*METRICS, "auto"],
                   metavar="METRIC",
                   help="stop when METRIC (a history column: " + ", ".join(METRICS) + "; "
                        "default auto: val_loss with --validation, else loss) has not "
                        "improved for --patience epochs; the best epoch's parameters are "
                        "restored and kept in DIR/best.npz")
    p.add_argument("--patience", type=number(RUNTIME_RANGES["patience"]), metavar="K",
                   help="epochs without an improvement before an early stop (default 5; "
                        "turns on --early-stop)")
    p.add_argument("--min-delta", type=number(RUNTIME_RANGES["min_delta"]), metavar="D",
                   help="the least change of the early-stop metric that counts as an "
                        "improvement (default 0; turns on --early-stop)")
    p.add_argument("--keep", choices=KEEP,
                   help="best: also keep the best epoch's parameters in DIR/best.npz "
                        "(by the --early-stop metric, else val_loss with --validation, else "
                        "the training loss; implied by --early-stop); default last: "
                        "checkpoint.npz alone")
    p.add_argument("--out", metavar="DIR",
                   help="where checkpoint.npz, history.csv (and curves.png) go "
                        "(default: runs/<spec name>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint")
    again.add_argument("--force", action="store_true",
                       help="start a new run in an --out folder that holds one, replacing it")
    p.add_argument("--eval-every", type=train_flag("eval_every"), metavar="K",
                   help="evaluate and print a line every K epochs (and at the end; the "
                        "history has a row every epoch; default: the spec's eval_every, "
                        "else as often as costs about 5%% of the run)")
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
    from bpc import _as_the_command

    # The bpc command's own process: no cyclic garbage collection while NumPy and the
    # run's modules load (what they create lives as long as the process), and those
    # objects frozen out of every later collection (5-10 ms of a short run's 0.2 s).
    own = _as_the_command()
    if own:
        gc.disable()
    from bpc.runtime import distributed
    from bpc.runtime.allocator import keep_freed_memory

    keep_freed_memory()  # this process exists to train: freed steps' memory kept for reuse
    from bpc.runtime.arrays import target_of as module_target
    from bpc.runtime.loader import load_model
    from bpc.runtime.runfolder import refuse_overwrite
    from bpc.runtime.train import STUCK_HINT, run as train_run

    if own:  # before the spec is compiled, whose garbage is collected as usual
        gc.freeze()
        gc.enable()
    if args.plot:  # fail before training, not after
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UserError("--plot needs matplotlib, which is not installed",
                            "install it with: python3 -m pip install 'backprop-compiler[plot]'")
    # A verified cached module, if any (NumPy); errors once, before workers.
    module = load_model(args.spec, reuse=True, target=target_of(args))
    if args.workers > 1 and module_target(module) != "torch":
        raise UserError("--workers needs the torch target", "add --target torch")
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    if args.workers > 1 or distributed.world() is not None:
        refuse_overwrite(out, args.resume, args.force)  # before any worker starts
    if args.workers > 1 and distributed.world() is None:
        from bpc.cli import run_parsed

        distributed.spawn(args.workers, run_parsed, (args,), out, args.device)
        return 0
    overrides = {"epochs": args.epochs, "iters": args.iters, "batch": args.batch,
                 "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed,
                 "eval_every": args.eval_every, "data_seed": args.data_seed,
                 "validation": args.validation, "early_stop": args.early_stop,
                 "patience": args.patience, "min_delta": args.min_delta, "keep": args.keep}
    if args.verbose and args.eval_every is None:
        overrides["eval_every"] = 1  # -v: a line for every epoch
    # Under torchrun (or spawned by --workers): a worker of a data parallel run.
    worker = distributed.world() if module_target(module) == "torch" else None
    if worker is None:
        result, settings, dataset = train_run(module, args.data, overrides, out,
                                              resume=args.resume, quiet=args.quiet,
                                              checkpoint_every=args.checkpoint_every,
                                              force=args.force, device=args.device)
    else:
        result, settings, dataset = _train_worker(module, args, overrides, out, *worker)
        if worker[0] > 0:
            return 130 if result.interrupted else 0
    if result.history:
        from bpc.runtime.evaluate import has_perplexity

        _print_summary(args.spec, result, out, args.quiet, has_perplexity(module))
        _print_greedy(module, result, dataset)
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

    from bpc.runtime import distributed
    from bpc.runtime.train import run as train_run

    device = distributed.start(args.device)
    folder, scratch = distributed.worker_folder(out, args.resume, rank)
    try:
        return train_run(distributed.Sharded(module, rank, workers, device), args.data,
                         overrides, folder, resume=args.resume, force=args.force,
                         quiet=args.quiet or rank > 0, log=print if rank == 0 else _silent,
                         checkpoint_every=args.checkpoint_every, device=device)
    finally:
        distributed.finish()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _silent(*_) -> None:
    """The log of a worker but the first: worker 0 says what the run does."""


def _print_summary(spec: str, result, out: Path, quiet: bool, ppl: bool = False) -> None:
    """The last row's measures with the run's steps and time, why it stopped early (the
    run said it unless ``quiet``), then the best row's (by the run's metric: the
    validation loss when there is one); ``ppl``: each loss with its perplexity."""
    from bpc.runtime.history import best_of, scored_rows, summary

    total = int(result.history[-1]["epoch"])
    last = summary(result.history[-1], total, ppl).text(position=False)
    print(f"{Path(spec).stem}: {last}  ({result.steps} steps, {result.seconds:.1f}s; "
          f"checkpoint and history in {out}/)")
    scored = scored_rows(result.history, result.best_metric)
    best = best_of(*scored)
    if result.stopped and quiet:
        print(f"stopped early at epoch {total}: {result.stopped}; the parameters of epoch "
              f"{best['epoch']} restored")
    if len(scored[1]) > 1:  # a choice was made
        kept = f"  (in {out / 'best.npz'})" if (out / "best.npz").is_file() else ""
        print(f"best: {summary(best, total, ppl).text(seconds=False)}{kept}")


def _print_greedy(module, result, dataset) -> None:
    """For a model trained with teacher forcing (``addition_seq2seq``): its test answers
    decoded greedily, the decoder fed its own output, scored as whole answers."""
    import numpy as np

    from bpc.runtime.decoding import decoder_of, exact_match
    from bpc.runtime.devices import hosted

    found = decoder_of(module, dataset.name)
    if found is None or not dataset.test:
        return
    with np.errstate(all="ignore"):
        share = exact_match(hosted(module), result.params, dataset.test, *found, result.state)
    n = len(dataset.test[found[0]])
    print(f"greedy decoding (the decoder fed its own output): exact match {100 * share:.1f}% "
          f"of {n} test answers; test_acc is per character with the true answer fed in "
          "(teacher forcing)")


def _plot(module, settings, dataset, result, out: Path) -> None:
    from bpc.runtime.devices import hosted
    from bpc.runtime.plots import plot_fit, plot_history, plot_title

    title = plot_title(module, settings)
    plot_history(result.history, out / "curves.png", title)
    print(f"wrote {out / 'curves.png'}")
    if plot_fit(hosted(module), result.params, dataset, out / "fit.png", title, result.state):
        print(f"wrote {out / 'fit.png'}")
