"""The C allocator set for a training process: large freed blocks kept for the next step.

A training step allocates its activations afresh and frees them by its end. With glibc's
defaults a block over the mmap threshold (128 KiB, raised on the fly up to 32 MiB) is
mapped from the kernel on allocation and unmapped when freed, and the top of the heap is
given back past the trim threshold, so every step faults its pages in again: ~2,600-2,900
page faults per SimpleConvNet step (batch 100), a fifth of its time. ``mallopt`` raising
both thresholds keeps the freed memory in the heap, where the next step finds it: no
page faults, and the step 20-38% faster (measured in bench/README.md). The cost is that
memory a step freed is not returned to the system until the process ends, so only a
process that exists to train sets it (``bpc train``; ``bench/``), never a library call
inside someone else's process (``Model.train`` in a notebook).

Reusing the activations' buffers across steps in the generated code (as ``grads=`` does
for gradients) was the alternative: it needs a buffer argument per activation, and the
allocator setting gives the same page-fault count (0) with no change to any module.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap and are kept when freed (glibc accepts up to the
# address space's limit on 64-bit builds; a refusal falls back to its own 32 MiB maximum).
KEEP_BELOW = 1 << 30
FALLBACK = 32 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library
    is not glibc (or refuses), which changes nothing."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError, TypeError):  # no mallopt: macOS, Windows
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, KEEP_BELOW) or mallopt(M_MMAP_THRESHOLD, FALLBACK)):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BELOW - 1))
