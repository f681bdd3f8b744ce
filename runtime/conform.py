"""Data checked against the module's declarations before it is trained on (``conform``).

Arrays are checked against the module's declared shapes: fixed dimensions must match, and
a symbolic dimension (``N``) must bind to one size across every input and target, else the
error names the input and the dimension. Integer labels are accepted where one-hot targets
are declared and the other way round. Every value must be a finite real number, and a
label a class that exists: anything else is an error naming the array, never a silent
cast.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import host_dtype
from .errors import UserError


def onehot_of(module) -> dict[str, int]:
    """Targets of softmax cross-entropy given as rows of probabilities -> classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("onehot", {}))


def labels_of(module) -> dict[str, int]:
    """Targets that hold integer class labels -> their number of classes."""
    config = getattr(module, "CONFIG", {}) or {}
    return dict(config.get("labels", {}))


def conform(arrays: dict[str, np.ndarray], module, where: str = "data") -> dict[str, np.ndarray]:
    """Check arrays against the declared shapes; convert labels <-> one-hot; cast dtype."""
    declared = {**module.INPUTS, **module.TARGETS}
    defaults = getattr(module, "DEFAULTS", {}) or {}
    missing = [n for n in declared if n not in arrays and n not in defaults]
    if missing:
        raise UserError(f"{where} has no array for " + ", ".join(f"'{m}'" for m in missing),
                        "available: " + (", ".join(sorted(arrays)) or "none"))
    label_names = labels_of(module)
    out: dict[str, np.ndarray] = {}
    bound: dict[str, tuple[int, str, int]] = {}
    for name, shape in declared.items():
        if name not in arrays:
            continue
        a = finite_numbers(name, np.asarray(arrays[name]), where)
        a = _labels_or_one_hot(name, a, tuple(shape), name in label_names, where)
        if a.ndim != len(shape):
            raise UserError(f"{where}: '{name}' has shape {tuple(a.shape)}, but the spec "
                            f"declares {shape_text(shape)} ({len(shape)} dimensions)")
        for axis, (want, got) in enumerate(zip(shape, a.shape)):
            if isinstance(want, str):
                if want in bound and bound[want][0] != got:
                    size, other, other_axis = bound[want]
                    raise UserError(
                        f"{where}: dimension {want} of '{name}' (axis {axis}) is {got}, but "
                        f"'{other}' (axis {other_axis}) has {size}",
                        f"every use of {want} must have the same size")
                bound.setdefault(want, (got, name, axis))
            elif want != got:
                raise UserError(f"{where}: '{name}' has {got} at axis {axis}, but the spec "
                                f"declares {want} there (shape {shape_text(shape)})")
        if name in label_names:  # checked as read, before a cast could wrap them
            _check_labels(name, a, label_names[name], where)
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
                        "store numbers (integers or floats) in the data file")
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


def _check_labels(name: str, labels: np.ndarray, classes: int, where: str) -> None:
    """Class labels must be classes that exist: 0..classes-1 (a -1 would silently pick
    the last class through indexing)."""
    bad = (labels < 0) | (labels >= classes)
    if not bad.any():
        return
    values = np.unique(labels[bad])
    shown = ", ".join(map(str, values[:6])) + (", …" if len(values) > 6 else "")
    raise UserError(f"{where}: '{name}' holds class labels, which must lie in "
                    f"0..{classes - 1} ({classes} classes), but it has {shown} "
                    f"({int(bad.sum())} of {labels.size} labels)",
                    "labels count classes from 0; relabel the data or give the model "
                    "more classes")


def _labels_or_one_hot(name, a, shape, wants_labels, where):
    if wants_labels and a.ndim == len(shape) + 1 and a.shape[-1] > 1:
        if a.size and not (np.all((a == 0) | (a == 1)) and np.all(np.sum(a, axis=-1) == 1)):
            raise UserError(f"{where}: '{name}' holds class labels, but is given as rows of "
                            f"{a.shape[-1]} values that are not one-hot",
                            "give integer labels, or rows with a single 1")
        return np.argmax(a, axis=-1)  # one-hot given where labels are declared
    if not wants_labels and a.ndim == len(shape) - 1 and len(shape) >= 1 \
            and isinstance(shape[-1], int) and shape[-1] > 1 and np.issubdtype(a.dtype,
                                                                               np.integer):
        k = shape[-1]
        _check_labels(name, a, k, where)
        return np.eye(k)[a]  # integer labels given where one-hot is declared
    if wants_labels and np.issubdtype(a.dtype, np.floating):
        if not np.all(a == np.round(a)):
            raise UserError(f"{where}: '{name}' holds class labels, but the values are not "
                            "whole numbers")
    return a


def shape_text(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"
