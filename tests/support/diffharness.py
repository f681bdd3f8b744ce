"""Differential testing of generated modules against the PyTorch oracle (tests/support/torch_oracle.py).

``differential(text, seed)`` compiles a spec with ``compile_text``, execs the module, draws
parameters and data from the module's own tables (PARAMS, INPUTS, TARGETS, CONFIG), and
compares the loss, every gradient and predict's output with the oracle; it also checks the
module's contract (gradients for exactly the oracle's variables, as ``np.ndarray`` of the
module's DTYPE and the parameter's shape). Failures raise ``Mismatch`` with a readable
report (the spec, what differs, expected vs got).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bpc.compiler.pipeline import compile_text

import os  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Values of symbolic dimensions, in order of first appearance (BPC_DIFF_SIZES=1,3 tries
# a batch of one, or one that coincides with a fixed dimension).
SIZES = tuple(int(v) for v in os.environ.get("BPC_DIFF_SIZES", "4,3,5,2,6").split(","))
TOL = {"float64": (1e-7, 1e-9), "float32": (2e-3, 1e-4)}  # (rtol, atol relative to scale)
# float32 gradients are also allowed FACTOR times how far the oracle's gradient moves
# when every adjoint it passes back is off by up to SIZE (relative; float32's unit
# roundoff is 6e-8): rounding, simulated. Where terms cancel (a bias right before batch
# norm, exactly 0, whose terms are the batch's adjoints) that is the terms' magnitude
# times the rounding; elsewhere it is far below rtol, which it does not loosen. SIZE is
# 8 float32 ulps, not 1: the module rounds its forward values too, which the simulation
# leaves out, and batch norm's x - mean amplifies that (bn_condition up to 3e2).
ROUNDING = {"size": 2.0 ** -17, "factor": 3.0}


class Mismatch(AssertionError):
    """The module disagrees with the oracle; ``problems`` lists each difference."""

    def __init__(self, message, problems=(), text=""):
        super().__init__(message)
        self.problems, self.text = list(problems), text


class Skip(Exception):
    """The drawn point is unsuitable (a tie at a kink, an overflow): draw another."""


def compile_with_hash_seed(text: str, hash_seed: int, path: str = "diff.bp"):
    """(name, source) compiled in a fresh interpreter with PYTHONHASHSEED=hash_seed."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from bpc.compiler.pipeline import compile_text; "
            "print(json.dumps(compile_text(sys.stdin.read(), sys.argv[1])))")
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    out = subprocess.run([sys.executable, "-c", code, path], input=text, text=True,
                         capture_output=True, env=env,
                         cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"compiling with PYTHONHASHSEED={hash_seed} failed:\n"
                           f"{out.stderr[-2000:]}")
    name, source = json.loads(out.stdout)
    return name, source


def build(text: str, path: str = "diff.bp", hash_seed: int | None = None,
          style: str = "fast"):
    if hash_seed is None:
        name, source = compile_text(text, path, style=style)
    else:
        name, source = compile_with_hash_seed(text, hash_seed, path)
    ns: dict = {"__name__": f"bpc_generated_{name}"}
    exec(compile(source, f"<generated {name}>", "exec"), ns)
    mod = SimpleNamespace(**ns)
    mod.__source__ = source
    return mod


def _sizes(mod) -> dict:
    sizes: dict = {}
    for table in (mod.INPUTS, mod.TARGETS, mod.PARAMS):
        for shape in table.values():
            for d in shape:
                if isinstance(d, str) and d not in sizes:
                    sizes[d] = SIZES[len(sizes) % len(SIZES)]
    return sizes


def _concrete(shape, sizes):
    return tuple(sizes[d] if isinstance(d, str) else int(d) for d in shape)


def draw(mod, oracle: "Oracle", rng: np.random.Generator, scale: float = 0.7,
         targets: dict | None = None, init: bool = False):
    """(params, data): arrays of the module's DTYPE (integer labels as int64). ``init``:
    parameters from the module's ``init_params`` plus a little noise (so zero biases do
    not sit on kinks), else normal(0, scale)."""
    dtype = np.dtype(mod.DTYPE)
    sizes = _sizes(mod)
    if init:
        start = mod.init_params(rng)
        params = {n: (np.asarray(start[n], dtype=np.float64)
                      + 0.05 * rng.normal(size=np.shape(start[n]))).astype(dtype)
                  for n in mod.PARAMS}
    else:
        params = {n: np.asarray(scale * rng.normal(size=_concrete(s, sizes)), dtype=dtype)
                  for n, s in mod.PARAMS.items()}
    labels = mod.CONFIG.get("labels", {})
    onehot = mod.CONFIG.get("onehot", {})
    defaults = getattr(mod, "DEFAULTS", {})
    data = {}
    for n, s in mod.INPUTS.items():
        if n in defaults and rng.random() < 0.5:
            continue  # use the default
        if n in onehot:
            data[n] = np.asarray(_distributions(_concrete(s, sizes), rng), dtype=dtype)
            continue
        if n in labels:  # ids that pick rows (embed)
            data[n] = np.asarray(rng.integers(0, labels[n], size=_concrete(s, sizes)),
                                 dtype=np.int64)
            continue
        data[n] = np.asarray(scale * rng.normal(size=_concrete(s, sizes)), dtype=dtype)
    for n, s in mod.TARGETS.items():
        shape = _concrete(s, sizes)
        if n in labels:
            data[n] = np.asarray(rng.integers(0, labels[n], size=shape), dtype=np.int64)
        elif n in onehot:
            if rng.random() < 0.5:
                data[n] = np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1],
                                                                      size=shape[:-1])]
            else:  # a distribution per row
                data[n] = np.asarray(_distributions(shape, rng), dtype=dtype)
        elif targets and n in targets:
            value = TARGET_KINDS[targets[n]](shape, rng)
            data[n] = np.asarray(value, dtype=np.int64 if targets[n] == "labels" else dtype)
        else:
            data[n] = rng.uniform(0.05, 0.95, size=shape).astype(dtype)
    return params, data


def _distributions(shape, rng):
    z = rng.normal(size=shape)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


TARGET_KINDS = {
    "real": lambda shape, rng: rng.normal(size=shape),
    "prob": lambda shape, rng: rng.uniform(0.0, 1.0, size=shape),
    "onehot": _distributions,
    "labels": lambda shape, rng: rng.integers(0, 2, size=shape),  # unused labels
}


def rounding_slack(oracle, want, params, data, state=None, mask_seed=0) -> dict:
    """Per gradient of ``want`` (the oracle's result at this point), elementwise: how
    far simulated rounding moves it (ROUNDING; the most of two draws)."""
    slack = {name: np.zeros_like(g) for name, g in want.grads.items()}
    for k in (1, 2):
        moved = oracle.run(params, data, state=state, mask_seed=mask_seed,
                           rounding=ROUNDING["size"], rounding_seed=mask_seed + k)
        for name, g in moved.grads.items():
            slack[name] = np.maximum(slack[name],
                                     ROUNDING["factor"] * np.abs(g - want.grads[name]))
    return slack


def _close(got, want, rtol, atol_rel, slack=0.0):
    """Whether ``got`` is ``want`` within rtol, atol_rel times the scale, and ``slack``
    (elementwise: rounding_slack's)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return False, f"shape {got.shape} != expected {want.shape}"
    if want.size == 0:
        return True, ""
    scale = max(1.0, float(np.max(np.abs(want))))
    err = np.abs(got - want)
    bad = ~(err <= atol_rel * scale + rtol * np.abs(want) + slack)
    bad |= np.isnan(got) != np.isnan(want)
    if np.any(bad):
        i = np.unravel_index(np.argmax(np.where(bad, err, -1)), want.shape) if want.shape else ()
        return False, (f"max abs err {np.nanmax(err):.3g} (scale {scale:.3g}); e.g. at {i}: "
                       f"got {got[i]!r}, expected {want[i]!r}")
    return True, ""


def _short(a):
    a = np.asarray(a)
    return np.array2string(a, precision=6, threshold=12, edgeitems=2)


def _typed(value, dtype) -> str | None:
    """Why ``value`` is not a NumPy value of ``dtype``: an array, or for a 0-d value a
    NumPy scalar (what NumPy's own operations on 0-d arrays return; LANGUAGE.md,
    "Differentiation"). A Python float is never one."""
    if isinstance(value, (np.ndarray, np.generic)):
        return None if value.dtype == dtype else f"has dtype {value.dtype}, not {dtype}"
    return f"is {type(value).__name__}, not np.ndarray of {dtype}"


def _inference_state(problems: list, got: dict, before: dict, want, streams: set,
                     call: str) -> None:
    """After an inference-mode call: a stream state holds the oracle's (the loop's last
    step), every other state is as it was."""
    for k, v in got.items():
        if k in streams:
            if not np.allclose(v, want.state[k], rtol=1e-9, atol=1e-12):
                problems.append(f"{call}: state '{k}' is not the loop's last step")
        elif not np.array_equal(v, before[k]) or set(got) != set(before):
            problems.append(f"{call} changed state '{k}'")


def _copy_state(state):
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _compare_state(problems, got: dict, want: dict, dtype, rtol, atol, when: str,
                   names) -> None:
    """The state dict after a training call against the oracle's running statistics."""
    if set(got) != set(names):
        problems.append(f"state keys {sorted(got)} after {when} != STATE {sorted(names)}")
    for name in names:
        if name not in got:
            continue
        why = _typed(got[name], dtype)
        if why:
            problems.append(f"state '{name}' after {when} {why}")
        ok, why = _close(got[name], want[name], rtol, atol)
        if not ok:
            problems.append(f"state '{name}' after {when}: {why}\n      got      "
                            f"{_short(got[name])}\n      expected {_short(want[name])}")


# Batch norm in training mode: skip points where max|x| / std of a feature, multiplied
# over the batch-norm sites, exceeds this (x - mean then cancels; rounding of x is
# amplified by as much, and again at each site it feeds: see Result.bn_condition).
BN_CONDITION = {"float64": 1e6, "float32": 3e2}


def differential(text: str, seed: int = 0, *, check_output: bool = True, kink_margin=None,
                 max_abs=1e6, targets=None, init: bool | str = False, data=None,
                 hash_seed: int | None = None, use_defaults: bool = False,
                 state_steps: int = 2, style: str = "fast"):
    """Compile ``text``, run module and oracle at a random point, raise ``Mismatch``.

    ``init="exact"``: the module's own initial parameters, unperturbed (to put points
    exactly on a kink and test its convention); ``data`` overrides drawn data;
    ``hash_seed``: compile in a subprocess with that PYTHONHASHSEED; ``use_defaults``:
    never pass inputs that have defaults; ``style``: the code style compiled ("fast",
    buffers reused, or "textbook", one assignment per step; not with ``hash_seed``).

    A module with modes (dropout, batch norm's state): ``loss_and_grad`` runs in training
    mode, with ``rng=np.random.default_rng(seed + k)`` for its masks (the oracle draws the
    same ones) and the state from ``init_state()`` on the first call, then the state the
    call before left (``state_steps`` calls, each compared: loss, gradients, the state
    after it); ``predict`` and ``loss`` run in inference mode and are compared with the
    oracle's inference mode at the state the last training call left (non-trivial)."""
    import inspect as _inspect

    import oracle_loops  # imports torch, as the oracle does
    from torch_oracle import Oracle  # imports torch: only the oracle's callers need it

    oracle = Oracle(text, "diff.bp")
    mod = build(text, hash_seed=hash_seed, style=style)
    rng = np.random.default_rng(seed)
    params, drawn = draw(mod, oracle, rng, targets=targets, init=bool(init))
    if init == "exact":
        params = {n: np.asarray(v, dtype=mod.DTYPE) for n, v in mod.init_params(rng).items()}
    data = {**drawn, **(data or {})}
    if use_defaults:  # leave every input with a default to its default
        data = {k: v for k, v in data.items() if k not in getattr(mod, "DEFAULTS", {})}
    accepted = _inspect.signature(mod.loss_and_grad).parameters
    takes_rng, takes_state = "rng" in accepted, "state" in accepted
    # States a loop continues (``from hc``) change in every call, in either mode; others
    # (batch norm's) make the modes differ.
    streams = oracle_loops.streamed(oracle.d)
    modes = oracle.has_modes or takes_rng or bool(set(oracle.d.states) - streams)
    problems = []
    dtype = np.dtype(mod.DTYPE)
    state_names = list(getattr(mod, "STATE", {}))
    if takes_state != bool(oracle.d.states):
        problems.append(f"loss_and_grad {'takes' if takes_state else 'lacks'} 'state', the "
                        f"spec declares {sorted(oracle.d.states) or 'none'}")
    state = None
    if takes_state:
        state = mod.init_state()
        if list(state) != state_names:
            problems.append(f"init_state() keys {list(state)} != STATE {state_names}")
        for name, (shape, value) in oracle.init_state().items():
            if name not in state:
                problems.append(f"init_state() lacks '{name}'")
                continue
            why = _typed(state[name], dtype)
            if why:
                problems.append(f"init_state()['{name}'] {why}")
            want_init = np.broadcast_to(np.asarray(value, dtype=float),
                                        shape if shape is not None else np.shape(state[name]))
            if tuple(np.shape(state[name])) != tuple(mod.STATE[name]) or \
                    not np.array_equal(state[name], want_init.astype(dtype)):
                problems.append(f"init_state()['{name}'] is {_short(state[name])}, the spec "
                                f"says {_short(want_init)} of shape {tuple(mod.STATE[name])}")
    want = oracle.run(params, data, state=state, mask_seed=seed)
    if takes_rng != (want.masks > 0):
        problems.append(f"loss_and_grad {'takes' if takes_rng else 'lacks'} 'rng', and the "
                        f"loss (or a state update) reads {want.masks} dropout mask(s)")
    if kink_margin is None:
        kink_margin = 1e-3 if oracle.dtype == "float32" else 1e-7
    if 0 < want.kink < kink_margin:  # exact ties (0) test the conventions; near ties are
        # decided by rounding, differently in float32 and float64
        raise Skip(f"a kink at distance {want.kink:.2g}")
    if want.bn_condition > BN_CONDITION[oracle.dtype]:
        raise Skip(f"batch norm of a nearly constant feature (max|x|/std, multiplied "
                   f"over the sites: {want.bn_condition:.2g})")
    finite = [np.all(np.isfinite(v)) and np.all(np.abs(v) < max_abs)
              for v in [want.loss, *want.grads.values(), *want.values.values(),
                        *want.state.values()]]
    if not all(finite):
        raise Skip("an overflow or a value out of range")
    rtol, atol = TOL[oracle.dtype]

    def slack_at(result, state_in, mask_seed) -> dict:
        """The gradients' rounding slack: float32 only."""
        if oracle.dtype != "float32":
            return {}
        return rounding_slack(oracle, result, params, data, state_in, mask_seed)

    slack = slack_at(want, state, seed)
    if dtype != np.dtype(oracle.dtype):
        problems.append(f"DTYPE is {dtype}, the spec says {oracle.dtype}")
    if list(mod.GRADS) != oracle.wrt and set(mod.GRADS) != set(oracle.wrt):
        problems.append(f"GRADS {list(mod.GRADS)} != expected {oracle.wrt}")

    args = dict(data)

    def extra(state_in, k):
        """The training call's keyword arguments: a copy of the state, fresh masks."""
        out = {}
        if takes_state:
            out["state"] = _copy_state(state_in)
        if takes_rng:
            out["rng"] = np.random.default_rng(seed + k)
        return out

    before = {k: np.array(v, copy=True) for k, v in {**params, **args}.items()}
    kw = extra(state, 0)
    given = dict(kw.get("state", {}))  # the arrays passed in
    given_copy = _copy_state(given)
    loss, grads = mod.loss_and_grad(params, **args, **kw)
    if not isinstance(loss, float):
        problems.append(f"loss_and_grad's loss is {type(loss).__name__}, not float")
    ok, why = _close(loss, want.loss, rtol, atol)
    if not ok:
        problems.append(f"loss{' (training mode)' if modes else ''}: {why}")
    if takes_state:
        _compare_state(problems, kw["state"], want.state, dtype, rtol, atol,
                       "loss_and_grad", state_names)
        for k, v in given.items():
            # An array is updated in place (the fast style's running statistics, whose new
            # value was compared above) or replaced in the dict, and then left alone.
            if v is not kw["state"].get(k) and not np.array_equal(v, given_copy[k],
                                                                  equal_nan=True):
                problems.append(f"the caller's state array '{k}' was modified, but the "
                                "dict no longer holds it")
    if not modes:  # loss() is loss_and_grad's loss (from the same state)
        loss2 = mod.loss(params, **args, **extra(state, 0))
        ok, why = _close(loss2, want.loss, rtol, atol)
        if not ok:
            problems.append(f"loss(): {why}")
    if set(grads) != set(want.grads):
        problems.append(f"gradient keys {sorted(grads)} != expected {sorted(want.grads)}")
    for name, g_want in want.grads.items():
        if name not in grads:
            continue
        g = grads[name]
        why = _typed(g, dtype)
        if why:
            problems.append(f"gradient of {name} {why}")
        ok, why = _close(g, g_want, rtol, atol, slack.get(name, 0.0))
        if not ok:
            problems.append(f"d{want.loss and ''}{name}: {why}\n      got      {_short(g)}"
                            f"\n      expected {_short(g_want)}")
    if "grads" in accepted:
        # The training loop's path: gradients computed into caller's buffers (filled
        # with NaN first, then holding the previous step's values).
        buffers = {n: np.full(np.shape(g), np.nan, dtype=dtype) for n, g in want.grads.items()}
        for attempt in ("into NaN-filled buffers", "into reused buffers"):
            _, gb = mod.loss_and_grad(params, **args, **extra(state, 0), grads=buffers)
            for name, g_want in want.grads.items():
                ok, why = (_close(gb[name], g_want, rtol, atol, slack.get(name, 0.0))
                           if name in gb else (False, "missing"))
                if not ok:
                    problems.append(f"d{name} {attempt}: {why}")
                    break
    # More training calls from the state the previous one left (a non-trivial state).
    inference_state = kw.get("state")
    for k in range(1, state_steps if takes_state else 0):
        state_k = _copy_state(inference_state)
        want_k = oracle.run(params, data, state=state_k, mask_seed=seed + k)
        slack_k = slack_at(want_k, state_k, seed + k)
        kw_k = extra(state_k, k)
        loss_k, grads_k = mod.loss_and_grad(params, **args, **kw_k)
        ok, why = _close(loss_k, want_k.loss, rtol, atol)
        if not ok:
            problems.append(f"loss of training call {k + 1}: {why}")
        for name, g_want in want_k.grads.items():
            ok, why = (_close(grads_k[name], g_want, rtol, atol, slack_k.get(name, 0.0))
                       if name in grads_k else (False, "missing"))
            if not ok:
                problems.append(f"d{name} in training call {k + 1}: {why}")
        _compare_state(problems, kw_k["state"], want_k.state, dtype, rtol, atol,
                       f"training call {k + 1}", state_names)
        inference_state = kw_k["state"]
    has_training = "training" in accepted
    if modes and has_training:
        # loss(training=True) is the loss loss_and_grad differentiates: the same masks
        # and batch statistics, the same state update
        kw_t = extra(state, 0)
        loss_t = mod.loss(params, **args, training=True, **kw_t)
        ok, why = _close(loss_t, want.loss, rtol, atol)
        if not ok:
            problems.append(f"loss(training=True): {why}")
        if takes_state:
            _compare_state(problems, kw_t["state"], want.state, dtype, rtol, atol,
                           "loss(training=True)", state_names)
    elif modes:
        problems.append("loss_and_grad of a model with modes lacks 'training'")
    if modes:  # inference mode: predict, loss and its gradient at the state training left
        want_inf = oracle.run(params, data, need_grad=True, train=False,
                              state=inference_state)
        inf_kw = {"state": _copy_state(inference_state)} if "state" in \
            _inspect.signature(mod.loss).parameters else {}
        snapshot = _copy_state(inf_kw.get("state", {}))
        loss2 = mod.loss(params, **args, **inf_kw)
        if 0 < want_inf.kink < kink_margin or not all(
                np.all(np.isfinite(v)) and np.all(np.abs(v) < max_abs)
                for v in [want_inf.loss, *want_inf.values.values()]):
            # near a kink or out of range in inference mode: training mode was compared
            check_output = False
            if not problems:
                raise Skip(f"inference mode: a kink at distance {want_inf.kink:.2g} or a "
                           "value out of range")
        else:
            ok, why = _close(loss2, want_inf.loss, rtol, atol)
            if not ok:
                problems.append(f"loss() (inference mode): {why}")
            if has_training:  # loss_and_grad(training=False): the gradient of loss()
                kw_i = {"state": _copy_state(inference_state)} if takes_state else {}
                loss_i, grads_i = mod.loss_and_grad(params, **args, training=False, **kw_i)
                ok, why = _close(loss_i, want_inf.loss, rtol, atol)
                if not ok:
                    problems.append(f"loss_and_grad(training=False)'s loss: {why}")
                for name, g_want in want_inf.grads.items():
                    ok, why = _close(grads_i.get(name), g_want, rtol, atol) \
                        if name in grads_i else (False, "missing")
                    if not ok:
                        problems.append(f"d{name} of loss_and_grad(training=False): {why}")
                _inference_state(problems, kw_i.get("state", {}), inference_state, want_inf,
                                 streams, "loss_and_grad(training=False)")
        _inference_state(problems, inf_kw.get("state", {}), snapshot, want_inf, streams,
                         "loss() (inference mode)")
    elif streams:  # one program: every call continues the streams from where they are
        want_inf, inf_kw = oracle.run(params, data, need_grad=False, train=False,
                                      state=inference_state), {}
    else:
        want_inf, inf_kw = want, {}
    if check_output and want_inf.output_name is not None:
        accepted_p = _inspect.signature(mod.predict).parameters
        pargs = {k: v for k, v in args.items() if k in accepted_p}
        if "state" in accepted_p:
            pargs["state"] = _copy_state(inference_state)
        out = mod.predict(params, **pargs)
        _inference_state(problems, pargs.get("state", {}), inference_state, want_inf,
                         streams, "predict")
        if mod.OUTPUT != want_inf.output_name:
            problems.append(f"OUTPUT is {mod.OUTPUT!r}, the spec implies "
                            f"{want_inf.output_name!r}")
        why = _typed(out, dtype)
        if why:
            problems.append(f"predict's output {why}")
        ok, why = _close(out, want_inf.output, rtol, atol)
        if not ok:
            problems.append(f"predict ({want_inf.output_name}"
                            f"{', inference mode' if modes else ''}): {why}")
    for k, v in {**params, **args}.items():
        if not np.array_equal(np.asarray(v), before[k], equal_nan=True):
            problems.append(f"the caller's array '{k}' was modified in place")
    if problems:
        raise Mismatch(f"seed {seed} ({style} style):\n--- spec\n{text.rstrip()}\n--- differences\n  "
                       + "\n  ".join(problems), problems, text)
    return want


__all__ = ["Mismatch", "Skip", "build", "differential", "draw", "math"]
