"""``bpc trace``: a worked example, every value and gradient at one point."""

from __future__ import annotations

import sys
from pathlib import Path

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
    p.add_argument("--checkpoint", metavar="FILE",
                   help="a run's checkpoint.npz (or its folder): the trained parameters "
                        "and state instead of the initial ones")
    p.add_argument("--plot", metavar="NAME=FILE",
                   help="instead of the trace, draw value NAME's last two axes (attention "
                        "weights: a panel per head) as a heat map into FILE (.png; needs "
                        "matplotlib), a character task's characters on the axes")


def run(args) -> int:
    from bpc.compiler.compilation import Compilation
    from bpc.reports.trace import format_trace, trace
    from bpc.reports.weights import parse_plot, plot_value
    from bpc.runtime.checkpoint import checkpoint_params
    from bpc.runtime.loader import compiled_model

    comp = Compilation.from_file(args.spec)
    plot = parse_plot(args.plot) if args.plot else None
    feeds, params, where = point(args, comp)
    state, module = None, compiled_model(comp, comp.path)
    if args.checkpoint:
        params, state, _ = checkpoint_params(Path(args.checkpoint), module)
        where += f", parameters of {args.checkpoint}"
    tr = trace(comp, feeds, params, where, step=args.step, digits=args.digits, state=state)
    if plot:
        data = (getattr(module, "CONFIG", {}) or {}).get("data")
        print(plot_value(tr, *plot, feeds, data.get("name") if isinstance(data, dict) else None))
        return 0
    sys.stdout.write(format_trace(tr, args.digits))
    return 0
