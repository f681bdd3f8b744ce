"""``bpc explain``: the derivation as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from bpc.compiler.vocab import RUNTIME_RANGES

from .options import add_point_arguments, number

HELP = ("the derivation as one self-contained HTML page: summary, spec and code side by "
        "side, graph, worked example, gradient check, statistics")


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="where to write the page (default: <spec name>.html)")
    add_point_arguments(p)
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=100,
                   help="examples of the random batch of the statistics (default 100)")


def run(args) -> int:
    from bpc.compiler.cache import write_text_atomic
    from bpc.reports.explain import report
    from bpc.reports.trace import parse_at

    text = report(args.spec, parse_at(args.at) if args.at else None, args.row, args.seed,
                  batch=args.batch)
    out = Path(args.out) if args.out else Path(Path(args.spec).stem + ".html")
    write_text_atomic(out, text)
    print(f"{args.spec} -> {out}")
    return 0
