"""The rich random-spec generator's steps on values (random_specs.py draws them): the
spec being built, shapes that broadcast, and ``SpecGen``, whose methods each add one
equation (elementwise, broadcasting, ``^``, ``@``, reductions, normalisers, transposes,
reshapes, indexing and slicing, ``concat``/``stack``) or a loss term; its mode, image and
layer-stack steps are in spec_layer_steps.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spec_layer_steps import LayerSteps
from spec_sequence_steps import SequenceSteps

N = "N"


@dataclass
class GenSpec:
    lines: list = field(default_factory=list)
    features: set = field(default_factory=set)

    def text(self):
        return "\n".join(self.lines) + "\n"

    def __repr__(self):  # what Hypothesis prints for a falsifying example
        return "GenSpec(<<<\n" + self.text() + ">>>)"


def fmt_shape(shape):
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def _bshape(a, b):
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        out.append(x if y == 1 else y)
    return tuple(reversed(out))


def _partners(shape):
    """Shapes that broadcast against ``shape`` without changing it (fixed dims only,
    except the shape itself)."""
    out = {shape, ()}
    if shape:
        out.add(shape[-1:])
        out.add((1,) * len(shape))
    if len(shape) == 2:
        out.add((1, shape[1]))
        out.add((shape[0], 1))
    return [s for s in out if N not in s or s == shape]



class SpecGen(LayerSteps, SequenceSteps):
    def __init__(self, c, modes=False):
        self.c = c
        self.modes = modes  # batch norm, state and dropout (training and inference)
        self.g = GenSpec()
        self.values = []  # (name, shape) usable as operands
        self.params = {}
        self.count = 0
        self.lets = {}
        self.targets = {}
        self.from_image = set()  # values computed from the image input
        self.norms = 0  # hand-written batch_norm calls (their states rm{k}, rv{k})
        self.sequences = []  # (name, width) of sequences [N, T, width]; ids: width None
        self.seq_values = []  # the computed ones, for sequence loss terms
        self.vocab = 0  # the ids' vocabulary
        self.time_steps = 0  # layer stacks and loops over time drawn

    # -------------------------------------------------------------------- helpers
    def line(self, text):
        self.g.lines.append(text)

    def feature(self, name):
        self.g.features.add(name)

    def new_param(self, shape, init=None):
        name = f"w{len(self.params)}"  # not p{k}: a layer stack's pooled values
        self.params[name] = shape
        c = self.c
        if init is None:
            if not shape and c.chance(0.3):
                init = "0.5"
            elif shape == (2, 2) and c.chance(0.3):
                init = "[0.1, -0.2; 0.3, 0.4]"
            else:
                init = c.choice(["zeros", "normal(std=0.5)", "uniform(low=-0.5, high=0.5)",
                                 "xavier", "ones"])
        if init[0] in "0123456789[-" and (shape == () or init.startswith("[")):
            self.line(f"param {name} = {init}")
        else:
            dims = [("K" if d == self.lets.get("K") and self.c.chance(0.5) else d)
                    for d in shape]
            self.line(f"param {name} : {fmt_shape(dims)} = {init}")
        return name

    def operand(self, shapes, allow_param=True):
        cands = [(n, s) for n, s in self.values if s in shapes]
        fixed = [s for s in shapes if N not in s]
        if cands and (not fixed or not allow_param or self.c.chance(0.6)):
            return self.c.choice(cands)
        shape = self.c.choice(fixed)
        return self.new_param(shape), shape

    def new_value(self, expr, shape, kind="eq"):
        self.count += 1
        name = f"v{self.count}"
        self.line(f"{name} = {expr}")
        self.values.append((name, shape))
        return name

    def pick(self):
        images = [v for v in self.values if v[0] in self.from_image]
        if images and self.c.chance(0.4):  # keep working on the image's path
            return images[-1]
        pool = self.values[-3:] + self.values[:1]
        return self.c.choice(pool)

    # -------------------------------------------------------------------- steps
    def unary(self, a, sa):
        c = self.c
        fn = c.choice(["sin", "cos", "tanh", "sigmoid", "softplus", "square", "relu", "abs",
                       "leaky_relu", "leaky_relu_a", "neg", "exp_tanh", "log", "sqrt",
                       "tan", "sign", "exp"])
        self.feature(fn)
        expr = {"neg": f"-{a}", "exp_tanh": f"exp(tanh({a}))",
                "leaky_relu_a": f"leaky_relu({a}, alpha=0.2)",
                "log": f"log(1 + square({a}))", "sqrt": f"sqrt(1 + square({a}))",
                "tan": f"tan(tanh({a}))", "sign": f"sign({a}) * {a}",
                "exp": f"exp(-square({a}))"}.get(fn, f"{fn}({a})")
        return expr, sa

    def binary(self, a, sa):
        c = self.c
        kind = c.choice(["+", "-", "*", "maximum", "minimum", "divide", "number", "let",
                         "literal"])
        self.feature(f"binary {kind}")
        if kind == "number":
            k = c.choice(["2", "0.5", "3", "1e-1"])
            return c.choice([f"{a} * {k}", f"{k} - {a}", f"{a} / 2", f"{k} + {a}"]), sa
        if kind == "let":
            return f"{a} * c0", sa
        if kind == "literal":
            if sa and isinstance(sa[-1], int) and sa[-1] <= 4:
                nums = [0.5, -1, 2, 0.25][:sa[-1]]
                return f"{a} * [{', '.join(map(str, nums))}]", sa
            return f"{a} + 1", sa
        b, sb = self.operand(_partners(sa))
        shape = _bshape(sa, sb)
        if kind == "divide":
            return f"{a} / (1 + square({b}))", shape
        if kind in ("maximum", "minimum"):
            first, second = (a, b) if c.chance(0.5) else (b, a)
            return f"{kind}({first}, {second})", shape
        return f"{a} {kind} {b}", shape

    def power(self, a, sa):
        c = self.c
        kind = c.choice(["2", "3", "neg", "half", "param", "star"])
        self.feature(f"power {kind}")
        if kind == "neg":
            return f"-{a}^2", sa
        if kind == "half":
            return f"(1 + square({a}))^0.5", sa
        if kind == "star":
            return f"{a} ** 2", sa
        if kind == "param":
            p, _ = self.operand([()])
            return f"sigmoid({a}) ^ {p}", sa
        return f"{a}^{kind}", sa

    def matmul(self, a, sa):
        c = self.c
        if len(sa) > 2:
            return self.batched_matmul(a, sa)
        if not sa:
            return None
        m = c.choice([1, 2, 3])
        last = sa[-1]
        opts = []
        if isinstance(last, int):
            opts += ["right_mat", "right_vec"]
        if isinstance(sa[0], int):
            opts += ["left_mat"] + (["left_vec"] if len(sa) == 2 else [])
        if not opts:
            return None
        kind = c.choice(opts)
        self.feature(f"matmul {kind}")
        if kind == "right_mat":
            w = self.new_param((last, m))
            return f"{a} @ {w}", sa[:-1] + (m,)
        if kind == "right_vec":
            w = self.new_param((last,))
            return f"{a} @ {w}", sa[:-1]
        if kind == "left_mat":
            if len(sa) == 1 and c.chance(0.3) and sa[0] == 2:
                return f"[0.5, -1; 2, 0.25] @ {a}", (2,)
            w = self.new_param((m, sa[0]))
            return (f"{w} @ {a}", (m,) + sa[1:])
        w = self.new_param((sa[0],))
        return f"{w} @ {a}", sa[1:]

    def batched_matmul(self, a, sa):
        """``@`` over batch axes: a shared matrix, a batch of matrices that broadcasts
        (a fixed batch axis made 1 or kept), or the value against itself swapped."""
        c = self.c
        last = sa[-1]
        kind = c.choice(["shared", "batch", "self"] if isinstance(last, int) else ["self"])
        self.feature(f"matmul batched {kind}")
        if kind == "self":
            return f"{a} @ swapaxes({a}, -1, -2)", sa[:-1] + (sa[-2],)
        m = c.choice([1, 2, 3])
        if kind == "shared":
            return f"{a} @ {self.new_param((last, m))}", sa[:-1] + (m,)
        batch = tuple(1 if not isinstance(d, int) or c.chance(0.5) else d for d in sa[:-2])
        return f"{a} @ {self.new_param(batch[c.integers(0, len(batch) - 1):] + (last, m))}", \
            sa[:-1] + (m,)

    def reduce(self, a, sa):
        c = self.c
        fn = c.choice(["sum", "mean", "max", "logsumexp"])
        self.feature(f"reduce {fn}")
        if not sa or c.chance(0.2):
            keep = sa and c.chance(0.3)
            return (f"{fn}({a}{', keepdims=true' if keep else ''})",
                    tuple(1 for _ in sa) if keep else ())
        if len(sa) >= 2 and c.chance(0.25):
            axes = [0, 1] if len(sa) == 2 else sorted({c.integers(0, len(sa) - 1),
                                                      c.integers(0, len(sa) - 1)})
            keep = c.chance(0.4)
            shape = tuple((1 if i in axes else d) for i, d in enumerate(sa)) if keep else \
                tuple(d for i, d in enumerate(sa) if i not in axes)
            kw = c.choice([", keepdims=1", ", keepdims=true"]) if keep else ""
            return f"{fn}({a}, axis=[{', '.join(map(str, axes))}]{kw})", shape
        axis = c.integers(-len(sa), len(sa) - 1)
        keep = c.chance(0.4)
        ax = axis % len(sa)
        shape = tuple(1 if i == ax else d for i, d in enumerate(sa)) if keep else \
            tuple(d for i, d in enumerate(sa) if i != ax)
        kw = c.choice([", keepdims=1", ", keepdims=true"]) if keep else \
            c.choice(["", ", keepdims=0", ", keepdims=false"])
        return f"{fn}({a}, axis={axis}{kw})", shape

    def normalise(self, a, sa):
        if not sa:
            return None
        c = self.c
        fn = c.choice(["softmax", "log_softmax"])
        self.feature(fn)
        if c.chance(0.4):
            return f"{fn}({a})", sa
        axis = c.integers(-len(sa), len(sa) - 1)
        if fn == "softmax" and len(sa) >= 2 and sa[-1] == sa[-2] and isinstance(sa[-1], int) \
                and c.chance(0.5):
            self.feature("softmax causal mask")
            return f"softmax({a}, axis={c.choice([-1, -2])}, mask=causal({sa[-1]}))", sa
        return f"{fn}({a}, axis={axis})", sa

    def transpose(self, a, sa):
        self.feature(f"transpose rank{len(sa)}")
        if len(sa) >= 3 and self.c.chance(0.6):
            return self.permute(a, sa)
        if self.c.chance(0.5):
            return f"{a}.T", tuple(reversed(sa))
        return f"transpose({a})", tuple(reversed(sa))

    def permute(self, a, sa):
        """``transpose(a, axes=…)`` (negative axes too) or ``swapaxes``."""
        c = self.c
        order = list(range(len(sa)))
        if c.chance(0.5):
            i, j = c.integers(-len(sa), len(sa) - 1), c.integers(-len(sa), len(sa) - 1)
            order[i], order[j] = order[j], order[i]
            self.feature("swapaxes")
            return f"swapaxes({a}, {i}, {j})", tuple(sa[k] for k in order)
        for k in range(len(order) - 1, 0, -1):  # a shuffle drawn from the chooser
            j = c.integers(0, k)
            order[k], order[j] = order[j], order[k]
        self.feature("transpose axes")
        text = [k - len(sa) if c.chance(0.3) else k for k in order]
        return f"transpose({a}, axes={text})", tuple(sa[k] for k in order)

    def reshape(self, a, sa):
        c = self.c
        if N in sa:
            if sa.count(N) != 1:
                return None
            rest = math.prod(d for d in sa if d != N)
            opts = [[N, rest], [N, -1], [-1, rest], [rest, N], [rest, -1]]
            if rest == 4:
                opts.append([N, 2, 2])
                opts.append([-1, 2, 2])
            if rest == 1:
                opts.append([N])
                opts.append([-1])
            want = c.choice(opts)
            self.feature("reshape batch" + (" -1" if -1 in want else ""))
            shape = tuple(N if d == -1 else d for d in want) if -1 in want and \
                want.count(N) == 0 else tuple(rest if d == -1 else d for d in want)
            return f"reshape({a}, [{', '.join(map(str, want))}])", shape
        size = math.prod(sa)
        opts = [[-1], [size], [1, size], [size, 1], [-1, 1]]
        if size == 1:
            opts += [[], [1, 1, 1]]
        if size % 2 == 0 and size > 2:
            opts += [[2, size // 2], [-1, 2]]
        want = c.choice(opts)
        self.feature(f"reshape fixed {'scalar' if not want else ''}")
        shape = tuple(size // math.prod(d for d in want if d != -1) if d == -1 else d
                      for d in want)
        return f"reshape({a}, [{', '.join(map(str, want))}])", shape

    def _slice(self, d):
        """A random non-empty slice of an axis of size d: (text, size)."""
        c = self.c
        while True:
            start = c.choice([None, None, c.integers(-d, d - 1)])
            stop = c.choice([None, None, c.integers(-d, d)])
            step = c.choice([None, None, 1, 2, -1, -2] if d > 1 else [None, 1, -1])
            size = len(range(d)[slice(start, stop, step)])
            if size:
                text = f"{'' if start is None else start}:{'' if stop is None else stop}"
                return text + ("" if step is None else f":{step}"), size

    def index(self, a, sa):
        """``a[...]``: integers (negative too) dropping axes, slices with steps and
        omitted bounds, ':' on the batch axis, fewer subscripts than axes."""
        c = self.c
        if not sa:
            return None
        count = c.integers(1, len(sa))
        fixed = [i for i, d in enumerate(sa) if isinstance(d, int)]
        if fixed and c.chance(0.8):  # reach a fixed axis: ':' alone on N is the value
            count = max(count, fixed[0] + 1)
        items, shape = [], []
        for d in sa[:count]:
            if not isinstance(d, int) or c.chance(0.2):
                items.append(":")
                shape.append(d)
            elif c.chance(0.35):
                items.append(str(c.integers(-d, d - 1)))
                self.feature("index integer")
            else:
                text, size = self._slice(d)
                items.append(text)
                shape.append(size)
                self.feature("index slice")
        return f"{a}[{', '.join(items)}]", tuple(shape) + tuple(sa[count:])

    def overlap(self, a, sa):
        """Two overlapping slices of one value combined: both adjoints add up."""
        if not sa or not isinstance(sa[-1], int) or sa[-1] < 2:
            return None
        d, lead = sa[-1], ":, " * (len(sa) - 1)
        self.feature("index overlap")
        return f"{a}[{lead}:{d - 1}] * {a}[{lead}1:]", sa[:-1] + (d - 1,)

    def join(self, a, sa):
        """concat or stack of a value with a computed partner or a parameter."""
        c = self.c
        rank = len(sa)
        fixed = [i for i, d in enumerate(sa) if isinstance(d, int)]
        if fixed and c.chance(0.5):
            axis = c.choice(fixed)
            partner, size = c.choice(["tanh", "param", "slice"]), sa[axis]
            if partner == "param" and N not in sa:
                size = c.choice([1, 2])
                other = self.new_param(sa[:axis] + (size,) + sa[axis + 1:])
            elif partner == "slice":
                text, size = self._slice(sa[axis])
                other = f"{a}[{':, ' * axis}{text}]"
            else:
                other = f"tanh({a})"
            parts = [a, other] if c.chance(0.6) else [other, a, a]
            if len(parts) == 3:
                size += sa[axis]
            total = sa[axis] + size
            shown = axis - rank if c.chance(0.4) else axis
            self.feature(f"concat rank{rank}" + (" negative" if shown < 0 else ""))
            return (f"concat([{', '.join(parts)}], axis={shown})",
                    sa[:axis] + (total,) + sa[axis + 1:])
        axis = c.integers(-(rank + 1), rank)
        other = self.new_param(sa) if N not in sa and c.chance(0.4) else f"sin({a})"
        parts = c.choice([[a, other], [other, a, a], [a]])
        self.feature(f"stack rank{rank}" + (" negative" if axis < 0 else ""))
        k = axis % (rank + 1)
        text = f", axis={axis}" if axis or c.chance(0.5) else ""
        return f"stack([{', '.join(parts)}]{text})", sa[:k] + (len(parts),) + sa[k:]


    # -------------------------------------------------------------------- loss terms
    def target(self, shape, kind):
        name = f"t{len(self.targets)}"
        self.targets[name] = (shape, kind)
        self.line(f"target {name} : {fmt_shape(shape)}")
        return name

    def loss_term(self):
        """A loss-function term on an existing value, with a declared or computed target."""
        c = self.c
        vals = [(n, s) for n, s in self.values if s]
        if not vals:
            return None
        a, sa = c.choice(vals)
        fn = c.choice(["mse", "sse", "least_squares", "cross_entropy", "sxe_labels",
                       "sxe_onehot", "sxe_computed", "sigxe", "sigxe_computed",
                       "sxe_unnormalised"])
        self.feature(f"loss {fn}")
        if fn in ("mse", "sse", "least_squares"):
            how = c.choice(["target", "computed"])
            if how == "target":
                t = self.target(sa, "real")
            else:
                t, _ = self.operand([sa])
                t = f"tanh({t})"
            self.feature(f"loss {fn} {how}")
            return f"{fn}({a}, {t})"
        if fn.startswith("sxe") and not isinstance(sa[-1], int):
            fn = "cross_entropy"  # the fused loss needs a fixed number of classes
        if fn == "cross_entropy":
            how = c.choice(["target", "computed"])
            if how == "target":
                t = self.target(sa, "onehot")
            else:
                v, _ = self.operand([sa])
                t = f"softmax({v})"
            return f"cross_entropy(softmax({a}), {t})"
        if fn == "sxe_labels":
            t = self.target(sa[:-1], "labels")
            return f"softmax_cross_entropy({a}, {t})"
        if fn == "sxe_onehot":
            t = self.target(sa, "onehot")
            return f"softmax_cross_entropy({a}, {t})"
        if fn == "sxe_computed":
            v, _ = self.operand([sa])
            return f"softmax_cross_entropy({a}, softmax({v}))"
        if fn == "sxe_unnormalised":  # a computed target whose rows need not sum to 1
            v, _ = self.operand([sa])
            return f"softmax_cross_entropy({a}, sigmoid({v}))"
        if fn == "sigxe":
            t = self.target(sa, "prob")
            return f"sigmoid_cross_entropy({a}, {t})"
        v, sv = self.operand([sa])
        return f"sigmoid_cross_entropy({a}, sigmoid({v}))"

