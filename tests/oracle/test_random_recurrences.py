"""Property: random loops over time (tests/support/recurrent_specs.random_recurrence)
compile, their gradients match central finite differences through the IR evaluator,
and the generated module computes what the IR does, in both code styles."""

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.evaluate import evaluate
from gradcheck_ir import check
from recurrent_specs import data, random_recurrence

SEEDS = range(24)


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
