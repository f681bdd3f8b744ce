"""``bpc stats``: per-layer activation and gradient statistics at initialization."""

from __future__ import annotations

from bpc.compiler.vocab import RUNTIME_RANGES, STATS_STEPS

from .options import number

HELP = "per-layer activation and gradient statistics at initialization"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=100,
                   help="examples drawn from N(0, 1)")
    p.add_argument("--init", metavar="INIT",
                   help="draw every weight (2-D parameter) from this initializer instead, "
                        "e.g. he or 'normal(std=1)'")
    p.add_argument("--steps", type=number(RUNTIME_RANGES["steps"]), default=STATS_STEPS,
                   help="the length of the random sequences a loop over time steps through")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args) -> int:
    import json

    from bpc.compiler.pipeline import program_from_file
    from bpc.reports.stats import format_table, init_from_text, layer_stats, override_weights

    prog = program_from_file(args.spec)
    note = ""
    if args.init:
        changed = override_weights(prog, init_from_text(args.init))
        shown = changed if len(changed) <= 6 else changed[:3] + ["…"] + changed[-1:]
        note = (f", {len(changed)} weights ({', '.join(shown)}) drawn from {args.init}"
                if changed else ", no weights to override")
    rows = layer_stats(prog, batch=args.batch, seed=args.seed, steps=args.steps)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{prog.name}: statistics at initialization, batch {args.batch}, "
              f"seed {args.seed}{note}")
        print(format_table(rows))
    return 0
