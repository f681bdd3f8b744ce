"""Loops over time for the PyTorch oracle (torch_oracle): consecutive step equations
(``h[t] = ... from h0``, LANGUAGE.md "Recurrences") run as a Python loop over t, written
apart from the compiler: each step's time reads become plain names (``h[t]`` -> ``h@t``,
``h[t-1]`` -> ``h@prev``, ``x[:, t]`` -> ``x@t``), evaluated by the oracle's own
expressions, and each step equation is then its steps stacked on axis 1. A loop started
from a state (``from hc``) starts from the state's value and leaves its last step there."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bpc.compiler.frontend import ast
from oracle_functions.tensors import OracleError


def groups(equations: list) -> list[list]:
    """The equations in order, consecutive step equations together (one loop)."""
    out: list[list] = []
    for st in equations:
        if st.time is not None and out and out[-1][0].time == st.time:
            out[-1].append(st)
        else:
            out.append([st])
    return out


def _offset(item, time: str) -> int | None:
    if isinstance(item, ast.Name) and item.id == time:
        return 0
    if isinstance(item, ast.BinOp) and item.op == "-" and isinstance(item.left, ast.Name) \
            and item.left.id == time and isinstance(item.right, ast.Num):
        return -int(item.right.value)
    return None


def _rewrite(e, time: str, steps: set, seqs: list):
    """``e`` with its reads of time replaced by names; ``seqs`` collects the sequences."""
    if isinstance(e, ast.Index) and isinstance(e.value, ast.Name):
        name = e.value.id
        if name in steps and len(e.items) == 1 and _offset(e.items[0], time) is not None:
            return ast.Name(e.span, f"{name}@{'t' if _offset(e.items[0], time) == 0 else 'prev'}")
        if len(e.items) == 2 and _offset(e.items[1], time) == 0:
            seqs.append(name)
            return ast.Name(e.span, f"{name}@t")
    if isinstance(e, list):
        return [_rewrite(item, time, steps, seqs) for item in e]
    if isinstance(e, (ast.Expr, ast.Kwarg)):
        return dataclasses.replace(e, **{
            f.name: _rewrite(getattr(e, f.name), time, steps, seqs)
            for f in dataclasses.fields(e) if f.init and f.name != "span"})
    return e


def streamed(d) -> set[str]:
    """The states loops start from (``h[t] = ... from hc``) and continue."""
    return {st.init.id for st in d.equations if st.time is not None
            and isinstance(st.init, ast.Name) and st.init.id in d.states}


def run(oracle, group: list, env: dict) -> dict:
    """Every step equation of one loop, stacked ``[N, T, ...]``, by name."""
    time, steps, seqs = group[0].time, {st.name for st in group}, []
    body = [(st, _rewrite(st.value, time, steps, seqs)) for st in group]
    if not seqs:
        raise OracleError("a loop that reads no sequence")
    length, batch = env[seqs[0]].shape[1], env[seqs[0]].shape[0]
    carried = [st for st in group if st.init is not None]
    zero = [st.name for st in carried if isinstance(st.init, ast.Num) and st.init.value == 0]
    streams = {st.name: st.init.id for st in carried if isinstance(st.init, ast.Name)
               and st.init.id in oracle.d.states}
    # A loop started from a state continues its streams: the state's value, detached (no
    # gradient flows into it), and its last step is the state after the call.
    prev = {st.name: torch.tensor(np.asarray(oracle.state_in[streams[st.name]]),
                                  dtype=torch.float64) if st.name in streams else oracle.expr(st.init, env)
            for st in carried if st.name not in zero}
    for name, state in streams.items():
        if prev[name].shape[0] != batch:
            raise OracleError(f"state '{state}' has {prev[name].shape[0]} rows, the "
                              f"batch {batch}")
    if zero:
        prev.update(_zero_start(oracle, body, env, seqs, zero, prev, batch))
    stacked: dict[str, list] = {st.name: [] for st in group}
    for t in range(length):
        now = _step(oracle, body, env, seqs, prev, t)
        for name, value in now.items():
            stacked[name].append(value)
        prev = {st.name: now[st.name] for st in carried}
    for name, state in streams.items():
        oracle.state_out[state] = stacked[name][-1].detach().numpy().copy()
    return {name: torch.stack(values, 1) for name, values in stacked.items()}


def _step(oracle, body, env, seqs, prev, t) -> dict:
    local = dict(env)
    local.update((f"{x}@t", env[x][:, t]) for x in seqs)
    local.update((f"{name}@prev", value) for name, value in prev.items())
    now = {}
    for st, value in body:
        now[st.name] = local[f"{st.name}@t"] = oracle.expr(value, local)
    return now


def _zero_start(oracle, body, env, seqs, zero, prev, batch) -> dict:
    """Zeros ``[N, d]`` for the values ``from 0``: the width d (among the parameters'
    and values' dimensions) with which a first step keeps every carried value's shape;
    when several do (gates of width 1 broadcast against any), 1 (LANGUAGE.md)."""
    widths = dict.fromkeys([1] + [d for v in env.values() if isinstance(v, torch.Tensor)
                                  for d in v.shape])
    fits = []
    for d in widths:
        start = {**prev, **{name: torch.zeros(batch, d, dtype=torch.float64) for name in zero}}
        try:
            now = _step(oracle, body, env, seqs, start, 0)
        except (RuntimeError, OracleError):
            continue
        if all(now[name].shape == value.shape for name, value in start.items()):
            fits.append(d)
    if not fits:
        raise OracleError(f"no shape for {zero} to start from 0")
    width = 1 if len(fits) > 1 and 1 in fits else fits[0]
    return {name: torch.zeros(batch, width, dtype=torch.float64) for name in zero}
