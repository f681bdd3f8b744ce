"""Where a point or a data set enters a command: one check for all of them.

``bpc train``, ``eval`` and ``predict`` check their data with ``data.conform``; the
views (``trace``, ``graph``, ``explain``, ``stats``, ``gradcheck``) take a point (``--at``
values, a row, or random data) and go through the same function here, so a label of
``-1`` or ``1.5``, a class that does not exist, a one-hot row summing to 2 or a value that
is not finite is refused everywhere with the same message. A view has the spec's
``Program``, not its module: ``contract`` gives the declarations ``conform`` reads
(``INPUTS``, ``TARGETS``, ``DEFAULTS``, ``DTYPE`` and ``CONFIG``, from the code generator's
own ``config_of``), so the facts are the compiler's, never guessed.
"""

from __future__ import annotations

import math
import types

import numpy as np

from .conform import conform, finite_numbers
from .errors import UserError


def contract(prog) -> types.SimpleNamespace:
    """The declarations of the module ``prog`` compiles to that the data checks read."""
    from ..compiler.backend.config import config_of

    return types.SimpleNamespace(
        INPUTS={bd.name: tuple(bd.node.shape) for bd in prog.inputs},
        TARGETS={bd.name: tuple(bd.node.shape) for bd in prog.targets},
        DEFAULTS=dict(prog.defaults), DTYPE=np.dtype(prog.dtype), CONFIG=config_of(prog))


def check_point(module, feeds: dict, params: dict | None = None,
                where: str = "--at") -> dict[str, np.ndarray]:
    """``feeds`` checked as ``bpc train`` checks its data (``conform``: shapes, finite
    numbers, labels that exist, one-hot rows) and ``params`` as finite numbers; the
    conformed data, or a UserError naming ``where`` and the array at fault."""
    declared = {**module.INPUTS, **module.TARGETS}
    out = conform({k: v for k, v in feeds.items() if k in declared}, module, where)
    for name, value in (params or {}).items():
        finite_numbers(name, np.asarray(value), where)
    return out


# ----------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable (else free
    pages), less where a cgroup's limit or the address-space limit (ulimit -v) is lower;
    None when nothing says."""
    import os
    import resource

    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:  # cgroup v2: the container's own limit
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
                found.append(int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm", encoding="ascii") as f:
                used = int(f.read().split()[0]) * resource.getpagesize()
            found.append(soft - used)
    except (OSError, ValueError, IndexError):
        pass
    override = os.environ.get("BPC_MEMORY_AVAILABLE")  # tests: a machine of this size
    if override and override.isdigit():
        found.append(int(override))
    return max(0, min(found)) if found else None


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def memory_needed(module, batch: int, forward_only: bool = False,
                  sizes: dict | None = None) -> tuple[int, str, list | None]:
    """(bytes, what, moment) a step over ``batch`` examples holds at least (``sizes``:
    other symbolic dimensions), from the compiler's record (CONFIG ``memory``); (0, "",
    None) for a module without one."""
    from ..compiler.memory_terms import value_at

    record = (getattr(module, "CONFIG", {}) or {}).get("memory")
    if not isinstance(record, dict):
        return 0, "", None
    dim = _batch_dim(module)
    at = {**(sizes or {}), **({dim: batch} if dim else {})}
    best = (0, "", None)
    for m in record.get("moments", ()):
        if not isinstance(m, (list, tuple)) or len(m) != 6 or forward_only and not m[4]:
            continue
        need = value_at(m[3], at)
        if need is not None and need > best[0]:
            best = (need, "moment", m)
    if not forward_only:
        kept = value_at(record.get("kept", {}), at)
        if kept is not None and kept > best[0]:
            best = (kept, "kept", None)
    return best


def _batch_dim(module) -> str | None:
    from .batching import batch_dim

    return batch_dim(module)


def check_memory(module, batch: int, what: str, fix: str, forward_only: bool = False,
                 sizes: dict | None = None) -> None:
    """Refuse, before anything is allocated, a step over ``batch`` examples that needs
    more memory than is available: a UserError naming the value, its shape and bytes,
    and the fix (``fix``: how to change the batch, e.g. "use a smaller --batch"; "" when
    the command's batch is fixed)."""
    need, kind, moment = memory_needed(module, batch, forward_only, sizes)
    if not need:
        return
    free = available_memory()
    if free is None or need <= free:
        return
    dim = _batch_dim(module)
    if kind == "kept":
        cause = (f"the forward values its backward pass reads (activations, patch "
                 f"matrices, masks) take {size_text(need)} together")
    else:
        label, shape, dtype, _, _, op = moment
        concrete = [batch if d == dim else (sizes or {}).get(d, d) for d in shape]
        own = math.prod(d for d in concrete if isinstance(d, int)) * \
            (1 if dtype == "bool" else 4 if dtype == "float32" else 8)
        role = ", the patch matrix of a convolution," if op == "im2col" else ""
        cause = (f"'{label}'{role} has shape {concrete} of {dtype} ({size_text(own)}; "
                 f"{size_text(need)} with the other arrays of the operation that reads "
                 "or writes it)")
    one = memory_needed(module, 1, forward_only, sizes)[0]
    fits = batch * free // need if need else batch
    if one > free or not fix:
        hint = ("even one example needs " + size_text(one) + ": "
                if one > free and batch > 1 else "") + \
            ("make that value smaller in the spec (a larger stride, a smaller kernel count "
             "or input)" if moment and moment[5] == "im2col" else
             "make the model's values smaller in the spec")
        if fix and one <= free:
            hint = f"{fix} (at most about {max(int(fits), 1)} fits), or " + hint
    else:
        hint = f"{fix} (at most about {max(int(fits), 1)} fits now)"
        if moment and moment[5] == "im2col":
            hint += ", or a larger stride or smaller input in the spec"
    raise UserError(f"{what} over {batch} example{'s' if batch != 1 else ''} needs at "
                    f"least {size_text(need)} of memory, and {size_text(free)} is "
                    f"available: {cause}", hint)


def check_dataset_memory(description: str, examples: int, module, per_n: int = 1) -> None:
    """Refuse a generated data set that would not fit: ``examples`` examples (``per_n``
    for each of its ``n``) of every declared input and target, as generated (float64)
    and as conformed."""
    from .batching import batch_dim

    dim = batch_dim(module)
    per = 0
    for shape in {**module.INPUTS, **module.TARGETS}.values():
        per += math.prod(d for d in shape if isinstance(d, int)) * 8 * 2 if dim in shape \
            else 0
    need = per * examples
    free = available_memory()
    if free is None or need <= free:
        return
    raise UserError(f"data {description}: {examples} examples would take about "
                    f"{size_text(need)} of memory, and {size_text(free)} is available",
                    f"use a smaller n (at most about "
                    f"{max(free // max(per * per_n, 1), 1)} fits)")


def eval_chunk(module, arrays: dict | None = None, largest: int = 2048) -> int:
    """Examples per evaluation call (``predict_all``, ``mean_loss``: the first two chunks
    are also evaluated together) whose forward pass over ``arrays`` (their sequences'
    lengths) fits in the memory available: ``largest``, halved until it fits."""
    from .batching import dimension_sizes

    free = available_memory()
    sizes = dimension_sizes(module, arrays or {})
    chunk = largest
    while free is not None and chunk > 1 and \
            memory_needed(module, 2 * chunk, forward_only=True, sizes=sizes)[0] > free:
        chunk //= 2
    return chunk
