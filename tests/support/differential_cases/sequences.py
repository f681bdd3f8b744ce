"""Differential cases of sequence models: layer norm over the last axis of [N, D] and
[N, T, D] values, pooling over the real steps of padded sequences (the 0/1 masks made
from drawn data, so some sequences have no real step), positional encodings (sinusoidal
and learned, T the data's), and their layers
(tests/oracle/test_differential.py runs them)."""

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

_POOLING = """model m
input x : [N, T, 3]
input r : [N, T]
input u : [N, 2, 2]
input q : [N, 2]
param W : [3, 2] = normal
k = relu(sign(r))
a = masked_mean(x, k)
c = masked_max(x * 2, k)
j = relu(sign(q))
e = masked_max(u, j, axis=1) + masked_mean(u, j)
loss L = sum(sin(a @ W)) + sum(c * tanh(c)) + sum(e * e)
grad wrt x, u
"""
for _style in ("fast", "textbook"):
    case(f"masked-pooling-{_style}", _POOLING, style=_style)

_LAYERS = """model m
input x : [N, T, 3]
input r : [N, T]
target t : [N]
k = relu(sign(r))
layers x -> y { layernorm; pool max mask=k; dense 4; layernorm eps=1e-3; tanh; dense 2 }
layers x -> s { pool mean mask=k }
layers x -> v { pool last; layernorm }
layers x -> w { pool mean }
loss L = softmax_cross_entropy(y, t) + sum(s * s) + sum(v * w)
grad wrt x
"""
for _style in ("fast", "textbook"):
    case(f"sequence-layers-{_style}", _LAYERS, style=_style)

_POSITIONS = """model m
input x : [N, T, 4]
input z : [N, 3, 5]
param P : [6, 4] = normal
param Q : [3, 5] = normal
h = x + sinusoidal(T, 4) + first_rows(P, T)
k = x * sinusoidal(x) + first_rows(P, x) * first_rows(P, x)
e = z * sinusoidal(3, 5) + first_rows(Q, z)
loss L = sum(sin(h)) + sum(k * k) + sum(e * e)
grad wrt x, z
"""
for _style in ("fast", "textbook"):
    case(f"positions-{_style}", _POSITIONS, style=_style)

case("position-layers", """model m
input x : [N, T, 3]
target t : [N]
layers x -> y { posenc sinusoidal; posenc learned 7 init=normal(std=0.5); layernorm
                pool max; dense 2 }
loss L = softmax_cross_entropy(y, t)
grad wrt x
""")

# Padding left out in float32: the count of kept tokens is a Python int, so the loss,
# its gradients and predict stay float32 (NumPy 2's np.count_nonzero gives an np.int64,
# which had made them float64).
_IGNORED_FLOAT32 = """model m
dtype float32
input x : [N, T, 2]
target t : [N, T]
param W : [2, 3] = normal
loss L = softmax_cross_entropy(x @ W, t, ignore=0)
grad wrt x
"""
for _style in ("fast", "textbook"):
    case(f"sequence-ignore-float32-{_style}", _IGNORED_FLOAT32, style=_style)
