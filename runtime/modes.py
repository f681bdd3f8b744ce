"""Training and inference modes, as the runtime sees a generated module.

A module whose spec uses ``dropout`` or ``batch_norm`` has modes: ``loss`` and
``loss_and_grad`` take the keyword ``training`` (defaults: ``loss(..., training=False)``,
inference mode; ``loss_and_grad(..., training=True)``, training mode) and compute either
mode; ``predict`` is inference mode. Training mode draws dropout's masks from ``rng``
and, with state (batch norm's running statistics: ``STATE``, ``init_state()``, the
keyword ``state`` on every function), normalizes with the batch's statistics and assigns
the updated running ones into the dict it is given; inference mode reads them
(docs/DESIGN.md, "Modes"). This is the one place the runtime asks a module about its
modes, and it always names the mode it wants; a v1 module has none of these keywords
and nothing here costs it anything.
"""

from __future__ import annotations

import inspect

import numpy as np

from .arrays import host_dtype, to_host

MASK_SEED = 0  # the generator seed the IR evaluator draws masks with (compiler/ir/evaluate.py)


def takes_rng(module) -> bool:
    """Whether training mode draws random masks (the spec has a dropout)."""
    return "rng" in inspect.signature(module.loss_and_grad).parameters


def has_modes(module) -> bool:
    """Whether ``loss`` and ``loss_and_grad`` take ``training`` (the spec has a dropout
    or a batch norm: training and inference differ)."""
    return "training" in inspect.signature(module.loss_and_grad).parameters


def takes_state(module) -> bool:
    """Whether the module has state (``STATE``, ``init_state``, the keyword ``state``)."""
    return getattr(module, "STATE", None) is not None


def initial_state(module) -> dict:
    """The state a run starts from (``module.init_state()``); {} for a module without."""
    if not takes_state(module):
        return {}
    return {k: np.array(to_host(v), dtype=host_dtype(module))
            for k, v in module.init_state().items()}


def copy_state(state: dict | None) -> dict | None:
    """A copy whose arrays are the caller's no longer: training on it moves nothing of
    theirs."""
    return None if state is None else {k: np.array(v, copy=True) for k, v in state.items()}


def _state_or_initial(module, state):
    return initial_state(module) if state is None else state


def inference_kwargs(module, state: dict | None = None, function: str = "predict") -> dict:
    """Keyword arguments of an inference-mode call of ``function`` (``"predict"``,
    ``"loss"`` or ``"loss_and_grad"``): ``state`` (the module's initial state when None)
    for a module with state, and ``training=False`` for ``loss`` and ``loss_and_grad`` of
    a module with modes; {} for a v1 module."""
    kwargs = {}
    if takes_state(module):
        kwargs["state"] = _state_or_initial(module, state)
    if function != "predict" and has_modes(module):
        kwargs["training"] = False
    return kwargs


def training_kwargs(module, state: dict | None = None, rng=None) -> dict:
    """Keyword arguments of a training-mode ``loss_and_grad`` or ``loss`` call:
    ``training=True``, ``state`` (the dict the call updates in place; a fresh initial
    state when None) and ``rng`` (the masks' generator; a generator of MASK_SEED when
    None), each for a module that takes it."""
    kwargs = {}
    if has_modes(module):
        kwargs["training"] = True
    if takes_state(module):
        kwargs["state"] = _state_or_initial(module, state)
    if takes_rng(module):
        kwargs["rng"] = np.random.default_rng(MASK_SEED) if rng is None else rng
    return kwargs


def fixed_masks(module, seed: int = MASK_SEED, state: dict | None = None) -> dict:
    """Keyword arguments for one ``loss_and_grad`` call drawing the masks of ``seed``:
    a new generator each call, so every call draws the same masks ({} for a v1 module).
    A module with state gets a copy of ``state`` (a fresh initial state when None), so
    the call moves nothing of the caller's."""
    rng = np.random.default_rng(seed) if takes_rng(module) else None
    return training_kwargs(module, copy_state(state), rng)


def training_loss(module, params, data: dict, seed: int = MASK_SEED,
                  state: dict | None = None) -> float:
    """The loss in training mode with the masks of ``seed`` and batch statistics,
    ``loss(..., training=True)`` (``loss`` itself for a module without modes): what
    finite differences of ``loss_and_grad``'s gradient compare with. The call runs on a
    *copy* of ``state`` (the initial state when None): evaluating a loss never moves the
    running statistics."""
    if has_modes(module):
        return float(module.loss(params, **data, **fixed_masks(module, seed, state)))
    if takes_rng(module) or takes_state(module):  # a module from before ``training``
        return float(module.loss_and_grad(params, **data,
                                          **fixed_masks(module, seed, state))[0])
    return float(module.loss(params, **data))


def inference_loss(module, params, data: dict, state: dict | None = None) -> float:
    """The loss in inference mode, ``loss(..., training=False)``, reading a copy of
    ``state`` (the initial state when None)."""
    return float(module.loss(params, **data,
                             **inference_kwargs(module, copy_state(state), "loss")))
