"""Differential cases of the operations: elementwise functions, stop_gradient, arithmetic,
matmul, reductions, softmax, transposes, reshapes, slices, concatenation and the kinks'
conventions (tests/oracle/test_differential.py runs them)."""

from __future__ import annotations

import numpy as np

from differential_cases.cases import Cases

CASES = Cases()
case = CASES.add


def _fn_case(f, wrap="{}"):
    return f"""model m
input x : [N, 3]
param W : [3, 2] = normal(std=0.5)
param b : [2] = zeros
h = {wrap.format(f"x @ W + b")}
loss L = sum({f}(h))
"""

for _f in ("exp", "sin", "cos", "tanh", "abs", "square", "sigmoid", "softplus", "relu",
           "leaky_relu"):
    case(f"fn-{_f}", _fn_case(_f))

case("fn-log", _fn_case("log", "1 + square({})"))

case("fn-sqrt", _fn_case("sqrt", "1 + square({})"))

case("fn-tan", _fn_case("tan", "tanh({})"))

case("fn-sign", _fn_case("sign").replace("sum(sign(h))", "sum(sign(h) * h)"))

case("fn-leaky_relu-alpha", _fn_case("leaky_relu").replace("leaky_relu(h)",
                                                             "leaky_relu(h, alpha=0.3)"))

case("stop-gradient", """model m
input x : [N, 3]
param W : [3, 2] = normal(std=0.5)
param V : [3, 2] = normal(std=0.5)
h = x @ W
g = stop_gradient(h) * tanh(x @ V) + h + stop_gradient(sum(h^2))
loss L = sum(g * g)
""")

case("maximum-minimum", """model m
input x : [N, 3]
param W : [3, 3] = normal(std=0.5)
param p : [3] = normal(std=0.5)
param q = 0.1
h = x @ W
loss L = sum(maximum(h, p) * minimum(q, h)) + sum(minimum(p, h))
""")

case("power", """model m
input x : [N, 3]
param W : [3, 2] = normal(std=0.5)
param e = 1.5
h = x @ W
loss L = sum(h^2) + sum(h^3) + sum(-h^2) + sum(h ** 2) + sum(sigmoid(h) ^ e) + sum((1 + square(h))^0.5) + sum(h ^ -1 * 0 + 1 / (1 + h^2))
""")

case("matmul-shapes", """model m
param u : [3] = normal
param v : [3] = normal
param A : [2, 3] = normal
param B : [3, 2] = normal
loss L = u @ v + sum(A @ u) + sum(v @ B) + sum(A @ B) + sum([1, 2; 3, 4] @ (A @ B)) + sum(B.T @ u)
""")

case("reductions", """model m
input x : [N, 6]
param W : [6, 6] = normal(std=0.5)
h = reshape(x @ W, [N, 3, 2])
loss L = sum(sum(h, axis=1)^2) + mean(mean(h, axis=-1, keepdims=1)) + sum(max(h, axis=0)) + sum(logsumexp(h, axis=[0, 2])) + max(h) + logsumexp(h) + sum(sum(h, axis=[1, 2], keepdims=true)) + mean(h, axis=[0, 1, 2])
""")

case("softmax-axes", """model m
input x : [N, 3]
param W : [3, 4] = normal
h = x @ W
loss L = sum(softmax(h) * h) + sum(softmax(h, axis=0)^2) + sum(log_softmax(h, axis=-2) * h) + sum(log_softmax(h)^2)
""")

case("transpose-all-ranks", """model m
input x : [N, 3]
param s = 0.5
param v : [3] = normal
param W : [3, 2] = normal
loss L = sin(s.T) + transpose(s) + sum(v.T * v) + sum(transpose(v) @ W) + sum(sin((x @ W).T)) + sum(transpose(W) @ x.T)
""")

case("reshape-batch", """model m
input x : [N, 2, 3]
param W : [6, 2] = normal(std=0.5)
h = reshape(x, [N, 6])
g = reshape(x, [-1, 6])
k = reshape(x, [N, -1])
loss L = sum(sin(h @ W)) + sum(cos(g @ W)) + sum(tanh(k @ W))
""")

case("reshape-batch-last", """model m
input x : [N, 2]
param W : [2, 3] = normal(std=0.5)
h = x @ W
g = reshape(h, [3, N])
k = reshape(g, [N, -1])
loss L = sum(sin(g) * reshape(h, [3, -1])) + sum(k^2)
""")

case("slices", """model m
let K = 2
input x : [N, 5]
param W : [3, 2] = normal(std=0.5)
param v : [4] = normal
h = x[:, 0:3] @ W
g = tanh(h)[:, ::-1] * x[:, -K:] + x[:, K:K + 1]
loss L = sum(sin(g)) + sum(x[:, 1] * x[:, -1]) + sum(v[::2] * v[1:3]) + v[-1] * v[0] + sum(W[1:, ::-1] * W[:2])
grad wrt x
""")

case("concat-stack", """model m
input x : [N, 3]
param W : [3, 2] = normal(std=0.5)
param U : [5, 4] = normal(std=0.5)
param s = 0.3
a = tanh(x @ W)
h = concat([a, x], axis=-1)
z = stack([h, sin(h), h * s], axis=1)
k = stack([s, 2 * s, 1])
loss L = sum(cos(h @ U)) + sum(z[:, 1:, ::2] * z[:, :2, 1:4]) + sum(k * k)
grad wrt x
""")

case("reshape-fixed", """model m
param v : [2, 3] = normal
param p : [1] = normal
param s = 0.3
loss L = sum(sin(reshape(v, [-1]))) + sum(reshape(v, [3, 2]) @ [1, 2]) + sin(reshape(p, [])) + sum(reshape(s, [1, 1]) * v)
""")

case("reshape-view-buffer-reuse", """model m
input x : [N, 3]
param p : [3] = zeros
v1 = x @ p
v3 = v1^2
v5 = reshape(v1, [1, N])
v7 = reshape(v5, [N]) + v3
loss L = sum(sin(v7)) + sum(softmax(v3) * v1)
""", hash_seeds=[0, 1, 2, 3])

case("stability", """model m
input x : [N, 3]
target t : [N]
target u : [N, 4]
param W : [3, 4] = normal(std=0.5)
z = 300 * (x @ W)
loss L = softmax_cross_entropy(z, t) + sigmoid_cross_entropy(z, u) + mean(softplus(z)) + mean(sigmoid(-z)) + mean(logsumexp(z, axis=1)) + mean(log_softmax(z)) + mean(softmax(z) * z)
""")

case("int-arith", """model m
let k = 2
let h = 3 / 2
param p : [3] = normal
loss L = sum(p^k) * (1 / 2) + sum(p) * h + sum(p ^ (k + 1)) / 3 + 2^-1 * sum(p)
""")

case("transpose-3d", """model m
input x : [N, 2, 3]
param v : [3] = normal
h = x * v
loss L = sum(sin(h.T) * transpose(h).T.T) + sum(reshape(transpose(h), [6, N]) * 2)
""")

case("softmax-axis-size1", """model m
input x : [N, 3]
param W : [3, 1] = normal
h = x @ W
loss L = sum(softmax(h) * h) + sum(log_softmax(h, axis=0)^2)
""")

case("max-keepdims-list", """model m
input x : [N, 6]
param W : [6, 6] = normal
h = reshape(x @ W, [N, 3, 2])
loss L = sum(max(h, axis=[1, 2], keepdims=1) * h) + sum(max(h, axis=[0, 2]))
""")

case("mean-keepdims-broadcast", """model m
input x : [N, 3]
param W : [3, 3] = normal
h = x @ W
loss L = sum((h - mean(h, axis=0, keepdims=1))^2 / (1 + sum(h^2, axis=1, keepdims=true)))
""")

case("relu-of-relu-max", """model m
input x : [N, 3]
param W : [3, 4] = normal
h = relu(x @ W - 10)
loss L = sum(max(h, axis=1)) + max(h)
""")

case("same-var-twice", """model m
input x : [N, 3]
param W : [3, 3] = normal
h = x @ W
loss L = sum(h * h) + sum(maximum(h, h)) + sum(W @ W.T) + sum(h @ W @ W)
""")

case("two-symbols", """model m
input x : [B, 3]
input y : [M, 3]
param W : [3, 2] = normal
loss L = mean(sin(x @ W)) + sum(max(y @ W, axis=0)) + sum((x @ W).T @ sin(x @ W))
""")

case("axis-none", """model m
param z : [2, 3] = normal
loss L = sum(z, axis=none) + sum(max(z, axis=none, keepdims=1)) + mean(logsumexp(z, axis=none))
""")

# Kinks: the documented conventions, at points exactly on them (init="exact").
case("kink-relu-at-0", """model m
param p : [3] = [0, 1, -1]
loss L = sum(relu(p)) + sum(leaky_relu(p, alpha=0.2)) + sum(abs(p)) + sum(sign(p))
""", init="exact")

case("kink-maximum-tie-to-first", """model m
param p = 0.5
param q = 0.5
loss L = maximum(p, q) + 2 * minimum(q, p)
""", init="exact")

case("kink-max-ties-split-evenly", """model m
param v : [4] = [1, 1, 0.5, 1]
param W : [2, 3] = [1, 2, 2; 0, 0, 0]
loss L = max(v) + sum(max(W, axis=1)) + sum(max(W, axis=0))
""", init="exact")

case("matmul-batched", """model m
input x : [N, T, 3]
param W : [3, 4] = normal(std=0.5)
param B : [2, 1, 4, 3] = normal(std=0.5)
param v : [4] = normal
param C : [2, 4] = normal(std=0.5)
h = tanh(x @ W)
g = h @ B
loss L = sum(sin(g)) + sum(h @ v) + sum(C @ transpose(h, axes=[0, 2, 1]) * 0.5) + sum(cos(g @ transpose(g, axes=[0, 1, 3, 2])))
grad wrt x
""")

case("axis-moves", """model m
input x : [N, 2, 3, 4]
param W : [4, 3] = normal(std=0.5)
h = transpose(x, axes=[0, 2, 1, 3])
g = swapaxes(h, -1, -2)
k = transpose(x, axes=[3, 0, 2, 1])
loss L = sum(sin(h @ W)) + sum(g * g[:, :, ::-1]) + sum(cos(k)) + sum(swapaxes(swapaxes(x, 1, 2), 1, 2) * x)
grad wrt x
""")

case("any-axis-rank-4", """model m
input x : [N, 2, 3, 4]
param W : [4, 4] = normal(std=0.5)
h = x @ W
loss L = sum(softmax(h, axis=1) * h) + sum(log_softmax(h, axis=2)^2) + sum(max(h, axis=[1, 3])) + sum(mean(h, axis=-2)^2) + sum(logsumexp(h, axis=2)) + sum(sum(h, axis=[0, 2], keepdims=true)^2)
""")

# a padding mask from the data (1 keeps a position; the last example keeps none) and a
# causal one, over two heads, as the attention chapter writes them
case("masked-attention", """model m
input x : [N, T, 4]
input keep : [N, T]
param Wq : [4, 4] = normal(std=0.7)
param Wk : [4, 4] = normal(std=0.7)
param Wv : [4, 4] = normal(std=0.7)
q = transpose(reshape(x @ Wq, [N, T, 2, 2]), axes=[0, 2, 1, 3])
k = transpose(reshape(x @ Wk, [N, T, 2, 2]), axes=[0, 2, 1, 3])
v = transpose(reshape(x @ Wv, [N, T, 2, 2]), axes=[0, 2, 1, 3])
pad = reshape(keep, [N, 1, 1, T])
a = softmax(q @ swapaxes(k, -1, -2) / sqrt(2), mask=causal(T) * pad)
loss L = sum(sin(a @ v)) + sum(softmax(q @ swapaxes(k, -1, -2), axis=2, mask=pad)^2)
grad wrt x
""", data={"keep": np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0.0]])})
