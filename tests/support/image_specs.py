"""The structured fuzz's image programs: ``x : [N, C, H, W]`` through convolutions
(1 x 1 at stride 1, kernels as large as the image, padded, strided, per-axis strides and
pads, windows that leave the last rows or columns out), pooling (windows as large as the
image, size 1, overlapping, padded, per-axis), slices of views, concat, hand-written
``batch_norm`` with states, dropout (on images, on 0-d values, p = 0, unused) and a
layer stack (conv, batchnorm, dropout, pooling, ``residual`` blocks, flatten, dense); a
third are wild (sizes drawn without checking, invalid options, damage), a few hold one
invalid line in a valid program (then ``image_refusal`` names it and bpc must refuse
the spec).
"""

from __future__ import annotations

import random

from structured_specs import damage


def _out(size: int, k: int, stride: int, pad: int) -> int | None:
    """conv2d's output size by PyTorch's rule (the rows past the last window are left
    out), or None when the window does not fit the padded image."""
    span = size + 2 * pad - k
    return None if span < 0 else span // stride + 1


def _spelled(value) -> str:
    """A window setting as a spec writes it: 2, or [1, 2] (rows, columns)."""
    return str(value) if isinstance(value, int) else f"[{value[0]}, {value[1]}]"


def _pair(value):
    return (value, value) if isinstance(value, int) else value


class _ImageGen:
    """A program over an image batch ``x : [N, C, H, W]``: convolutions (1 x 1 at stride
    1, kernels as large as the image, padded, strided, non-square), pooling (windows as
    large as the image, size 1, overlapping, padded), slices (of views: slices of slices,
    of reshapes, of transposes, reversed), concatenation, hand-written ``batch_norm`` with
    declared states, ``dropout`` (on images, on 0-d values, p = 0, results nobody uses)
    and layer stacks of conv, batchnorm, dropout, pooling, flatten and ``residual``
    blocks. ``wild``: the sizes are drawn without checking that they fit (a kernel
    larger than the image, pads as large as the pool, dropout p = 1 …), and the spec
    may be damaged; then it must compile or be refused with located diagnostics."""

    def __init__(self, r: random.Random, wild: bool):
        self.r, self.wild = r, wild
        self.lines: list[str] = []
        self.count = 0
        self.params = 0
        self.states = 0
        self.extra: list[str] = []  # 0-d terms added to the loss (dropout of a sum …)
        self.invalid: list[str] = []  # what a wild spec holds that bpc must refuse

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def param(self, shape, init="normal(std=0.5)") -> str:
        self.params += 1
        name = f"w{self.params}"
        self.lines.append(f"param {name} : [{', '.join(map(str, shape))}] = {init}")
        return name

    def emit(self, expr: str, base: str = "h") -> str:
        name = self.fresh(base)
        self.lines.append(f"{name} = {expr}")
        return name

    def size(self, fit: int) -> int:
        """A window size: usually one that fits ``fit``, wild ones anything."""
        r = self.r
        if self.wild and r.random() < 0.3:
            return r.choice([0, fit + 1, fit + 3, 2 * fit])
        return r.choice([1, 1, fit, fit, max(1, fit - 1), min(fit, 2), min(fit, 3)])

    # one step: (value, (C, H, W)) -> (value, (C, H, W)) or None
    def conv(self, h, shape):
        r = self.r
        C, H, W = shape
        kind = r.choice(["1x1", "full", "same", "stride", "rect", "axes"])
        stride, pad = 1, 0
        if kind == "1x1":
            kh = kw = 1
        elif kind == "full":  # the kernel as large as the image: a 1 x 1 output
            kh, kw = H, W
        elif kind == "same":
            kh = kw = 3
            pad = 1
        elif kind == "stride":
            kh = kw = self.size(min(H, W))
            stride = r.choice([1, 2, 3])
        elif kind == "rect":
            kh, kw = self.size(H), self.size(W)
            pad = r.choice([0, 0, 1])
        else:  # stride and pad per axis (rows, columns)
            kh, kw = self.size(H), self.size(W)
            stride, pad = (r.choice([1, 2]), r.choice([1, 2, 3])), (r.choice([0, 1]), 0)
        if self.wild and r.random() < 0.2:
            pad = r.choice([-1, 5, 100])
            if pad < 0:
                self.invalid.append(f"conv2d pad={pad}")
        F = r.choice([1, 2, 3])
        w = self.param((F, C, kh, kw), r.choice(["he", "normal(std=0.5)", "xavier"]))
        args = [h, w]
        if stride != 1 or r.random() < 0.3:
            spelled = _spelled(stride)
            args.append(r.choice([f"stride={spelled}", spelled]) if pad == 0 and
                        len(args) == 2 else f"stride={spelled}")
        if pad or r.random() < 0.2:
            args.append(f"pad={_spelled(pad)}")
        (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
        OH, OW = _out(H, kh, sh, ph) if kh > 0 else None, \
            _out(W, kw, sw, pw) if kw > 0 else None
        if not self.wild and (OH is None or OW is None):
            return self.conv(h, shape) if r.random() < 0.9 else None
        expr = f"conv2d({', '.join(args)})"
        if r.random() < 0.5:
            expr += f" + {self.param((F, 1, 1), 'zeros')}"
        if r.random() < 0.5:
            expr = f"{r.choice(['relu', 'tanh', 'sigmoid'])}({expr})"
        return self.emit(expr), (F, OH or 1, OW or 1)

    def pool(self, h, shape):
        r = self.r
        C, H, W = shape
        fn = r.choice(["max_pool", "avg_pool"])
        kind = r.choice(["global", "one", "pair", "overlap", "padded", "axes"])
        stride, pad = None, 0
        if kind == "global" and H == W:
            size = H
        elif kind == "one":
            size = 1
        elif kind == "overlap":
            size, stride = min(H, W, 2), 1
        elif kind == "padded":
            size, pad = 3, 1
            stride = r.choice([None, 1, 2])
        elif kind == "axes":  # a window, stride and pad per axis (rows, columns)
            size = (r.choice([1, 2, 3]), r.choice([1, 2]))
            stride = r.choice([None, (2, 1), (1, 3)])
            pad = (r.choice([0, 1]), 0) if size[0] > 1 else 0
        else:
            size = 2
        if self.wild and r.random() < 0.3:
            pad = r.choice([size, size + 1, -1]) if isinstance(size, int) else -1
            size = r.choice([size, 0, H + 1])  # pad >= size: must be refused
            if min(_pair(size)) <= 0 or pad < 0 or pad >= min(_pair(size)):  # else valid
                self.invalid.append(f"{fn} size={size} pad={pad}")
        args = [h, r.choice([_spelled(size), f"size={_spelled(size)}"])]
        if stride is not None:
            args.append(f"stride={_spelled(stride)}")
        if pad or r.random() < 0.2:
            args.append(f"pad={_spelled(pad)}")
        (kh, kw), (sh, sw), (ph, pw) = _pair(size), _pair(stride or size), _pair(pad)
        OH = _out(H, kh, sh, ph) if sh > 0 else None
        OW = _out(W, kw, sw, pw) if sw > 0 else None
        if not self.wild and (OH is None or OW is None or ph >= kh or pw >= kw):
            return None
        return self.emit(f"{fn}({', '.join(args)})", "pl"), (C, OH or 1, OW or 1)

    def slice(self, h, shape):
        """A slice, often of a view (a slice, a reshape, a transpose of the value)."""
        r = self.r
        C, H, W = shape
        kind = r.choice(["rows", "channels", "reverse", "of_slice", "of_reshape",
                         "of_transpose", "step"])
        if kind == "rows" and H > 1:
            return self.emit(f"{h}[:, :, 1:]", "sl"), (C, H - 1, W)
        if kind == "channels" and C > 1:
            return self.emit(f"{h}[:, :{C - 1}]", "sl"), (C - 1, H, W)
        if kind == "reverse":
            return self.emit(f"{h}[:, ::-1, :, ::-1]", "sl"), (C, H, W)
        if kind == "step" and W > 1:
            return self.emit(f"{h}[:, :, :, ::2]", "sl"), (C, H, (W + 1) // 2)
        if kind == "of_slice" and W > 1:
            v = self.emit(f"{h}[:, :, :, 1:]", "v")
            return self.emit(f"{v}[:, :, ::-1]", "sl"), (C, H, W - 1)
        if kind == "of_reshape":
            v = self.emit(f"reshape({h}, [N, {C * H}, {W}])", "v")
            start = r.randrange(C * H)
            s = self.emit(f"{v}[:, {start}:]", "sl")
            rows = C * H - start
            return self.emit(f"reshape({s}, [N, {rows}, 1, {W}])", "sl"), (rows, 1, W)
        if kind == "of_transpose" and C * H * W > 1:
            D = C * H * W
            v = self.emit(f"flatten({h})", "v")
            s = self.emit(f"({v}).T[1:]", "sl")  # a slice of a transposed view
            return self.emit(f"reshape(({s}).T, [N, {D - 1}, 1, 1])", "sl"), (D - 1, 1, 1)
        return None

    def concat(self, h, shape):
        r = self.r
        C, H, W = shape
        other = r.choice(["self", "slice", "conv"])
        if other == "self":
            return self.emit(f"concat([{h}, {h}], axis={r.choice(['1', '-3'])})", "cc"), \
                (2 * C, H, W)
        if other == "slice" and C > 1:
            return self.emit(f"concat([{h}[:, 1:], {h}], axis=1)", "cc"), (2 * C - 1, H, W)
        if other == "slice" and H > 1:
            return self.emit(f"concat([{h}, {h}[:, :, 1:]], axis=2)", "cc"), (C, 2 * H - 1, W)
        w = self.param((1, C, 1, 1))
        return self.emit(f"concat([{h}, conv2d({h}, {w})], axis=1)", "cc"), (C + 1, H, W)

    def batch_norm(self, h, shape):
        r = self.r
        C = shape[0]
        self.states += 1
        k = self.states
        self.lines.append(f"state rm{k} : [{C}] = {r.choice(['zeros', '0.1'])}")
        self.lines.append(f"state rv{k} : [{C}] = {r.choice(['ones', '2'])}")
        if r.random() < 0.5:
            g, b = self.param((C,), "ones"), self.param((C,), "zeros")
        else:
            g, b = "1", r.choice(["0", "0.5"])
        opts = r.choice(["", "", ", momentum=0.5", ", eps=1e-3", ", momentum=0"])
        if self.wild and r.random() < 0.3:
            opts = r.choice([", momentum=1", ", eps=0", ", momentum=-1", ", bogus=1"])
            self.invalid.append(f"batch_norm{opts}")
        return self.emit(f"batch_norm({h}, {g}, {b}, rm{k}, rv{k}{opts})", "bnh"), shape

    def dropout(self, h, shape):
        r = self.r
        p = r.choice(["0.5", "0.2", "p=0.3", "0", "p=0"])
        if self.wild and r.random() < 0.3:
            p = r.choice(["1", "-0.1", "1.5", "x", "true"])
            self.invalid.append(f"dropout p={p}")
        kind = r.choice(["image", "image", "scalar", "unused"])
        if kind == "scalar":  # dropout of a 0-d value, added to the loss
            self.extra.append(self.emit(f"dropout(mean({h}), {p})", "dr"))
            return h, shape
        if kind == "unused":  # a dropout nobody reads: training still draws its mask
            self.emit(f"dropout({h}, {p})", "un")
            return h, shape
        return self.emit(f"dropout({h}, {p})", "dr"), shape

    def layers(self, h, shape):
        """A layer stack on the image: conv layers (1 x 1, padded 3 x 3, as large as the
        image), batchnorm, dropout, activations, pooling, residual blocks; maybe flatten
        and dense at the end (then the value is a matrix and the program ends)."""
        r = self.r
        C, H, W = shape
        items = []
        pooled = False  # a pool since the last weighted layer (a second one is dropped
        # below, so it must not shrink the tracked size either: seed 2154)
        for _ in range(r.randint(1, 3)):
            kind = r.choice(["conv1", "conv3", "convfull", "residual", "bn", "drop", "act",
                             "pool"])
            if kind in ("conv1", "conv3", "residual") or kind == "convfull" and H == W:
                pooled = False  # a weighted layer follows
            if kind == "conv1":
                C = r.choice([1, 2, 3])
                items.append(f"conv {C} size=1" + r.choice(["", " stride=1", " bias=none"]))
            elif kind == "conv3":
                C = r.choice([1, 2])
                items.append(f"conv {C} size=3 pad=1")
            elif kind == "convfull" and H == W:
                C = r.choice([1, 2])
                items.append(f"conv {C} size={H}")
                H = W = 1
            elif kind == "residual":
                inner = r.choice([f"conv {C} size=1; relu; conv {C} size=3 pad=1",
                                  f"conv {C} size=3 pad=1; batchnorm; relu; conv {C} size=1",
                                  f"conv {C} size=1; dropout 0.3; tanh; conv {C} size=1",
                                  f"conv {C} size=1; batchnorm; dropout 0; relu; "
                                  f"conv {C} size=1"])
                items.append(f"residual {{ {inner} }}")
            elif kind == "bn":
                items.append("batchnorm" + r.choice(["", " momentum=0.5", " eps=1e-4"]))
            elif kind == "drop":
                items.append(f"dropout {r.choice(['0.5', '0.1', '0'])}")
            elif kind == "act":
                items.append(r.choice(["relu", "tanh", "sigmoid", "leaky_relu"]))
            elif kind == "pool" and H % 2 == 0 and W % 2 == 0 and not pooled:
                items.append(f"{r.choice(['maxpool', 'avgpool'])} 2")
                H, W = H // 2, W // 2
                pooled = True
        # two layers of one kind between the same weighted layers share a name: keep one
        # (an activation, a dropout, a batchnorm …) of each kind per weighted layer
        kept, seen = [], set()
        for it in items:
            key = it.split()[0]
            key = "act" if key in ("relu", "tanh", "sigmoid", "leaky_relu") else key
            if key in ("conv", "residual"):
                seen = set()
            elif key in seen or key in ("maxpool", "avgpool") and \
                    {"maxpool", "avgpool"} & seen:
                continue
            seen.add(key)
            kept.append(it)
        if not kept:
            kept.append("relu")
        if self.wild and self.r.random() < 0.3:
            kept.append(self.r.choice(["conv 0 size=1", "maxpool 99", "dropout 1",
                                       "batchnorm momentum=2", "residual { }",
                                       "residual { conv 97 size=1 }", "dense 3"]))
            self.invalid.append(f"layer {kept[-1]}")
        flat = r.random() < 0.3
        if flat:
            kept += ["flatten", f"dense {r.choice([1, 2, 3])}"]
            if r.random() < 0.5:
                kept += ["batchnorm", "dropout 0.2"]
        out = self.fresh("st")
        self.lines.append(f"layers {h} -> {out} {{")
        self.lines += [f"  {it}" for it in kept]
        self.lines.append("}")
        if flat:
            return out, None
        # a stack's activation names (z{k}) repeat when a later stack has the same
        # pattern: the fuzz accepts that refusal only in wild specs, so one stack
        return out, (C, H, W)


def image_spec(seed: int) -> tuple[str, bool]:
    """(spec text, must compile): an image program of ``_ImageGen``."""
    text, valid, _ = _image_spec(seed)
    return text, valid


def image_refusal(seed: int) -> str | None:
    """The invalid construct image_spec(seed) holds on purpose (see ``refusal`` in
    structured_specs.py), or None."""
    return _image_spec(seed)[2]


def _image_spec(seed: int) -> tuple[str, bool, str | None]:
    r = random.Random(seed)
    wild = r.random() < 0.35
    g = _ImageGen(r, wild)
    C, H, W = r.choice([1, 2, 3]), r.randint(1, 5), r.randint(1, 5)
    if r.random() < 0.3:
        W = H
    L = g.lines
    L.append(f"model {r.choice(['img', 'fz_img'])}")
    if r.random() < 0.2:
        L.append("dtype float32")
    L.append(f"input x : [N, {C}, {H}, {W}]")
    h, shape = "x", (C, H, W)
    stacked = False
    steps = [g.conv, g.pool, g.slice, g.concat, g.batch_norm, g.dropout, g.layers]
    for _ in range(r.randint(1, 6)):
        step = r.choice(steps)
        if step == g.layers:  # (bound methods: equal, never identical)
            if stacked:
                continue
            stacked = True
        got = step(h, shape)
        if got is None:
            continue
        h, shape = got
        if shape is None:
            break
    fault = None
    if not wild and shape is not None and r.random() < 0.2:
        # one invalid line in an otherwise valid program: bpc must refuse it
        fault = r.choice([f"avg_pool({h}, 1, pad=1)", f"max_pool({h}, 1, pad=1)",
                          f"avg_pool({h}, 2, stride=1, pad=2)", f"dropout({h}, 1)",
                          f"dropout({h}, p=true)", f"{h}[:, :, 0:0]",
                          f"concat([{h}, {h}], axis=4)", f"conv2d({h}, {h})",
                          f"max_pool({h}, 0)", f"avg_pool({h}, 1, stride=0)",
                          f"leaky_relu({h}, alpha=true)", f"sum({h}, axis=true)"])
        g.emit(fault, "bad")
    if shape is not None:  # an image: flatten it for the loss
        h = g.emit(f"flatten({h})", "fl")
    if r.random() < 0.5:
        L.append("target t : [N, 2]")
        w = f"v{g.fresh('')}"
        width = "?" if shape is None else shape[0] * shape[1] * shape[2]
        if width == "?":  # a stack ending in dense: take its width from its line
            width = next(int(line.split()[1]) for line in reversed(L)
                         if line.strip().startswith("dense "))
        L.append(f"param {w} : [{width}, 2] = normal(std=0.3)")
        y = g.emit(f"{h} @ {w}", "yy")
        loss = r.choice(["mse", "softmax_cross_entropy", "sigmoid_cross_entropy"])
        L.append(f"loss L = {loss}({y}, t)" + "".join(f" + {e}" for e in g.extra))
    else:
        L.append(f"loss L = mean(square({h}))" + "".join(f" + {e}" for e in g.extra))
    if r.random() < 0.3:
        L.append(f"output {h}")
    damaged = wild and r.random() < 0.5 and damage(_Lines(L), r)
    refuse = fault or (None if damaged or not g.invalid else g.invalid[0])
    return "\n".join(L) + "\n", not wild and not damaged and not fault, refuse


class _Lines:  # what damage reads of a generator
    def __init__(self, lines):
        self.lines = lines

