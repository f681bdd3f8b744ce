"""How many threads the array libraries compute with (``--threads``): NumPy's BLAS and
OpenMP pools, through threadpoolctl, and torch's intra-op pool, for the length of a
command. A small model gains nothing from a second thread, and on a machine whose cores
are busy a pool's threads wait for each other: ``copy_lstm.bp``, 5 epochs, took 10-73 s
with OpenBLAS's two threads under a load of 5 on two cores, 2-4 s with one (README).
Without ``--threads`` the libraries keep their own defaults."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def limited(threads: int | None):
    """Within the block the BLAS/OpenMP pools loaded and torch's use ``threads`` threads
    (torch loaded within the block too: OMP_NUM_THREADS, which it reads as it starts);
    the previous numbers are restored after. None: nothing changed."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            yield
    finally:
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env
        if torch is not None:
            torch.set_num_threads(before)
