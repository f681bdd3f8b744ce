"""The embedding's gradient, measured: ways to add the rows of ``dL/dout`` into a zero
table at their ids (repeated ids adding up), ``dL_dE = scatter_add(ids, g, V)``.

    python bench/embedding.py [--rounds 15]

- ``np.add.at``: the textbook style's ``_embed_grad`` (DLFS2's ``Embedding.backward``);
- ``bincount per column``: ``np.bincount(ids, weights=g[:, j])`` for each of the D columns;
- ``bincount flat``: one ``np.bincount`` over ``id * D + column``;
- ``sorted reduceat``: the fast style's ``_embed_grad_sorted``, rows sorted by id and each
  id's run summed by ``np.add.reduceat``;
- ``one-hot matmul``: ``one_hot(ids).T @ g`` (BLAS, but V x (N T) x D work).

Shapes: a character language model (N 32, T 64, V 65, D 65), DLFS2's PTB model (N 20,
T 35, V 10,000, D 100) and a word model in float32 (N 128, T 50, V 1,000, D 64). Each
figure is the median over ``rounds`` of the best of 5 calls, the forms alternating, one
BLAS thread; every form is checked against ``np.add.at`` first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from compiler.ir.ops.kernels import _embed_grad, _embed_grad_sorted  # noqa: E402

SHAPES = [(32, 64, 65, 65, "float64"), (20, 35, 10000, 100, "float64"),
          (128, 50, 1000, 64, "float32")]


def bincount_columns(ids, g, rows):
    flat, cols = ids.ravel(), g.reshape(-1, g.shape[-1])
    return np.stack([np.bincount(flat, weights=cols[:, j], minlength=rows)
                     for j in range(cols.shape[1])], axis=1).astype(g.dtype)


def bincount_flat(ids, g, rows):
    d = g.shape[-1]
    index = (ids.reshape(-1, 1) * d + np.arange(d)).ravel()
    return np.bincount(index, weights=g.ravel(), minlength=rows * d).reshape(
        rows, d).astype(g.dtype)


def one_hot_matmul(ids, g, rows):
    return np.eye(rows, dtype=g.dtype)[ids.ravel()].T @ g.reshape(-1, g.shape[-1])


FORMS = {"np.add.at": _embed_grad, "bincount per column": bincount_columns,
         "bincount flat": bincount_flat, "sorted reduceat": _embed_grad_sorted,
         "one-hot matmul": one_hot_matmul}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    rounds = p.parse_args().rounds
    rng = np.random.default_rng(0)
    print(f"embedding gradient, ms per call (median of {rounds} rounds), NumPy "
          f"{np.__version__}")
    for n, steps, rows, d, dtype in SHAPES:
        ids = rng.integers(0, rows, size=(n, steps))
        g = rng.normal(size=(n, steps, d)).astype(dtype)
        want = _embed_grad(ids, g, rows)
        for name, form in FORMS.items():
            np.testing.assert_allclose(form(ids, g, rows), want, rtol=1e-4, atol=1e-4,
                                       err_msg=name)
        times: dict[str, list[float]] = {k: [] for k in FORMS}
        names = list(FORMS)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                best = float("inf")
                for _ in range(5):
                    start = time.perf_counter()
                    FORMS[name](ids, g, rows)
                    best = min(best, time.perf_counter() - start)
                times[name].append(best)
        base = statistics.median(times["np.add.at"])
        print(f"N {n}, T {steps}, V {rows}, D {d}, {dtype}:")
        for name in names:
            t = statistics.median(times[name])
            print(f"  {name:20s} {1e3 * t:8.3f} ms  {base / t:5.2f}x np.add.at")


if __name__ == "__main__":
    main()
