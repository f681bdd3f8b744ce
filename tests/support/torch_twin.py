"""The torch target against the NumPy target: one compilation printed for both.

``agree(comp, seed)`` writes a ``Compilation`` for NumPy and for torch (the same stages,
so the same schedule), draws parameters and data from the NumPy module's tables
(``diffharness.draw``), feeds the SAME values to both (as float64 CPU tensors to torch)
and compares loss, every gradient, predict and the state after a training-mode call
(within ``TOL`` of the largest value). It also checks torch's own autograd over the torch
module's forward (the textbook style's ``loss``, without its ``no_grad``) against the
written-out backward. Dropout draws its masks from a NumPy Generator in one module and a
torch Generator in the other: training mode of a model that draws is compared within the
torch module only (autograd against the backward, with the same generator seed).
Returns a list of problems (empty: they agree); raises ``diffharness.Skip`` for a point
where the values overflow or sit on a kink.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from diffharness import Skip, draw

TOL = 1e-10


def _close(problems: list[str], what: str, got, want) -> None:
    if not isinstance(got, torch.Tensor):
        problems.append(f"{what} is {type(got).__name__}, not a torch.Tensor")
        return
    if got.dtype != torch.float64:
        problems.append(f"{what} has dtype {got.dtype}, not torch.float64")
    got, want = got.detach().cpu().numpy(), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        problems.append(f"{what}: shape {got.shape} != {want.shape}")
        return
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not err <= TOL * scale or np.any(np.isnan(got) != np.isnan(want)):
        problems.append(f"{what}: max abs error {err:.3g} (scale {scale:.3g})")


def _tensors(values: dict) -> dict:
    return {k: torch.as_tensor(np.array(v, copy=True)) for k, v in values.items()}


def _call(fn, params, data, **keywords):
    """``fn(params, ...)`` with the data it takes, by name."""
    accepted = inspect.signature(fn).parameters
    args = {k: v for k, v in data.items() if k in accepted}
    return fn(params, **args, **{k: v for k, v in keywords.items() if k in accepted})


def _finite(*values) -> bool:
    return all(np.all(np.isfinite(np.asarray(v, dtype=float)))
               and np.all(np.abs(np.asarray(v, dtype=float)) < 1e6) for v in values)


def agree(comp, seed: int = 0, targets: dict | None = None, init: bool = False) -> list[str]:
    """Problems found comparing the torch module of ``comp`` with its NumPy module;
    ``init``: parameters from the NumPy module's init_params (a deep net's own scale),
    else drawn normal(0, 0.7)."""
    npm = comp.retargeted("numpy").new_module()
    tm = comp.retargeted("torch").new_module()
    rng = np.random.default_rng(seed)
    params, data = draw(npm, None, rng, targets=targets, init=init)
    takes = inspect.signature(npm.loss_and_grad).parameters
    state = npm.init_state() if hasattr(npm, "init_state") else None
    draws = "rng" in takes
    problems: list[str] = []

    # inference mode (the default of loss and predict): every model, each call from the
    # initial state (a loop continuing a state moves it in every call)
    def fresh():
        return None if state is None else dict(state)

    def tfresh():
        return None if state is None else _tensors(state)

    want_loss = _call(npm.loss, params, data, state=fresh(), training=False)
    want_l, want_g = _call(npm.loss_and_grad, params, data, state=fresh(), training=False)
    want_y = _call(npm.predict, params, data, state=fresh())
    if not _finite(want_loss, want_l, want_y, *want_g.values()):
        raise Skip("an overflow")
    tp, td = _tensors(params), _tensors(data)
    _close(problems, "loss", _call(tm.loss, tp, td, state=tfresh(), training=False),
           want_loss)
    got_l, got_g = _call(tm.loss_and_grad, tp, td, state=tfresh(), training=False)
    _close(problems, "loss_and_grad's loss", got_l, want_l)
    if set(got_g) != set(want_g):
        problems.append(f"gradients for {sorted(got_g)}, NumPy's for {sorted(want_g)}")
    for name in want_g:
        if name in got_g:
            _close(problems, f"gradient {name}", got_g[name], want_g[name])
    _close(problems, "predict", _call(tm.predict, tp, td, state=tfresh()), want_y)

    if state is not None and not draws:  # training mode: batch norm's statistics
        np_state, t_state = {k: np.array(v) for k, v in state.items()}, _tensors(state)
        want_l, want_g = _call(npm.loss_and_grad, params, data, state=np_state)
        got_l, got_g = _call(tm.loss_and_grad, tp, td, state=t_state)
        _close(problems, "training loss", got_l, want_l)
        for name in want_g:
            _close(problems, f"training gradient {name}", got_g[name], want_g[name])
        for name in np_state:
            _close(problems, f"state {name} after a training call", t_state[name],
                   np_state[name])
    problems += autograd_agrees(comp, tp, td, state, seed)
    return problems


def autograd_agrees(comp, tp: dict, td: dict, state, seed: int) -> list[str]:
    """torch.autograd over the torch module's forward (the textbook style's loss, its
    no_grad taken off) against its written-out backward, in the mode ``loss_and_grad``
    takes by default (training, for a model with modes), with the same masks."""
    tm = comp.restyled("textbook", target="torch").new_module()
    fast = comp.retargeted("torch").new_module()
    takes = inspect.signature(fast.loss_and_grad).parameters
    training = "training" in takes
    forward = (tm._loss_training if training else tm.loss).__wrapped__

    def keywords():
        out = {}
        if state is not None:
            out["state"] = _tensors(state)
        if "rng" in takes:
            out["rng"] = torch.Generator().manual_seed(seed)
        return out

    leaves = {k: v.clone().requires_grad_(True) for k, v in tp.items()}
    value = _call(forward, leaves, td, **keywords())
    want_l, want_g = _call(fast.loss_and_grad, tp, td, **keywords())
    problems: list[str] = []
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        return problems  # the loss does not depend on the parameters
    names = [n for n in want_g if n in leaves]
    grads = torch.autograd.grad(value, [leaves[n] for n in names], allow_unused=True)
    _close(problems, "autograd's loss", want_l, value.detach())
    for name, g in zip(names, grads):
        want = torch.zeros_like(leaves[name]) if g is None else g
        _close(problems, f"autograd's gradient {name}", want_g[name], want)
    return problems
