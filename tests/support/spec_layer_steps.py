"""The rich random-spec generator's steps that build layers: hand-written
``batch_norm`` with declared states and ``dropout`` (modes), ``conv2d``, pooling and
``flatten`` on images, and layer stacks (``dense``, ``conv``, ``batchnorm``, ``dropout``,
pooling, ``residual`` blocks). ``SpecGen`` (spec_steps.py) takes them in as a mixin:
they use its chooser ``c``, its values and its ``line``/``new_param``/``new_value``.
"""

from __future__ import annotations

import math

N = "N"


def _pair(value):
    """A window setting as (rows, columns): a number serves both."""
    return (value, value) if isinstance(value, int) else value


def _spelled(value) -> str:
    """A window setting as a spec writes it: 2, or [1, 2]."""
    return str(value) if isinstance(value, int) else f"[{value[0]}, {value[1]}]"


class LayerSteps:
    # -------------------------------------------------------------------- modes
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

    # -------------------------------------------------------------------- images
    def _window(self, h, w, square=False, pool=False):
        """(kh, kw, stride, pad) for an h x w image, or None: stride and pad a number or
        (rows, columns), windows that tile the image and windows that leave its last
        rows or columns out (PyTorch's rule). Pooling: stride None (the window) too, and
        ``pad`` < the window on each axis (a window is never all padding)."""
        c = self.c
        for _ in range(12):
            kh = c.integers(1, 3)
            kw = kh if square else c.integers(1, 3)
            stride = c.choice([1, 1, 2] if not pool else [None, None, 1, 2])
            pad = c.choice([0, 0, 1])
            if c.chance(0.25):
                stride, pad = (c.integers(1, 2), c.integers(1, 3)), (c.integers(0, 1), 0)
            (ph, pw), (sh, sw) = _pair(pad), _pair(stride or (kh, kw))
            if pool and (ph >= kh or pw >= kw) or kh > h + 2 * ph or kw > w + 2 * pw:
                continue
            if (h + 2 * ph - kh) % sh or (w + 2 * pw - kw) % sw:
                self.feature("window leaves pixels out")
            return kh, kw, stride, pad
        return None

    @staticmethod
    def _out(hw, kh, kw, stride, pad):
        """The output's (height, width): floor((size + 2 pad - kernel) / stride) + 1."""
        return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(
            hw, (kh, kw), _pair(stride or (kh, kw)), _pair(pad)))

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
            args.append(f"stride={_spelled(stride)}")
        if pad or c.chance(0.3):
            args.append(f"pad={_spelled(pad)}")
        expr = f"conv2d({', '.join(args)})"
        self.feature("conv2d" + (" stride" if stride != 1 else "") + (" pad" if pad else "")
                     + (" per-axis" if isinstance(stride, tuple) else "")
                     + (" C>1" if C > 1 else "") + (" F>1" if F > 1 else "")
                     + (" non-square" if kh != kw else ""))
        if c.chance(0.5):
            b = self.new_param((F, 1, 1))
            expr += f" + {b}"
            self.feature("conv2d bias")
        return expr, (sa[0], F) + self._out((H, W), kh, kw, stride, pad)

    def pool(self, a, sa):
        """``max_pool`` / ``avg_pool`` over the last two axes of a value of rank >= 2."""
        c = self.c
        if len(sa) < 2 or not all(isinstance(d, int) for d in sa[-2:]):
            return None
        win = self._window(sa[-2], sa[-1], square=c.chance(0.7), pool=True)
        if win is None:
            return None
        kh, kw, stride, pad = win
        size = kh if kh == kw else (kh, kw)
        fn = c.choice(["max_pool", "avg_pool"])
        args = [a, _spelled(size) if c.chance(0.7) else f"size={_spelled(size)}"]
        if stride is not None:
            args.append(f"stride={_spelled(stride)}")
        if pad or c.chance(0.2):
            args.append(f"pad={_spelled(pad)}")
        self.feature(f"{fn}" + (" overlap" if stride is not None and
                                min(_pair(stride)) < min(kh, kw) else "")
                     + (" pad" if pad else "") + (" per-axis" if kh != kw else "")
                     + f" rank{len(sa)}")
        return f"{fn}({', '.join(args)})", sa[:-2] + self._out(sa[-2:], kh, kw, stride, pad)

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
            kh, _, stride, pad = win
            F = c.integers(1, 3)
            opt = "".join([f" stride={_spelled(stride)}" if stride != 1 or c.chance(0.2)
                           else "", f" pad={_spelled(pad)}" if pad or c.chance(0.2) else "",
                           c.choice(["", "", " bias=none", " init=normal(std=0.5)"])])
            items.append(f"conv {F} size={kh}{opt}")
            shape = (shape[0], F) + self._out(shape[2:], kh, kh, stride, pad)
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
                win = self._window(shape[2], shape[3], square=c.chance(0.7), pool=True)
                if win is not None:
                    kh, kw, stride, pad = win
                    size = f" {kh}" if kh == kw else f" size={_spelled((kh, kw))}"
                    kind = c.choice(["maxpool", "avgpool"])
                    opt = (f" stride={_spelled(stride)}" if stride is not None else "") + \
                        (f" pad={_spelled(pad)}" if pad else "")
                    items.append(f"{kind}{size}{opt}")
                    shape = shape[:2] + self._out(shape[2:], kh, kw, stride, pad)
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
        out = f"y{self.count + 1}"  # not h{k}: a recurrent layer's steps
        self.line(f"layers {a} -> {out} {{")
        for it in items:
            self.line(f"  {it}")
        self.line("}")
        self.count += 1
        self.values.append((out, shape))
        return out

    # -------------------------------------------------------------------- layer stacks
    def stack(self, a, sa, source=None):
        """A layer stack on ``a`` (rank 1 or 2 with a fixed last dimension)."""
        c = self.c
        if not sa or len(sa) > 2 or not isinstance(sa[-1], int):
            return None
        out = f"y{self.count + 1}"  # not h{k}: a recurrent layer's steps
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
