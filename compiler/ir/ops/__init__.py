"""The op table: every IR operation, registered by family.

One module per family holds each op as a stanza of named fields (``core.defop`` and its
constructors ``unop``, ``binop``, ``reduction``), with examples of valid arguments that
drive tests/compiler/ir/test_op_examples.py: ``arithmetic`` (leaves, constants, operators,
comparisons), ``elementwise``, ``reductions``, ``linalg`` (products and reshapes),
``indexing``, ``convolution`` (and pooling), ``losses`` and ``modes`` (random draws).
``kernels`` holds the module helpers: real NumPy functions that codegen copies into
generated modules (``HELPERS``) and the evaluator calls; ``torch_kernels`` their torch
twins, for the PyTorch target (``TORCH_HELPERS``). Nothing else in the compiler
switches on operation names: it asks ``PRIMITIVES``.
"""

from __future__ import annotations

import inspect

# Importing a family registers its ops.
from . import arithmetic, convolution, elementwise, indexing, linalg, losses, modes  # noqa: F401
from . import kernels, reductions, torch_kernels  # noqa: F401
from .convolution import out_size
from .core import (ATOM, PRIMITIVES, Primitive, broadcast_shapes, data_roles, expand,
                   format_number, keep_axes, paren)
from .indexing import index_text, indexed_shape, take
from .losses import labels



def _sources(module) -> dict[str, str]:
    return {name: inspect.getsource(fn).rstrip("\n") for name, fn in vars(module).items()
            if inspect.isfunction(fn) and fn.__module__ == module.__name__}


# Helpers the printed code may call, defined once at the top of a generated module: each
# kernel's source, copied as it is written in kernels.py (torch_kernels.py on torch).
HELPERS: dict[str, str] = _sources(kernels)
TORCH_HELPERS: dict[str, str] = _sources(torch_kernels)

__all__ = ["ATOM", "HELPERS", "PRIMITIVES", "TORCH_HELPERS", "Primitive", "broadcast_shapes",
           "data_roles", "expand", "format_number", "index_text", "indexed_shape", "keep_axes",
           "labels", "out_size", "paren", "take"]
