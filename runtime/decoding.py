"""Greedy decoding of an encoder-decoder trained with teacher forcing (its decoder fed
the answer shifted right one): the decoder fed its own previous prediction instead, and
the share of whole answers it then gets right, as DLFS2 ch. 7 scores its addition task.

A decoder that reads its input causally (an LSTM's step ``t`` reads steps ``0..t``) is
decoded by calling ``predict`` once per answer position, filling the decoder's input as
it goes; answer position ``j`` is taken from the call that knew positions ``0..j`` only,
so a decoder that looks ahead is decoded the same way, never shown the answer.
"""

from __future__ import annotations

import numpy as np

from .arrays import to_host
from .batching import batch_axes
from .datasets import DECODER_START
from .evaluate import classifier, predict_all, predicted_class


def decoder_of(module, data_name: str) -> tuple[str, int] | None:
    """(the decoder's input, its start id) when ``data_name`` is a built-in data set whose
    model's last input is a decoder's (``addition_seq2seq``) and the model's output is a
    per-step classifier of labels shaped like that input (batch first); None otherwise."""
    spec = classifier(module)
    if data_name not in DECODER_START or spec is None or spec.get("kind") != "labels":
        return None
    decoder, target = list(module.INPUTS)[-1], spec["target"]
    shapes = (module.INPUTS[decoder], module.TARGETS[target])
    axes = batch_axes(module)
    if any(len(s) != 2 for s in shapes) or axes.get(decoder) != 0 or axes.get(target) != 0:
        return None
    return decoder, DECODER_START[data_name]


def greedy_decode(module, params, inputs: dict[str, np.ndarray], decoder: str, start: int,
                  state: dict | None = None) -> np.ndarray:
    """The answers [N, T] of the decoder fed ``start`` and then its own predictions:
    ``predict`` once per position (the positions not yet decoded hold ``start``)."""
    fed = np.full_like(to_host(inputs[decoder]), start)
    answers = np.empty_like(fed)
    for j in range(fed.shape[1]):
        y = to_host(predict_all(module, params, {**inputs, decoder: fed}, state=state))
        answers[:, j] = predicted_class(module, y)[:, j]
        if j + 1 < fed.shape[1]:
            fed[:, j + 1] = answers[:, j]
    return answers


def exact_match(module, params, arrays: dict[str, np.ndarray], decoder: str, start: int,
                state: dict | None = None) -> float | None:
    """The fraction of examples whose greedily decoded answer equals the target at every
    position (padding included, as the book compares whole strings); None without data."""
    if not arrays:
        return None
    inputs = {k: v for k, v in arrays.items() if k in module.INPUTS}
    answers = greedy_decode(module, params, inputs, decoder, start, state)
    target = to_host(arrays[classifier(module)["target"]])
    return float(np.mean(np.all(answers == target, axis=1)))
