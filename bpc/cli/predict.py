"""``bpc predict``: a trained model's outputs on a data set, as CSV: each row an example,
led by its inputs when they are small; for a classifier also its class and that class's
probability (``--outputs``). The data needs no targets."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import add_trained_arguments, trained

HELP = "the trained model's outputs on a data set (targets not needed), as CSV"
OUTPUTS_HELP = ("which columns follow the inputs, comma-separated: raw (predict's output), "
                "proba (a classifier's probability of each class), class (its predicted "
                "class and that class's probability); default: raw,class for a classifier, "
                "raw otherwise")


def add_arguments(p) -> None:
    add_trained_arguments(p)
    p.add_argument("--outputs", metavar="raw|proba|class", help=OUTPUTS_HELP)
    p.add_argument("-o", "--out", metavar="FILE",
                   help="write the CSV here (default: standard output)")


def _outputs(text: str | None) -> list[str] | None:
    """The kinds ``--outputs`` names, in order, once each; a usage error (exit 2) for
    another word."""
    from bpc.runtime.errors import UserError
    from bpc.runtime.evaluate import OUTPUTS

    if text is None:
        return None
    kinds = [k.strip() for k in text.split(",")]
    for k in kinds:
        if k not in OUTPUTS:
            raise UserError(f"--outputs: {k!r} is not one of {', '.join(OUTPUTS)}",
                            "e.g. --outputs raw,class", code=2)
    return list(dict.fromkeys(kinds))


def run(args) -> int:
    import numpy as np

    from bpc.runtime.data import batch_axes, example_count
    from bpc.runtime.errors import UserError
    from bpc.runtime.evaluate import not_a_classifier, output_batch_axis, predict_all
    from bpc.runtime.points import eval_chunk

    asked = _outputs(args.outputs)
    module, params, state, arrays, split, name = trained(args, targets=False)
    why = not_a_classifier(module)
    kinds = asked or (["raw"] if why else ["raw", "class"])
    if why and set(kinds) - {"raw"}:
        raise UserError(f"--outputs {','.join(kinds)}: the model is not a classifier: {why}",
                        "use --outputs raw")
    inputs = {k: v for k, v in arrays.items() if k in module.INPUTS}
    with np.errstate(all="ignore"):  # inference mode, with the checkpoint's state
        out = np.asarray(predict_all(module, params, inputs, eval_chunk(module, inputs),
                                     state))
    n = example_count(inputs, batch_axes(module))
    axis = output_batch_axis(module)
    by_example = axis is not None and out.ndim > 0 and out.shape[axis] == n
    header, columns = _columns(module, out, kinds, axis if by_example else None, n)
    rows = np.concatenate(columns, axis=1)
    header, rows = _with_small_inputs(module, inputs, n, header, rows)
    lines = [",".join(header)] + [",".join(f"{v:.8g}" for v in r) for r in rows]
    text = "\n".join(lines) + "\n"
    if args.out:
        from bpc.compiler.cache import write_text_atomic

        write_text_atomic(Path(args.out), text)
        print(f"{rows.shape[0]} predictions on the {split} split of {name} -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _columns(module, out, kinds: list[str], axis: int | None, n: int):
    """(header, blocks of columns) for the outputs ``kinds`` of the prediction ``out``,
    one row per example (``axis``: the output's batch axis; None: one row)."""
    import numpy as np

    from bpc.runtime.evaluate import classes_and_probability, classifier, probabilities

    spec = classifier(module) or {}
    class_axis = spec.get("class_axis")

    def rows(a, batch_axis):
        if batch_axis is None:
            return a.reshape(1, -1)
        return np.moveaxis(a, batch_axis, 0).reshape(n, -1)

    def without_class_axis(batch_axis):  # the batch axis once the class axis is gone
        if batch_axis is None or class_axis is None:
            return batch_axis
        return batch_axis - (class_axis % out.ndim < batch_axis)

    output = getattr(module, "OUTPUT", "y")
    header, blocks = [], []
    for kind in kinds:
        if kind == "raw":
            block, names = rows(out, axis), output
        elif kind == "proba":
            block, names = rows(probabilities(module, out), axis), "proba"
        else:
            c, p = classes_and_probability(module, out)
            at = axis if spec.get("kind") == "binary" else without_class_axis(axis)
            c, p = rows(c, at), rows(p, at)
            header += _names("class", c.shape[1]) + _names("probability", p.shape[1])
            blocks += [c, p]
            continue
        header += _names(names, block.shape[1])
        blocks.append(block)
    return header, blocks


def _names(name: str, count: int) -> list[str]:
    return [name + (f"[{j}]" if count > 1 else "") for j in range(count)]


def _with_small_inputs(module, inputs, n, header, rows):
    """(CSV header, rows): small inputs (8 numbers an example at most) lead each row of
    outputs, so that a reader sees which example is which."""
    import numpy as np

    from bpc.runtime.data import batch_axes

    axes = batch_axes(module)
    shown, names = [], []
    for k, v in inputs.items():
        v = np.asarray(v)
        if k in axes and v.size // max(n, 1) <= 8 and rows.shape[0] == n:
            cols = np.moveaxis(v, axes[k], 0).reshape(n, -1)
            names += _names(k, cols.shape[1])
            shown.append(cols)
    if shown:
        rows = np.concatenate(shown + [rows], axis=1)
    return names + header, rows
