"""Evaluation of a model over whole data sets, in inference mode, chunk by chunk along
the batch axis: its predictions (``predict_all``), its mean loss (``mean_loss``) and, for a
classifier (as the compiler recorded it in ``CONFIG["accuracy"]``), its accuracy (per
token for a sequence, leaving out a padding id the loss ignores) and the accuracy of
chance; for a language model, whether its loss is a perplexity's logarithm. ``bpc
train``, ``bpc predict`` and ``bpc eval`` all evaluate here.
"""

from __future__ import annotations

import math

import numpy as np

from . import batching
from .arrays import to_host
from .modes import inference_kwargs
from .streams import in_streams, order, reset, stream_rows

KINDS = ("labels", "onehot", "binary")


def classifier(module) -> dict | None:
    """What the compiler recorded about predict's output as a classifier's prediction
    (``CONFIG["accuracy"]``: target, kind, class_axis, threshold), or None: a module
    without it has no accuracy, whatever its data look like."""
    config = getattr(module, "CONFIG", {}) or {}
    spec = config.get("accuracy")
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS or \
            spec.get("target") not in getattr(module, "TARGETS", {}):
        return None
    return spec


def task_kind(module, targets: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """("labels"|"onehot"|"binary", target name) when the module's output is a
    classifier's prediction of a target (the compiler says so in CONFIG); None otherwise,
    and for a "binary" target whose values in ``targets`` are not all 0 or 1 (there is
    no right answer to count then)."""
    spec = classifier(module)
    if spec is None:
        return None
    name = spec["target"]
    if spec["kind"] == "binary" and name in targets and not _zero_one(targets[name]):
        return None
    return spec["kind"], name


def no_accuracy_note(module, targets: dict[str, np.ndarray]) -> str | None:
    """Why there is no accuracy, when a user might expect one (said once, by train and
    eval); None for a classifier, or a model with nothing to say (a regression)."""
    config = getattr(module, "CONFIG", {}) or {}
    spec = classifier(module)
    if spec is None:
        why = config.get("no_accuracy")
        return f"no accuracy: {why}" if isinstance(why, str) and why else None
    name = spec["target"]
    if task_kind(module, targets) is None:
        return (f"no accuracy: the target '{name}' holds values other than 0 and 1, so a "
                "prediction has no right answer to count")
    return None


def _zero_one(t) -> bool:
    t = to_host(t)
    return bool(np.all((t == 0) | (t == 1)))


def predict_all(module, params, inputs: dict[str, np.ndarray], chunk: int = 2048,
                state: dict | None = None, function=None):
    """``predict`` over every example, ``chunk`` examples at a time along the inputs'
    batch axis, the parts joined along the output's (CONFIG's ``output_shape`` says where
    it is). In one call when there is nothing to chunk, the output's layout is unknown, or
    the model couples examples (the first two chunks predicted together differ from
    their parts, as with a mean over the batch): chunks must not change the answer.
    Inference mode, reading ``state`` (a model with state: its initial state when None).
    ``function``: the generated ``predict`` to call (default: ``module.predict``)."""
    predict = function or module.predict
    kw = inference_kwargs(module, _own(module, state))
    axes = batching.batch_axes(module)
    if stream_rows(module) is not None:  # the streams run through from their start
        reset(module, kw["state"])
        parts = [to_host(predict(params, **b, **kw))
                 for b in in_streams(module, inputs, axes, "data predicted")]
        out_axis = output_batch_axis(module) or 0
        back = np.argsort(order(batching.example_count(inputs, axes), stream_rows(module),
                                "data predicted"))
        return np.take(np.concatenate(parts, axis=out_axis), back, axis=out_axis)
    n = batching.example_count(inputs, axes)
    out_axis = output_batch_axis(module)
    if n <= chunk or out_axis is None or not any(k in axes for k in inputs):
        return predict(params, **inputs, **kw)
    parts = [to_host(predict(params, **batching.examples(
        inputs, axes, slice(i, i + chunk)), **kw)) for i in range(0, n, chunk)]
    joined = to_host(predict(params, **batching.examples(inputs, axes,
                                                                 slice(0, 2 * chunk)), **kw))
    first_two = np.concatenate(parts[:2], axis=out_axis)
    if np.shape(joined) != first_two.shape or not np.allclose(joined, first_two,
                                                                rtol=1e-6, atol=1e-12):
        return predict(params, **inputs, **kw)
    return np.concatenate(parts, axis=out_axis)


def _own(module, state: dict | None) -> dict | None:
    """The state an evaluation calls with: for a model with streams a dict of its own
    (its calls replace the streams' entries; the caller's stay as they were)."""
    return dict(state) if state is not None and stream_rows(module) is not None else state


def output_batch_axis(module) -> int | None:
    """The axis of the prediction that carries the batch dimension, from the output's
    declared shape in CONFIG; None when it has none or the module does not say."""
    config = getattr(module, "CONFIG", {}) or {}
    shape = config.get("output_shape")
    dim = batching.batch_dim(module)
    if shape is None or dim is None or list(shape).count(dim) != 1:
        return None
    return list(shape).index(dim)


def accuracy(module, params, arrays: dict[str, np.ndarray], kind,
             state: dict | None = None, chunk: int = 2048) -> float | None:
    """The fraction of examples whose predicted class is the target's (``kind`` from
    ``task_kind``), predicted ``chunk`` examples at a time; None without a kind or data."""
    if kind is None or not arrays:
        return None
    how, name = kind
    inputs = {k: v for k, v in arrays.items() if k in module.INPUTS}
    y = to_host(predict_all(module, params, inputs, chunk, state=state))
    t = arrays[name]
    if stream_rows(module) is not None:  # the windows the streams hold: the first ones
        axis = batching.batch_axes(module).get(name, 0)
        t = batching.examples({name: t}, {name: axis},
                              slice(0, np.shape(y)[output_batch_axis(module) or 0]))[name]
    right = predicted_class(module, y) == target_class(module, t)
    counted = _counted(module, t)
    if counted is None:
        return float(np.mean(right))
    return float(np.sum(right[counted]) / max(np.count_nonzero(counted), 1))


def _counted(module, t) -> np.ndarray | None:
    """Where a target's labels count (every position but the padding id's, for a loss
    with ``ignore=``), or None when every position does."""
    ignore = (classifier(module) or {}).get("ignore")
    return None if ignore is None else to_host(t) != ignore


def has_perplexity(module) -> bool:
    """Whether the loss is a language model's mean cross-entropy per token, whose
    exponential is the perplexity (the compiler records it in CONFIG)."""
    return bool((getattr(module, "CONFIG", {}) or {}).get("perplexity"))


def predicted_class(module, y) -> np.ndarray:
    """The class ``predict``'s output ``y`` stands for, as the compiler recorded it: the
    argmax along its class axis, or whether it is above the threshold."""
    spec = classifier(module) or {}
    if spec.get("kind") == "binary":
        return np.asarray(y) > threshold_of(module)
    return np.argmax(y, axis=int(spec.get("class_axis", -1)))


OUTPUTS = ("raw", "proba", "class")


def not_a_classifier(module) -> str | None:
    """Why ``module`` has no classes or probabilities to give (its output is not a
    classifier's prediction, as the compiler recorded it); None for a classifier."""
    if classifier(module) is not None:
        return None
    why = (getattr(module, "CONFIG", {}) or {}).get("no_accuracy")
    return why if isinstance(why, str) and why else \
        "its output is not a classifier's prediction (a regression)"


def probabilities(module, y) -> np.ndarray:
    """The classifier's probabilities from ``predict``'s output ``y``: the softmax along
    the class axis of logits (or, for a 0/1 prediction, the sigmoid), or ``y`` itself
    when it is the probabilities, as the compiler recorded it (``logits``)."""
    from .errors import UserError

    spec = classifier(module) or {}
    y = np.asarray(y, dtype=np.float64)
    logits = spec.get("logits")
    if logits is None and spec.get("kind") == "binary":  # a module from before "logits"
        logits = threshold_of(module) == 0.0
    if logits is None:
        raise UserError("the module does not record whether its output is logits or "
                        "probabilities (it was compiled by an older bpc)",
                        "compile the spec again (bpc compile)")
    if not logits:
        return y
    if spec.get("kind") == "binary":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-y))
    axis = int(spec.get("class_axis", -1))
    e = np.exp(y - np.max(y, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def classes_and_probability(module, y) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class of each example and the probability the model gives it."""
    p = probabilities(module, y)
    spec = classifier(module) or {}
    if spec.get("kind") == "binary":
        c = (np.asarray(y) > threshold_of(module)).astype(np.int64)
        return c, np.where(c == 1, p, 1.0 - p)
    axis = int(spec.get("class_axis", -1))
    c = np.argmax(p, axis=axis)
    return c, np.take_along_axis(p, np.expand_dims(c, axis), axis).squeeze(axis)


def target_class(module, t) -> np.ndarray:
    """The class a target holds: its label, the argmax of its one-hot rows along their
    class axis (as the compiler recorded it; the last by default), or whether it is
    above 0.5."""
    spec = classifier(module) or {}
    kind = spec.get("kind")
    t = to_host(t)
    if kind == "onehot":
        return np.argmax(t, axis=int(spec.get("target_class_axis", -1)))
    return t if kind == "labels" else t > 0.5


def threshold_of(module) -> float:
    """Where a 0/1 prediction flips: the compiler records 0.0 when the output is the
    logits of a sigmoid cross-entropy loss, 0.5 when it is a probability; never guessed
    from the values, which say nothing about which they are."""
    spec = classifier(module) or {}
    threshold = spec.get("threshold")
    return float(threshold) if threshold is not None else 0.5


def mean_loss(module, params, arrays, batch: int = 2048, state: dict | None = None) -> float:
    """The spec's loss over all of ``arrays``, evaluated ``batch`` examples at a time
    along the batch axis. Chunks combine by their size-weighted mean for a loss that
    averages over examples (mse, cross-entropies) and by their sum for one that adds
    them up (sse, least_squares); the spec does not say which, so the first two chunks
    are also evaluated together to find out, and a loss that is neither (or where the
    two cannot be told apart) is evaluated in one call. Inference mode, reading ``state``
    (a model with state: its initial state when None)."""
    kw = inference_kwargs(module, _own(module, state), "loss")
    axes = batching.batch_axes(module)
    if stream_rows(module) is not None:  # DLFS2's perplexity: from reset streams, in order
        reset(module, kw["state"])
        values = [float(module.loss(params, **b, **kw))
                  for b in in_streams(module, arrays, axes, "data evaluated")]
        return sum(values) / len(values)
    n = batching.example_count(arrays, axes)
    if n <= batch:
        return float(module.loss(params, **arrays, **kw)) if n else 0.0
    parts = [(float(module.loss(params, **b, **kw)), batching.example_count(b, axes))
             for b in batching.batches(arrays, batch, None, axes)]
    (la, ma), (lb, mb) = parts[:2]
    joined = float(module.loss(params, **batching.examples(arrays, axes, slice(0, ma + mb)),
                               **kw))
    as_mean, as_sum = (la * ma + lb * mb) / (ma + mb), la + lb
    if not math.isclose(as_mean, as_sum, rel_tol=1e-6, abs_tol=1e-12):
        if math.isclose(joined, as_mean, rel_tol=1e-6, abs_tol=1e-12):
            return sum(v * m for v, m in parts) / n
        if math.isclose(joined, as_sum, rel_tol=1e-6, abs_tol=1e-12):
            return sum(v for v, _ in parts)
    return float(module.loss(params, **arrays, **kw))


def chance_accuracy(kind, arrays: dict[str, np.ndarray], module=None) -> float | None:
    """The accuracy of always answering the most common class of ``arrays``' targets
    (leaving out the padding id of ``module``'s loss)."""
    if kind is None or kind[1] not in arrays:
        return None
    how, name = kind
    t = to_host(arrays[name])
    counted = _counted(module, t) if module is not None else None
    if counted is not None:
        t = t[counted]
    if how == "binary":
        p = float(np.mean(t > 0.5)) if t.size else 0.0
        return max(p, 1 - p)
    labels = np.argmax(t, axis=-1) if how == "onehot" else t
    labels = np.asarray(labels, dtype=np.int64).ravel()
    return float(np.bincount(labels).max() / labels.size) if labels.size else None
