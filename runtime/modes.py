"""Training and inference modes, as the runtime sees a generated module.

A module whose spec uses ``dropout`` computes ``predict`` and ``loss`` in inference mode
and ``loss_and_grad(..., rng=...)`` in training mode, drawing its masks from ``rng``
(docs/DESIGN.md, "Modes"). A v1 module has no ``rng`` argument and nothing here costs
it anything.
"""

from __future__ import annotations

import inspect

import numpy as np

MASK_SEED = 0  # the generator seed the IR evaluator draws masks with (compiler/evaluate.py)


def takes_rng(module) -> bool:
    """Whether ``loss_and_grad`` draws random masks (training mode differs)."""
    return "rng" in inspect.signature(module.loss_and_grad).parameters


def fixed_masks(module, seed: int = MASK_SEED) -> dict:
    """Keyword arguments for one ``loss_and_grad`` call drawing the masks of ``seed``:
    a new generator each call, so every call draws the same masks ({} for a v1 module)."""
    return {"rng": np.random.default_rng(seed)} if takes_rng(module) else {}


def training_loss(module, params, data: dict, seed: int = MASK_SEED) -> float:
    """The loss in training mode with the masks of ``seed`` (``loss`` itself for a module
    without modes): what finite differences of ``loss_and_grad``'s gradient compare with."""
    if takes_rng(module):
        return float(module.loss_and_grad(params, **data, **fixed_masks(module, seed))[0])
    return float(module.loss(params, **data))
