"""The primitive table, as the rest of the compiler imports it.

The ops themselves live in ``compiler/ir/ops/``, one module per family, each op a stanza
of named fields (shape rule, NumPy printer, evaluator, vector-Jacobian rule, calculus
rule, buffer forms, examples); the module helpers of generated code are real functions
in ``ops/kernels.py``. This module re-exports what other modules use.
"""

from __future__ import annotations

from .ops import (ATOM, HELPERS, PRIMITIVES, Primitive, broadcast_shapes, data_roles, expand,
                  format_number, index_text, indexed_shape, keep_axes, labels, one_exponential,
                  out_hw, pair, paren, softmax_xent_parts, styled, take, unread)

__all__ = ["ATOM", "HELPERS", "PRIMITIVES", "Primitive", "broadcast_shapes", "data_roles",
           "expand", "format_number", "index_text", "indexed_shape", "keep_axes", "labels",
           "one_exponential", "out_hw", "pair", "paren", "softmax_xent_parts", "styled",
           "take", "unread"]
