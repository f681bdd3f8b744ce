"""The trace's cross-check (module against IR evaluator) allows rounding, not mistakes
(issue 22): its tolerance follows the dtype's machine epsilon and the magnitudes a value
is computed from, so a float32 gradient that is rounding noise around 0 (a bias before
batch norm: exactly 0 in exact arithmetic, a sum of terms of size ~100 that cancel) is
no false alarm, while a gradient that is really wrong still stops the trace."""

import functools

import numpy as np
import pytest

from conftest import run_bpc
from bpc.compiler.compilation import Compilation
from bpc.reports import trace as T

# Found by tracing float32 specs over seeds: at seed 2 dL_db1 is 3e-5 in the evaluator
# and 5e-5 away in the module, both noise around the exact 0 (terms of size 97 summed
# over 4 examples); the old absolute tolerance (1e-4 relative, 1e-6 absolute) called it
# a disagreement, an internal error.
BN32 = """model bnf32
dtype float32
input  x : [N, 3]
target t : [N, 1]
layers x -> y {
  dense 2 init=normal(std=0.001)
  batchnorm
  dense 1
}
loss L = sse(y, t)
"""


@pytest.mark.parametrize("command", ["trace", "graph", "explain"])
def test_float32_rounding_noise_around_zero_is_no_disagreement(tmp_path, command):
    spec = tmp_path / "bnf32.bp"
    spec.write_text(BN32)
    extra = ["--values"] if command == "graph" else ["-o", tmp_path / "p.html"] \
        if command == "explain" else []
    r = run_bpc(command, spec, "--seed", "2", *extra)
    assert r.returncode == 0, r.stderr
    assert "disagree" not in r.stderr and "internal error" not in r.stderr


def _point():
    comp = Compilation.from_text(BN32)
    feeds, params, where = T.point(comp, None, None, 2)
    return comp, feeds, params


def test_the_gradient_that_cancels_is_judged_by_its_terms_not_its_value():
    comp, feeds, params = _point()
    tr = T.trace(comp, feeds, params)  # no RuntimeError
    db1 = next(ln for ln in tr.lines if ln.name == "dL_db1").value
    assert np.max(np.abs(db1)) < 1e-3  # noise: the exact gradient is 0


def test_a_wrong_gradient_still_stops_the_trace():
    comp, feeds, params = _point()
    module = comp.restyled("textbook").new_module()
    real = module.loss_and_grad

    for name, factor in (("b2", 1.001), ("W1", 1.001), ("b1", 1e3)):
        def wrong(*args, name=name, factor=factor, **kwargs):
            loss, grads = real(*args, **kwargs)
            return loss, {**grads, name: grads[name] * factor + (factor - 1)}
        module.loss_and_grad = wrong
        with pytest.raises(RuntimeError, match="disagree"):
            T.trace(comp, feeds, params, module=module)


def test_float64_tolerance_is_tighter():
    comp = Compilation.from_text(BN32.replace("dtype float32", "dtype float64"))
    feeds, params, _ = T.point(comp, None, None, 2)
    module = comp.restyled("textbook").new_module()
    real = module.loss_and_grad

    def wrong(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        return loss, {**grads, "b2": grads["b2"] * (1 + 1e-6)}
    module.loss_and_grad = wrong
    with pytest.raises(RuntimeError, match="disagree on dL_db2"):
        T.trace(comp, feeds, params, module=module)


# A convolution's bias before batch norm: its gradient is a sum reshaped to the bias,
# rounding noise around 0 in float64 too (found by the structured fuzz, image seed 9).
# The reshape moves the sum's values and its rounding: the scale is the sum's terms,
# not the tiny sum.
CONV_BN = """model img
input x : [N, 2, 3, 3]
state rm1 : [2] = zeros
state rv1 : [2] = 2
bnh1 = batch_norm(x, 1, 0, rm1, rv1, eps=1e-3)
pl2 = avg_pool(bnh1, 2, stride=1, pad=0)
param w1 : [1, 2, 1, 1] = xavier
param w2 : [1, 1, 1] = zeros
h3 = conv2d(pl2, w1) + w2
layers h3 -> st4 {
  conv 2 size=3 pad=1
  residual { conv 2 size=3 pad=1; batchnorm; relu; conv 2 size=1 }
  relu
}
fl5 = flatten(st4)
target t : [N, 2]
param v6 : [8, 2] = normal(std=0.3)
yy7 = fl5 @ v6
loss L = softmax_cross_entropy(yy7, t)
"""


@pytest.mark.parametrize("seed", [9])
def test_a_reshaped_sum_that_cancels_is_judged_by_the_sums_terms(seed):
    comp = Compilation.from_text(CONV_BN)
    feeds, params, _ = T.point(comp, None, None, seed)
    T.trace(comp, feeds, params)  # no RuntimeError


# float32, dropout into a convolution into batch norm over a batch of four: the loss is
# the normalized values' mean square, so dL_dw1 is exactly 0 and all rounding, which the
# small batch's std amplifies past any fixed multiple of the last step's scale (the
# modes fuzz, image seed 182: 8 of 2,000 specs were false alarms). Below float64 the
# check measures the rounding: the evaluator's distance from the same steps in float64.
F32_BN = """model fz_img
dtype float32
input x : [N, 1, 2, 3]
sl1 = x[:, :, 1:]
dr3 = dropout(sl1, p=0.3)
param w1 : [2, 1, 1, 3] = he
param w2 : [2, 1, 1] = zeros
h4 = conv2d(dr3, w1) + w2
dr5 = dropout(h4, 0.2)
state rm1 : [2] = zeros
state rv1 : [2] = ones
bnh6 = batch_norm(dr5, 1, 0, rm1, rv1, momentum=0)
fl7 = flatten(bnh6)
loss L = mean(square(fl7))
"""


@pytest.mark.parametrize("seed", [1, 182])
def test_float32_rounding_amplified_by_batch_norm_is_measured_not_guessed(seed):
    comp = Compilation.from_text(F32_BN)
    feeds, params, _ = T.point(comp, None, None, seed)
    T.trace(comp, feeds, params)  # no RuntimeError


def test_a_wrong_float32_gradient_beside_rounding_noise_still_stops_the_trace():
    comp = Compilation.from_text(F32_BN)
    feeds, params, _ = T.point(comp, None, None, 1)
    module = comp.restyled("textbook").new_module()
    real = module.loss_and_grad

    @functools.wraps(real)  # the same signature: the trace passes rng and state by it
    def wrong(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        return loss, {**grads, "w1": grads["w1"] + 1e-3}
    module.loss_and_grad = wrong
    with pytest.raises(RuntimeError, match="disagree on dL_dw1"):
        T.trace(comp, feeds, params, module=module)


# The same in float64 (no dtype line), against the platform's long double where it is
# wider: a conv bias before batch norm through a concat and reversed slices (the modes
# fuzz, image seed 2536).
F64_BN = """model img
input x : [N, 2, 1, 1]
layers x -> st1 {
  conv 2 size=3 pad=1
}
param w1 : [1, 2, 1, 1] = normal(std=0.5)
cc2 = concat([st1, conv2d(st1, w1)], axis=1)
sl3 = cc2[:, ::-1, :, ::-1]
param w2 : [2, 3, 1, 1] = he
h4 = conv2d(sl3, w2, pad=0)
state rm1 : [2] = 0.1
state rv1 : [2] = 2
bnh5 = batch_norm(h4, 1, 0.5, rm1, rv1, momentum=0.5)
pl6 = avg_pool(bnh5, 1)
fl7 = flatten(pl6)
loss L = mean(square(fl7))
"""


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
                    reason="no float wider than float64 on this platform")
def test_float64_rounding_amplified_by_batch_norm_is_measured_in_long_double():
    comp = Compilation.from_text(F64_BN)
    feeds, params, _ = T.point(comp, None, None, 2536)
    T.trace(comp, feeds, params)  # no RuntimeError
