"""The spec language's attention functions (LANGUAGE.md §5): scaled dot-product attention
lowered step by step (scores, weights, output) so the derivation shows each, and the
reshapes that split a sequence's features into heads and merge them back.

``functions.FUNCTIONS`` takes this table in; the lowering conventions (``Function``, the
builder's named steps) are functions.py's.
"""

from __future__ import annotations

from . import ShapeError, fmt_shape
from .functions import Function, _dropout, _fn, _located
from .ops.linalg import permuted
from ..vocab import sig, whole_number


def _root(b, d):
    """sqrt(d): a constant for a fixed width, else computed from the data."""
    return b.const(d ** 0.5) if isinstance(d, int) else b.op("sqrt", b.size([d]))


def _check_operands(q, k, v, nodes):
    """q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv]: the same leading axes (or ones
    that broadcast), keys and queries of one width, as many values as keys."""
    for at, x in enumerate((q, k, v)):
        if len(x.shape) < 2:
            raise _located(f"attention's {'qkv'[at]} must be a sequence [..., T, d]", nodes,
                           at)
    if q.shape[-1] != k.shape[-1]:
        raise _located(f"attention compares each query with each key, so k's last axis "
                       f"must be q's, {q.shape[-1]}", nodes, 1)
    if k.shape[-2] != v.shape[-2]:
        raise _located(f"attention takes one value per key, so v must have as many steps "
                       f"(axis -2) as k, {k.shape[-2]}", nodes, 2)


def _keys_mask(b, keys, scores, nodes):
    """A key padding mask [N, Tk] (1 at a real key) lined up with scores [N, ..., Tq, Tk]."""
    want = (scores.shape[0], scores.shape[-1])
    if len(scores.shape) < 3 or keys.shape != want:
        raise _located(f"attention's keys mask marks the real keys of each example, so it "
                       f"must be {fmt_shape(want)} for scores {fmt_shape(scores.shape)}",
                       nodes, 4, hint="a padding mask of 0s and 1s, 1 at a real step")
    return b.op("expand_dims", keys, axis=tuple(range(1, len(scores.shape) - 1)))


def _fits(mask, shape) -> bool:
    """Whether a mask broadcasts to ``shape`` without growing it."""
    if len(mask) > len(shape):
        return False
    return all(m in (1, s) for m, s in zip(reversed(mask), reversed(shape)))


def _attention(b, a, s):
    """Scaled dot-product attention (Vaswani et al. 2017), step by step:
    scores = q @ swapaxes(k, -1, -2) / sqrt(d), weights = softmax(scores, mask) (masked
    positions weight 0; a row masked whole is all 0), out = weights @ v. ``causal``: query
    t sees keys 0..t; ``keys``: a padding mask [N, Tk]; ``dropout``: on the weights in
    training, as PyTorch's attention does."""
    q, k, v, mask, keys = a["q"], a["k"], a["v"], a.get("mask"), a.get("keys")
    nodes = (q, k, v, mask, keys)
    _check_operands(q, k, v, nodes)
    product = b.op("matmul", q, permuted(b, k, tuple(range(len(k.shape) - 2))
                                         + (len(k.shape) - 1, len(k.shape) - 2)))
    scores = b.step(b.op("div", product, _root(b, q.shape[-1])), "scores")
    masks = []
    if mask is not None:
        if not _fits(mask.shape, scores.shape):
            raise _located(f"attention's mask must broadcast to the scores "
                           f"{fmt_shape(scores.shape)}",
                           nodes, 3, hint="a causal mask is [Tq, Tk]; a padding mask goes "
                                          "in keys=")
        masks.append(mask)
    if keys is not None:
        masks.append(_keys_mask(b, keys, scores, nodes))
    if bool(s["causal"]):
        if scores.shape[-1] != scores.shape[-2]:
            raise _located("a causal mask needs as many queries as keys, not "
                           f"{fmt_shape(scores.shape[-2:])}", nodes, 0)
        masks.append(b.op("causal", b.count(q, (len(q.shape) - 2,))))
    keep = masks[0] if masks else None
    for m in masks[1:]:  # as numbers, nonzero keeps: the product keeps what every one keeps
        keep = b.op("mul", b.op("mul", keep, b.const(1.0)), m)
    weights = b.op("softmax", scores, axis=(len(scores.shape) - 1,)) if keep is None else \
        b.op("masked_softmax", scores, keep, axis=(len(scores.shape) - 1,))
    weights = b.step(weights, "weights")
    if s["dropout"]:
        weights = _dropout(b, {"x": weights}, {"p": s["dropout"]})
    return b.op("matmul", weights, v)


def _split_heads(b, a, s):
    """[N, ..., T, D] -> [N, ..., H, T, D / H]: the features cut into H heads of D / H each,
    the heads moved before the time axis (a reshape, then a transpose)."""
    x, heads = a["x"], whole_number(s["heads"])
    if heads is None or heads < 1:
        raise ShapeError(f"split_heads' heads must be a whole number >= 1, not "
                         f"{s['heads']!r}", (), hint="e.g. heads=4")
    if len(x.shape) < 3 or not isinstance(x.shape[-1], int):
        raise ShapeError(f"split_heads cuts the features of a batch of sequences [N, T, D] "
                         f"(D fixed); this value is {fmt_shape(x.shape)}", (0,),
                         hint="attention runs over the steps T of each sequence: an input "
                              "[N, T, D]")
    width = x.shape[-1]
    if width % heads:
        raise ShapeError(f"{heads} heads do not divide the width {width} of "
                         f"{fmt_shape(x.shape)}: each head takes width / heads features",
                         (0,), hint=f"a head count that divides {width}, e.g. "
                                    f"{max(h for h in range(1, heads + 1) if width % h == 0)}")
    want = x.shape[:-1] + (heads, width // heads)
    cut = b.op("reshape", x, *(b.size([d]) for d in want if isinstance(d, str)),
               shape=want)
    rank = len(want)
    return permuted(b, cut, tuple(range(rank - 3)) + (rank - 2, rank - 3, rank - 1))


def _merge_heads(b, a, s):
    """[..., H, T, d] -> [..., T, H * d]: split_heads undone."""
    x = a["x"]
    if len(x.shape) < 3 or not all(isinstance(d, int) for d in x.shape[-3::2]):
        raise ShapeError(f"merge_heads joins the heads of [..., H, T, d] (H and d fixed); "
                         f"this value is {fmt_shape(x.shape)}", (0,))
    rank = len(x.shape)
    moved = permuted(b, x, tuple(range(rank - 3)) + (rank - 2, rank - 3, rank - 1))
    want = moved.shape[:-2] + (moved.shape[-2] * moved.shape[-1],)
    return b.op("reshape", moved, *(b.size([d]) for d in want if isinstance(d, str)),
                shape=want)


FUNCTIONS: dict[str, Function] = {
    "attention": _fn(sig("q", "k", "v", ("mask", None), ("keys", None), ("causal", False),
                         ("dropout", 0.0)), _attention, static=("causal", "dropout")),
    "split_heads": _fn(sig("x", "heads"), _split_heads, static=("heads",)),
    "merge_heads": _fn(sig("x"), _merge_heads),
}
