"""The op table: every IR operation, registered by family.

One module per family holds each op as a stanza of named fields (``core.defop`` and its
constructors ``unop``, ``binop``, ``reduction``), with examples of valid arguments that
drive tests/compiler/ir/test_op_examples.py: ``arithmetic`` (leaves, constants, operators,
comparisons), ``elementwise``, ``reductions``, ``linalg`` (products and reshapes),
``indexing``, ``embedding`` (rows picked by ids), ``convolution`` (and pooling),
``losses``, ``modes`` (random draws), ``normalization`` (batch norm's fused scale, the
fast style's), ``positions`` (positional encodings) and ``recurrence`` (loops over time).
``kernels`` holds the module helpers: real NumPy functions that codegen copies into
generated modules (``HELPERS``) and the evaluator calls; ``torch_kernels`` their torch
twins, for the PyTorch target (``TORCH_HELPERS``). Nothing else in the compiler
switches on operation names: it asks ``PRIMITIVES``.
"""

from __future__ import annotations

import ast
from pathlib import Path

# Importing a family registers its ops.
from . import arithmetic, convolution, elementwise, indexing, linalg, losses, modes  # noqa: F401
from . import embedding  # noqa: F401
from . import kernels, normalization, positions, recurrence, reductions  # noqa: F401
from .convolution import out_hw, pair, unread
from .core import (ATOM, PRIMITIVES, Primitive, broadcast_shapes, data_roles, expand,
                   format_number, keep_axes, paren, styled)
from .indexing import index_text, indexed_shape, take
from .losses import labels, one_exponential, softmax_xent_parts



def _sources(file: str) -> dict[str, str]:
    """Each top-level function of a kernels file, by name, as its text is written there:
    read, not imported (torch_kernels.py imports torch, which compiling never needs)."""
    text = (Path(__file__).parent / file).read_text(encoding="utf-8")
    lines = text.splitlines()
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])  # whole lines
            for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}


# Helpers the printed code may call, defined once at the top of a generated module: each
# kernel's source, copied as it is written in kernels.py (torch_kernels.py on torch).
HELPERS: dict[str, str] = _sources("kernels.py")
TORCH_HELPERS: dict[str, str] = _sources("torch_kernels.py")

__all__ = ["ATOM", "HELPERS", "PRIMITIVES", "TORCH_HELPERS", "Primitive", "broadcast_shapes",
           "data_roles", "expand", "format_number", "index_text", "indexed_shape", "keep_axes",
           "labels", "one_exponential", "out_hw", "pair", "paren", "softmax_xent_parts",
           "styled", "take", "unread"]
