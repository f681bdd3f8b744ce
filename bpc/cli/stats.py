"""``bpc stats``: per-layer activation and gradient statistics at initialization (or of a
trained model's checkpoint), on a random batch or on the spec's training data."""

from __future__ import annotations

from bpc.compiler.vocab import RUNTIME_RANGES, STATS_STEPS

from .options import data_flag, number

HELP = "per-layer activation and gradient statistics at initialization"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=100,
                   help="examples drawn from N(0, 1) (with --data: the first N of the "
                        "training data)")
    p.add_argument("--init", metavar="INIT",
                   help="draw every weight (2-D parameter) from this initializer instead, "
                        "e.g. he or 'normal(std=1)'")
    p.add_argument("--steps", type=number(RUNTIME_RANGES["steps"]),
                   help="the length of the random sequences a loop over time steps "
                        f"through (default {STATS_STEPS}; with --data, the data's own)")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    p.add_argument("--checkpoint", metavar="FILE",
                   help="a run's checkpoint.npz (or its folder): the trained parameters "
                        "instead of the initial ones, on the same batch")
    p.add_argument("--data", nargs="?", const="", type=data_flag, metavar="DATA",
                   help="on the first --batch examples of the training data instead of a "
                        "random batch: the spec's data line as bpc train loads it, or, as "
                        "for bpc train, a .npz, .csv or .npy file or a built-in data set")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args) -> int:
    import json

    from bpc.compiler.pipeline import program_from_file
    from bpc.reports.stats import format_table, init_from_text, layer_stats, override_weights

    prog = program_from_file(args.spec)
    note, params, where = "", None, "at initialization"
    feeds, batch = None, f"random batch {args.batch}"
    module = _module(args) if args.checkpoint or args.data is not None else None
    if args.checkpoint:
        params, where = _trained(args, module), f"with the parameters of {args.checkpoint}"
    if args.data is not None:
        from bpc.reports.stats import data_batch
        from bpc.runtime.errors import UserError

        if args.steps is not None:
            raise UserError("--steps and --data exclude each other",
                            "with --data the sequences are the data's own, of its length")

        feeds, batch = data_batch(prog, module, args.batch, args.data)
    if args.init:
        changed = override_weights(prog, init_from_text(args.init))
        shown = changed if len(changed) <= 6 else changed[:3] + ["…"] + changed[-1:]
        note = (f", {len(changed)} weights ({', '.join(shown)}) drawn from {args.init}"
                if changed else ", no weights to override")
    steps = STATS_STEPS if args.steps is None else args.steps
    rows = layer_stats(prog, batch=args.batch, seed=args.seed, steps=steps, params=params,
                       feeds=feeds)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{prog.name}: statistics {where}, {batch}, seed {args.seed}{note}")
        print(format_table(rows))
    return 0


def _module(args):
    """The spec's module, compiled once: what a checkpoint is checked against and the
    training data is loaded for."""
    from bpc.compiler.compilation import Compilation
    from bpc.runtime.loader import compiled_model

    comp = Compilation.from_file(args.spec)
    return compiled_model(comp, comp.path)


def _trained(args, module) -> dict:
    """The checkpoint's parameters, refused (naming what differs) if of another model."""
    from pathlib import Path

    from bpc.runtime.checkpoint import checkpoint_params
    from bpc.runtime.errors import UserError

    if args.init:
        raise UserError("--init and --checkpoint exclude each other",
                        "--init redraws the weights a checkpoint gives")
    return checkpoint_params(Path(args.checkpoint), module)[0]
