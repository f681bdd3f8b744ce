"""The language's functions interpreted in PyTorch for the oracle (torch_oracle): one table,
``FUNCTIONS``, a function's name -> ``fn(o, e, env)`` (the oracle, the ``ast.Call``, the
values in scope), gathered from the families' tables."""

from __future__ import annotations

from oracle_functions import arrays, attention, elementwise, images, losses, modes, sequences

FUNCTIONS = {**elementwise.FUNCTIONS, **arrays.FUNCTIONS, **images.FUNCTIONS,
             **losses.FUNCTIONS, **modes.FUNCTIONS, **sequences.FUNCTIONS,
             **attention.FUNCTIONS}
