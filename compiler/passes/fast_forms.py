"""The fast style's forms: IR -> IR before differentiation, for the fast style only.

- **Batch norm's closed-form backward.** ``gamma * xn + beta`` over batch norm's steps
  (``mu = mean(x)``, ``xc = x - mu``, ``var = mean(xc^2)``, ``std = sqrt(var + eps)``,
  ``xn = xc / std``, as ``functions._batch_norm`` builds them, or a spec writes them)
  becomes ``batch_norm_scale(x, gamma, std, xn) + beta``: its rule sends the adjoint to
  ``x`` in closed form (``ops/normalization.py``), so nothing is differentiated through
  the steps and the forward keeps only ``xn`` and ``std`` (``xc`` is overwritten).
- **Layer norm's closed-form backward.** ``gamma * xn`` over layer norm's steps (the
  same over the last axis, keepdims, as ``sequence_functions._layer_norm`` builds them)
  becomes ``layer_norm_scale(x, gamma, std, xn)``, likewise.
- **Softmax cross-entropy with one exponential.** ``softmax_xent`` over the
  log-softmax ``logits - logsumexp(logits)`` becomes ``softmax_xent_exp`` over its
  parts (``ops/losses.py``): the logits shifted by their row maximum, in place; each
  row's target logit, taken before the exponential overwrites them; ``exp``; its row
  sums. The loss is ``sum(log s - z[t]) / N`` and the gradient ``e / s - onehot``,
  scaled, is written into the exponentials: one exponential (the log-softmax form takes
  two) and no third array of the logits' size.
- **Running statistics in place.** A state update ``m * s + (1 - m) * stat`` becomes
  ``s + (1 - m) * (stat - s)``, which buffer planning writes as ``s += ...`` into the
  state's own array.

The textbook style never runs this pass: it keeps the book's steps. Both forms compute
the same values (the differential test runs every spec in both styles).
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import Binding, Builder, Node, Program, topo_order
from ..ir.primitives import one_exponential
from . import rebuild, rewrite


def fast_forms(prog: Program) -> Program:
    """``prog`` with the fast forms; ``prog`` itself when none applies."""
    nodes = topo_order([bd.node for bd in prog.forward])
    if not any(n.op == "mul" and (_batch_norm_parts(n) or _layer_norm_parts(n))
               or _log_softmax_of(n) for n in nodes) and \
            not any(_running_parts(bd) for bd in prog.updates):
        return prog
    named = {bd.node.id: bd.name for bd in prog.forward}
    hints: dict[int, str] = {}

    def fast(b: Builder, node: Node, args: tuple[Node, ...]) -> Node | None:
        if node.op != "softmax_xent":
            return _fuse_scale(b, node, args)
        if not _log_softmax_of(rebuild(b, node, args)):
            return None
        # Its parts are named after the equation (``L_exp``), as the function's steps are.
        b.hints.clear()
        new = one_exponential(b, args[0], *args[2:])
        owner = named.get(node.id, "xent")
        hints.update((i, f"{owner}_{hint}") for i, hint in b.hints.items())
        return new

    prog = rewrite(prog, fast)
    b = Builder(prog.dtype)
    return prog.with_(updates=[_in_place(b, bd) for bd in prog.updates],
                      hints={**prog.hints, **hints})


def _log_softmax_of(node: Node) -> bool:
    """Whether ``node`` is softmax_xent over ``logits - logsumexp(logits)`` (last axis,
    kept), as ``functions._softmax_cross_entropy`` builds it."""
    if node.op != "softmax_xent":
        return False
    logits, log_p = node.args[:2]
    if log_p.op != "sub" or log_p.args[0].id != logits.id:
        return False
    lse = log_p.args[1]
    return lse.op == "logsumexp" and lse.args[0].id == logits.id \
        and lse.attr("axis") == (len(logits.shape) - 1,) and bool(lse.attr("keepdims"))


def _unframed(v: Node, frame) -> Node | None:
    """A per-feature vector lined up with x (``[C]``, or ``[C, 1, 1]`` by a reshape)."""
    if v.shape == frame and len(frame) == 1:
        return v
    if v.op == "reshape" and v.shape == frame and len(v.args) == 1:
        return v.args[0]
    return None


def _batch_norm_parts(node: Node):
    """(x, gamma, std, xn, axes) when ``node`` is ``gamma * xn`` over batch norm's steps
    of x, every feature (axis 1) over every other axis of [N, D] or [N, C, H, W]."""
    if node.op != "mul" or node.args[1].op != "div":
        return None
    gamma, xn = node.args
    xc, std = xn.args
    if xc.op != "sub" or len(xc.shape) not in (2, 4) or xn.shape != xc.shape:
        return None
    x, mu = xc.args
    frame = (xc.shape[1],) + (1,) * (len(xc.shape) - 2)
    axes = (0,) + tuple(range(2, len(xc.shape)))
    mean, root = _unframed(mu, frame), _unframed(std, frame)
    if mean is None or root is None or gamma.shape not in ((), frame) or x.shape != xc.shape:
        return None
    if not (mean.op == "mean" and mean.args[0] is x and mean.attr("axis") == axes
            and not mean.attr("keepdims")):
        return None
    if root.op != "sqrt" or root.args[0].op != "add" or not root.args[0].args[1].is_const:
        return None
    var = root.args[0].args[0]
    if not (var.op == "mean" and var.attr("axis") == axes and not var.attr("keepdims")
            and var.args[0].op == "pow" and var.args[0].args[0] is xc
            and var.args[0].args[1].is_const and var.args[0].args[1].attr("value") == 2):
        return None
    return x, gamma, std, xn, axes


def _layer_norm_parts(node: Node):
    """(x, gamma, std, xn) when ``node`` is ``gamma * xn`` over layer norm's steps of x:
    each row over its last axis, the statistics kept as [..., 1]."""
    if node.op != "mul" or node.args[1].op != "div" or not node.args[1].shape:
        return None
    gamma, xn = node.args
    xc, std = xn.args
    last = (len(xn.shape) - 1,)

    def row_mean(v, of):
        return v.op == "mean" and v.args[0] is of and v.attr("axis") == last \
            and v.attr("keepdims")

    if xc.op != "sub" or xc.shape != xn.shape or gamma.shape not in ((), xn.shape[-1:]):
        return None
    x, mu = xc.args
    if x.shape != xc.shape or not row_mean(mu, x) or std.op != "sqrt" \
            or std.args[0].op != "add" or not std.args[0].args[1].is_const:
        return None
    var = std.args[0].args[0]
    square = var.args[0] if var.op == "mean" else None
    if square is None or not row_mean(var, square) or square.op != "pow" \
            or square.args[0] is not xc or not square.args[1].is_const \
            or square.args[1].attr("value") != 2:
        return None
    return x, gamma, std, xn


def _fuse_scale(b: Builder, node: Node, args: tuple[Node, ...]) -> Node | None:
    # Matched over the rewritten arguments: x may hold an earlier normalization, fused.
    if node.op != "mul":
        return None
    node = rebuild(b, node, args)
    parts = _batch_norm_parts(node)
    if parts is not None:
        x, gamma, std, xn, axes = parts
        return b.op("batch_norm_scale", x, gamma, std, xn, axis=axes)
    parts = _layer_norm_parts(node)
    return None if parts is None else b.op("layer_norm_scale", *parts)


def _running_parts(bd: Binding):
    """(the state leaf, 1 - m, the batch statistic) of an update ``m * s + (1 - m) * stat``."""
    node = bd.node
    if node.op != "add" or any(a.op != "mul" for a in node.args):
        return None
    (keep, leaf), (new, stat) = node.args[0].args, node.args[1].args
    if not (keep.is_const and new.is_const and leaf.op == "state"
            and leaf.attr("name") == bd.name and leaf.shape == node.shape
            and stat.shape == node.shape):
        return None
    return leaf, new, stat


def _in_place(b: Builder, bd: Binding) -> Binding:
    parts = _running_parts(bd)
    if parts is None:
        return bd
    leaf, new, stat = parts
    b.span = bd.node.span
    return replace(bd, node=b.op("add", leaf, b.op("mul", new, b.op("sub", stat, leaf))))
