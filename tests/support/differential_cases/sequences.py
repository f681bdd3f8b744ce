"""Differential cases of sequence models: layer norm over the last axis of [N, D] and
[N, T, D] values, its layer (tests/oracle/test_differential.py runs them)."""

from __future__ import annotations

from differential_cases.cases import Cases

CASES = Cases()
case = CASES.add

_LAYER_NORM = """model m
input x : [N, T, 3]
input z : [N, 4]
param g : [3] = normal
param be : [3] = normal
param W : [4, 4] = normal(std=0.5)
h = layer_norm(x * 3, g, be)
k = layer_norm(tanh(z @ W), 2, 0.5, eps=1e-3)
loss L = sum(sin(h) * h) + sum(k * k * z)
grad wrt x, z
"""
for _style in ("fast", "textbook"):
    case(f"layer-norm-{_style}", _LAYER_NORM, style=_style)
