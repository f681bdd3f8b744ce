"""Property: random well-typed specs compile and their gradients match finite differences.

Default run: 150 examples (derandomized). Long run: BPC_PROPERTY_EXAMPLES=5000.
"""

import os

import numpy as np
from hypothesis import HealthCheck, assume, given, settings

from bpc.compiler.pipeline import program_from_text
from gradcheck_ir import away_from_kinks, check
from random_specs import plain_spec

EXAMPLES = int(os.environ.get("BPC_PROPERTY_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(plain_spec())
def test_random_spec_gradients(spec):
    prog = program_from_text(spec.text(), "random.bp")
    rng = np.random.default_rng(0)
    feeds, params = spec.feeds(rng), spec.param_values(rng)
    assume(away_from_kinks(prog, feeds, params))
    from bpc.compiler.ir.evaluate import evaluate
    values = evaluate(prog, feeds, params, names=[b.name for b in prog.forward])
    # Finite differences say nothing where the function is ill-conditioned (sin(v^8)).
    assume(all(np.all(np.abs(v) < 30) for v in values.values()))
    check(prog, feeds, params, tol=1e-6)
