"""Gradient checking against central finite differences, on any module of the contract.

For each differentiated variable, K sampled entries (all of a small one) are bumped by
±eps and the central difference of ``loss`` is compared with ``loss_and_grad``. An entry
whose left and right differences disagree sits on a kink (relu at 0, a max tie) and is
skipped, not failed. A check never passes having compared nothing: a variable whose
sampled entries were all skipped (or that has no entries) fails with the reason, and so
does a loss or gradient that is not finite at the checked point (a NaN compares false
with everything, so it would otherwise slip through). An entry agrees when it is within
``tol`` (relative) or within the rounding of the difference quotient: ten ulps of the
loss over eps, plus the spread of its right and left slopes (rounding inside the loss,
batch norm's cancellation, shows there); one that does not is taken again at 10 and 100
times eps, where rounding weighs less, and the closest step is kept. Because only the
contract is used, a hand-edited module is checked exactly like a freshly generated one.

Modes: a module with dropout or batch norm is checked in each of its modes, training
then inference (``modes`` chooses). In training mode ``loss_and_grad(...,
training=True)`` is compared with ``loss(..., training=True)``: dropout's masks are held
fixed (each evaluation draws the same ones) and batch norm normalizes with the batch's
statistics; in inference mode ``loss_and_grad(..., training=False)`` with ``loss()``.
Every evaluation starts from its own copy of the same state, so no evaluation sees
running statistics another one moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


from ..compiler.vocab import RUNTIME_RANGES

from .datasets import synthetic
from .errors import UserError
from .modes import copy_state, fixed_masks, has_modes, inference_kwargs, inference_loss, training_loss
from .points import check_memory, check_point

MODES = ("training", "inference")


@dataclass
class Row:
    name: str
    shape: tuple
    checked: int
    skipped: int
    max_abs: float
    max_rel: float
    ok: bool
    why: str = ""  # what went wrong, when it is not a plain mismatch
    mode: str = ""  # "training" or "inference" for a module with modes, else ""

    @property
    def label(self) -> str:
        """The variable, and the mode it was checked in when the module has modes."""
        return f"{self.name} ({self.mode} mode)" if self.mode else self.name


def gradcheck(module, eps: float = 1e-6, tol: float = 1e-5, samples: int = 20, seed: int = 0,
              batch: int = 3, data: dict | None = None, params: dict | None = None,
              state: dict | None = None, modes: tuple[str, ...] = MODES) -> list[Row]:
    """Check every gradient of ``module`` at random data and parameters (or those given),
    from ``state`` (the module's initial state when None), never changing the caller's
    ``state``. A module with modes is checked in each of ``modes`` (default: training,
    then inference; one row per variable and mode); a module without, once."""
    for key, value in (("eps", eps), ("tol", tol), ("samples", samples), ("seed", seed),
                       ("batch", batch)):
        problem = RUNTIME_RANGES[key].problem(value)
        if problem:  # the CLI's flags are checked by the same table
            raise UserError(f"gradcheck: '{key}' {problem}")
    rng = np.random.default_rng(seed)
    given = data is not None
    # A module that declares its data (a generated one does) has its point checked as
    # bpc train checks data, and the memory a step takes before it is taken.
    declared = hasattr(module, "INPUTS") and hasattr(module, "TARGETS")
    if declared:
        from .batching import batch_axes, example_count

        examples = example_count(data, batch_axes(module)) if given else batch
        check_memory(module, examples, "a gradient check", "use a smaller --batch")
    if data is None:
        data = synthetic(module, rng, batch)
    if params is None:
        params = {k: np.array(v, dtype=np.float64) for k, v in module.init_params(rng).items()}
        # Move off symmetric points (zero biases, equal weights) that hide mistakes.
        params = {k: v + 0.05 * rng.normal(size=v.shape) for k, v in params.items()}
    if declared:  # labels that exist, one-hot rows, finite numbers; given or drawn
        checked = check_point(module, data, params, "gradcheck's data" if given
                              else "gradcheck's random batch")
        if given:  # as training would see them (labels given as one-hot rows, and so on)
            data = {**data, **checked}
    for mode in modes:
        if mode not in MODES:
            raise UserError(f"gradcheck: unknown mode {mode!r}; expected one of {MODES}")
    rows = []
    for mode in modes if has_modes(module) else ("",):
        with np.errstate(all="ignore"):
            if mode == "inference":  # the gradient of loss(), reading a copy of state
                kwargs = inference_kwargs(module, copy_state(state), "loss_and_grad")
                loss = inference_loss
            else:
                # training mode with fixed masks: the same dropout masks in every
                # evaluation, batch statistics, and a copy of the same state each time
                kwargs, loss = fixed_masks(module, state=state), training_loss
            _, grads = module.loss_and_grad(params, **data, **kwargs)
            rows += [_check_variable(module, name, g, params, data, eps, tol, samples, rng,
                                     state, loss, mode) for name, g in grads.items()]
    return rows


def _check_variable(module, name, g, params, data, eps, tol, samples, rng, state, loss,
                    mode) -> Row:
    """One row: up to ``samples`` entries of ``name`` compared with central differences
    of ``loss`` (``training_loss`` or ``inference_loss``)."""
    in_params = name in params
    base = np.array(params[name] if in_params else data[name], dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)

    def loss_at(arr):
        if in_params:
            return loss(module, {**params, name: arr}, data, state=state)
        return loss(module, params, {**data, name: arr}, state=state)

    def failed(why: str) -> Row:
        return Row(name, tuple(base.shape), 0, 0, math.nan, math.nan, False, why, mode)

    idx = list(np.ndindex(base.shape))
    if len(idx) > samples:
        idx = [idx[i] for i in rng.choice(len(idx), samples, replace=False)]
    f0 = loss_at(base)
    if not math.isfinite(f0):
        return failed(f"the loss is {f0} at the checked point")
    if not np.all(np.isfinite(g)):
        return failed("the gradient is not finite at the checked point")
    # Rounding in f(x ± eps) alone makes the central difference uncertain by about
    # |f| * machine-epsilon / eps: agreement within that floor is all one can ask.
    noise = 10 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / eps
    checked = skipped = 0
    ok = True
    max_abs = max_rel = 0.0
    for i in idx:
        plus, minus = base.copy(), base.copy()
        plus[i] += eps
        minus[i] -= eps
        fp, fm = loss_at(plus), loss_at(minus)
        if not (math.isfinite(fp) and math.isfinite(fm)):
            return failed(f"the loss is not finite at {name}{list(i)} ± eps; try a smaller "
                          "--eps")
        right, left = (fp - f0) / eps, (f0 - fm) / eps
        numeric = (fp - fm) / (2 * eps)
        if abs(right - left) > 1e-3 * max(1.0, abs(numeric)):
            skipped += 1  # left and right slopes differ: a kink, not a smooth point
            continue
        analytic = float(g[i]) if g.shape else float(g)
        err = abs(analytic - numeric)
        scale = max(abs(analytic), abs(numeric))
        # Rounding inside the loss can exceed |f| * machine-epsilon (batch norm's x - mean
        # cancels: a bias before it has an exact gradient of 0), and shows as right and
        # left slopes that disagree by as much: that spread is part of the floor. The
        # central difference's share of rounding shrinks as the step grows while its
        # truncation error grows as step^2, so an entry off at eps is taken again at 10
        # and 100 times eps, keeping the closest. A wrong gradient is off at every step.
        floor = noise + abs(right - left)
        for step in (10 * eps, 100 * eps):
            if err <= tol * scale + floor:
                break
            plus, minus = base.copy(), base.copy()
            plus[i] += step
            minus[i] -= step
            fp, fm = loss_at(plus), loss_at(minus)
            if not (math.isfinite(fp) and math.isfinite(fm)):
                break
            wider = (fp - fm) / (2 * step)
            if abs(analytic - wider) < err:
                numeric, err = wider, abs(analytic - wider)
                scale = max(abs(analytic), abs(numeric))
                floor = noise * eps / step + abs((fp - f0) - (f0 - fm)) / step
        rel = err / max(scale, floor / tol)
        ok = ok and err <= tol * scale + floor
        max_abs, max_rel = max(max_abs, err), max(max_rel, rel)
        checked += 1
    why = ""
    if checked == 0:
        ok = False
        why = (f"no entry compared: all {skipped} sampled entries sit on kinks" if skipped
               else "no entry compared: it has no entries")
    return Row(name, tuple(base.shape), checked, skipped, max_abs, max_rel, bool(ok), why,
               mode)


def format_table(rows: list[Row]) -> str:
    """The rows as a table; a ``mode`` column when the module has modes."""
    header = ("variable", "shape", "checked", "skipped", "max abs err", "max rel err", "")
    with_mode = any(r.mode for r in rows)
    if with_mode:
        header = ("variable", "mode", *header[1:])
    lines = [header] + [
        (r.name, *((r.mode,) if with_mode else ()),
         "scalar" if not r.shape else "[" + ", ".join(map(str, r.shape)) + "]",
         str(r.checked), str(r.skipped), f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
         "ok" if r.ok else f"FAIL: {r.why}" if r.why else "FAIL") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)
