"""Differential cases of images and modes: convolution, pooling, image layers, dropout,
batch norm and a max_pool kink (tests/oracle/test_differential.py runs them)."""

from __future__ import annotations

import numpy as np

from conftest import BN_EXAMPLE
from differential_cases.cases import Cases

CASES = Cases()
case = CASES.add

case("conv-pool-flatten", """model m
input x : [N, 2, 5, 4]
param W : [3, 2, 2, 3] = normal(std=0.5)
param V : [2, 3, 2, 2] = normal(std=0.5)
param b : [3, 1, 1] = normal
param U : [24, 2] = normal(std=0.5)
a = conv2d(x, W, stride=1, pad=1) + b
c = conv2d(tanh(a), V, stride=2, pad=1)
m = max_pool(a, 3, stride=1, pad=1)
g = avg_pool(m, 2, pad=1)
loss L = sum(sin(flatten(c) @ U)) + sum(cos(g)) + sum(avg_pool(x, 2, stride=1) * 0.5) + sum(max_pool(x[:, 0, 1:], 2))
grad wrt x
""")

case("image-layers", """model m
input x : [N, 1, 7, 5]
target t : [N]
layers x -> y {
  conv 3 size=2 stride=1 pad=1
  relu
  maxpool 2 stride=1
  conv 2 size=3 stride=2 bias=none
  tanh
  avgpool 2 stride=1 pad=1
  flatten
  dense 3
}
loss L = softmax_cross_entropy(y, t)
grad wrt x
""")

# Modes: dropout (masks from loss_and_grad's rng, reproduced by the oracle), batch norm
# (training: batch statistics and updated running statistics; inference: running ones).
case("dropout-sites", """model m
input x : [N, 3]
target t : [N]
param W : [3, 4] = normal(std=0.5)
param V : [4, 3] = normal(std=0.5)
h = dropout(tanh(x @ W), 0.3)
g = dropout(h, p=0.5) + dropout(h * h, 0.2)
z = dropout(g, 0) @ V
loss L = softmax_cross_entropy(z, t)
grad wrt x
""")

case("dropout-layers", """model m
input x : [N, 4]
target t : [N, 3]
layers x -> y {
  dense 6; relu; dropout 0.4
  residual { dense 6; tanh; dropout 0.25 }
  dense 3
}
loss L = mse(y, t)
""", init=True)

case("batchnorm-dense", """model m
input x : [N, 3]
target t : [N]
param W : [3, 4] = normal(std=0.5)
param g : [4] = normal
param be : [4] = normal
state m1 : [4] = zeros
state v1 : [4] = ones
h = batch_norm(x @ W, g, be, m1, v1)
loss L = softmax_cross_entropy(tanh(h), t)
grad wrt x
""")

case("batchnorm-scalar-affine-options", """model m
let C = 3
input x : [N, C]
param g = 1.5
param be = -0.2
state m1 : [C] = constant(value=0.5)
state v1 : [C] = 2
state m2 : [3] = [0.1, -0.2, 0.3]
state v2 : [3] = [1, 2, 3]
h = batch_norm(x * 2, g, be, m1, v1, momentum=0.5, eps=1e-3)
k = batch_norm(sin(h), [1, 2, 3], 0.1, m2, v2, 0)
loss L = sum(k * x) + sum(h^2)
grad wrt x
""")

case("batchnorm-images", """model m
input x : [N, 2, 4, 3]
param W : [3, 2, 2, 2] = normal(std=0.5)
param g : [3] = normal
param be : [3] = normal
state m1 : [3] = zeros
state v1 : [3] = ones
a = conv2d(x, W, pad=1)
h = batch_norm(a, g, be, m1, v1, momentum=0.8)
loss L = sum(sin(h)) + sum(h[:, 0, 1:4, 1:4] * x[:, 1, 1:, :])
grad wrt x
""")

case("batchnorm-layers", """model m
input x : [N, 1, 6, 6]
target t : [N]
layers x -> y {
  conv 3 size=3 pad=1; batchnorm; relu
  residual { conv 3 size=3 pad=1; batchnorm momentum=0.5; relu; conv 3 size=3 pad=1; batchnorm eps=1e-4 }
  maxpool 2
  flatten
  dense 5; batchnorm; tanh; dropout 0.2
  residual { dense 5; batchnorm; sigmoid }
  dense 3
}
loss L = softmax_cross_entropy(y, t)
""", init=True)

case("batchnorm-example", BN_EXAMPLE, init=True)

case("batchnorm-output-not-on-loss-path", """model m
input x : [N, 3]
param W : [3, 4] = normal(std=0.5)
state m1 : [4] = zeros
state v1 : [4] = ones
h = x @ W
output y = dropout(batch_norm(h, 1, 0, m1, v1), 0.5)
loss L = sum(dropout(sin(h), 0.3))
""")

case("state-as-a-name-without-state", """model m
input x : [N, 3]
param W : [3, 2] = normal
state = x @ W
loss L = sum(sin(state))
""")

case("kink-max-pool-ties-split-evenly", """model m
input x : [2, 1, 4, 4]
param s = 0.5
loss L = sum(max_pool(x * s, 2) * [1, 2]) + sum(max_pool(relu(x - 1), 3, stride=1, pad=1))
grad wrt x
""", data={"x": np.array([[0, 1, 1, 0], [1, 1, 0, 0], [2, 0, 0, 2], [2, 1, 2, 1.5]])
             * np.ones((2, 1, 1, 1))})
