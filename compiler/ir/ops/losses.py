"""Fused losses: softmax and sigmoid cross-entropy, whose gradients with respect to the
logits are one short rule each, ``one_hot``, which that rule needs for labels, and
``count_kept``, the number of labels a padding id leaves in the mean."""

from __future__ import annotations

import numpy as np

from .. import Node, ShapeError
from . import kernels
from .core import (ADD, MUL, POSTFIX, broadcast_shapes, defop, derived, ex, expand,
                   int_labels, mask, no_gradient, onehot, paren, promoted, scalar)


def labels(t: Node, logits: Node) -> bool:
    """True when ``t`` holds integer class labels for ``logits`` (not one-hot)."""
    return len(t.shape) == len(logits.shape) - 1


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
    if t.op != "input" or t.attr("default"):
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


def _minus_one_hot_fast(a, attrs, n):
    return f"_minus_one_hot({a[0][0]}, {a[1][0]})", POSTFIX


# The softmax cross-entropy's gradient with labels, before its scale: softmax - one-hot.
# The textbook style subtracts the one-hot table; the fast style subtracts 1 at the N·T
# labels' places (as the book's TimeSoftmaxWithLoss), in the probabilities' own buffer.
defop("minus_one_hot", arity=2, shape=lambda args, attrs: args[0].shape,
      emit=lambda a, attrs, n: (f"{paren(a[0], ADD)} - _one_hot({a[1][0]}, "
                                f"{attrs['classes']}, DTYPE)", ADD),
      helpers=("_one_hot",),
      torch=lambda a, attrs, n: (f"{paren(a[0], ADD)} - "
                                 f"{_torch_one_hot(a[1][0], attrs['classes'])}", ADD),
      torch_augmented=lambda args, attrs, name, n: [
          f"{name} -= {_torch_one_hot(args[1], attrs['classes'])}"],
      evaluate=lambda v, a: v[0] - kernels._one_hot(np.asarray(v[1]).astype(int),
                                                    a["classes"], float),
      vjp=lambda b, n, g: [expand(b, g, n), None],
      rule="labels are not differentiable: the adjoint passes to the probabilities",
      fast=(("emit", _minus_one_hot_fast),
            ("out_form", "_minus_one_hot({0}, {1}, out={out})"),
            ("augmented", lambda args, attrs, name: [
                f"{name} = _minus_one_hot({name}, {args[1]}, out={name})"]),
            ("helpers", ("_minus_one_hot",))),
      examples=(ex((4, 3), int_labels((4,), 3), classes=3),
                ex((2, 3, 5), int_labels((2, 3), 5), classes=5)))


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
