"""``bpc plot``: the learning curves of one or more runs on the same axes."""

from __future__ import annotations

from pathlib import Path

HELP = ("the learning curves of one or more runs on the same axes (e.g. with and without "
        "batch norm)")


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run's --out folder (or its history.csv or checkpoint.npz)")
    p.add_argument("-o", "--out", default="curves.png", metavar="FILE",
                   help="the image to write (default curves.png)")
    p.add_argument("--title", help="the figure's title (default: the runs' names)")


def run(args) -> int:
    from bpc.runtime.plots import plot_runs, run_history

    runs = [run_history(Path(r)) for r in args.runs]
    names = [name for name, _ in runs]
    if len(set(names)) < len(names):  # two folders of one name: say which is which
        runs = [(str(Path(r)), h) for r, (_, h) in zip(args.runs, runs)]
    out = Path(args.out)
    plot_runs(runs, out, args.title or " vs ".join(name for name, _ in runs))
    print(f"wrote {out}")
    return 0
