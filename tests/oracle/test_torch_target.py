"""The PyTorch target against the NumPy target (tests/support/torch_twin.py), float64 on
the CPU, within 1e-10: loss, every gradient, predict and the state after a training
call agree, and torch's autograd over the torch module's forward agrees with its
written-out backward.

- ``test_gallery``: every spec of specs/, in both code styles.
A float32 spec is compared compiled in float64 (``with_dtype``).
- ``test_random_specs``: the differential test's seeded random specs
  (tests/support/random_specs.py, ``spec_from_seed``, with modes), both styles:
  BPC_TORCH_DIFF seeds (default 40; e.g. BPC_TORCH_DIFF=2000 for a long run).
- ``test_image_specs``: the structured fuzz's valid image programs (convolutions,
  pooling, slices, batch norm, dropout), BPC_TORCH_IMAGES seeds (default 12).
- ``test_sequence_cases``: the differential test's sequence cases (layer norm, pooling
  over real steps, positional encodings), both styles.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the torch target's tests need PyTorch: "
                    "pip install 'backprop-compiler[torch]'")

from bpc.compiler.compilation import Compilation  # noqa: E402
from bpc.compiler.errors import SpecError  # noqa: E402
from diffharness import Skip  # noqa: E402
from random_specs import spec_from_seed  # noqa: E402
from torch_twin import agree  # noqa: E402

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.bp"))
RANDOM = int(os.environ.get("BPC_TORCH_DIFF", "40"))
IMAGES = int(os.environ.get("BPC_TORCH_IMAGES", "12"))


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_gallery(path, style):
    problems = agree(Compilation.from_file(path, style=style), seed=0, init=True)
    assert not problems, "\n".join(problems)


def _survey(texts, style) -> tuple[int, list[str]]:
    """(specs compared, failures) over (text, targets, seed) triples."""
    compared, failures = 0, []
    for text, targets, seed in texts:
        try:
            comp = Compilation.from_text(text, "random.bp", style=style,
                                         warn=lambda text: None).with_dtype("float64")
            comp.program  # noqa: B018 - a spec the compiler refuses is not compared
        except SpecError:
            continue
        try:
            problems = agree(comp, seed, targets)
        except Skip:
            continue
        compared += 1
        if problems:
            failures.append(f"seed {seed}:\n{text}\n" + "\n".join(problems))
    return compared, failures


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_random_specs(style):
    specs = ((s.text(), s.targets, seed) for seed, s in
             ((seed, spec_from_seed(seed, 7, modes=True, sequences=True))
              for seed in range(RANDOM)))
    compared, failures = _survey(specs, style)
    assert compared >= RANDOM // 2, f"only {compared} of {RANDOM} specs compared"
    assert not failures, f"{len(failures)} of {compared} differ:\n\n" + "\n\n".join(failures[:3])


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_image_specs(style):
    from image_specs import image_spec

    specs = ((text, None, seed) for seed in range(IMAGES)
             for text, valid in [image_spec(seed)] if valid)
    compared, failures = _survey(specs, style)
    assert compared, "no image program was compared"
    assert not failures, f"{len(failures)} of {compared} differ:\n\n" + "\n\n".join(failures[:3])


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_sequence_cases(style):
    from differential_cases import sequences

    texts = dict.fromkeys(p.values[1] for p in sequences.CASES)  # each spec once
    compared, failures = _survey(((text, None, 0) for text in texts), style)
    assert compared == len(texts), f"only {compared} of {len(texts)} specs compared"
    assert not failures, f"{len(failures)} of {compared} differ:\n\n" + "\n\n".join(
        failures[:3])
