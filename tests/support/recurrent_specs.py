"""Recurrences written as equations, for the tests: a tanh RNN, an LSTM (gates in
PyTorch's order i, f, g, o, one weight matrix for the four) and a GRU, over ``x : [N, T,
3]`` with hidden size 4, and a loss that reads every step and the last one."""

HEAD = """
input x : [N, T, 3]
input h0 : [N, 4]
target y : [N, T, 4]
"""
RNN = HEAD + """
param Wx : [3, 4] = normal(std=0.5)
param Wh : [4, 4] = normal(std=0.5)
param b : [4] = normal(std=0.1)
h[t] = tanh(x[:, t] @ Wx + h[t-1] @ Wh + b) from h0
"""
LSTM = HEAD + """
input c0 : [N, 4]
param Wx : [3, 16] = normal(std=0.5)
param Wh : [4, 16] = normal(std=0.5)
param b : [16] = normal(std=0.1)
a[t] = x[:, t] @ Wx + h[t-1] @ Wh + b
i[t] = sigmoid(a[t][:, 0:4])
f[t] = sigmoid(a[t][:, 4:8])
g[t] = tanh(a[t][:, 8:12])
o[t] = sigmoid(a[t][:, 12:16])
c[t] = f[t] * c[t-1] + i[t] * g[t] from c0
h[t] = o[t] * tanh(c[t]) from h0
grad wrt c0
"""
GRU = HEAD + """
param Wz : [3, 4] = normal(std=0.5);  param Uz : [4, 4] = normal(std=0.5)
param Wr : [3, 4] = normal(std=0.5);  param Ur : [4, 4] = normal(std=0.5)
param Wn : [3, 4] = normal(std=0.5);  param Un : [4, 4] = normal(std=0.5)
param bz : [4] = zeros;  param bn : [4] = normal(std=0.1)
z[t] = sigmoid(x[:, t] @ Wz + h[t-1] @ Uz + bz)
r[t] = sigmoid(x[:, t] @ Wr + h[t-1] @ Ur)
n[t] = tanh(x[:, t] @ Wn + (r[t] * h[t-1]) @ Un + bn)
h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1] from h0
"""
# Every step and the last one read by the loss, so adjoints arrive per step and at the end.
LOSS = """
loss L = mean((h - y)^2) + sum(h[:, -1]^2)
grad wrt x, h0
"""
CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def data(prog, length, seed=0, batch=3):
    """Inputs and targets (``N = batch``, ``T = length``) and parameters, drawn."""
    import numpy as np

    from bpc.compiler.ir.evaluate import initial_params

    rng = np.random.default_rng(seed)
    feeds = {bd.name: rng.normal(size=[batch if d == "N" else length if d == "T" else d
                                       for d in bd.node.shape])
             for bd in prog.inputs + prog.targets}
    return feeds, initial_params(prog, rng)
