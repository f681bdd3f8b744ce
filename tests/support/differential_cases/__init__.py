"""The differential test's hand-written cases, one class of the language each (the id names
it): the families' cases (``ops``; ``models``, with the losses; ``images``, with the modes;
``sequences``) and float32 variants of some of them, all in ``CASES``."""

from __future__ import annotations

from differential_cases import images, models, ops, sequences
from differential_cases.cases import Cases

CASES = Cases(ops.CASES + models.CASES + images.CASES + sequences.CASES)
case = CASES.add


def named(name):
    """The case with id ``name``: a pytest param of (name, spec text, keywords)."""
    return next(c for c in CASES if c.id == name)


# float32 modules: compared with the float64 oracle, results must be float32 arrays.
for _name in ("sxe-labels", "layers", "reductions", "loss-is-param", "grad-wrt-inputs",
              "lets-literals-defaults", "reshape-batch", "sigxe-computed-target",
              "kink-maximum-tie-to-first", "slices", "concat-stack", "conv-pool-flatten",
              "image-layers", "dropout-sites", "batchnorm-dense", "batchnorm-images",
              "batchnorm-scalar-affine-options", "batchnorm-example", "matmul-batched",
              "masked-attention", "layer-norm-fast"):
    _p = named(_name)
    _text = _p.values[1].replace("model m\n", "model m\ndtype float32\n", 1)
    case(f"float32-{_name}", _text, **_p.values[2])
