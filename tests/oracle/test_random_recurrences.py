"""Property: random loops over time (tests/support/recurrent_specs.random_recurrence)
compile, their gradients match central finite differences through the IR evaluator,
the generated module computes what the IR does, in both code styles, and what the
PyTorch oracle computes (its own loop over t, written apart from the compiler).
Default 24 seeds; a long run: BPC_LOOP_SEEDS=300."""

import os

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.evaluate import evaluate
from diffharness import differential
from gradcheck_ir import check
from recurrent_specs import data, random_recurrence

SEEDS = range(int(os.environ.get("BPC_LOOP_SEEDS", "24")))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_recurrence(seed):
    text = random_recurrence(seed)
    comp = Compilation.from_text(text, "loop.bp", style="textbook")
    prog = comp.program
    feeds, params = data(prog, 4, seed)
    check(prog, feeds, params, rng=np.random.default_rng(seed))
    want = evaluate(prog, feeds, params)
    for module in (comp.module, comp.restyled("fast").module):
        loss, grads = module.loss_and_grad(params, **feeds)
        assert loss == pytest.approx(want[prog.loss], rel=1e-12), text
        for name in prog.wrt:
            np.testing.assert_allclose(grads[name], want[prog.grads[name]], rtol=1e-10,
                                       atol=1e-12, err_msg=f"{name}\n{text}")


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_recurrence_against_the_oracle(seed, style):
    pytest.importorskip("torch", reason="the oracle is PyTorch; CI installs none")
    differential(random_recurrence(seed), seed, style=style)
