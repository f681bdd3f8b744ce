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


def run_module(module, params, feeds, target="numpy"):
    """``loss_and_grad`` and ``predict`` (of the inputs but ``y``) of a module on either
    target, as NumPy: (loss, h, grads)."""
    import numpy as np

    if target == "torch":
        import torch

        params = {k: torch.tensor(v) for k, v in params.items()}
        feeds = {k: torch.tensor(v) for k, v in feeds.items()}
    loss, grads = module.loss_and_grad(params, **feeds)
    h = module.predict(params, **{k: v for k, v in feeds.items() if k != "y"})
    return float(loss), np.asarray(h), {k: np.asarray(v) for k, v in grads.items()}


FUNCTIONS = ("tanh({})", "sigmoid({})", "sin({})", "0.5 * ({})", "({})^2 * 0.1")


def random_recurrence(seed: int) -> str:
    """A random loop over time (seeded): one or two carried values (``h``, ``c``), up to
    two step equations before them, each a function of a sum or product of terms: the
    sequence at t through a weight, a carried value a step back (through a weight or
    not), a step equation of this step; a loss on every step of ``h`` and on the last
    step of a random step equation; ``grad wrt x, h0``."""
    import random

    rng = random.Random(seed)
    size = rng.choice([2, 3])
    carried = ["h", "c"][:rng.randint(1, 2)]
    names = [f"g{k}" for k in range(rng.randint(0, 2))] + carried[::-1]
    lines = ["input x : [N, T, 3]", f"target y : [N, T, {size}]"]
    lines += [f"input {c}0 : [N, {size}]" for c in carried]
    count = iter(range(100))

    def weight(rows: int) -> str:
        name = f"W{next(count)}"
        lines.append(f"param {name} : [{rows}, {size}] = normal(std=0.5)")
        return name

    def term(now: list[str], first: bool) -> str:
        kind = "x" if first else rng.choice(["x", "prev"] + ["now"] * bool(now))
        if kind == "x":
            return f"x[:, t] @ {weight(3)}"
        if kind == "prev":
            c = rng.choice(carried)
            return f"{c}[t-1] @ {weight(size)}" if rng.random() < 0.6 else f"{c}[t-1]"
        return f"{rng.choice(now)}[t]"

    steps = []
    for k, name in enumerate(names):
        terms = [term(names[:k], k == 0 and not j) for j in range(rng.randint(1, 3))]
        joined = " + ".join(terms) if rng.random() < 0.7 else \
            " * ".join(f"({term})" for term in terms)  # (@ binds as * does)
        init = f" from {name}0" if name in carried else ""
        steps.append(f"{name}[t] = {rng.choice(FUNCTIONS).format(joined)}{init}")
    lines += steps
    lines.append(f"loss L = mean((h - y)^2) + sum({rng.choice(names)}[:, -1]^2)")
    lines.append("grad wrt x, h0")
    return "\n".join(lines) + "\n"


# The copy task (data set ``copy``: 5 symbols, a delimiter, 5 blanks; V = 10) as
# equations: a tanh RNN and an LSTM beside it, for the gradient norm over time
# (``bpc stats``). The initial state is zero: ``0 * e[:, 0]`` (D = H = 16).
COPY_HEAD = """
data copy(steps=5)
input x : [N, T]
target y : [N, T]
param E : [10, 16] = normal(std=1)
param Wo : [16, 10] = xavier
param bo : [10] = zeros
e = embed(x, E)
h0 = 0 * e[:, 0]
"""
COPY_RNN = "model copy_rnn" + COPY_HEAD + """
param Wx : [16, 16] = xavier
param Wh : [16, 16] = xavier
param b : [16] = zeros
h[t] = tanh(e[:, t] @ Wx + h[t-1] @ Wh + b) from h0
loss L = softmax_cross_entropy(h @ Wo + bo, y, ignore=0)
"""
COPY_LSTM = "model copy_lstm" + COPY_HEAD + """
c0 = 0 * e[:, 0]
param Wx : [16, 64] = xavier
param Wh : [16, 64] = xavier
param b : [64] = zeros
a[t] = e[:, t] @ Wx + h[t-1] @ Wh + b
c[t] = sigmoid(a[t][:, 16:32]) * c[t-1] + sigmoid(a[t][:, 0:16]) * tanh(a[t][:, 32:48]) from c0
h[t] = sigmoid(a[t][:, 48:64]) * tanh(c[t]) from h0
loss L = softmax_cross_entropy(h @ Wo + bo, y, ignore=0)
"""
