"""``bpc graph``: the computation graph as Graphviz DOT, or as SVG laid out by bpc."""

from __future__ import annotations

import sys

from .options import add_point_arguments, point

HELP = "the computation graph as Graphviz DOT (or SVG)"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--values", action="store_true",
                   help="label edges with forward values (above) and gradients (below) at "
                        "one data point (implied by --at and --row)")
    add_point_arguments(p)
    p.add_argument("--svg", action="store_true",
                   help="write SVG laid out by bpc itself (no Graphviz needed)")


def run(args) -> int:
    from bpc.compiler.compilation import Compilation
    from bpc.reports.graph import build, dot, to_svg

    comp = Compilation.from_file(args.spec)  # drawn as the spec wrote it, unoptimized
    feeds = params = None
    if args.values or args.at or args.row is not None:
        feeds, params, _ = point(args, comp)
    g = build(comp, feeds, params)
    sys.stdout.write(to_svg(g) + "\n" if args.svg else dot(g))
    return 0
