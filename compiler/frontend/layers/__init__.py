"""The layer kinds of a ``layers IN -> OUT { … }`` stack, one unit (module) per kind or
small family: its signature, its desugaring and its entry in docs/LANGUAGE.md.

This registry collects the units; the tables the rest of the compiler reads (``LAYERS``
for the parser, checker and lexer, ``KINDS`` and ``BLOCKS`` for desugaring) are derived
from it. A new kind is a new unit listed in ``UNITS``; ``reference()`` is the text of
LANGUAGE.md's list of layer kinds, which tests/compiler/frontend/test_layer_units.py keeps current.
"""

from __future__ import annotations

from . import (activations, attention, batchnorm, conv, dense, dropout, embedding, flatten,
               layernorm, pooling, posenc, recurrent, residual, sequence_pooling)
from .base import BlockKind, LayerKind
from ...vocab import Signature

# In the order of docs/LANGUAGE.md.
UNITS = (dense, activations, conv, pooling, flatten, dropout, batchnorm, layernorm,
         sequence_pooling, posenc, attention, residual, embedding, recurrent)

KINDS: dict[str, LayerKind] = {k.name: k for unit in UNITS for k in getattr(unit, "KINDS", ())}
BLOCKS: dict[str, BlockKind] = {b.name: b for unit in UNITS
                                for b in getattr(unit, "BLOCKS", ())}
LAYERS: dict[str, Signature] = {name: kind.signature for name, kind in KINDS.items()}


def reference() -> str:
    """The list of layer kinds in docs/LANGUAGE.md, one entry per unit."""
    return "\n".join(unit.DOC for unit in UNITS) + "\n"
