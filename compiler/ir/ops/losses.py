"""Fused losses: softmax and sigmoid cross-entropy, whose gradients with respect to the
logits are one short rule each, ``one_hot``, which that rule needs for labels, and
``count_kept``, the number of labels a padding id leaves in the mean. The fast style's
softmax cross-entropy (``softmax_xent_exp``, from ``passes/fast_forms.py``) takes one
exponential: its parts are ordinary ops and ``target_logit``."""

from __future__ import annotations

import numpy as np

from .. import Node, ShapeError
from . import kernels
from .core import (ADD, MUL, POSTFIX, broadcast_shapes, defop, derived, ex, expand, held,
                   int_labels, mask, no_gradient, onehot, paren, promoted, scalar)


def labels(t: Node, logits: Node) -> bool:
    """True when ``t`` holds integer class labels for ``logits`` (not one-hot)."""
    return len(t.shape) == len(logits.shape) - 1


def softmax_xent_parts(node: Node) -> tuple[Node, Node, Node | None] | None:
    """(logits, targets, the kept mask or None) of a softmax cross-entropy, in either
    form (``softmax_xent``, or the fast style's ``softmax_xent_exp``); else None."""
    if node.op == "softmax_xent":
        return node.args[0], node.args[2], node.args[4] if len(node.args) == 5 else None
    if node.op == "softmax_xent_exp":
        return node.args[0], node.args[1], node.args[7] if len(node.args) == 8 else None
    return None


# ----------------------------------------------------------------------------- softmax
def _xent_shape(args, attrs):
    """softmax_xent(logits, log_p, t, n): log_p = logits - logsumexp(logits)."""
    logits, t = args[0].shape, args[2].shape
    if len(logits) == 0:
        raise ShapeError("softmax_cross_entropy needs logits with a class axis, not a scalar",
                         (0,))
    if not isinstance(logits[-1], int):
        raise ShapeError("softmax_cross_entropy needs a fixed number of classes (the logits' "
                         f"last axis), not the symbolic dimension {logits[-1]}", (0,),
                         hint="declare the number of classes as a number or a 'let'")
    if t != logits and t != logits[:-1]:
        raise ShapeError("targets must be one-hot with the logits' shape, or integer labels "
                         "with the shape of all but the last axis", (0, 2))
    return ()


def _xent_printer(lib: str, take: str, axis: str):
    """The loss printed with ``lib`` (np, torch): labels pick their log-probability
    (``take``, along ``axis``), times the kept mask when a padding id is ignored (a fifth
    argument); one-hot rows multiply theirs."""
    def emit(a, attrs, node):
        _, log_p, t, n = a[:4]
        if labels(node.args[2], node.args[0]):
            picked = f"{take}({log_p[0]}, {paren(t, POSTFIX)}[..., None], {axis}=-1)"
            if len(a) == 5:
                picked = f"{picked}[..., 0] * {paren(a[4], MUL + 1)}"
            return f"-{lib}.sum({picked}) / {paren(n, MUL + 1)}", MUL
        return (f"-{lib}.sum({paren(t, MUL)} * {paren(log_p, MUL + 1)}) / "
                f"{paren(n, MUL + 1)}", MUL)
    return emit


def _xent_eval(v, attrs):
    logits, log_p, t, n = v[:4]
    if np.ndim(t) == np.ndim(logits) - 1:
        picked = np.take_along_axis(log_p, np.asarray(t)[..., None].astype(int), axis=-1)
        return -np.sum(picked[..., 0] * (v[4] if len(v) == 5 else 1)) / n
    return -np.sum(t * log_p) / n


def _xent_vjp(b, node, g):
    logits, log_p, t, n = node.args[:4]
    p = b.op("exp", log_p)  # softmax(logits), from the forward's log-softmax
    if labels(t, logits):  # integer labels: not differentiable
        d_logits = b.op("minus_one_hot", p, t, classes=logits.shape[-1])
        if len(node.args) == 5:  # an ignored padding id: its positions get no gradient
            d_logits = b.op("mul", d_logits, b.op("expand_dims", node.args[4],
                                                  axis=(len(t.shape),)))
        return [b.op("mul", b.op("div", d_logits, n), g)] + [None] * (len(node.args) - 1)
    if not _sums_to_one(t):
        # A computed target (or an input's default) need not sum to 1 over classes: the
        # exact gradient is (p * sum(t) - t) / N, which the fused rule shortens only for
        # data the runtime checks.
        p = b.op("mul", p, b.op("sum", t, axis=(len(t.shape) - 1,), keepdims=True))
    # The fused rule covers log_p's own dependence on the logits: nothing flows to it.
    d_logits = b.op("mul", b.op("div", b.op("sub", p, t), n), g)
    d_t = b.op("mul", b.op("neg", b.op("div", log_p, n)), g)  # -log_softmax(logits) / N
    return [d_logits, None, d_t, None]


def _xent_roles(node: Node) -> list[tuple[int, str, int]]:
    logits, _, t = node.args[:3]
    return [(2, "labels" if labels(t, logits) else "onehot", int(logits.shape[-1]))]


# The example arguments after the logits: log_softmax(logits), as the loss function
# builds it, and the number of examples (every axis of the logits but the last).
_LOG_P = derived(lambda b, new, x: b.op("sub", x, b.op("logsumexp", x, axis=(len(x.shape) - 1,),
                                                       keepdims=True)))
_ROWS = derived(lambda b, new, x, log_p, t: b.rows(x))

# An ignored padding id (labels 0 here): the kept mask, and the number of kept labels.
_KEEP = derived(lambda b, new, x, log_p, t, n: b.op("ne", t, b.const(0)))
_KEPT = derived(lambda b, new, x, log_p, t: b.op("count_kept", b.op("ne", t, b.const(0))))

defop("softmax_xent", arity=None, shape=_xent_shape,
      emit=_xent_printer("np", "np.take_along_axis", "axis"),
      torch=_xent_printer("torch", "torch.take_along_dim", "dim"),
      evaluate=_xent_eval,
      vjp=_xent_vjp,
      unprinted=(0,),  # printed from its log-softmax: the logits are not read
      rule="softmax + cross-entropy fused: dL/dlogits = (softmax - onehot) / N",
      data_roles=_xent_roles,
      examples=(ex((4, 3), _LOG_P, int_labels((4,), 3), _ROWS),
                # sequences [N, T, V], and a padding id whose positions are left out
                ex((2, 3, 4), _LOG_P, int_labels((2, 3), 4), _ROWS),
                ex((2, 3, 4), _LOG_P, int_labels((2, 3), 4), _KEPT, _KEEP),
                ex((4, 3), _LOG_P, onehot((4, 3), 3), _ROWS),
                ex((3,), _LOG_P, int_labels((), 3), _ROWS),
                # a computed target: the exact rule, and a gradient for the target too
                ex((2, 3), _LOG_P, (2, 3), _ROWS)))

# ----------------------------------------------------------------------------- one exponential
# The fast style's softmax cross-entropy (passes/fast_forms.py builds it): the logits
# shifted by their row maximum (z, written over the logits), each row's target logit
# taken from z (``target_logit``, before the exponential overwrites z), e = exp(z) in
# z's buffer and its row sums s. The loss is sum(log s - z[t]) / N; the gradient
# e / s - onehot, scaled, is written into e: one exponential, two [..., V] arrays.
def _target_logit_shape(args, attrs):
    z, t = args
    if t.shape == z.shape[:-1]:
        return t.shape + (1,)
    if t.shape != z.shape:
        raise ShapeError("target_logit takes labels (all but the last axis) or one-hot rows",
                         (0, 1))
    return z.shape[:-1] + (1,)


def _target_logit_printer(lib: str, take: str, axis: str, keepdims: str):
    def emit(a, attrs, node):
        z, t = a
        if labels(node.args[1], node.args[0]):
            return f"{take}({z[0]}, {paren(t, POSTFIX)}[..., None], {axis}=-1)", POSTFIX
        return (f"{lib}.sum({paren(t, MUL)} * {paren(z, MUL + 1)}, {axis}=-1, "
                f"{keepdims}=True)", POSTFIX)
    return emit


def _target_logit_eval(v, attrs):
    z, t = v
    if np.ndim(t) == np.ndim(z) - 1:
        return np.take_along_axis(z, np.asarray(t)[..., None].astype(int), axis=-1)
    return np.sum(t * z, axis=-1, keepdims=True)


def _target_logit_vjp(b, node, g):
    z, t = node.args
    if labels(t, z):
        return [b.op("mul", b.op("one_hot", t, classes=z.shape[-1]), g), None]
    return [b.op("mul", t, g), b.op("mul", z, g)]


defop("target_logit", arity=2, shape=_target_logit_shape,
      emit=_target_logit_printer("np", "np.take_along_axis", "axis", "keepdims"),
      torch=_target_logit_printer("torch", "torch.take_along_dim", "dim", "keepdim"),
      evaluate=_target_logit_eval, vjp=_target_logit_vjp,
      rule="z at the label (or sum(t z)): the adjoint goes to the label's place",
      early=True,  # read before the exponential overwrites the shifted logits
      examples=(ex((4, 3), int_labels((4,), 3)), ex((2, 3, 4), int_labels((2, 3), 4)),
                ex((4, 3), onehot((4, 3), 3)), ex((3,), int_labels((), 3))))


def _xent_exp_shape(args, attrs):
    return _xent_shape((args[0], args[3], args[1]), attrs)


def _xent_exp_printer(lib: str, axis: str, keepdims: str):
    """The loss from the row sums s of the exponentials and the target logits: with
    labels sum(log s - z[t]) / N (times the kept mask, a padding id ignored); one-hot
    rows t of a computed target (``weighed``) weigh log s by their sums (they need not
    sum to 1)."""
    def emit(a, attrs, node):
        logits, t, n, picked, s = a[:5]
        log_s = f"{lib}.log({s[0]})"
        if attrs.get("weighed"):
            log_s = f"{lib}.sum({t[0]}, {axis}=-1, {keepdims}=True) * {log_s}"
        rows = f"{log_s} - {paren(picked, ADD + 1)}"
        if len(a) == 8:
            rows = f"({rows})[..., 0] * {paren(a[7], MUL + 1)}"
        return f"{lib}.sum({rows}) / {paren(n, MUL + 1)}", MUL
    return emit


def _xent_exp_eval(v, attrs):
    logits, t, n, picked, s = v[:5]
    if np.ndim(t) == np.ndim(logits) - 1:
        rows = (np.log(s) - picked)[..., 0] * (v[7] if len(v) == 8 else 1)
    else:
        weight = np.sum(t, axis=-1, keepdims=True) if attrs.get("weighed") else 1
        rows = weight * np.log(s) - picked
    return np.sum(rows) / n


def _xent_exp_vjp(b, node, g):
    """With c = g / N: labels give e * (c / s) - c at the label's place (times the kept
    mask), written into e; one-hot rows (e * (sum(t) / s) - t) * c, and the targets
    -c log p (log p = z - log s), as softmax_xent's rule."""
    logits, t, n, picked, s, e, z = node.args[:7]
    c = b.op("div", g, n)
    if labels(t, logits):
        if len(node.args) == 8:  # an ignored padding id: its positions get no gradient
            # The mask made the dtype's numbers first: a number times booleans is float64.
            kept = b.op("expand_dims", node.args[7], axis=(len(t.shape),))
            c = b.op("mul", c, b.op("cast", kept))
        scaled = b.op("mul", e, b.op("div", c, s))
        d_logits = b.op("minus_one_hot", scaled, t, c, classes=logits.shape[-1])
        return [d_logits] + [None] * (len(node.args) - 1)
    weight = b.op("sum", t, axis=(len(t.shape) - 1,), keepdims=True) \
        if node.attr("weighed") else b.const(1.0)
    d_logits = b.op("mul", b.op("sub", b.op("mul", e, b.op("div", weight, s)), t), c)
    d_t = b.op("neg", b.op("mul", b.op("sub", z, b.op("log", s)), c))
    return [d_logits, d_t] + [None] * (len(node.args) - 2)


def _sums_to_one(t: Node) -> bool:
    """Whether one-hot (or probability) targets are data, whose rows the runtime checks
    sum to 1; a computed target (or an input's default) need not."""
    return t.op == "input" and not t.attr("default")


def _xent_exp_roles(node: Node) -> list[tuple[int, str, int]]:
    logits, t = node.args[:2]
    return [(1, "labels" if labels(t, logits) else "onehot", int(logits.shape[-1]))]


def one_exponential(b, logits: Node, t: Node, n: Node, keep: Node | None = None) -> Node:
    """softmax_xent_exp over its parts, built from the logits (the fast form)."""
    last = (len(logits.shape) - 1,)
    z = b.hint(b.op("sub", logits, b.op("max", logits, axis=last, keepdims=True)), "shifted")
    picked = b.hint(b.op("target_logit", z, t), "target_logit")
    e = b.hint(b.op("exp", z), "exp")
    s = b.hint(b.op("sum", e, axis=last, keepdims=True), "sum_exp")
    weighed = not labels(t, logits) and not _sums_to_one(t)
    return b.op("softmax_xent_exp", logits, t, n, picked, s, e, z,
                *(() if keep is None else (keep,)), weighed=weighed)


def _xent_exp_example(logits, t, n, *keep, weighed=False):
    """An example: the logits (a shape), ``t``, ``n``, the parts derived from them, and
    the kept mask if any."""
    def part(k):
        return derived(lambda b, new, x, t, n, *rest:
                       one_exponential(b, x, t, n).args[k])
    return ex(logits, t, n, part(3), part(4), part(5), part(6), *keep, weighed=weighed)


_XROWS = derived(lambda b, new, x, t: b.rows(x))
_XKEPT = derived(lambda b, new, x, t: b.op("count_kept", b.op("ne", t, b.const(0))))
_XKEEP = derived(lambda b, new, x, t, *rest: b.op("ne", t, b.const(0)))

defop("softmax_xent_exp", arity=None, shape=_xent_exp_shape,
      emit=_xent_exp_printer("np", "axis", "keepdims"),
      torch=_xent_exp_printer("torch", "dim", "keepdim"),
      evaluate=_xent_exp_eval,
      vjp=_xent_exp_vjp,
      # the logits, e and z are read by the rule only; the targets, by a weighed loss
      unprinted=lambda attrs: (0, 5, 6) if attrs.get("weighed") else (0, 1, 5, 6),
      rule="softmax + cross-entropy from one exponential e = exp(z - max z): "
           "dL/dlogits = (e / sum(e) - onehot) / N",
      data_roles=_xent_exp_roles,
      examples=(_xent_exp_example((4, 3), int_labels((4,), 3), _XROWS),
                _xent_exp_example((2, 3, 4), int_labels((2, 3), 4), _XROWS),
                _xent_exp_example((2, 3, 4), int_labels((2, 3), 4), _XKEPT, _XKEEP),
                _xent_exp_example((4, 3), onehot((4, 3), 3), _XROWS),
                _xent_exp_example((3,), int_labels((), 3), _XROWS),
                # a computed target: its rows weigh the loss, and it gets a gradient
                _xent_exp_example((2, 3), (2, 3), _XROWS, weighed=True)))


defop("one_hot", arity=1, shape=lambda args, attrs: args[0].shape + (attrs["classes"],),
      emit=lambda a, attrs, n: (f"_one_hot({a[0][0]}, {attrs['classes']}, DTYPE)", POSTFIX),
      helpers=("_one_hot",),
      torch=lambda a, attrs, n: (f"torch.nn.functional.one_hot({a[0][0]}, "
                                 f"{attrs['classes']}).to(dtype)", POSTFIX),
      evaluate=lambda v, a: kernels._one_hot(np.asarray(v[0]).astype(int), a["classes"],
                                             float),
      examples=(ex(int_labels((4,), 3), classes=3), ex(int_labels((2, 2), 5), classes=5)))


def _torch_one_hot(t: str, classes: int) -> str:
    return f"torch.nn.functional.one_hot({t}, {classes}).to(dtype)"


def _minus_one_hot_shape(args, attrs):
    if len(args) == 3 and args[2].shape not in ((), args[1].shape + (1,)):
        raise ShapeError("minus_one_hot's amount is a number or one per label ([..., 1])",
                         (2,))
    return args[0].shape


def _times_one_hot(table: str, a) -> str:
    """The one-hot ``table`` times the amount (a third argument), if any."""
    return table if len(a) == 2 else f"{paren(a[2], MUL)} * {table}"


def _minus_one_hot_fast(a, attrs, n):
    return f"_minus_one_hot({', '.join(t for t, _ in a)})", POSTFIX


def _minus_one_hot_update(args, attrs, name):
    return [f"{name} = _minus_one_hot({', '.join([name, *args[1:]])}, out={name})"]


def _minus_one_hot_eval(v, a):
    table = kernels._one_hot(np.asarray(v[1]).astype(int), a["classes"], float)
    return v[0] - (table if len(v) == 2 else v[2] * table)


# The softmax cross-entropy's gradient with labels, before its scale: softmax - one-hot,
# or with an amount (a number or one per label), p - amount * one-hot (the fast style's
# form, its scale folded in). The textbook style subtracts the one-hot table; the fast
# style subtracts at the N·T labels' places (as the book's TimeSoftmaxWithLoss), in the
# probabilities' own buffer.
defop("minus_one_hot", arity=None, shape=_minus_one_hot_shape,
      emit=lambda a, attrs, n: (f"{paren(a[0], ADD)} - " + _times_one_hot(
          f"_one_hot({a[1][0]}, {attrs['classes']}, DTYPE)", a), ADD),
      helpers=("_one_hot",),
      torch=lambda a, attrs, n: (f"{paren(a[0], ADD)} - " + _times_one_hot(
          _torch_one_hot(a[1][0], attrs['classes']), a), ADD),
      torch_augmented=lambda args, attrs, name, n: [
          f"{name} -= " + _times_one_hot(_torch_one_hot(args[1], attrs['classes']),
                                         [(x, POSTFIX if x.isidentifier() else 0)
                                          for x in args])],
      evaluate=_minus_one_hot_eval,
      vjp=lambda b, n, g: [expand(b, g, n)] + [None] * (len(n.args) - 1),
      rule="labels are not differentiable: the adjoint passes to the probabilities",
      fast=(("emit", _minus_one_hot_fast),
            ("out_form", lambda args, attrs, out, n: f"_minus_one_hot({', '.join(args)}, "
                                                      f"out={out})"),
            ("augmented", _minus_one_hot_update),
            ("helpers", ("_minus_one_hot",))),
      examples=(ex((4, 3), int_labels((4,), 3), classes=3),
                ex((2, 3, 5), int_labels((2, 3), 5), classes=5),
                # an amount (a constant of the rule that builds it: not differentiated)
                ex((2, 3, 5), int_labels((2, 3), 5), held((2, 3, 1)), classes=5),
                ex((4, 3), int_labels((4,), 3), held(()), classes=3)))


defop("count_kept", arity=1, shape=scalar,
      emit=lambda a, attrs, n: (f"max(int(np.count_nonzero({a[0][0]})), 1)", POSTFIX),
      torch=lambda a, attrs, n: (f"max(int(torch.count_nonzero({a[0][0]})), 1)", POSTFIX),
      evaluate=lambda v, a: np.asarray(max(np.count_nonzero(v[0]), 1) * 1.0),
      vjp=no_gradient,
      rule="a count does not depend on the values",
      # at least 1: a batch of padding only has the loss 0 and no gradient, never 0 / 0
      dtype="int", examples=(ex(mask((2, 3))), ex(mask((4,)))))


# ----------------------------------------------------------------------------- sigmoid
def _sigmoid_xent_shape(args, attrs):
    broadcast_shapes(args[0].shape, args[1].shape)
    if args[0].shape != broadcast_shapes(args[0].shape, args[1].shape):
        raise ShapeError("targets must broadcast to the logits' shape", (0, 1))
    return ()


def _sigmoid_xent_emit(softplus: str):
    """Prints the loss with ``softplus`` (a call's text up to its argument) for log(1 + e^z)."""
    def emit(a, attrs, node):
        logits, t, n = a
        return (f"np.sum({softplus}{logits[0]}) - {paren(t, MUL)} * {paren(logits, MUL + 1)})"
                f" / {paren(n, MUL + 1)}", MUL)
    return emit


def _sigmoid_xent_torch(a, attrs, node):
    logits, t, n = promoted(a, node)
    return (f"torch.sum(_softplus({logits[0]}) - {paren(t, MUL)} * {paren(logits, MUL + 1)})"
            f" / {paren(n, MUL + 1)}", MUL)


def _sigmoid_xent_vjp(b, n, g):
    logits, t, count = n.args
    return [b.op("mul", b.op("div", b.op("sub", b.op("sigmoid", logits), t), count), g),
            b.op("mul", b.op("neg", b.op("div", logits, count)), g), None]


defop("sigmoid_xent", arity=3, shape=_sigmoid_xent_shape,
      emit=_sigmoid_xent_emit("np.logaddexp(0, "),
      fast=(("emit", _sigmoid_xent_emit("_softplus_log1p(")),
            ("helpers", ("_softplus_log1p",))),
      torch=_sigmoid_xent_torch, torch_helpers=("_softplus",),
      evaluate=lambda v, a: np.sum(np.logaddexp(0.0, v[0]) - v[1] * v[0]) / v[2],
      vjp=_sigmoid_xent_vjp,
      rule="sigmoid + cross-entropy fused: dL/dlogits = (sigmoid - t) / N, dL/dt = -logits / N",
      # Targets of the logits' own shape: the function checks that (the vjp gives the
      # targets' adjoint at the logits' shape, unreduced).
      examples=(ex((4, 3), (4, 3), derived(lambda b, new, x, t: b.rows(x))),
                ex((4, 1), (4, 1), derived(lambda b, new, x, t: b.rows(x))),
                ex((3,), (3,), derived(lambda b, new, x, t: b.rows(x)))))
