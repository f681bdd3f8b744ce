"""The structured fuzz's specs: random spec *structure*, not random characters.

Each spec is built statement by statement from the language's grammar and vocabulary:
every statement kind (model, dtype, let, input, target, param, equations, layer stacks
with repeats, output, loss, grad wrt, optimizer, train, data), expressions nested from
every function and operator, and extremes (huge and long numbers, deep nesting, long
names, huge repeats and shapes, many statements, odd line breaks in comments). Seeds by
their remainder mod 5:

- 0-2: programs over ``[N, H]`` values, half shape-consistent (they must compile), half
  *wild*: expressions of any function with any arguments (``wild_expr``: also
  ``conv2d``, pooling, ``dropout``, ``concat``/``stack`` and slices on values of the wrong
  rank or with bad options), and damaged (a line dropped, duplicated, cut …);
- 3: image programs (image_specs.py's ``image_spec``), a few holding one invalid line
  in a valid program (``refusal``: then the spec must be refused);
- 4: random_specs.py's valid programs, with modes (batch norm, state, dropout) and
  sequences (layer stacks and loops over time).

``structured_spec(seed)`` rebuilds the spec of a seed.
"""

from __future__ import annotations

import random

UNARY = ["exp", "log", "sin", "cos", "tan", "tanh", "sqrt", "abs", "square", "sign",
         "sigmoid", "softplus", "relu"]
SAFE_UNARY = ["sin", "cos", "tanh", "abs", "square", "sign", "sigmoid", "softplus", "relu"]
REDUCE = ["sum", "mean", "max", "logsumexp"]
AXIS_FN = ["softmax", "log_softmax"]
BINARY_FN = ["maximum", "minimum"]
LOSSES = ["mse", "sse", "least_squares", "cross_entropy", "softmax_cross_entropy",
          "sigmoid_cross_entropy"]
ACTIVATIONS = ["relu", "sigmoid", "tanh", "softplus", "leaky_relu", "softmax"]
INITS = ["zeros", "ones", "constant(value=0.1)", "normal(std=0.1)",
         "uniform(low=-0.2, high=0.2)", "xavier", "glorot", "xavier_uniform", "he",
         "kaiming", "lecun", "0.05"]
OPTIMIZERS = {"sgd": [], "momentum": ["momentum"], "nesterov": ["momentum"],
              "adagrad": ["eps"], "rmsprop": ["rho", "eps"], "adam": ["beta1", "beta2", "eps"]}
TRAIN_KEYS = ["epochs", "iters", "batch", "seed", "shuffle", "eval_every"]
DATASETS = ["xor", "spiral", "sine", "digits", "mnist", "spiral(points=50)",
            "sine(points=20)", '"data.npz"']
HUGE_NUMBERS = ["9" * 400, "9" * 5000, "1e999", "1e-999", "9" * 99, "0" * 300 + "1",
                "179769313486231570814527423731704356798070567525844996598917476803157260"
                "780028538760589558632766878171540458953514382464234321326889464182768467"
                "546703537516986049910576551282076245490090389328944075868508455133942304"
                "583236903222948165808559332123348274797826204144723168738177180919299881"
                "2504040261841248583681", "2^1023*2", "9^9^9", "10^308*10", "0^-1"]
ODD_BREAKS = ["\x0c", "\x85", "\u2028", "\u2029", "\x0b", "\x1c", "\r"]


class _Gen:
    def __init__(self, r: random.Random):
        self.r = r
        self.lines: list[str] = []
        self.values: list[str] = []  # names of [N, H] values (consistent mode)
        self.params: list[str] = []  # names of [H, H] parameters
        self.counter = 0
        self.bias: str | None = None

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # ------------------------------------------------------------ expressions
    def consistent_expr(self, depth: int) -> str:
        """An expression of shape [N, H] over the values and parameters in scope."""
        r = self.r
        if depth <= 0 or self.chance(0.25):
            return r.choice(self.values)
        kind = r.choice(["unary", "binary", "matmul", "scaled", "fn2", "axis", "reduce",
                         "pow", "neg", "paren", "leaky", "transpose2"])
        a = self.consistent_expr(depth - 1)
        if kind == "unary":
            return f"{r.choice(SAFE_UNARY)}({a})"
        if kind == "binary":
            return f"{a} {r.choice(['+', '-', '*'])} {self.consistent_expr(depth - 1)}"
        if kind == "matmul":
            return f"({a}) @ {r.choice(self.params)}"
        if kind == "scaled":
            return f"{r.choice(['0.5', '2', '-1.25', 'c0', 'K'])} * ({a})"
        if kind == "fn2":
            return f"{r.choice(BINARY_FN)}({a}, {self.consistent_expr(depth - 1)})"
        if kind == "axis":
            return f"{r.choice(AXIS_FN)}({a}" + r.choice(["", ", axis=-1", ", axis=1"]) + ")"
        if kind == "reduce":
            fn = r.choice(REDUCE)
            inner = r.choice([f"{fn}({a})", f"{fn}({a}, axis=1, keepdims=1)",
                              f"{fn}({a}, axis=-1, keepdims=true)",
                              f"{fn}({a}, axis=0, keepdims=1)"])
            return f"{self.consistent_expr(depth - 1)} + {inner}"
        if kind == "pow":
            return f"square({a})^{r.choice(['2', '0.5', '3'])}"
        if kind == "neg":
            return f"-({a})"
        if kind == "leaky":
            return f"leaky_relu({a}, alpha=0.{r.randint(1, 3)})"
        if kind == "transpose2":
            return f"(({a}).T).T" if self.bias is None or self.chance(0.5) else f"{a} + {self.bias}"
        return f"({a})"

    def wild_expr(self, names: list[str], depth: int) -> str:
        """Any expression the grammar accepts, shapes and names be what they may."""
        r = self.r
        if depth <= 0 or self.chance(0.2):
            return r.choice(names + ["1", "0.5", "-2", "1e-3", "N", "[1, 2; 3, 4]", "[1, 2]",
                                     "true", "nosuch", "K"])
        k = r.randint(0, 14)
        a = self.wild_expr(names, depth - 1)
        b = self.wild_expr(names, depth - 1)
        if k == 0:
            return f"{a} {r.choice(['+', '-', '*', '/', '@', '^', '**'])} {b}"
        if k == 1:
            return f"{r.choice(UNARY + ACTIVATIONS + AXIS_FN)}({a})"
        if k == 2:
            return f"{r.choice(REDUCE)}({a}, axis={r.choice(['0', '1', '-1', 'none', '2', '[0, 1]'])}" \
                   f", keepdims={r.choice(['0', '1', 'true', 'false', '2'])})"
        if k == 3:
            return f"{r.choice(BINARY_FN + LOSSES)}({a}, {b})"
        if k == 4:
            return f"reshape({a}, [{r.choice(['-1', 'N, -1', '-1, 2', '', '2, 2', 'N'])}])"
        if k == 5:
            return f"transpose({a})" if self.chance(0.5) else f"({a}).T"
        if k == 6:
            return f"-{a}"
        if k == 7:
            return f"({a})"
        if k == 8:
            return f"leaky_relu({a}, alpha={r.choice(['0.1', '-1', 'x', '1e999'])})"
        if k == 10:
            return f"conv2d({a}, {b}" + r.choice(["", ", stride=2", ", pad=1", ", 1, 1",
                                                  ", stride=0", ", pad=-1"]) + ")"
        if k == 11:
            size = r.choice(["1", "2", "size=2", "0", "x"])
            return f"{r.choice(['max_pool', 'avg_pool'])}({a}, {size}" + \
                r.choice(["", ", stride=1", ", pad=1", ", pad=2", ", 2, 1"]) + ")"
        if k == 12:
            return f"dropout({a}" + r.choice([", 0.5)", ", 0)", ", p=0.2)", ")", ", 1)",
                                             ", true)", f", {b})"])
        if k == 13:
            return f"concat([{a}, {b}]" + r.choice(["", ", axis=1", ", axis=-1", ", axis=5"]) \
                + ")" if self.chance(0.7) else f"stack([{a}, {b}])"
        if k == 14:
            return f"({a})[" + r.choice([":, 1:", ":, ::-1", "0", ":, 0:1", "1:", ":, 5",
                                         ":, :, 0", "::0"]) + "]"
        return f"{r.choice(UNARY)}({a}, {b})"  # wrong arity

    def deep_expr(self, depth: int) -> str:
        kind = self.r.choice(["call", "paren", "ops", "neg", "pow", "matrix", "mixed"])
        if kind == "call":
            return "tanh(" * depth + "x" + ")" * depth
        if kind == "paren":
            return "(" * depth + "x" + ")" * depth
        if kind == "ops":
            return " + ".join(["x"] * depth)
        if kind == "neg":
            return "-" * depth + "x"
        if kind == "pow":
            return "^".join(["x"] * depth)
        if kind == "matrix":
            return "[" * depth + "1" + "]" * depth
        out = "x"
        for _ in range(depth):
            out = self.r.choice([f"tanh({out})", f"({out} + x)", f"-({out})", f"{out} * 2"])
        return out


def structured_spec(seed: int) -> tuple[str, bool]:
    """(spec text, whether it was built shape-consistent and undamaged: must compile)."""
    if seed % 5 == 4:  # the differential test's richer valid programs (3-D, reshapes,
        # conv, pooling, slices, concat, batch norm, dropout, residual stacks …)
        from random_specs import spec_from_seed

        return spec_from_seed(seed, modes=True, sequences=True).text(), True
    if seed % 5 == 3:  # image programs with modes, edge shapes, and wild ones
        from image_specs import image_spec  # (which imports damage from here)

        return image_spec(seed)
    r = random.Random(seed)
    g = _Gen(r)
    consistent = r.random() < 0.5
    extreme = r.random() < 0.3
    H = r.randint(1, 4)
    L = g.lines
    if r.random() < 0.8:
        L.append(f"model {r.choice(['fz', 'fuzz_model', 'M2'])}")
    if r.random() < 0.3:
        L.append(f"dtype {r.choice(['float32', 'float64'])}")
    L.append("let c0 = 0.25")
    L.append(f"let K = {r.randint(1, 3)}")
    width = r.choice([str(H), "H"]) if consistent else r.choice([str(H), "H", "K", "N"])
    L.append(f"let H = {H}")
    L.append(f"input x : [N, {width}]")
    g.values.append("x")
    if r.random() < 0.3:
        L.append(f"input u : [{H}] = [{', '.join(['0.1'] * H)}]")
    if r.random() < 0.3:
        L.append("input s = 0.5")
    for _ in range(r.randint(1, 3)):
        p = g.fresh("P")
        L.append(f"param {p} : [{H}, {H}] = {r.choice(INITS)}")
        g.params.append(p)
    if r.random() < 0.3:
        L.append(f"param b0 : [{H}] = zeros")
        g.bias = "b0"  # [H]: added to an [N, H] value, it broadcasts
    for _ in range(r.randint(0, 6)):
        name = g.fresh("h")
        if consistent or r.random() < 0.5:
            L.append(f"{name} = {g.consistent_expr(r.randint(1, 5))}")
        else:
            L.append(f"{name} = {g.wild_expr(g.values + g.params, r.randint(1, 4))}")
        g.values.append(name)
    if r.random() < 0.5:
        out = g.fresh("s")
        src = r.choice(g.values)
        L.append(f"layers {src} -> {out} {{")
        for _ in range(r.randint(0, 2)):
            L.append(f"  dense {H}" + r.choice(["", " init=he", " bias=none",
                                                " init=normal(std=0.1)"]))
            L.append(f"  {r.choice(ACTIVATIONS)}")
        if r.random() < 0.5:
            L.append(f"  repeat {r.randint(1, 3)} {{ dense {H}; {r.choice(ACTIVATIONS)} }}")
        L.append(f"  dense {H}")
        L.append("}")
        g.values.append(out)
    y = g.values[-1]
    if r.random() < 0.4:
        L.append(f"output {y}" if r.random() < 0.5 else f"output yhat = tanh({y})")
    loss = r.choice(["mse", "sse", "least_squares", "sxe_onehot", "sxe_labels", "sigxe",
                     "sum", "mean_sq"])
    if loss in ("mse", "sse", "least_squares"):
        L.append(f"target t : [N, {H}]")
        L.append(f"loss L = {loss}({y}, t)")
    elif loss == "sxe_onehot":
        L.append(f"target t : [N, {H}]")
        L.append(f"loss L = softmax_cross_entropy({y}, t)")
    elif loss == "sxe_labels":
        L.append("target t : [N]")
        L.append(f"loss L = softmax_cross_entropy({y}, t)")
    elif loss == "sigxe":
        L.append(f"target t : [N, {H}]")
        L.append(f"loss L = sigmoid_cross_entropy({y}, t)")
    elif loss == "sum":
        L.append(f"loss L = sum({y})")
    else:
        L.append(f"loss L = mean(square({y})) + 0.01 * sum(square({g.params[0]}))")
    if r.random() < 0.3:
        L.append("grad wrt x")
    if r.random() < 0.5:
        name = r.choice(list(OPTIMIZERS))
        kws = [f"lr={r.choice(['0.1', '0.01', '1e-3'])}"]
        for key in OPTIMIZERS[name]:
            if r.random() < 0.5:
                kws.append(f"{key}={ {'momentum': '0.9', 'eps': '1e-8', 'rho': '0.9', 'beta1': '0.9', 'beta2': '0.999'}[key]}")
        L.append(f"optimizer {name}({', '.join(kws)})")
    if r.random() < 0.5:
        settings = r.sample(["epochs = 3", "batch = 4", "seed = 1", "shuffle = true",
                             "eval_every = 1"], r.randint(1, 3))
        L.append("train { " + "; ".join(settings) + " }")
    if r.random() < 0.2 and not consistent:
        L.append(f"data {r.choice(DATASETS)}")
    if r.random() < 0.3:
        L.insert(r.randint(0, len(L)), "# a comment " + r.choice(["", "é", "\t"]))

    damaged = False
    if extreme:
        damaged = _extreme(g, r)
    if not consistent or r.random() < 0.2:
        damaged = damage(g, r) or damaged
    text = "\n".join(L) + "\n"
    return text, consistent and not damaged


def _extreme(g: _Gen, r: random.Random) -> bool:
    """One extreme thing; True when the spec may no longer be valid."""
    L = g.lines
    kind = r.choice(["number", "deep", "long_name", "repeat", "dims", "model_name",
                     "many", "breaks", "unknown_long", "crlf"])
    where = r.randint(1, len(L) - 1)
    if kind == "number":
        L.insert(where, f"let big = {r.choice(HUGE_NUMBERS)}")
        return True
    if kind == "deep":
        depth = r.choice([10, 50, 99, 101, 150, 199, 201, 250, 490, 1000, 3000])
        L.insert(where, f"deep = {g.deep_expr(depth)}")
        return True
    if kind == "long_name":
        name = "v" + "a" * r.choice([100, 1000, 10000])
        L.insert(len(L) - 1, f"{name} = tanh(x)")
        return False
    if kind == "unknown_long":
        L.insert(len(L) - 1, f"q = {'x' * r.choice([63, 64, 65, 1000, 10000])}y + x")
        return True
    if kind == "repeat":
        count = r.choice(["10000000", "10000", "10001", "2^40", "9^9^9", "0", "-1", "2.5"])
        L.insert(where, "layers x -> big_stack {")
        L.insert(where + 1, f"  repeat {count} {{ relu }}")
        L.insert(where + 2, "}")
        return True
    if kind == "dims":
        dims = r.choice(["100000000, 100000000", "1000000000000", "99999, 99999, 99999",
                         "0", "-3", "K, 1e9", "9" * 120])
        L.insert(where, f"param huge : [{dims}] = zeros")
        return True
    if kind == "model_name":
        name = r.choice(["typing", "random", "math", "os", "json", "m" * 300,
                         "a" * 101, "np", "import", "_x", "sum"])
        L[:] = [line for line in L if not line.startswith("model ")]
        L.insert(0, f"model {name}")
        return True
    if kind == "many":
        prev = "x"
        for i in range(r.choice([200, 1000, 3000])):
            L.insert(len(L) - 1, f"m{i} = tanh({prev}) * 0.5 + {prev}")
            prev = f"m{i}"
        return False
    if kind == "breaks":
        L.insert(where, "# odd" + r.choice(ODD_BREAKS) + "line break in a comment")
        return r.choice([True, False]) and damage(g, r)
    if kind == "crlf":
        L[:] = [line + "\r" for line in L]
        return False
    return False


def damage(g: _Gen, r: random.Random) -> bool:
    L = g.lines
    kind = r.choice(["drop", "dup", "swap", "unknown", "keyword", "truncate", "config",
                     "shape", "none"])
    i = r.randrange(len(L))
    j = r.randrange(len(L))
    if kind == "drop":
        del L[i]
    elif kind == "dup":
        L.insert(i, L[j])
    elif kind == "swap":
        L[i], L[j] = L[j], L[i]
    elif kind == "unknown":
        L.insert(len(L) - 1, f"oops = {r.choice(['tanhh', 'nosuch', 'W99', 'hh1'])}(x)")
    elif kind == "keyword":
        L.insert(i, r.choice(["optimizer adamw(lr=0.1)", "train { epochs = 0 }",
                              "train { epochs = 1e999 }", "train { bogus = 1 }",
                              "optimizer sgd(lr=-1)", "dtype float16", "data nosuch",
                              "data spiral(points=0)", "grad wrt nosuch", "output nosuch",
                              "loss L2 = sum(x)", "input x : [N, 2]", "model a\nmodel b"]))
    elif kind == "truncate":
        L[i] = L[i][: r.randint(0, len(L[i]))]
    elif kind == "config":
        L.append("train { epochs = " + r.choice(["-1", "2.5", "true", "[1]", "x"]) + " }")
    elif kind == "shape":
        L.insert(i, "param Wbad : [" + r.choice(["N, 2", "2, 3", "", "-1", "0"]) + "] = he")
    else:
        return False
    return True


def refusal(seed: int) -> str | None:
    """What makes structured_spec(seed) invalid on purpose (a pooling pad >= its size,
    dropout p = 1, batch norm momentum = 1 …: the language says so, and the spec was not
    damaged after): then bpc must refuse it. None when nothing is known."""
    from image_specs import image_refusal

    return image_refusal(seed) if seed % 5 == 3 else None
