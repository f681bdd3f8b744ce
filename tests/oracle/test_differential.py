"""Differential test: generated modules against an independent PyTorch oracle.

The oracle (tests/support/torch_oracle.py) shares only bpc's front end (parse, desugar, check); it
evaluates the equations with torch ops and differentiates with torch.autograd. For each
spec the generated module's loss, every gradient and predict's output must match it
(float64: rtol 1e-7; float32 modules against the float64 oracle with rtol 2e-3), and every
returned gradient and predict's output must be an np.ndarray of the module's DTYPE.

- ``test_case``: hand-written specs, one class of the language each (the id names it), in
  tests/support/differential_cases/ by family.
- ``test_oracle_against_finite_differences``: the oracle itself checked numerically.
- ``test_random_specs`` / ``test_random_plain_specs``: Hypothesis over
  tests/support/random_specs.py's rich and plain specs; shrinking gives a minimal failing
  spec.
- ``test_survey``: seeded specs from ``spec_from_seed`` that keeps going after a failure and
  reports every distinct kind of difference, with the shortest spec of each, in both
  code styles.
- ``test_survey_images``: the structured fuzz's valid image programs
  (tests/support/image_specs.py, ``image_spec``), in both code styles.

Example counts: BPC_DIFF_EXAMPLES (Hypothesis, default 100 each), BPC_DIFF_SURVEY (fast
style, default 400) and BPC_DIFF_SURVEY_TEXTBOOK (the same seeds in the textbook style,
default 100); e.g. ``BPC_DIFF_SURVEY=3000 BPC_DIFF_SURVEY_TEXTBOOK=3000 python3 -m pytest
tests/oracle/test_differential.py -k survey`` (both styles, 3,000 specs each);
BPC_DIFF_IMAGES (image program seeds, default 24). PyTorch is needed (not installed in
CI): without it the file is skipped.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the differential oracle needs PyTorch (pip install torch); skipped")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402

from bpc.compiler.errors import SpecError  # noqa: E402
from differential_cases import CASES, named  # noqa: E402
from diffharness import Mismatch, Skip, differential  # noqa: E402
from random_specs import plain_spec, random_spec, spec_from_seed  # noqa: E402
from torch_oracle import Oracle  # noqa: E402

EXAMPLES = int(os.environ.get("BPC_DIFF_EXAMPLES", "100"))
SURVEY = int(os.environ.get("BPC_DIFF_SURVEY", "400"))
SURVEY_START = int(os.environ.get("BPC_DIFF_SURVEY_START", "0"))
# The textbook style's survey (the same seeds, compiled with style="textbook"): a short
# one by default; BPC_DIFF_SURVEY_TEXTBOOK=3000 for a long run of both styles.
SURVEY_TEXTBOOK = int(os.environ.get("BPC_DIFF_SURVEY_TEXTBOOK", "100"))
# The structured fuzz's valid image programs (conv edge shapes, slices of views, concat,
# batch_norm with states, dropout on 0-d values, p = 0, unused), both styles: seeds
# 0 .. BPC_DIFF_IMAGES - 1 of image_specs.image_spec (about two thirds valid).
IMAGES = int(os.environ.get("BPC_DIFF_IMAGES", "24"))
DEPTH = int(os.environ.get("BPC_DIFF_DEPTH", "7"))  # equations per random spec, at most

# Known, not yet fixed bugs: a difference matching one of these is reported as an
# expected failure (never silently passed). Remove an entry when its bug is fixed.
KNOWN_BUGS: list[tuple[str, str]] = [
    # none open. Fixed: scalar results of float32 modules are NumPy float32 values (a
    # NumPy scalar for a 0-d value is part of the contract, as for float64).
]


def known_bug(problems) -> str | None:
    """The reason when every problem is a known bug, else None."""
    reasons = set()
    for p in problems:
        first = p.splitlines()[0]
        hit = next((why for pat, why in KNOWN_BUGS if re.search(pat, first)), None)
        if hit is None:
            return None
        reasons.add(hit)
    return "; ".join(sorted(reasons)) if reasons else None


def xfail(reason):
    return pytest.mark.xfail(strict=False, reason=reason)


# ----------------------------------------------------------------------------- hand-written
# The cases are in tests/support/differential_cases/, by family.
# Known failures (remove when fixed): see KNOWN_BUGS and the report of issue 10.
_XFAILS: dict = {
    # "case-id": xfail("reason"), only while the bug is open. Fixed since this file was
    # written: reshape-view-buffer-reuse, the hash-seed dependence,
    # sxe-default-target-not-normalised.
}


def _marked(params):
    out = []
    for p in params:
        mark = _XFAILS.get(p.id)
        out.append(pytest.param(*p.values, id=p.id, marks=[mark]) if mark else p)
    return out


def _run_case(text, kw, seeds):
    ran = 0
    kw = dict(kw)
    hash_seeds = kw.pop("hash_seeds", [None])
    for seed, hash_seed in [(s, h) for s in seeds for h in hash_seeds]:
        try:
            differential(text, seed, hash_seed=hash_seed, **kw)
            ran += 1
        except Skip:
            continue
        except Mismatch as e:
            why = known_bug(e.problems)
            if why:
                pytest.xfail(f"known bug: {why}\n{e}")
            raise
    assert ran, "every drawn point was skipped"


@pytest.mark.parametrize("name, text, kw", _marked(CASES))
def test_case(name, text, kw):
    _run_case(text, kw, seeds=range(2) if kw.get("init") != "exact" else [0])


def test_generated_code_is_independent_of_the_hash_seed():
    """The same spec compiles to the same module whatever PYTHONHASHSEED is (else a
    bug can hide behind one seed: see reshape-view-buffer-reuse)."""
    from diffharness import compile_with_hash_seed

    text = named("reshape-view-buffer-reuse").values[1]
    sources = {h: compile_with_hash_seed(text, h)[1] for h in range(4)}
    assert len(set(sources.values())) == 1, \
        "generated code differs between PYTHONHASHSEED values 0..3"


# ----------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("name", ["maximum-minimum", "power", "reductions", "softmax-axes",
                                  "sxe-computed-unnormalised", "sigxe-computed-target",
                                  "lets-literals-defaults", "reshape-batch", "layers",
                                  "slices", "concat-stack", "conv-pool-flatten",
                                  "image-layers", "residual-stack", "dropout-sites",
                                  "batchnorm-dense", "batchnorm-images",
                                  "batchnorm-scalar-affine-options", "layer-norm-fast"])
def test_oracle_against_finite_differences(name):
    """The oracle's autograd gradients agree with central differences of its own loss."""
    text, kw = named(name).values[1:]
    from diffharness import build, draw

    oracle = Oracle(text)
    mod = build(text)  # only for the shapes of the drawn arrays
    rng = np.random.default_rng(1)
    params, data = draw(mod, oracle, rng, targets=kw.get("targets"), init=bool(kw.get("init")))
    data.update(kw.get("data") or {})
    for n, st in oracle.d.inputs.items():  # differentiate at the defaults too
        if n not in data and st.default is not None:
            data[n] = np.asarray(oracle.const(st.default), dtype=float)
    r = oracle.run(params, data)
    eps = 1e-6
    for name_, g in r.grads.items():
        src = params if name_ in params else data
        base = np.asarray(src[name_], dtype=float)
        fd = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            for sign in (1, -1):
                bumped = base.copy()
                bumped[i] += sign * eps
                new = {**src, name_: bumped}
                loss = (oracle.run(new, data, need_grad=False) if src is params
                        else oracle.run(params, new, need_grad=False)).loss
                fd[i] += sign * loss / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6, err_msg=name_)


# ----------------------------------------------------------------------------- random specs
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
                     suppress_health_check=list(HealthCheck), print_blob=True)


def _random_run(text, targets=None):
    try:
        differential(text, 0, targets=targets)
    except Skip:
        assume(False)
    except SpecError as e:  # the generator aims at well-typed specs: a rejection is a bug
        raise AssertionError(f"spec rejected:\n{text}\n{e}") from None
    except Mismatch as e:
        # Known bugs are left to test_survey's xfail; any other difference fails here.
        assume(known_bug(e.problems) is None)
        raise


@_SETTINGS
@given(random_spec(DEPTH, modes=True, sequences=True))
def test_random_specs(spec):
    _random_run(spec.text(), spec.targets)


@_SETTINGS
@given(plain_spec())
def test_random_plain_specs(spec):
    _random_run(spec.text())


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_survey(style):
    """Seeded specs, in each code style; every distinct kind of difference with its
    shortest spec."""
    t0 = time.time()
    kinds: dict[str, list] = {}
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    size = SURVEY if style == "fast" else SURVEY_TEXTBOOK
    for seed in range(SURVEY_START, SURVEY_START + size):
        spec = spec_from_seed(seed, DEPTH, modes=True, sequences=True)
        text = spec.text()
        try:
            differential(text, seed, targets=spec.targets, style=style)
            counts["ok"] += 1
            continue
        except Skip:
            counts["skipped"] += 1
            continue
        except Mismatch as e:
            problems = e.problems
            detail = str(e)
        except Exception as e:  # noqa: BLE001 - a crash is a finding too
            problems = [f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
            detail = f"seed {seed}:\n--- spec\n{text}--- error\n  {problems[0]}\n{e}"
        counts["failed"] += 1
        key = " | ".join(sorted({re.sub(r"-?\d[\d.e+-]*|\(.*", "#", p.splitlines()[0])[:90]
                                 for p in problems}))
        kinds.setdefault(key, []).append((len(text), detail, problems))
    elapsed = time.time() - t0
    summary = (f"{size} specs ({style} style) in {elapsed:.1f}s: {counts['ok']} agree, "
               f"{counts['skipped']} skipped (kinks, overflow), {counts['failed']} differ")
    print(summary)
    unknown = {k: v for k, v in kinds.items() if known_bug(v[0][2]) is None}
    report = "\n\n".join(f"[{len(v)}x] {k}\n{min(v)[1]}" for k, v in
                         sorted(kinds.items(), key=lambda kv: -len(kv[1])))
    if unknown:
        pytest.fail(f"{summary}\n\n{report}", pytrace=False)
    if kinds:
        pytest.xfail(f"{summary}; only known bugs:\n\n{report}")


@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_survey_images(style):
    """The structured fuzz's valid image programs against the oracle (1x1 convolutions
    at stride 1 and kernels as large as the image, pooling, slices of views, batch norm
    with states, dropout on 0-d values, with p = 0 and unused): every difference fails."""
    from image_specs import image_spec

    t0 = time.time()
    counts = {"ok": 0, "skipped": 0}
    failures = []
    for seed in range(IMAGES):
        text, valid = image_spec(seed)
        if not valid:
            continue
        try:
            differential(text, seed, style=style)
            counts["ok"] += 1
        except Skip:
            counts["skipped"] += 1
        except Mismatch as e:
            failures.append(str(e))
    print(f"{IMAGES} image seeds ({style} style) in {time.time() - t0:.1f}s: {counts}")
    assert not failures, f"{len(failures)} differ:\n\n" + "\n\n".join(failures[:5])
