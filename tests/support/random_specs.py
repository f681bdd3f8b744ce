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
constant and parameter exponents, ``@`` on every 1-D/2-D combination and over batch
axes (a shared matrix, a broadcasting batch of matrices, a value times itself swapped),
matrix literals, reductions with an axis, a list of axes or none and ``keepdims``,
transposes of scalars, vectors and matrices, axis permutations of rank-3/4 values
(``transpose(x, axes=…)``, ``swapaxes``), causal-masked softmax, reshapes with and
without the batch dimension (``[N, 6]``,
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
(``spec_from_seed(seed)``, for long surveys that keep going after a failure). Its steps
are in spec_steps.py (on values) and spec_layer_steps.py (modes, images, layer stacks);
the plain specs are in plain_specs.py, imported here so that users import one module.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from plain_specs import PLAIN_N, PlainSpec, plain_spec  # noqa: F401 - one import point
from spec_steps import N, GenSpec, SpecGen, fmt_shape


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


def generate(c, max_depth=7, modes=False, sequences=False) -> GenSpec:
    """A random valid spec; ``modes``: with batch norm, state and dropout too (their
    modules take ``state`` and ``rng``; the same choices as without it otherwise);
    ``sequences``: maybe a sequence input, with layer stacks and loops over time (off,
    the choices are those of a generator without them)."""
    gen = SpecGen(c, modes)
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
    if sequences and c.chance(0.4):
        gen.sequence_input()
        if gen.sequences[0][0] == "xs" and c.chance(0.3):
            wrt.append("xs")
    image = None
    if c.chance(0.4):
        image = (N, c.integers(1, 2), c.integers(3, 6), c.integers(3, 6))
        gen.line(f"input img : {fmt_shape(image)}")
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
             "image_stack"] + (["batch_norm", "dropout"] if modes else []) \
        + ["over_time"] * 2 * bool(gen.sequences)
    for k in range(depth):
        a, sa = gen.pick()
        kind = c.choice(steps)
        if a in gen.from_image and len(sa) >= 3 and c.chance(0.5):
            kind = c.choice(["conv", "pool", "pool", "flatten", "image_stack"]
                            + (["batch_norm"] if modes else []))
        if gen.sequences and k == depth - 1 and not gen.time_steps:
            kind = "over_time"  # the sequence input is read
        if kind in ("stack", "image_stack", "over_time"):
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
    if gen.seq_values and c.chance(0.8):
        terms.append(gen.sequence_loss_term())
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
def random_spec(draw, max_depth=7, modes=False, sequences=False):
    return generate(_HypChooser(draw), max_depth, modes, sequences)


def spec_from_seed(seed: int, max_depth=7, modes=False, sequences=False) -> GenSpec:
    return generate(_RandChooser(seed), max_depth, modes, sequences)

