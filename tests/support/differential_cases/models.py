"""Differential cases of whole models and losses: layers, the losses and their targets,
lets and defaults, outputs, grad wrt, and the regressions found on them
(tests/oracle/test_differential.py runs them)."""

from __future__ import annotations

import numpy as np

from differential_cases.cases import Cases

CASES = Cases()
case = CASES.add

case("residual-stack", """model m
input x : [N, 4]
target t : [N, 3]
layers x -> y {
  dense 6; tanh
  residual { dense 6; relu; dense 6 }
  repeat 2 { residual { dense 6; tanh; residual { dense 6; sigmoid } } }
  dense 3
}
loss L = mse(y, t)
""")

case("loss-functions", """model m
input x : [N, 3]
target t : [N, 2]
param W : [3, 2] = normal(std=0.5)
param V : [3, 2] = normal(std=0.5)
y = x @ W
loss L = mse(y, t) + sse(y, t) + least_squares(y, tanh(x @ V))
""")

case("cross_entropy", """model m
input x : [N, 3]
target t : [N, 4]
param W : [3, 4] = normal(std=0.5)
param V : [3, 4] = normal(std=0.5)
p = softmax(x @ W)
loss L = cross_entropy(p, t) + cross_entropy(p, softmax(x @ V))
""", targets={"t": "onehot"})

case("sxe-labels", """model m
input x : [N, 3]
target t : [N]
param W : [3, 4] = normal(std=0.5)
output y = x @ W
loss L = softmax_cross_entropy(y, t)
""")

case("sxe-labels-3d", """model m
input x : [N, 3]
target t : [N, 2]
param W : [3, 8] = normal(std=0.5)
loss L = softmax_cross_entropy(reshape(x @ W, [N, 2, 4]), t)
""")

case("sxe-label-vector", """model m
input x : [3]
target t : scalar
param W : [3, 4] = normal(std=0.5)
loss L = softmax_cross_entropy(x @ W, t)
""")

case("sxe-onehot", """model m
input x : [N, 3]
target t : [N, 4]
param W : [3, 4] = normal(std=0.5)
loss L = softmax_cross_entropy(x @ W, t)
""")

case("sxe-computed-target", """model m
input x : [N, 3]
param W : [3, 4] = normal(std=0.5)
param V : [3, 4] = normal(std=0.5)
loss L = softmax_cross_entropy(x @ W, softmax(x @ V))
""")

case("sxe-computed-unnormalised", """model m
input x : [N, 3]
param W : [3, 4] = normal(std=0.5)
param V : [3, 4] = normal(std=0.5)
loss L = softmax_cross_entropy(x @ W, sigmoid(x @ V))
""")

case("sxe-input-target-wrt", """model m
input x : [N, 3]
input s : [N, 4]
param W : [3, 4] = normal(std=0.5)
loss L = softmax_cross_entropy(x @ W, s)
grad wrt s
""")

case("sigxe-target", """model m
input x : [N, 3]
target t : [N, 2]
param W : [3, 2] = normal(std=0.5)
loss L = sigmoid_cross_entropy(x @ W, t)
""", targets={"t": "prob"})

case("sigxe-computed-target", """model m
input x : [N, 3]
param W : [3, 2] = normal(std=0.5)
param V : [3, 2] = normal(std=0.5)
loss L = sigmoid_cross_entropy(x @ W, sigmoid(x @ V))
""")

case("sigxe-scalar", """model m
param z = 0.3
param w = -0.2
loss L = sigmoid_cross_entropy(z, sigmoid(w))
""")

case("loss-is-param", """model m
param p = 1.5
loss L = p
""")

case("loss-alias-of-param", """model m
param p = 1.5
q = p
loss L = q
""")

case("loss-sum-of-alias", """model m
param p : [3] = normal
q = p
loss L = sum(q)
""")

case("unused-param-zero-grad", """model m
input x : [N, 3]
param W : [3, 2] = normal
param unused : [2, 2] = normal
loss L = sum(sin(x @ W))
""")

case("lets-literals-defaults", """model m
let H = 2
let a = 0.5
let k = a * 4 - 1
input x : [N, 3]
input c = 0.7
input u : [3] = [0.1, -0.2, 0.3]
param W : [3, H] = normal
param M : [2, 2] = [1, 2; 3, 4]
h = (x * u + c) @ W * k
loss L = sum(sin(h @ M)) + sum(h * [0.5, -1]) - a * c^2
grad wrt x, c, u
""")

case("defaults-given", """model m
input x : [N, 3]
input c = 0.7
input u : [3] = [0.1, -0.2, 0.3]
param W : [3, 2] = normal
loss L = sum(sin((x * u + c) @ W))
grad wrt c, u
""", data={"c": np.asarray(-0.3), "u": np.asarray([1.0, 2.0, -1.0])})

case("layers", """model m
input x : [N, 3]
target t : [N]
layers x -> y {
  dense 4 init=normal(std=0.5)
  relu
  dense 4 bias=none
  leaky_relu(0.2)
  repeat 2 {
    dense 3
    tanh
  }
  dense 3 bias=0.1
  softplus
  dense 3
}
loss L = softmax_cross_entropy(y, t)
""", init=True)

case("layers-two-stacks", """model m
input x : [N, 3]
layers x -> h {
  dense 4
  sigmoid
}
layers h -> y {
  dense 2
  softmax
}
loss L = sum(y * [1, 2]) + mean(h)
""")

case("output-named", """model m
input x : [N, 3]
param W : [3, 2] = normal
h = x @ W
output h
loss L = sum(sin(h)) + sum(cos(h))
""")

case("output-defined", """model m
input x : [N, 3]
param W : [3, 2] = normal
h = x @ W
output y = softmax(h)
loss L = sum(sin(h))
""")

case("output-implied-needs-target", """model m
input x : [N, 3]
target t : [N, 2]
param W : [3, 2] = normal
d = x @ W - t
loss L = sum(d^2)
""")

case("output-implied-skips-unused-alias", """model m
input x : [N, 3]
param p : [3, 2] = normal
c = p
h = x @ p
e = sin(x)
loss L = sum(h^2)
""")

case("grad-wrt-inputs", """model m
input x : [N, 3]
input s : scalar
param W : [3, 2] = normal
loss L = sum(sin(x @ W * s))
grad wrt x, s
""")

case("grad-wrt-default-scalar-constant-gradient", """model m
input x : [N, 3]
input c = 0.5
param p : [3] = normal
loss L = sum(x @ p) + 0.5 * c
grad wrt c
""")

case("receipt-like-no-params", """model m
input a = 100; input n = 2; input t = 1.1
loss price = a * n * t
grad wrt a, n, t
""")

case("output-input", """model m
input x : [N, 3]
param W : [3, 2] = normal
output x
loss L = sum(sin(x @ W))
""")

case("output-param", """model m
input x : [N, 3]
param W : [3, 2] = normal
output W
loss L = sum(sin(x @ W))
""")

case("loss-const-times-param", """model m
param p = 0.3
loss L = 2 * p
""")

case("loss-const-plus", """model m
param p : [2] = normal
loss L = 3 + sum(p * 0)
""")

case("scalar-input-no-default", """model m
input s : scalar
param p : [2] = normal
loss L = sum(sin(p * s)) + s
grad wrt s
""")

case("implied-output-alias", """model m
param p = 0.3
q = p
loss L = q
""")

case("mse-number", """model m
input x : [N, 3]
param W : [3, 2] = normal
loss L = mse(x @ W, 0.5)
""")

case("cross-entropy-vector", """model m
param z : [3] = normal
param y : [3] = normal
loss L = cross_entropy(softmax(z), softmax(y)) + softmax_cross_entropy(z, softmax(y)) + sigmoid_cross_entropy(z, sigmoid(y))
""")

case("deep-layers-f32", """model m
dtype float32
input x : [N, 3]
target t : [N]
layers x -> y {
  repeat 6 {
    dense 8
    tanh
  }
  dense 3
}
loss L = softmax_cross_entropy(y, t)
""", init=True)

case("rank3-losses", """model m
input x : [N, 6]
target t : [N, 2, 3]
target s : [N, 2, 3]
param W : [6, 6] = normal(std=0.5)
z = reshape(x @ W, [N, 2, 3])
loss L = cross_entropy(softmax(z), t) + sigmoid_cross_entropy(z, s) + mse(z, s) + softmax_cross_entropy(z, t)
""", targets={"t": "onehot", "s": "prob"})

case("column-convention", """model m
input x : [3, N]
target t : [N]
param W : [2, 3] = normal
param b : [2, 1] = zeros
h = tanh(W @ x + b)
loss L = softmax_cross_entropy(h.T, t) + mean(h)
""")

case("column-sigxe", """model m
input x : [3, N]
target t : [1, N]
param W : [1, 3] = normal
loss L = sigmoid_cross_entropy(W @ x, t)
""", targets={"t": "prob"})

case("sxe-literal-target-not-normalised", """model m
param z : [3] = normal
loss L = softmax_cross_entropy(z, [0.5, 0.2, 0.1])
""")

case("sxe-default-target-not-normalised", """model m
param z : [3] = normal
input s : [3] = [0.5, 0.2, 0.1]
loss L = softmax_cross_entropy(z, s)
""", use_defaults=True)
