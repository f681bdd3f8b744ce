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

import types

import numpy as np

from .data import _numbers, conform


def contract(prog) -> types.SimpleNamespace:
    """The declarations of the module ``prog`` compiles to that the data checks read."""
    from bpc.compiler.backend.codegen import config_of

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
        _numbers(name, np.asarray(value), where)
    return out
