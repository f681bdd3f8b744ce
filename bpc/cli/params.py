"""``bpc params``: the parameters (and state) in a checkpoint, as values or summaries."""

from __future__ import annotations

from pathlib import Path

from bpc.compiler.vocab import RUNTIME_RANGES

from .options import number

HELP = "the parameters (and state) in a checkpoint: values, or shape and summary"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--full", type=number(RUNTIME_RANGES["samples"]), default=32, metavar="K",
                   help="print all values of parameters with at most K numbers (default 32)")


def run(args) -> int:
    from bpc.runtime.checkpoint import read_checkpoint_file

    c = read_checkpoint_file(Path(args.checkpoint))
    params, state, meta = c.params, c.state, c.meta
    where = f"epoch {meta.get('epoch')}, step {meta.get('step')}" if "step" in meta else ""
    total = sum(v.size for v in params.values())
    kept = (f"; {len(state)} state entries, {sum(v.size for v in state.values())} numbers "
            "(not trained)") if state else ""
    print(f"{args.checkpoint}: {len(params)} parameters, {total} numbers{kept}"
          + (f" ({where})" if where else ""))
    # State (batch norm's running statistics) after the parameters, marked: training
    # updates it, the optimizer never does, and inference reads it.
    entries = [(k, v, "") for k, v in params.items()] + \
        [(k, v, " [state, not trained]") for k, v in state.items()]
    for k, v, mark in entries:
        print(_entry(k, v, mark, args.full))
    return 0


def _entry(name: str, v, mark: str, full: int) -> str:
    """One entry: all its values when it has at most ``full``, else a summary."""
    import numpy as np

    if v.size == 0 or v.dtype.kind not in "fiub":
        return f"{name} {v.shape}{mark}: {v.dtype.name}, {v.size} values"
    if v.size <= full:
        body = np.array2string(v, precision=6, suppress_small=True, separator=", ",
                               max_line_width=88)
        return f"{name} {v.shape}{mark}:" + ("\n" + body if "\n" in body or v.ndim > 1
                                              else f" {body}")
    return (f"{name} {v.shape}{mark}: mean {v.mean():.4g}  std {v.std():.4g}  "
            f"min {v.min():.4g}  max {v.max():.4g}  |.|_2 {np.linalg.norm(v):.4g}")
