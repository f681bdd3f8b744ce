"""Golden `bpc show --stage` listings, and the gallery's gradients through the IR evaluator."""

import numpy as np
import pytest

from bpc.compiler.ir.evaluate import initial_params, random_feeds
from bpc.compiler.pipeline import program_from_file, show
from conftest import GOLDEN, REPO, SPECS, check_golden
from gradcheck_ir import away_from_kinks, check

STAGES = ["ast", "ir", "grad", "opt"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("model", ["toy", "two_layer"])
def test_stage_golden(model, stage, monkeypatch):
    monkeypatch.chdir(REPO)
    text = show(f"specs/{model}.bp", stage)
    check_golden(GOLDEN / "stages" / f"{model}.{stage}.txt", text)


def test_stages_are_deterministic(monkeypatch):
    monkeypatch.chdir(REPO)
    for stage in STAGES:
        assert show("specs/two_layer.bp", stage) == show("specs/two_layer.bp", stage)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_gallery_gradients_ir(spec):
    prog = program_from_file(spec)
    rng = np.random.default_rng(0)
    for _ in range(20):
        feeds, params = random_feeds(prog, rng, 3), initial_params(prog, rng)
        params = {k: v + 0.1 * rng.normal(size=np.shape(v)) for k, v in params.items()}
        if away_from_kinks(prog, feeds, params):
            break
    # Whole models (up to 50 layers deep): the runtime's default tolerance, 1e-5; the
    # per-primitive grid in test_primitives.py holds every rule to 1e-6. A small step
    # keeps a bump from crossing one of deep50's ~10^4 ReLU kinks.
    check(prog, feeds, params, samples=12, rng=rng, tol=1e-5, eps=1e-7)


def test_toy_gradients_match_udl_values():
    """The toy model at the textbook's parameter values, against finite differences."""
    prog = program_from_file(REPO / "specs" / "toy.bp")
    params = initial_params(prog, np.random.default_rng(0))
    errors = check(prog, {"x": np.array(2.3), "y": np.array(2.0)}, params, tol=1e-7)
    assert len(errors) == 8


def test_receipt_gradients_are_the_textbook_numbers():
    from bpc.compiler.ir.evaluate import evaluate
    prog = program_from_file(REPO / "specs" / "receipt.bp")
    out = evaluate(prog, {}, {})
    assert out["price"] == pytest.approx(715.0)
    got = {w: float(out[prog.grads[w]]) for w in prog.wrt}
    assert got == pytest.approx({"apple": 2.2, "apple_num": 110.0, "orange": 3.3,
                                 "orange_num": 165.0, "tax": 650.0})
