"""Text from a trained language model: a model whose one input is a sequence of ids and
whose output, at every step, is a classifier's prediction of the next id in the same
vocabulary (charlm, zen_lm, tiny_gpt). Starting from a prompt, the next id is drawn from
the prediction at the last step, appended, and the model run again (DLFS2 ch. 7.1's
``RnnlmGen``; temperature 0 takes the most likely id instead).

A model whose loops continue states (``lstm 32 stateful=4``) is fed the prompt once and
then one id a step, its state carrying the rest, as it was trained; its batch is its
streams, so it writes as many samples at once. Any other model is given the whole text
so far, or its last ``context`` steps: the rows of a learned table of positions, or the
length of the windows its spec's data line cuts (``zen(steps=32)``), unless given.
"""

from __future__ import annotations

import numpy as np

from .arrays import to_host
from .conform import labels_of, shape_text, step_limits_of
from .datasets import alphabet
from .errors import UserError
from .evaluate import classifier, probabilities
from .modes import copy_state, inference_kwargs
from .streams import reset, stream_rows


def language_model(module) -> tuple[str, int]:
    """(the ids input, the vocabulary's size) of a language model; a UserError saying
    what is missing for any other model."""
    inputs = list(module.INPUTS)
    spec = classifier(module)
    vocab = labels_of(module)
    if len(inputs) != 1 or len(module.INPUTS[inputs[0]]) != 2 or inputs[0] not in vocab:
        raise UserError("sampling needs a language model: one input of ids [N, T] (an "
                        "embedding's), its output the next id at every step; this model's "
                        "inputs are " + ", ".join(f"'{k}' {shape_text(v)}"
                                                  for k, v in module.INPUTS.items()))
    config = getattr(module, "CONFIG", {}) or {}
    shape = tuple(config.get("output_shape") or ())
    if spec is None or spec.get("kind") != "labels" or len(shape) != 3 or \
            spec.get("class_axis") != 2 or shape[2] != vocab[inputs[0]]:
        raise UserError(f"sampling needs a language model: its output a prediction of the "
                        f"next of the {vocab[inputs[0]]} ids at every step ([N, T, "
                        f"{vocab[inputs[0]]}] logits or probabilities); this model's "
                        f"output is {shape_text(shape) if shape else 'not known'}")
    return inputs[0], vocab[inputs[0]]


def default_context(module) -> int | None:
    """How many of the last steps a model without streams is given: its table of
    positions' rows, else the length of its data line's windows; None: all of them."""
    limits = step_limits_of(module)
    if limits:
        return min(rows for rows, _ in limits.values())
    steps = _data_line(module).get("steps")
    return steps if isinstance(steps, int) and steps > 0 else None


def _data_line(module) -> dict:
    return (getattr(module, "CONFIG", {}) or {}).get("data") or {}


def texts(module, params, prompt: str, length: int, temperature: float = 1.0,
          samples: int = 1, seed: int = 0, state: dict | None = None,
          context: int | None = None, data: str | None = None) -> list[str]:
    """``bpc sample`` and ``model.sample``: the prompt and each of its continuations as
    text, in the characters of ``data`` (else the spec's data line's data set), the
    model given its last ``context`` steps (else ``default_context``)."""
    _, vocab = language_model(module)
    name = data or _data_line(module).get("name")
    ids = encode(prompt, name, vocab)
    rows = sample(module, params, ids, length, temperature, samples, seed, state,
                  context or default_context(module))
    return [decode(ids + row.tolist(), name) for row in rows]


def encode(prompt: str, data_name: str | None, vocab: int) -> list[int]:
    """The prompt's ids: its characters in the data set's alphabet, or, for a data set
    that is not text, ids separated by spaces."""
    chars = alphabet(data_name) if data_name else None
    if chars is not None:
        unknown = sorted(set(prompt) - set(chars))
        if unknown:
            raise UserError(f"the prompt has {', '.join(map(repr, unknown))}, which "
                            f"{data_name}'s alphabet does not", f"use only {chars!r}")
        return [chars.index(c) for c in prompt]
    try:
        ids = [int(word) for word in prompt.split()]
    except ValueError:
        raise UserError(f"the prompt {prompt!r} is not ids: the data set "
                        f"({data_name or 'none'}) has no alphabet to read text with",
                        "give ids separated by spaces, e.g. --prompt '3 1 4'") from None
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise UserError(f"the prompt's id {bad[0]} is outside the vocabulary 0..{vocab - 1}")
    return ids


def decode(ids, data_name: str | None) -> str:
    """Ids as text in the data set's alphabet, or as numbers separated by spaces."""
    chars = alphabet(data_name) if data_name else None
    return "".join(chars[i] for i in ids) if chars is not None else \
        " ".join(str(int(i)) for i in ids)


def sample(module, params, prompt: list[int], length: int, temperature: float = 1.0,
           samples: int = 1, seed: int = 0, state: dict | None = None,
           context: int | None = None) -> np.ndarray:
    """``samples`` continuations of ``prompt`` (ids), each ``length`` ids long, as an
    [samples, length] array: at every step the next id drawn from the model's prediction
    at the last step, sharpened (temperature < 1) or flattened (> 1); temperature 0
    takes the most likely id."""
    name, _ = language_model(module)
    if not prompt:
        raise UserError("the prompt is empty: the model needs at least one step to start from",
                        "give a few characters, e.g. --prompt 'Beautiful'")
    rng = np.random.default_rng(seed)
    rows = stream_rows(module)
    if rows is not None and samples > rows:
        raise UserError(f"the model's loops carry {rows} streams, so it writes {rows} "
                        f"samples at once, not {samples}", f"use --samples {rows} or fewer")
    batch = rows or samples
    kw = inference_kwargs(module, copy_state(state))  # predict writes the state back
    if rows is not None:
        reset(module, kw["state"])
    predict = getattr(module.predict, "generated", module.predict)  # the API's checks
    # and streams would reset the state every call: the module's own function
    text = np.tile(np.asarray(prompt, dtype=np.int64), (batch, 1))
    feed = text
    out = np.empty((batch, length), dtype=np.int64)
    for j in range(length):
        if rows is None and context is not None:
            feed = text[:, -context:]
        y = to_host(predict(params, **{name: feed}, **kw))
        out[:, j] = _draw(probabilities(module, y[:, -1:])[:, 0], temperature, rng)
        text = np.concatenate([text, out[:, j:j + 1]], axis=1)
        feed = out[:, j:j + 1] if rows is not None else text
    return out[:samples]


def _draw(p: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """One id per row of probabilities ``p`` [B, V], at ``temperature``."""
    if temperature == 0:
        return np.argmax(p, axis=1)
    with np.errstate(divide="ignore"):
        logits = np.log(p) / temperature
    q = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    q /= np.sum(q, axis=1, keepdims=True)
    u = rng.random((p.shape[0], 1))
    return np.minimum(np.sum(np.cumsum(q, axis=1) < u, axis=1), p.shape[1] - 1)

