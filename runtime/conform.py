"""Data checked against the module's declarations before it is trained on (``conform``).

Arrays are checked against the module's declared shapes: fixed dimensions must match, and
a symbolic dimension (``N``) must bind to one size across every input and target, else the
error names the input and the dimension. Integer labels are accepted where one-hot targets
are declared and the other way round; token ids (inputs that ``embed`` reads) are whole
numbers in 0..V-1, and a symbolic dimension other than the batch (a sequence's ``T``)
is at least 1. Every value must be a finite real number, and a
label a class that exists: anything else is an error naming the array, never a silent
cast.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import host_dtype
from .batching import batch_dim
from .errors import UserError


def onehot_of(module) -> dict[str, int]:
    """Targets of softmax cross-entropy given as rows of probabilities -> classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("onehot", {}))


def data_names(module, targets: bool = True) -> list[str]:
    """The names arrays are given for, in the order of the generated functions'
    arguments: the inputs without a default, then (``targets``) the targets."""
    defaults = getattr(module, "DEFAULTS", {}) or {}
    names = [k for k in module.INPUTS if k not in defaults]
    return names + (list(module.TARGETS) if targets else [])


def step_limits_of(module) -> dict[str, tuple[int, str]]:
    """Symbolic dimensions a learned table of positions bounds -> (its rows, its name)."""
    config = getattr(module, "CONFIG", {}) or {}
    return {d: (int(rows), table) for d, (rows, table) in config.get("at_most", {}).items()}


def labels_of(module) -> dict[str, int]:
    """Targets that hold integer class labels -> their number of classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("labels", {}))


def conform(arrays: dict[str, np.ndarray], module, where: str = "data",
            targets: bool = True) -> dict[str, np.ndarray]:
    """Check arrays against the declared shapes; convert labels <-> one-hot; cast dtype.
    ``targets=False``: the inputs only (a prediction's), any target given is left out."""
    declared = {**module.INPUTS, **(module.TARGETS if targets else {})}
    defaults = getattr(module, "DEFAULTS", {}) or {}
    missing = [n for n in declared if n not in arrays and n not in defaults]
    if missing:
        raise UserError(f"{where} has no array for " + ", ".join(f"'{m}'" for m in missing),
                        "available: " + (", ".join(sorted(map(str, arrays))) or "none")
                        + "; expected " + ", ".join(f"'{m}' {shape_text(declared[m])}"
                                                    for m in missing))
    label_names = labels_of(module)
    batch = batch_dim(module)
    out: dict[str, np.ndarray] = {}
    bound: dict[str, tuple[int, str, int]] = {}
    for name, shape in declared.items():
        if name not in arrays:
            continue
        a = finite_numbers(name, as_array(name, arrays[name], where, shape), where)
        if name in module.TARGETS:
            a = _labels_or_one_hot(name, a, tuple(shape), label_names.get(name), where,
                                   name in onehot_of(module))
        if a.ndim != len(shape):
            raise UserError(f"{where}: '{name}' has shape {tuple(a.shape)}, but the spec "
                            f"declares {expected_text(shape, bound)} ({len(shape)} "
                            "dimensions)")
        for axis, (want, got) in enumerate(zip(shape, a.shape)):
            if isinstance(want, str):
                if want in bound and bound[want][0] != got:
                    size, other, other_axis = bound[want]
                    raise UserError(
                        f"{where}: dimension {want} of '{name}' (axis {axis}) is {got}, but "
                        f"'{other}' (axis {other_axis}) has {size}: '{name}' has shape "
                        f"{tuple(a.shape)}, expected {expected_text(shape, bound)}",
                        f"every use of {want} must have the same size (the same number "
                        "of examples in every array)")
                bound.setdefault(want, (got, name, axis))
                if got == 0 and want != batch:
                    raise UserError(f"{where}: '{name}' has shape {tuple(a.shape)}: its "
                                    f"dimension {want} (axis {axis}) is 0",
                                    f"a sequence needs at least one step: give {want} >= 1")
                _check_limit(name, want, got, axis, step_limits_of(module), where)
            elif want != got:
                raise UserError(f"{where}: '{name}' has {got} at axis {axis}, but the spec "
                                f"declares {want} there (shape {tuple(a.shape)}, expected "
                                f"{expected_text(shape, bound)})")
        if name in label_names:  # checked as read, before a cast could wrap them
            if name in module.INPUTS:
                _check_whole_ids(name, a, where)
            _check_labels(name, a, label_names[name], where, ids=name in module.INPUTS)
            out[name] = a.astype(np.int64, copy=False)
        else:
            with np.errstate(over="ignore"):
                out[name] = a.astype(host_dtype(module), copy=False)
            _check_finite(name, out[name], where, cast_from=a.dtype)
        if name in onehot_of(module) and a.size and not np.allclose(
                np.sum(out[name], axis=-1), 1.0, atol=1e-4):
            raise UserError(f"{where}: '{name}' feeds softmax_cross_entropy, so each row must "
                            "be one-hot or a probability distribution (summing to 1)",
                            f"give class labels instead by declaring 'target {name} : [N]'")
    return out


def _check_limit(name: str, dim: str, got: int, axis: int, limits: dict, where: str) -> None:
    """A sequence no longer than the table of positions that covers its steps."""
    if dim in limits and got > limits[dim][0]:
        rows, table = limits[dim]
        raise UserError(f"{where}: '{name}' has {got} steps ({dim}, axis {axis}), but the "
                        f"table of positions '{table}' holds {rows}",
                        f"cut the sequences to at most {rows} steps, or declare more "
                        "positions (posenc learned N)")


def as_array(name: str, value, where: str, shape=None) -> np.ndarray:
    """``value`` (an array, nested lists, anything with ``__array__``) as a NumPy array;
    an error naming the array (and the ``shape`` declared) when NumPy cannot make one
    (ragged lists, None, an object that is no array)."""
    want = f" (expected {shape_text(shape)})" if shape is not None else ""
    if value is None:
        raise UserError(f"{where}: '{name}' is None, not an array{want}",
                        "give a NumPy array or nested lists of numbers")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "inhomogeneous" in why:  # NumPy's words for nested lists of unequal lengths
            why = "its rows have different lengths (ragged)"
        pad = "; pad sequences of different lengths to one length, and leave the padding " \
            "out of the loss with softmax_cross_entropy(..., ignore=PAD_ID)" \
            if shape is not None and sum(isinstance(d, str) for d in shape) > 1 else ""
        raise UserError(f"{where}: '{name}' is not an array of numbers{want}: {why}",
                        "give a NumPy array, or nested lists whose rows have equal "
                        "lengths" + pad) from None
    if a.dtype.kind == "O":
        raise UserError(f"{where}: '{name}' holds Python objects, not numbers{want}",
                        "give a NumPy array of numbers, or nested lists of numbers with "
                        "rows of equal lengths")
    return a


def finite_numbers(name: str, a: np.ndarray, where: str) -> np.ndarray:
    """``a`` if it holds finite real numbers (booleans and integers included); an error
    naming the array otherwise, before any cast could drop an imaginary part, parse text
    or carry a NaN into training."""
    if a.dtype.kind == "c":
        raise UserError(f"{where}: '{name}' holds complex numbers ({a.dtype})",
                        "bpc trains on real numbers: give the real part, the magnitude, or "
                        "both as separate columns")
    if a.dtype.kind not in "biuf":
        raise UserError(f"{where}: '{name}' holds {a.dtype} values, not numbers",
                        "give numbers (integers or floats), in the data file or the arrays")
    if a.dtype.kind == "f":
        _check_finite(name, a, where)
    return a


def _check_finite(name: str, a: np.ndarray, where: str, cast_from=None) -> None:
    """An error naming the array and the first bad entry when ``a`` holds NaN or an
    infinity; ``cast_from`` (the dtype before a cast) tells an overflow of the cast apart."""
    if not a.size or (math.isfinite(np.max(a)) and math.isfinite(np.min(a))):
        return
    bad = ~np.isfinite(a)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    at = f"at index {first[0] if len(first) == 1 else first}"
    if cast_from is not None and np.dtype(cast_from).kind == "f" and \
            np.dtype(cast_from).itemsize > a.dtype.itemsize:
        raise UserError(f"{where}: '{name}' has values too large for {a.dtype} "
                        f"({int(bad.sum())} of {a.size}, the first {at})",
                        "rescale the data, or compute in float64 (dtype float64 in the spec)")
    nan = int(np.isnan(a).sum())
    kinds = ", ".join(f"{k} {what}" for k, what in ((nan, "NaN"),
                                                     (int(bad.sum()) - nan, "infinite")) if k)
    raise UserError(f"{where}: '{name}' has values that are not finite numbers ({kinds}, "
                    f"of {a.size}), the first {at}",
                    "remove or fill in those entries: training on them gives NaN")


def _check_whole_ids(name: str, ids: np.ndarray, where: str) -> None:
    """Token ids (an input that embed reads) are whole numbers: 2.5 picks no row."""
    if ids.dtype.kind != "f" or np.all(ids == np.round(ids)):
        return
    first = tuple(int(i) for i in np.argwhere(ids != np.round(ids))[0])
    raise UserError(f"{where}: '{name}' holds token ids, which must be whole numbers, but "
                    f"it has {ids[first]:g} at index {first}",
                    "give integer ids (the row of the embedding table each token picks)")


def _check_labels(name: str, labels: np.ndarray, classes: int, where: str,
                  ids: bool = False) -> None:
    """Class labels must be classes that exist: 0..classes-1 (a -1 would silently pick
    the last class through indexing); token ids (``ids``), rows of the embedding table."""
    bad = (labels < 0) | (labels >= classes)
    if not bad.any():
        return
    values = np.unique(labels[bad])
    shown = ", ".join(map(str, values[:6])) + (", …" if len(values) > 6 else "")
    if ids:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(f"{where}: '{name}' holds token ids, which must lie in "
                        f"0..{classes - 1} (the embedding table has {classes} rows), but "
                        f"it has {shown} ({int(bad.sum())} of {labels.size} ids, the first "
                        f"at index {first})",
                        "ids count rows from 0 and a negative id is never read from the "
                        "end: re-encode the data, or give the table more rows")
    raise UserError(f"{where}: '{name}' holds class labels, which must lie in "
                    f"0..{classes - 1} ({classes} classes), but it has {shown} "
                    f"({int(bad.sum())} of {labels.size} labels)",
                    "labels count classes from 0; relabel the data or give the model "
                    "more classes")


def _labels_or_one_hot(name, a, shape, classes: int | None, where, onehot: bool = False):
    """``a`` as the target declares it: one-hot rows where labels are declared become
    labels (``classes``: how many there are), integer labels where rows are declared
    become one-hot rows (and whole-number floats, as a CSV gives them, where the rows
    feed a softmax cross-entropy: ``onehot``)."""
    wants_labels = classes is not None
    if wants_labels and a.ndim == len(shape) + 1 and a.shape[-1] > 1:
        if a.shape[-1] != classes:
            raise UserError(f"{where}: '{name}' is given as one-hot rows of {a.shape[-1]} "
                            f"values, but the model's output has {classes} classes",
                            f"give rows of {classes} values, or integer labels 0..{classes - 1}")
        if a.size and not (np.all((a == 0) | (a == 1)) and np.all(np.sum(a, axis=-1) == 1)):
            raise UserError(f"{where}: '{name}' holds class labels, but is given as rows of "
                            f"{a.shape[-1]} values that are not one-hot",
                            "give integer labels, or rows with a single 1")
        return np.argmax(a, axis=-1)  # one-hot given where labels are declared
    if not wants_labels and a.ndim == len(shape) - 1 and len(shape) >= 1 \
            and isinstance(shape[-1], int) and shape[-1] > 1 and (
                np.issubdtype(a.dtype, np.integer) or onehot and _whole(a)):
        k = shape[-1]
        _check_labels(name, a, k, where)
        return np.eye(k)[a.astype(np.int64)]  # labels given where one-hot is declared
    if wants_labels and np.issubdtype(a.dtype, np.floating):
        if not np.all(a == np.round(a)):
            raise UserError(f"{where}: '{name}' holds class labels, but the values are not "
                            "whole numbers")
    return a


LABEL_WARNING_EXAMPLES = 5  # per class: with fewer examples, a missing class may be chance


def label_warnings(module, arrays: dict, where: str) -> list[str]:
    """Warnings about a data set whose labels do not match the model's classes, though
    the data conforms: labels that never use some of the output's classes (with enough
    examples that every class should appear: ``LABEL_WARNING_EXAMPLES`` per class), and
    0/1 targets of a classifier that hold other values. Data that does not conform gets
    its error from ``conform``, not a warning here."""
    out = []
    classes = {**onehot_of(module), **labels_of(module)}
    spec = (getattr(module, "CONFIG", {}) or {}).get("accuracy") or {}
    declared = {**module.INPUTS, **module.TARGETS}
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" \
                or name not in declared or not value.size:
            continue
        if name in classes and name in module.TARGETS:
            if len(declared[name]) > 1 and name in labels_of(module):
                continue  # tokens of a sequence: a vocabulary need not all be targets
            k = classes[name]
            if value.ndim != len(declared[name]) - (name in onehot_of(module)):
                continue  # rows (one-hot, or probabilities): no labels to count
            problem = _unused_classes(value, k)
            if problem:
                out.append(f"warning: {where}: '{name}' {problem}")
        elif spec.get("kind") == "binary" and spec.get("target") == name:
            with np.errstate(invalid="ignore"):
                bad = value[(value < 0) | (value > 1)]
            if bad.size:
                out.append(f"warning: {where}: '{name}' is the target of a 0/1 prediction "
                           f"(one output, a sigmoid's), but holds {bad.flat[0]:g} "
                           f"({bad.size} of {value.size} values outside 0..1)")
    return out


def say_label_warnings(module, dataset) -> None:
    """``label_warnings`` of a data set's training arrays, on standard error (as the
    compiler's warnings are), once, when the data set is made."""
    import sys

    for text in label_warnings(module, dataset.train, f"training data ({dataset.name})"):
        print(text, file=sys.stderr)


def _unused_classes(labels: np.ndarray, k: int) -> str | None:
    """What is wrong with labels for ``k`` classes that leave some class unused, when
    there are enough of them to tell; None otherwise (or when they are not labels)."""
    if labels.size < LABEL_WARNING_EXAMPLES * k or not _whole(labels):
        return None
    present = np.unique(labels)
    if present.size and (present[0] < 0 or present[-1] >= k):
        return None  # conform's error
    missing = sorted(set(range(k)) - {int(v) for v in present})
    if not missing:
        return None
    shown = ", ".join(map(str, missing[:6])) + (", …" if len(missing) > 6 else "")
    why = " (labels count classes from 0)" if missing[0] == 0 and present[-1] == k - 1 \
        else ""
    return (f"holds labels {int(present[0])}..{int(present[-1])}, but the model's output "
            f"has {k} classes: {'class' if len(missing) == 1 else 'classes'} {shown} never "
            f"{'appears' if len(missing) == 1 else 'appear'}{why}")


def _whole(a: np.ndarray) -> bool:
    """Integers, or floats that are all whole numbers (labels read from a CSV)."""
    return np.issubdtype(a.dtype, np.integer) or (
        np.issubdtype(a.dtype, np.floating) and bool(np.all(a == np.round(a))))


def shape_text(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def expected_text(shape, bound: dict[str, tuple[int, str, int]]) -> str:
    """The declared shape with the sizes its symbolic dimensions are bound to so far:
    ``[N, 2] with N = 5 (from 'x')``."""
    known = [f"{d} = {bound[d][0]} (from '{bound[d][1]}')"
             for d in dict.fromkeys(shape) if isinstance(d, str) and d in bound]
    return shape_text(shape) + (" with " + ", ".join(known) if known else "")
