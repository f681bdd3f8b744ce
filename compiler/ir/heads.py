"""Which output is a classifier's prediction of which target: the facts accuracy needs.

Accuracy compares ``predict``'s output with a target, so it exists only where the
program itself ties the two together through a loss bpc recognises:

- ``cross_entropy(p, t)`` when ``predict`` returns ``p = softmax(y)`` (one-hot ``t``);
- ``softmax_cross_entropy(logits, t)`` when ``predict`` returns the logits, their
  softmax along the class axis, or the transpose of either (a column-convention model,
  classes along axis 0): the class is the argmax along the output's class axis, ``t``
  holds labels or one-hot rows (``kind`` "labels" or "onehot"), and with ``ignore=``
  the padding id whose positions accuracy leaves out (``ignore``);
- ``sigmoid_cross_entropy(z, t)`` when ``predict`` returns ``z`` (threshold 0.0: logits)
  or ``sigmoid(z)`` (threshold 0.5: probabilities), of ``t``'s shape (``kind`` "binary");
- a squared error of a ``sigmoid`` output and a target of its shape (``mse``, ``sse``,
  ``least_squares``, ``(y - t)^2``): probabilities, threshold 0.5 (XOR's classic net).

Anything else has no accuracy. ``head`` says why when a user could expect one (a target
no loss reads, a cross-entropy whose logits are not what ``predict`` returns, a loss
written out by hand); a squared error of any other output is a regression and needs no
word. The compiler writes the result into the module's ``CONFIG`` (``"accuracy"`` or
``"no_accuracy"``); the runtime reads that and guesses nothing.
"""

from __future__ import annotations

from . import Node, Program, topo_order
from .primitives import labels, softmax_xent_parts

RECOGNISED = ("softmax_cross_entropy, sigmoid_cross_entropy, cross_entropy of a softmax "
              "output, or a squared error of a sigmoid output and a target")


def head(prog: Program) -> tuple[dict | None, str | None]:
    """(accuracy, why not): ``accuracy`` = {"target", "kind", "class_axis", "threshold",
    "logits"} (class_axis: the output's axis of classes, for "labels"/"onehot", and for
    "onehot" ``target_class_axis``, the target's; threshold: where a "binary" prediction
    flips; logits: whether the output is logits, whose softmax or sigmoid gives the
    probabilities, rather than the probabilities themselves),
    or None and a reason (None: a regression, or nothing to predict)."""
    forward = {bd.name: bd.node for bd in prog.forward}
    output = forward.get(prog.output) if prog.output else None
    loss = forward.get(prog.loss)
    target_names = [bd.name for bd in prog.targets]
    if output is None or loss is None or not target_names:
        return None, None
    read = topo_order([loss])
    targets = {n.id: n.attr("name") for n in read
               if n.op == "input" and n.attr("name") in target_names
               and n.attr("default") is None}
    fused = []
    for n in read:
        xent = softmax_xent_parts(n)
        if xent is not None and xent[1].id in targets:
            fused.append("softmax_cross_entropy")
            x, t, keep = xent
            axis = _class_axis(output, x)
            if axis is not None:
                logits = not (output.op == "softmax" or output.op == "transpose"
                              and output.args[0].op == "softmax")
                if labels(t, x):
                    spec = {"target": targets[t.id], "kind": "labels", "class_axis": axis,
                            "threshold": None, "logits": logits}
                    if keep is not None:  # ne(t, padding id): its positions are not counted
                        spec["ignore"] = keep.args[1].attr("value")
                    return spec, None
                return {"target": targets[t.id], "kind": "onehot", "class_axis": axis,
                        "target_class_axis": len(t.shape) - 1, "threshold": None,
                        "logits": logits}, None
        elif n.op == "sigmoid_xent" and n.args[1].id in targets:
            fused.append("sigmoid_cross_entropy")
            z, t = n.args[0], n.args[1]
            threshold = 0.0 if output.id == z.id else 0.5 if _is(output, "sigmoid", z) \
                else None
            if threshold is not None and t.shape == output.shape:
                return _binary(targets[t.id], threshold), None
    for p, t in _cross_entropies(read, targets):  # cross_entropy(softmax(y), t)
        axes = p.attr("axis") or ()
        if p.id == output.id and p.op == "softmax" and t.shape == p.shape and \
                len(axes) == 1 and isinstance(p.shape[axes[0]], int):  # a fixed class count
            return {"target": targets[t.id], "kind": "onehot", "class_axis": axes[0],
                    "target_class_axis": axes[0], "threshold": None, "logits": False}, None
    squared = _squared_errors(read, targets)
    for y, t in squared:
        if y.id == output.id and y.op == "sigmoid" and t.shape == y.shape:
            return _binary(targets[t.id], 0.5), None
    unread = [name for name in target_names if name not in targets.values()]
    if unread:
        return None, (f"target '{unread[0]}' is read by no loss, so no prediction is "
                      "compared with it")
    if fused:
        return None, (f"predict returns '{prog.output}', which is not what {fused[0]} "
                      "compares with its target (its logits, their "
                      f"{'softmax' if fused[0].startswith('softmax') else 'sigmoid'}, "
                      "or the transpose of either, of the target's shape)")
    if any(y.id == output.id for y, _ in squared):
        return None, None  # a regression: a squared error of the output
    return None, ("the loss is not one bpc recognises as a classifier's (" + RECOGNISED
                  + ")")


def is_token_loss(prog: Program) -> bool:
    """Whether the loss is the mean cross-entropy per token of a sequence model (exactly
    ``softmax_cross_entropy`` of labels with a time axis, [N, T]): its exponential is
    the perplexity."""
    loss = {bd.name: bd.node for bd in prog.forward}.get(prog.loss)
    xent = None if loss is None else softmax_xent_parts(loss)
    return xent is not None and labels(xent[1], xent[0]) and len(xent[1].shape) >= 2


def _binary(target: str, threshold: float) -> dict:
    return {"target": target, "kind": "binary", "class_axis": None, "threshold": threshold,
            "logits": threshold == 0.0}


def _is(node: Node, op: str, arg: Node) -> bool:
    return node.op == op and node.args[0].id == arg.id


def _class_axis(output: Node, logits: Node) -> int | None:
    """The output's axis of classes when ``output`` is ``logits``, their softmax along
    the last axis, or the transpose of either (2-D); else None."""
    last = len(logits.shape) - 1

    def same(node: Node) -> bool:
        return node.id == logits.id or node.op == "softmax" and \
            node.args[0].id == logits.id and tuple(node.attr("axis") or ()) == (last,)

    if same(output):
        return last
    if len(logits.shape) == 2 and (output.op == "transpose" and same(output.args[0])
                                   or logits.op == "transpose"
                                   and logits.args[0].id == output.id):
        return 0
    return None


def _cross_entropies(read: list[Node], targets: dict[int, str]) -> list[tuple[Node, Node]]:
    """(p, t) for each ``t * log(p)`` of a target the loss reads (``cross_entropy``)."""
    out = []
    for n in read:
        if n.op == "mul":
            a, b = n.args
            if a.id in targets and b.op == "log":
                out.append((b.args[0], a))
            elif b.id in targets and a.op == "log":
                out.append((a.args[0], b))
    return out


def _squared_errors(read: list[Node], targets: dict[int, str]) -> list[tuple[Node, Node]]:
    """(y, t) for each squared difference of a value and a target the loss reads."""
    out = []
    for n in read:
        if n.op == "pow" and n.args[1].op == "const" and n.args[1].attr("value") == 2 or \
                n.op == "mul" and n.args[0].id == n.args[1].id or n.op == "square":
            d = n.args[0]
            if d.op == "sub":
                a, b = d.args
                if b.id in targets:
                    out.append((a, b))
                elif a.id in targets:
                    out.append((b, a))
    return out
