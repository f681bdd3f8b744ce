"""``bpc trace``: a worked example, every value and gradient at one point."""

from __future__ import annotations

import sys

from bpc.compiler.vocab import RUNTIME_RANGES

from .options import add_point_arguments, number, point

HELP = ("a worked example: every value and gradient at one point, the chain rule written "
        "out with numbers")


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    add_point_arguments(p)
    p.add_argument("--step", action="store_true",
                   help="then the parameter update of one step of the spec's optimizer")
    p.add_argument("--digits", type=number(RUNTIME_RANGES["digits"]), default=6,
                   metavar="D", help="significant digits (3 to 17, default 6)")


def run(args) -> int:
    from bpc.compiler.compilation import Compilation
    from bpc.reports.trace import format_trace, trace

    comp = Compilation.from_file(args.spec)
    feeds, params, where = point(args, comp)
    sys.stdout.write(format_trace(trace(comp, feeds, params, where, step=args.step,
                                        digits=args.digits), args.digits))
    return 0
