"""The batch axis: which axis of each array counts the examples, and the examples and
minibatches taken along it; the ``Dataset`` whose arrays they are.

Examples are counted, batched and evaluated along the *batch axis*: wherever the
declared shape puts the batch dimension (``[N, 2]`` or, in the column convention,
``[2, N]``). Built-in data sets and .csv files are row-major (one example per row) and are
arranged into the declared layout (``arrange``); an .npz must already have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UserError


@dataclass
class Dataset:
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "data"
    notes: list[str] = field(default_factory=list)  # said once when training starts
    # Held-out examples to validate on while training (name -> array; None: none, or
    # --validation's fraction of ``train``, split off by the run).
    validation: dict[str, np.ndarray] | None = None

    def size(self, module, split: str = "train") -> int:
        """Examples in a split, counted along the batch axis of the arrays the module
        names (never of an extra array that happens to be in the file)."""
        arrays = self.train if split == "train" else self.test
        return example_count(arrays, batch_axes(module))


def batch_dim(module) -> str | None:
    """The symbolic dimension that counts examples: the one declared exactly once in every
    input (but those with a default) and every target. None when there is no such
    dimension: the data is then a single example, trained on whole at every step. When
    several qualify, the one named ``N``; without one, which to batch along is a guess,
    so it is an error."""
    declared = {**module.INPUTS, **module.TARGETS}
    defaults = getattr(module, "DEFAULTS", {}) or {}
    shapes = [tuple(shape) for name, shape in declared.items() if name not in defaults]
    if not shapes:
        return None
    candidates = [d for d in dict.fromkeys(shapes[0]) if isinstance(d, str)
                  and all(shape.count(d) == 1 for shape in shapes)]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    if "N" in candidates:
        return "N"
    raise UserError("cannot tell which dimension counts the examples: every input and "
                    "target has " + " and ".join(candidates),
                    "name the batch dimension N (e.g. 'input x : [N, T]')")


def dimension_sizes(module, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """The sizes the declared shapes' symbolic dimensions other than the batch's take in
    ``arrays`` (checked ones: conform has seen they agree), e.g. ``{"T": 35}``: what a
    step's memory record is evaluated at beside the batch."""
    dim = batch_dim(module)
    sizes: dict[str, int] = {}
    for name, shape in {**module.INPUTS, **module.TARGETS}.items():
        a = arrays.get(name)
        if a is not None and np.ndim(a) == len(shape):
            sizes.update({d: int(n) for d, n in zip(shape, np.shape(a))
                          if isinstance(d, str) and d != dim})
    return sizes


def batch_axes(module) -> dict[str, int]:
    """Input/target name -> the axis of its batch dimension. Arrays without it are absent
    here: every batch gets them whole."""
    dim = batch_dim(module)
    return {name: tuple(shape).index(dim)
            for name, shape in {**module.INPUTS, **module.TARGETS}.items()
            if dim is not None and tuple(shape).count(dim) == 1}


def example_count(arrays: dict[str, np.ndarray], axes: dict[str, int]) -> int:
    """How many examples ``arrays`` hold: the size of the batch axis of a named array;
    1 when none has one (the data is one example); 0 for no arrays."""
    if not arrays:
        return 0
    for name, axis in axes.items():
        if name in arrays and np.ndim(arrays[name]) > axis:
            return int(np.shape(arrays[name])[axis])
    return 1


def arrange(a: np.ndarray, shape, axis: int | None) -> np.ndarray:
    """A row-major array (examples along axis 0, as built-ins and .csv rows give them) in
    the declared layout: the example axis moved to the batch axis ``axis``."""
    if axis is None or axis == 0 or a.ndim != len(shape):
        return a
    return np.ascontiguousarray(np.moveaxis(a, 0, axis))


def examples(arrays: dict[str, np.ndarray], axes: dict[str, int], index) -> dict:
    """The examples ``index`` (an index array, or a slice: a view) of every array, along
    its batch axis; arrays without one whole."""
    return {k: _take(v, axes.get(k), index) for k, v in arrays.items()}


def _take(a: np.ndarray, axis: int | None, index) -> np.ndarray:
    if axis is None:
        return a
    if axis == 0:  # the usual layout, without building an index tuple (once a step)
        return a[index]
    # Indexing, not np.take: take copies the whole of a non-C-ordered array first (a
    # CSV's columns are Fortran-ordered), per batch.
    return a[(slice(None),) * axis + (index,)]


def batches(arrays: dict[str, np.ndarray], batch: int, rng: np.random.Generator | None,
            axes: dict[str, int] | None = None):
    """Minibatches of every array, taken along each array's batch axis (``axes``, from
    ``batch_axes``; axis 0 of every array when not given), in a shuffled order when
    ``rng`` is given. Arrays without a batch axis go whole into every batch. One batch at
    a time: views (slices) in order, or the examples of one batch gathered when shuffled;
    never a copy of the whole data set."""
    if axes is None:
        axes = {k: 0 for k in arrays}
    n = example_count(arrays, axes)
    order = batch_order(n, rng)
    for i in range(-(-n // batch)):
        yield batch_at(arrays, axes, order, batch, i)


def batch_order(n: int, rng: np.random.Generator | None) -> np.ndarray | None:
    """The order of an epoch's examples: a permutation drawn from ``rng``, or None (in
    order). The only draw an epoch makes."""
    return rng.permutation(n) if rng is not None else None


def batch_at(arrays: dict[str, np.ndarray], axes: dict[str, int], order, batch: int,
             i: int) -> dict[str, np.ndarray]:
    """Batch ``i`` of an epoch in ``order`` (``batch_order``): a view when in order."""
    start = i * batch
    idx = order[start:start + batch] if order is not None else slice(start, start + batch)
    return examples(arrays, axes, idx)
