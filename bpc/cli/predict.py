"""``bpc predict``: a trained model's outputs on a data set, as CSV."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import add_trained_arguments, trained

HELP = "the trained model's outputs on a data set, as CSV"


def add_arguments(p) -> None:
    add_trained_arguments(p)
    p.add_argument("-o", "--out", metavar="FILE",
                   help="write the CSV here (default: standard output)")


def run(args) -> int:
    import numpy as np

    from bpc.runtime.data import batch_axes, example_count
    from bpc.runtime.evaluate import output_batch_axis, predict_all
    from bpc.runtime.points import eval_chunk

    module, params, state, arrays, split, name = trained(args)
    inputs = {k: v for k, v in arrays.items() if k in module.INPUTS}
    with np.errstate(all="ignore"):  # inference mode, with the checkpoint's state
        out = np.asarray(predict_all(module, params, inputs, eval_chunk(module), state))
    n = example_count(inputs, batch_axes(module))
    axis = output_batch_axis(module)
    rows = np.moveaxis(out, axis, 0).reshape(n, -1) if axis is not None and out.ndim \
        and out.shape[axis] == n else out.reshape(1, -1)
    header, rows = _with_small_inputs(module, inputs, n, rows)
    lines = [",".join(header)] + [",".join(f"{v:.8g}" for v in r) for r in rows]
    text = "\n".join(lines) + "\n"
    if args.out:
        from bpc.compiler.cache import write_text_atomic

        write_text_atomic(Path(args.out), text)
        print(f"{rows.shape[0]} predictions on the {split} split of {name} -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _with_small_inputs(module, inputs, n, rows):
    """(CSV header, rows): small inputs (8 numbers an example at most) lead each row of
    outputs, so that a reader sees which example is which."""
    import numpy as np

    from bpc.runtime.data import batch_axes

    header = [f"{getattr(module, 'OUTPUT', 'y')}" + (f"[{j}]" if rows.shape[1] > 1 else "")
              for j in range(rows.shape[1])]
    axes = batch_axes(module)
    shown = []
    for k, v in inputs.items():
        v = np.asarray(v)
        if k in axes and v.size // max(n, 1) <= 8 and rows.shape[0] == n:
            cols = np.moveaxis(v, axes[k], 0).reshape(n, -1)
            header = [k + (f"[{j}]" if cols.shape[1] > 1 else "")
                      for j in range(cols.shape[1])] + header if not shown else \
                header[:len(shown)] + [k + (f"[{j}]" if cols.shape[1] > 1 else "")
                                       for j in range(cols.shape[1])] + header[len(shown):]
            shown.append(cols)
    if shown:
        rows = np.concatenate(shown + [rows], axis=1)
    return header, rows
