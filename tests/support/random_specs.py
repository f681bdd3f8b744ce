"""Random well-typed specs, for the differential test, the gradient checks and the code
generator's properties.

Two families. ``plain_spec()`` (Hypothesis): mixed elementwise, broadcasting, matmul,
reduction, normaliser and transpose steps on one input ``x : [N, 3]``, values used several
times, operands drawn from earlier values or fresh parameters of a compatible shape, the
loss ``sum(sin(v_last)) + …``; its specs carry their data (``feeds``, ``param_values``,
``grad_x``), so a test can run one through the IR evaluator without the module's tables.

``random_spec()`` / ``spec_from_seed()`` cover much more of the language: ``let``
constants (as numbers and as dimensions), inputs with defaults (scalar and vector),
``dtype float32``, layer stacks (``dense`` with options, every activation, ``repeat``)
at the start and on computed values, every function of LANGUAGE.md's table, ``^`` with
constant and parameter exponents, ``@`` on every 1-D/2-D combination, matrix literals,
reductions with an axis, a list of axes or none and ``keepdims``, transposes of scalars,
vectors and matrices, reshapes with and without the batch dimension (``[N, 6]``,
``[-1, 6]``, ``[-1]``, ``[]``), loss functions with declared targets (integer labels, one-hot,
probabilities) and with targets *computed from parameters*, losses that are a parameter
or an alias of one, ``output`` (naming a value or defining one) and ``grad wrt`` inputs,
indexing and slicing (integers, negative indices, steps, omitted bounds, overlapping
slices of one value), ``concat`` and ``stack`` on every axis (negative axes too) of
ranks 0-4, image inputs ``[N, C, H, W]`` (non-square) with ``conv2d`` (strides,
paddings, non-square kernels, C and F > 1, with and without a ``[F, 1, 1]`` bias),
``max_pool`` / ``avg_pool`` on the last two axes of any value (side by side,
overlapping, padded), ``flatten``, and layer stacks of ``conv``, activations,
``maxpool`` / ``avgpool``, ``flatten`` and ``dense`` on images.
Modes (``modes=True``; off by default, the choices are then those of a generator
without them, and tests that run modules without ``state``/``rng`` keep working):
``batchnorm`` layers (after ``dense`` and after ``conv``, with momentum/eps options,
inside ``residual`` blocks of dense and of conv layers), hand-written ``batch_norm`` over
``[N, D]`` and ``[N, C, H, W]`` values with declared ``state`` (zeros, ones, constant,
numbers, literals; vector, scalar and literal gamma/beta; momentum/eps), ``dropout``
calls (p = 0 too) and ``dropout`` layers.

The generator is written against a tiny chooser interface so that the same code serves
Hypothesis (``random_spec()``, shrinkable) and a plain seeded ``random.Random``
(``spec_from_seed(seed)``, for long surveys that keep going after a failure).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from hypothesis import strategies as st

from bpc.compiler.ir.primitives import broadcast_shapes

N = "N"


class _HypChooser:
    def __init__(self, draw):
        self.draw = draw

    def choice(self, items):
        return self.draw(st.sampled_from(list(items)))

    def integers(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def chance(self, p):
        # A biased coin that still shrinks towards False.
        return self.draw(st.integers(0, 999)) < int(p * 1000)


class _RandChooser:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def choice(self, items):
        return self.r.choice(list(items))

    def integers(self, lo, hi):
        return self.r.randint(lo, hi)

    def chance(self, p):
        return self.r.random() < p


@dataclass
class GenSpec:
    lines: list = field(default_factory=list)
    features: set = field(default_factory=set)

    def text(self):
        return "\n".join(self.lines) + "\n"

    def __repr__(self):  # what Hypothesis prints for a falsifying example
        return "GenSpec(<<<\n" + self.text() + ">>>)"


def _fmt(shape):
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


class _Gen:
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
            self.line(f"param {name} : {_fmt(dims)} = {init}")
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
        if not sa or len(sa) > 2:
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
        return f"{fn}({a}, axis={axis})", sa

    def transpose(self, a, sa):
        self.feature(f"transpose rank{len(sa)}")
        if self.c.chance(0.5):
            return f"{a}.T", tuple(reversed(sa))
        return f"transpose({a})", tuple(reversed(sa))

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

    # -------------------------------------------------------------------- images
    def batch_norm(self, a, sa):
        """``batch_norm(a, gamma, beta, mean, var, ...)`` on a [N, D] or [N, C, H, W] value
        with a fixed axis 1, its running statistics declared as states just above."""
        c = self.c
        if len(sa) not in (2, 4) or not isinstance(sa[1], int):
            return None
        C = sa[1]
        self.norms += 1
        k = self.norms
        mean_init = c.choice(["zeros", "zeros", "0.5", "constant(value=-0.25)"]
                             + ([f"[{', '.join(str(0.1 * i) for i in range(C))}]"]
                                if C <= 4 else []))
        var_init = c.choice(["ones", "ones", "2", "constant(value=0.5)"]
                            + ([f"[{', '.join(str(1 + i) for i in range(C))}]"]
                               if C <= 4 else []))
        self.line(f"state rm{k} : [{C}] = {mean_init}")
        self.line(f"state rv{k} : [{C}] = {var_init}")
        how = c.choice(["vector", "vector", "scalar", "number", "literal"])
        if how == "vector":
            gamma, beta = self.new_param((C,), "normal(std=0.5)"), self.new_param((C,))
        elif how == "scalar":
            gamma, beta = self.new_param(()), self.new_param(())
        elif how == "number":
            gamma, beta = "1", c.choice(["0", "0.5"])
        else:
            gamma, beta = "[" + ", ".join(str(0.5 + i) for i in range(C)) + "]", "0.1"
        self.feature(f"batch_norm rank {len(sa)} {how}")
        opts = c.choice(["", "", ", momentum=0.5", ", eps=1e-3", ", 0.8, 1e-4",
                         ", momentum=0"])
        if opts:
            self.feature("batch_norm options")
        self.feature("state")
        return f"batch_norm({a}, {gamma}, {beta}, rm{k}, rv{k}{opts})", sa

    def dropout(self, a, sa):
        """``dropout(a, p)``: training draws a mask, inference is the identity."""
        p = self.c.choice(["0.5", "0.2", "p=0.3", "0"])
        self.feature("dropout" + (" 0" if p == "0" else ""))
        return f"dropout({a}, {p})", sa

    def _window(self, h, w, square=False, pool=False):
        """(kh, kw, stride, pad) that tile an h x w image exactly, or None. Pooling:
        ``pad`` < size (a window is never all padding)."""
        c = self.c
        for _ in range(12):
            kh = c.integers(1, 3)
            kw = kh if square else c.integers(1, 3)
            stride = c.choice([1, 1, 2] if not pool else [None, None, 1, 2])
            pad = c.choice([0, 0, 1]) if not pool or min(kh, kw) > 1 else 0
            st_ = stride or kh
            if pool and kh != kw:
                continue
            if kh > h + 2 * pad or kw > w + 2 * pad:
                continue
            if (h + 2 * pad - kh) % st_ or (w + 2 * pad - kw) % st_:
                continue
            return kh, kw, stride, pad
        return None

    @staticmethod
    def _out(size, k, stride, pad):
        return (size + 2 * pad - k) // (stride or k) + 1

    def conv(self, a, sa):
        """``conv2d(a, W, stride, pad)`` (+ a bias ``[F, 1, 1]``) on an image batch."""
        c = self.c
        if len(sa) != 4 or not all(isinstance(d, int) for d in sa[1:]):
            return None
        _, C, H, W = sa
        win = self._window(H, W)
        if win is None:
            return None
        kh, kw, stride, pad = win
        F = c.integers(1, 3)
        w = self.new_param((F, C, kh, kw))
        args = [a, w]
        if stride != 1 or c.chance(0.3):
            args.append(f"stride={stride}")
        if pad or c.chance(0.3):
            args.append(f"pad={pad}")
        expr = f"conv2d({', '.join(args)})"
        self.feature("conv2d" + (" stride" if stride > 1 else "") + (" pad" if pad else "")
                     + (" C>1" if C > 1 else "") + (" F>1" if F > 1 else "")
                     + (" non-square" if kh != kw else ""))
        if c.chance(0.5):
            b = self.new_param((F, 1, 1))
            expr += f" + {b}"
            self.feature("conv2d bias")
        return expr, (sa[0], F, self._out(H, kh, stride, pad), self._out(W, kw, stride, pad))

    def pool(self, a, sa):
        """``max_pool`` / ``avg_pool`` over the last two axes of a value of rank >= 2."""
        c = self.c
        if len(sa) < 2 or not all(isinstance(d, int) for d in sa[-2:]):
            return None
        win = self._window(sa[-2], sa[-1], square=True, pool=True)
        if win is None:
            return None
        size, _, stride, pad = win
        fn = c.choice(["max_pool", "avg_pool"])
        args = [a, str(size) if c.chance(0.7) else f"size={size}"]
        if stride is not None:
            args.append(f"stride={stride}")
        if pad or c.chance(0.2):
            args.append(f"pad={pad}")
        self.feature(f"{fn}" + (" overlap" if stride is not None and stride < size else "")
                     + (" pad" if pad else "") + f" rank{len(sa)}")
        shape = sa[:-2] + (self._out(sa[-2], size, stride, pad),
                           self._out(sa[-1], size, stride, pad))
        return f"{fn}({', '.join(args)})", shape

    def flatten(self, a, sa):
        if len(sa) < 3 or not all(isinstance(d, int) for d in sa[1:]):
            return None
        self.feature(f"flatten rank{len(sa)}")
        return f"flatten({a})", (sa[0], math.prod(sa[1:]))

    def image_stack(self, a, sa):
        """A layer stack on an image batch: conv layers, activations, a pooling layer
        after each conv, then maybe flatten and dense layers."""
        c = self.c
        if len(sa) != 4 or not all(isinstance(d, int) for d in sa[1:]):
            return None
        items, shape = [], sa
        for k in range(c.integers(1, 2)):
            win = self._window(shape[2], shape[3], square=True)
            if win is None:
                break
            size, _, stride, pad = win
            F = c.integers(1, 3)
            opt = "".join([f" stride={stride}" if stride != 1 or c.chance(0.2) else "",
                           f" pad={pad}" if pad or c.chance(0.2) else "",
                           c.choice(["", "", " bias=none", " init=normal(std=0.5)"])])
            items.append(f"conv {F} size={size}{opt}")
            shape = (shape[0], F, self._out(shape[2], size, stride, pad),
                     self._out(shape[3], size, stride, pad))
            if self.modes and c.chance(0.3):
                items.append("batchnorm" + c.choice(["", "", " momentum=0.5", " eps=1e-4"]))
                self.feature("layer batchnorm after conv")
            if self.modes and c.chance(0.2):  # a residual block keeps channels and size
                inner = c.choice(["relu", "tanh"])
                # a weighted layer last: an activation after the block would share the
                # name of one inside it (z{k} of the same conv k)
                items.append(f"residual {{ conv {F} size=3 pad=1; batchnorm; {inner}; "
                             f"conv {F} size=1 }}" if c.chance(0.6) else
                             f"residual {{ conv {F} size=1; {inner}; conv {F} size=3 pad=1; "
                             f"batchnorm }}")
                self.feature("layer residual conv batchnorm")
            act = c.choice(["relu", "tanh", "leaky_relu", "sigmoid", None])
            if act:
                items.append(act)
                self.feature(f"layer {act}")
            if c.chance(0.6):
                win = self._window(shape[2], shape[3], square=True, pool=True)
                if win is not None:
                    size, _, stride, pad = win
                    kind = c.choice(["maxpool", "avgpool"])
                    opt = (f" stride={stride}" if stride is not None else "") + \
                        (f" pad={pad}" if pad else "")
                    items.append(f"{kind} {size}{opt}")
                    shape = shape[:2] + (self._out(shape[2], size, stride, pad),
                                         self._out(shape[3], size, stride, pad))
                    self.feature(f"layer {kind}")
            self.feature("layer conv")
        if not items:
            return None
        if c.chance(0.7):
            items.append("flatten")
            shape = (shape[0], math.prod(shape[1:]))
            self.feature("layer flatten")
            if c.chance(0.8):
                units = c.choice([2, 3])
                items.append(f"dense {units}")
                shape = (shape[0], units)
                if self.modes and c.chance(0.25):
                    items.append("batchnorm")
                    self.feature("layer batchnorm after dense")
                act = c.choice(["relu", "tanh", None])
                if act:
                    items.append(act)
                if self.modes and c.chance(0.2):
                    items.append(f"dropout {c.choice(['0.5', '0.1'])}")
                    self.feature("layer dropout")
        out = f"h{self.count + 1}"
        self.line(f"layers {a} -> {out} {{")
        for it in items:
            self.line(f"  {it}")
        self.line("}")
        self.count += 1
        self.values.append((out, shape))
        return out

    def stack(self, a, sa, source=None):
        """A layer stack on ``a`` (rank 1 or 2 with a fixed last dimension)."""
        c = self.c
        if not sa or len(sa) > 2 or not isinstance(sa[-1], int):
            return None
        out = f"h{self.count + 1}"
        items = []
        units = sa[-1]
        n_dense = c.integers(1, 2)
        for _ in range(n_dense):
            units = c.choice([2, 3, 4])
            opt = c.choice(["", "", " bias=none", " init=normal(std=0.5)", " bias=ones",
                            " init=xavier_uniform", " bias=0.1"])
            items.append(f"dense {units}{opt}")
            if self.modes and len(sa) == 2 and c.chance(0.3):
                items.append("batchnorm" + c.choice(["", "", " momentum=0.7", " eps=1e-5",
                                                     " momentum=0 eps=0.01"]))
                self.feature("layer batchnorm after dense")
            act = c.choice(["relu", "tanh", "sigmoid", "softplus", "leaky_relu",
                            "leaky_relu(0.2)", "leaky_relu(alpha=0.1)", "softmax", None])
            if act:
                items.append(act)
                self.feature(f"layer {act.split('(')[0]}")
            if self.modes and c.chance(0.15):
                items.append(f"dropout {c.choice(['0.5', '0.25', '0'])}")
                self.feature("layer dropout")
        if self.modes and len(sa) == 2 and c.chance(0.2):
            inner = c.choice(["tanh", "relu", "sigmoid"])
            items.append(c.choice([  # a dense layer first (see image_stack)
                f"residual {{ dense {units}; batchnorm }}",
                f"residual {{ dense {units}; {inner}; dense {units}; batchnorm }}",
                f"residual {{ dense {units}; batchnorm; {inner}; dense {units} }}"]))
            self.feature("layer residual batchnorm")
        if c.chance(0.25):
            k = c.integers(1, 2)
            act = c.choice(["tanh", "sigmoid", "relu"])
            items.append(f"repeat {k} {{\n    dense {units}\n    {act}\n  }}")
            self.feature("layer repeat")
        self.feature("layers")
        self.line(f"layers {a} -> {out} {{")
        for it in items:
            self.line(f"  {it}")
        self.line("}")
        self.count += 1
        shape = sa[:-1] + (units,)
        self.values.append((out, shape))
        return out

    # -------------------------------------------------------------------- loss terms
    def target(self, shape, kind):
        name = f"t{len(self.targets)}"
        self.targets[name] = (shape, kind)
        self.line(f"target {name} : {_fmt(shape)}")
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


def generate(c, max_depth=7, modes=False) -> GenSpec:
    """A random valid spec; ``modes``: with batch norm, state and dropout too (their
    modules take ``state`` and ``rng``; the same choices as without it otherwise)."""
    gen = _Gen(c, modes)
    g = gen.g
    gen.line("model rnd")
    if c.chance(0.15):
        gen.line("dtype float32")
        gen.feature("float32")
    gen.line("let c0 = 0.25")
    if c.chance(0.3):
        gen.lets["K"] = 3
        gen.line("let K = 3")
        gen.feature("let dim")
    gen.line("input x : [N, 3]")
    gen.values.append(("x", (N, 3)))
    wrt = []
    if c.chance(0.25):
        gen.line("input x3 : [N, 2, 3]")
        gen.values.append(("x3", (N, 2, 2 + 1)))
        if c.chance(0.3):
            wrt.append("x3")
    if c.chance(0.2):
        gen.line("input c = 0.5")
        gen.values.append(("c", ()))
        gen.feature("input default scalar")
        if c.chance(0.5):
            wrt.append("c")
    if c.chance(0.15):
        gen.line("input u : [3] = [0.1, -0.2, 0.3]")
        gen.values.append(("u", (3,)))
        gen.feature("input default vector")
        if c.chance(0.5):
            wrt.append("u")
    if c.chance(0.1):
        gen.line("input s : scalar")
        gen.values.append(("s", ()))
    image = None
    if c.chance(0.4):
        image = (N, c.integers(1, 2), c.integers(3, 6), c.integers(3, 6))
        gen.line(f"input img : {_fmt(image)}")
        gen.values.append(("img", image))
        gen.from_image.add("img")
        gen.feature("input image")
        if c.chance(0.2):
            wrt.append("img")
    if c.chance(0.25):
        gen.stack("x", (N, 3))
    if image and c.chance(0.75):  # start on the image: a stack or a convolution
        if c.chance(0.5):
            gen.image_stack("img", image)
        else:
            result = gen.conv("img", image)
            if result is not None:
                gen.new_value(*result)
        gen.from_image.add(gen.values[-1][0])
    depth = c.integers(1, max_depth)
    steps = ["unary", "binary", "matmul", "reduce", "normalise", "power", "transpose",
             "reshape", "stack", "index", "overlap", "join", "conv", "pool", "flatten",
             "image_stack"] + (["batch_norm", "dropout"] if modes else [])
    for _ in range(depth):
        a, sa = gen.pick()
        kind = c.choice(steps)
        if a in gen.from_image and len(sa) >= 3 and c.chance(0.5):
            kind = c.choice(["conv", "pool", "pool", "flatten", "image_stack"]
                            + (["batch_norm"] if modes else []))
        if kind in ("stack", "image_stack"):
            if getattr(gen, kind)(a, sa) is None:
                kind = "unary"
            else:
                if a in gen.from_image:
                    gen.from_image.add(gen.values[-1][0])
                continue
        result = getattr(gen, kind)(a, sa)
        if result is None:
            result = gen.unary(a, sa)
        expr, shape = result
        name = gen.new_value(expr, shape)
        if a in gen.from_image:
            gen.from_image.add(name)
    last, slast = gen.values[-1]
    # ------------------------------------------------------------------ the loss
    form = c.choice(["plain"] * 8 + ["param", "alias", "alias_sum"])
    terms = [f"sum(sin({last}))" if slast else f"sin({last})"]
    if c.chance(0.5):
        t = gen.loss_term()
        if t:
            terms.append(t)
    images = [v for v in gen.values if v[0] in gen.from_image]
    if image and images[-1][0] != last and c.chance(0.9):
        im, sim = images[-1]  # the image's path reaches the loss
        terms.append(f"sum(cos({im}))" if sim else f"cos({im})")
    if c.chance(0.3) and len(gen.values) > 2:
        n, s = c.choice(gen.values[1:-1])
        terms.append(f"0.5 * mean({n})" if s else f"0.5 * {n}")
    if c.chance(0.3):
        out, so = c.choice(gen.values)
        if c.chance(0.5):
            gen.line(f"output {out}")
            gen.feature("output name")
        else:
            gen.line(f"output y = tanh({out})")
            gen.feature("output eq")
    if form == "plain":
        gen.line(f"loss L = {' + '.join(terms)}")
    else:
        gen.feature(f"loss {form}")
        p = gen.new_param(())
        if form == "param":
            gen.line(f"loss L = {p}")
        elif form == "alias":
            gen.line(f"q = {p}")
            gen.line("loss L = q")
        else:
            pv = gen.new_param((2,))
            gen.line(f"q = {pv}")
            gen.line("loss L = sum(q)")
    if c.chance(0.5):
        wrt = ["x"] + wrt
    if wrt:
        gen.line(f"grad wrt {', '.join(wrt)}")
        gen.feature("grad wrt")
    if not gen.params:
        gen.line("param p_extra = 0.5")
    g.targets = {n: kind for n, (_, kind) in gen.targets.items()}
    return g


@st.composite
def random_spec(draw, max_depth=7, modes=False):
    return generate(_HypChooser(draw), max_depth, modes)


def spec_from_seed(seed: int, max_depth=7, modes=False) -> GenSpec:
    return generate(_RandChooser(seed), max_depth, modes)


# ------------------------------------------------------------------ plain specs
PLAIN_N = 4  # the symbolic batch dimension's value when a plain spec runs


@dataclass
class PlainSpec:
    lines: list = field(default_factory=list)
    values: list = field(default_factory=list)  # (name, shape)
    params: dict = field(default_factory=dict)  # name -> shape
    grad_x: bool = False

    def text(self):
        return "\n".join(self.lines) + "\n"

    def feeds(self, rng):
        return {"x": 0.7 * rng.normal(size=(PLAIN_N, 3))}

    def param_values(self, rng):
        return {n: 0.7 * rng.normal(size=tuple(PLAIN_N if d == "N" else d for d in s))
                for n, s in self.params.items()}


def _plain_partners(shape):
    out = {shape, ()}
    if shape:
        out.add(shape[-1:])
    if len(shape) == 2:
        out.add((1, shape[1]))
        out.add((shape[0], 1))
    return [s for s in out if "N" not in s or s == shape]


@st.composite
def plain_spec(draw, max_depth=6):
    """A plain spec: steps on ``x : [N, 3]`` and parameters, drawn with Hypothesis."""
    spec = PlainSpec()
    spec.lines.append("model randspec")
    spec.lines.append("input x : [N, 3]")
    spec.values.append(("x", ("N", 3)))
    count = [0]

    def new_param(shape):
        name = f"p{len(spec.params)}"
        spec.params[name] = shape
        spec.lines.append(f"param {name} : {_fmt(shape)} = zeros")
        return name

    def operand(shape_options):
        candidates = [(n, s) for n, s in spec.values if s in shape_options]
        fixed = [s for s in shape_options if "N" not in s]
        if candidates and (not fixed or draw(st.booleans())):
            return draw(st.sampled_from(candidates))
        shape = draw(st.sampled_from(fixed))
        return new_param(shape), shape

    depth = draw(st.integers(1, max_depth))
    for _ in range(depth):
        a, sa = draw(st.sampled_from(spec.values[-3:] + spec.values[:1]))
        kind = draw(st.sampled_from(["unary", "binary", "matmul", "reduce", "normalise",
                                     "power", "transpose", "divide"]))
        if kind == "unary":
            fn = draw(st.sampled_from(["sin", "cos", "tanh", "sigmoid", "softplus", "square",
                                       "relu", "abs", "leaky_relu", "-", "exp(tanh"]))
            expr = {"-": f"-{a}", "exp(tanh": f"exp(tanh({a}))"}.get(fn, f"{fn}({a})")
            shape = sa
        elif kind in ("binary", "divide"):
            b, sb = operand(_plain_partners(sa))
            if kind == "divide":
                expr = f"{a} / (1 + square({b}))"
            else:
                op = draw(st.sampled_from(["+", "-", "*", "maximum", "minimum"]))
                expr = f"{op}({a}, {b})" if op.isalpha() else f"{a} {op} {b}"
            shape = broadcast_shapes(sa, sb)
        elif kind == "matmul" and sa and len(sa) <= 2:
            m = draw(st.sampled_from([1, 2, 3]))
            if isinstance(sa[-1], int) and (len(sa) == 1 or draw(st.booleans())
                                            or not isinstance(sa[0], int)):
                w = new_param((sa[-1], m))
                expr, shape = f"{a} @ {w}", sa[:-1] + (m,)
            elif len(sa) == 2 and isinstance(sa[0], int):
                w = new_param((m, sa[0]))
                expr, shape = f"{w} @ {a}", (m, sa[1])
            else:
                expr, shape = f"{a}.T", tuple(reversed(sa))
        elif kind == "reduce" and sa:
            fn = draw(st.sampled_from(["sum", "mean", "max", "logsumexp"]))
            axis = draw(st.integers(-len(sa), len(sa) - 1))
            keep = draw(st.booleans())
            expr = f"{fn}({a}, axis={axis}{', keepdims=1' if keep else ''})"
            ax = axis % len(sa)
            shape = tuple(1 if i == ax else d for i, d in enumerate(sa)) if keep else \
                tuple(d for i, d in enumerate(sa) if i != ax)
        elif kind == "normalise" and sa:
            fn = draw(st.sampled_from(["softmax", "log_softmax"]))
            axis = draw(st.integers(-len(sa), len(sa) - 1))
            expr, shape = f"{fn}({a}, axis={axis})", sa
        elif kind == "power":
            expr, shape = f"{a}^{draw(st.sampled_from([2, 3]))}", sa
        elif kind == "transpose":
            expr, shape = f"{a}.T", tuple(reversed(sa))
        else:
            expr, shape = f"tanh({a})", sa
        count[0] += 1
        name = f"v{count[0]}"
        spec.lines.append(f"{name} = {expr}")
        spec.values.append((name, shape))
    last, _ = spec.values[-1]
    extra = draw(st.sampled_from([""] + [f" + 0.5 * mean({n})" for n, _ in spec.values[1:-1]]))
    spec.lines.append(f"loss L = sum(sin({last})){extra}")
    if draw(st.booleans()):
        spec.lines.append("grad wrt x")
        spec.grad_x = True
    if not spec.params:
        spec.lines.append("param p_extra = 0.5")
        spec.params["p_extra"] = ()
    return spec
