"""Recurrences written as equations, for the tests: a tanh RNN, an LSTM (gates in
PyTorch's order i, f, g, o, one weight matrix for the four) and a GRU (PyTorch's: gates
r, z, n, the reset gate applied to the hidden part of n), over ``x : [N, T, 3]`` with
hidden size 4, and a loss that reads every step and the last one."""

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
param Wx : [3, 12] = normal(std=0.5)
param Wh : [4, 12] = normal(std=0.5)
param bx : [12] = normal(std=0.1)
param bh : [12] = normal(std=0.1)
gx[t] = x[:, t] @ Wx + bx
gh[t] = h[t-1] @ Wh + bh
r[t] = sigmoid(gx[t][:, 0:4] + gh[t][:, 0:4])
z[t] = sigmoid(gx[t][:, 4:8] + gh[t][:, 4:8])
n[t] = tanh(gx[t][:, 8:12] + r[t] * gh[t][:, 8:12])
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
