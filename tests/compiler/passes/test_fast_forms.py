"""The fast style's forms (compiler/passes/fast_forms.py): batch and layer norm's
closed-form backwards, the running statistics updated in place and softmax
cross-entropy with one exponential, for the fast style only.

What the forms compute is judged elsewhere (the op's examples against finite
differences, tests/compiler/ir/test_batchnorm.py against torch's autograd, the
differential test in both styles); here: where they apply, where they must not, and that
the textbook style never sees them.
"""

import re

import numpy as np
import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.ir import topo_order
from bpc.compiler.passes.fast_forms import fast_forms
from conftest import REPO

BY_HAND = """\
model by_hand
input x : [N, 3]
input t : [N, 3]
param g : [3] = ones
param be : [3] = zeros
mu = mean(x, axis=0)
xc = x - mu
var = mean(xc^2, axis=0)
std = sqrt(var + {eps})
xn = xc / std
h = g * xn + be
loss L = sum(sin(h) * t)
"""


def ops(prog):
    return [n.op for n in topo_order([bd.node for bd in prog.forward + prog.backward])]


def test_a_spec_without_a_fast_form_is_left_as_it_is():
    comp = Compilation.from_file(REPO / "specs" / "deep_relu.bp")
    assert fast_forms(comp.ir) is comp.ir
    assert comp.fast_program is comp.program


def test_the_fast_program_takes_the_closed_form_and_the_textbook_the_steps():
    comp = Compilation.from_file(REPO / "specs" / "batchnorm.bp")
    fast, textbook = comp.fast_program, comp.restyled("textbook").coded
    assert textbook is comp.program and "batch_norm_scale" not in ops(textbook)
    assert ops(fast).count("batch_norm_scale") == 5
    backward = {bd.name for bd in fast.backward}
    assert not {"dL_dbn1_xn", "dL_dbn1_std", "dL_dbn1_var", "dL_dbn1_xc",
                "dL_dbn1_mu"} & backward
    assert "dL_dbn1_xn" in {bd.name for bd in textbook.backward}
    assert comp.restyled("textbook").ir is comp.ir  # the spec as written, for every view


def test_the_closed_form_reads_beta_s_gradient_and_computes_each_sum_once():
    text = (REPO / "generated" / "batchnorm.py").read_text()
    backward = text[text.index("def loss_and_grad"):text.index("def _loss_training")]
    for k in range(1, 6):
        assert len(re.findall(rf"np\.sum\(dL_dbn{k}, axis=0", backward)) == 1
        assert f"dL_dbn{k}_beta / x.shape[0]" in backward
        assert f"bn{k}_xn = np.divide(bn{k}_xc, bn{k}_std, out=bn{k}_xc)" in backward
        assert f"bn{k}_running_mean += 0.1 * (bn{k}_mu - bn{k}_running_mean)" in backward


def test_batch_norm_written_by_hand_is_fused_too():
    prog = Compilation.from_text(BY_HAND.format(eps=1e-5)).fast_program
    assert "batch_norm_scale" in ops(prog)


@pytest.mark.parametrize("change", [
    ("var = mean(xc^2, axis=0)", "var = mean(xc^2, axis=0) * 1.01"),  # not the variance
    ("xc = x - mu", "xc = x - mu * 0.5"),  # not centred
    ("mu = mean(x, axis=0)", "mu = mean(x, axis=0) + 0 * sum(t)"),
    ("h = g * xn + be", "h = xn * g + be"),  # gamma second: left as written
])
def test_what_is_not_batch_norm_is_left_alone(change):
    text = BY_HAND.format(eps=1e-5).replace(*change)
    comp = Compilation.from_text(text)
    assert comp.fast_program is comp.program or "batch_norm_scale" not in ops(
        comp.fast_program)


def test_the_fused_by_hand_gradient_is_the_textbook_s():
    text = BY_HAND.format(eps=1e-5)
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    params = {"g": rng.normal(size=3), "be": rng.normal(size=3)}
    results = []
    for style in ("fast", "textbook"):
        module = Compilation.from_text(text, style=style).module
        results.append(module.loss_and_grad(params, x, t))
    (fast_loss, fast), (loss, want) = results
    assert fast_loss == pytest.approx(loss, rel=1e-12)
    for k in want:
        np.testing.assert_allclose(fast[k], want[k], rtol=1e-10, atol=1e-12)


LAYER_NORM = """\
model ln
input x : [N, T, 4]
param g : [4] = ones
param be : [4] = zeros
param W : [4] = normal
h = layer_norm(x, g, be)
mu = mean(x, axis=-1, keepdims=true)
xc = x - mu
k = g * (xc / sqrt(mean(xc^2, axis=-1, keepdims=true) + 1e-3))
loss L = sum(sin(h * W)) + sum(k * k)
grad wrt x
"""


def test_layer_norm_takes_its_closed_form_in_the_fast_style_only():
    """layer_norm, and the same steps written by hand; a batch norm's axes are not a
    layer norm's, and statistics without keepdims are not matched."""
    comp = Compilation.from_text(LAYER_NORM)
    assert ops(comp.fast_program).count("layer_norm_scale") == 2
    assert "layer_norm_scale" not in ops(comp.restyled("textbook").coded)
    assert "dL_dh_xn" not in {bd.name for bd in comp.fast_program.backward}
    assert "layer_norm_scale" not in ops(Compilation.from_text(
        BY_HAND.format(eps=1e-5)).fast_program)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 4))
    params = {"g": rng.normal(size=4), "be": rng.normal(size=4), "W": rng.normal(size=4)}
    (fast_loss, fast), (loss, want) = (
        Compilation.from_text(LAYER_NORM, style=style).module.loss_and_grad(params, x)
        for style in ("fast", "textbook"))
    assert fast_loss == pytest.approx(loss, rel=1e-12)
    for k in want:
        np.testing.assert_allclose(fast[k], want[k], rtol=1e-10, atol=1e-12)


XENT = """\
model xent
input h : [N, T, 4]
target t : {target}
param W : [4, 6] = normal
y = h @ W
loss L = softmax_cross_entropy(y, {t}{ignore})
"""
LABELS = {"target": "[N, T]", "t": "t", "ignore": ""}
XENT_CASES = {
    "labels": LABELS,
    "ignored": {**LABELS, "ignore": ", ignore=0"},
    "onehot": {"target": "[N, T, 6]", "t": "t", "ignore": ""},
    "computed": {"target": "[N, T, 6]", "t": "softmax(t * W[0])", "ignore": ""},
}


def _xent_data(case, dtype, spread=1.0):
    rng = np.random.default_rng(5)
    h = rng.normal(size=(3, 2, 4)).astype(dtype)
    labels = rng.integers(0, 6, size=(3, 2))
    labels[0, 0] = 0  # an ignored padding id, where there is one
    t = labels if XENT_CASES[case]["target"] == "[N, T]" else \
        np.eye(6, dtype=dtype)[labels] if case == "onehot" else \
        rng.normal(size=(3, 2, 6)).astype(dtype)
    return {"W": (spread * rng.normal(size=(4, 6))).astype(dtype)}, h, t


@pytest.mark.parametrize("case", sorted(XENT_CASES))
def test_softmax_cross_entropy_takes_one_exponential_in_the_fast_style_only(case):
    comp = Compilation.from_text(XENT.format(**XENT_CASES[case]))
    fast, textbook = ops(comp.fast_program), ops(comp.restyled("textbook").coded)
    assert "softmax_xent_exp" in fast and "softmax_xent" not in fast
    assert fast.count("exp") == 1
    assert "logsumexp" not in fast and "softmax_xent" in textbook


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(XENT_CASES))
def test_one_exponential_computes_the_textbook_s_loss_and_gradient(case, dtype):
    """Both functions, every kind of target, a scale, the dtype kept (no float64 upcast),
    and logits spread far apart: the label entries are taken before the exponential, so
    a probability that underflows still has its exact log."""
    text = XENT.format(**XENT_CASES[case])
    tol = {"float64": 1e-10, "float32": 2e-4}[dtype]
    for spread in (1.0, 300.0):
        params, h, t = _xent_data(case, dtype, spread)
        fast, book = (Compilation.from_text(text, style=style, dtype=dtype).module
                      for style in ("fast", "textbook"))
        loss, grads = fast.loss_and_grad(dict(params), h, t, scale=-0.5)
        want_loss, want = book.loss_and_grad(dict(params), h, t, scale=-0.5)
        assert np.isfinite(loss) and loss == pytest.approx(want_loss, rel=tol)
        assert fast.loss(dict(params), h, t) == pytest.approx(want_loss, rel=tol)
        assert grads["W"].dtype == np.dtype(dtype)
        np.testing.assert_allclose(grads["W"], want["W"], rtol=tol, atol=tol * spread)


def test_one_exponential_overwrites_the_logits_and_keeps_no_third_array():
    """The LSTM's loss over [N, T, V]: shifted in the logits' buffer, the label entries
    taken, exponentiated there, and the gradient written into the same buffer."""
    text = (REPO / "generated" / "charlm.py").read_text()
    for function in ("def loss(", "def loss_and_grad("):
        body = text.split(function)[1].split("\ndef ")[0]
        assert body.count("np.exp(") == 1 and "_logsumexp" not in body
        assert "L_shifted = np.subtract(y, np.max(y, axis=2, keepdims=True), out=y)" in body
        assert body.index("np.take_along_axis(L_shifted") < body.index(
            "L_exp = np.exp(L_shifted, out=L_shifted)")
    assert "dL_dy = np.multiply(\n        L_exp," in body and "out=L_exp" in body
    assert "dL_dy = _minus_one_hot(dL_dy, t, " in body


def test_the_kept_mask_becomes_the_dtype_s_numbers_before_the_scale():
    """A Python number times booleans is a float64 array: the gradient's multiplier over
    [N, T, V] would then run in float64 in a float32 module."""
    text = Compilation.from_text(XENT.format(**XENT_CASES["ignored"]), dtype="float32").text
    assert "np.expand_dims(t_mask, 2).astype(DTYPE)" in text
