"""Buffer planning never writes into memory that another live value views.

The fast style computes an elementwise operation in place (``out=``, ``+=``) into an
operand it believes dead. Every operation whose result may share memory with an argument
(``Primitive.views``: reshape, flatten, slices, transposes, ``stop_gradient``, an alias,
and the patch matrix of a 1x1 convolution at stride 1, which is its input reshaped) must
keep that argument alive while the result is: a grid of specs takes each such view of a
value ``e``, keeps the view for the backward pass (a parameter's gradient reads it), then
applies each in-place-eligible operation to ``e`` (and, the other way round, to the view
while ``e`` is kept). The fast module must agree with the textbook one (which writes
nothing in place), with finite differences, and with the PyTorch oracle where installed.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import compile_text
from bpc.runtime.datasets import synthetic
from bpc.runtime.gradcheck import gradcheck
from conftest import STYLE_TOL
from random_specs import random_spec

# name -> (input declaration, parameter declarations, the view of e, a scalar from v and
# the parameter: the parameter's gradient reads v, so v is kept for the backward).
IMAGE = "input x : [N, 2, 4, 4]"
MATRIX = "input x : [N, 4]"
VIEWS = {
    "conv1x1": (IMAGE, "param W : [3, 2, 1, 1] = he", "conv2d(e, W)", "sum(tanh(v))"),
    "conv1x1_pad_none_stride1_3ch": (IMAGE, "param W : [2, 2, 1, 1] = he", "conv2d(e, W)",
                                     "sum(v * v)"),
    "conv_kernel_is_image": (IMAGE, "param W : [3, 2, 4, 4] = he", "conv2d(e, W)",
                             "sum(tanh(v))"),
    "conv_kernel_full_height": (IMAGE, "param W : [3, 2, 4, 1] = he", "conv2d(e, W)",
                                "sum(tanh(v))"),
    "conv_kernel_full_width": (IMAGE, "param W : [3, 2, 1, 4] = he", "conv2d(e, W)",
                               "sum(tanh(v))"),
    "conv1x1_stride3": (IMAGE, "param W : [3, 2, 1, 1] = he", "conv2d(e, W, stride=3)",
                        "sum(tanh(v))"),
    "conv3x3": (IMAGE, "param W : [3, 2, 3, 3] = he", "conv2d(e, W)", "sum(tanh(v))"),
    "reshape": (IMAGE, "param P : [32, 3] = he", "reshape(e, [-1, 32])", "sum(tanh(v @ P))"),
    "reshape_rows": (MATRIX, "param P : [2, 2] = he", "reshape(e, [-1, 2, 2])",
                     "sum(tanh(v * P))"),
    "flatten": (IMAGE, "param P : [32, 3] = he", "flatten(e)", "sum(tanh(v @ P))"),
    "slice_channel": (IMAGE, "param P : [4, 4] = he", "e[:, 1]", "sum(tanh(v * P))"),
    "slice_steps": (IMAGE, "param P : [2, 2] = he", "e[:, 0, 1:3, ::2]", "sum(tanh(v * P))"),
    "slice_columns": (MATRIX, "param P : [2, 3] = he", "e[:, 1:3]", "sum(tanh(v @ P))"),
    "transpose": (MATRIX, "param P : [3, 4] = he", "e.T", "sum(tanh(P @ v))"),
    "transpose_call": (MATRIX, "param P : [3, 4] = he", "transpose(e)", "sum(tanh(P @ v))"),
    "transpose_then_slice": (MATRIX, "param P : [3, 2] = he", "e.T[1:3]",
                             "sum(tanh(P @ v))"),
    "slice_then_reshape": (IMAGE, "param P : [16, 3] = he", "reshape(e[:, 1], [-1, 16])",
                           "sum(tanh(v @ P))"),
    "stop_gradient": (MATRIX, "param P : [4] = he", "stop_gradient(e)", "sum(tanh(v * P))"),
    "alias": (MATRIX, "param P : [4] = he", "e", "sum(tanh(v * P))"),
    "concat_of_one": (MATRIX, "param P : [4] = he", "concat([e], axis=1)",
                      "sum(tanh(v * P))"),
}
# Operations on e after the view, each of which the fast style may compute in place
# into e (e itself is not needed by their backward).
IN_PLACE = {
    "add_const": "{a} + 1", "add_input": "{a} + {x}", "sub": "{a} - {x}",
    "mul_const": "{a} * 3", "div_const": "{a} / 2", "neg": "-{a}", "relu": "relu({a})",
    "exp": "exp({a})", "tanh": "tanh({a})", "sigmoid": "sigmoid({a})", "abs_": "abs({a})",
    "maximum": "maximum({a}, {x})",
}


def spec_viewed_then_written(view: str, op: str) -> str:
    """e is viewed (v, kept for the backward), then e is the dead operand of ``op``."""
    decl, param, expr, use = VIEWS[view]
    q = IN_PLACE[op].format(a="e", x="x")
    return (f"model m\n{decl}\n{param}\ne = x * 2\nv = {expr}\nq = {q}\n"
            f"loss L = {use} + sum(q * q)\n")


def spec_written_through_view(view: str, op: str) -> str:
    """e is kept for the backward (its product with the parameter Q), its view v is the
    dead operand of ``op`` (an in-place write into v would overwrite e)."""
    decl, _, expr, _ = VIEWS[view]
    q_shape = "[4]" if decl == MATRIX else "[4, 4]"
    if "conv2d" in expr:
        return ""  # a convolution's result is its own array; its patches are read only
    q = IN_PLACE[op].format(a="v", x="0.5")
    return (f"model m\n{decl}\nparam Q : {q_shape} = he\ne = x * 2\nk = e * Q\n"
            f"v = {expr}\nq = {q}\n"
            f"loss L = sum(tanh(k)) + sum(q * q)\n")


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("m")
    exec(compile(source, "<m>", "exec"), module.__dict__)  # noqa: S102 - our output
    return module


def _agree(text: str) -> None:
    fast = _module(compile_text(text, "m.bp", style="fast")[1])
    book = _module(compile_text(text, "m.bp", style="textbook")[1])
    rng = np.random.default_rng(0)
    params = book.init_params(rng)
    data = synthetic(book, np.random.default_rng(1), 3)
    l1, g1 = book.loss_and_grad({k: v.copy() for k, v in params.items()}, **data)
    l2, g2 = fast.loss_and_grad({k: v.copy() for k, v in params.items()}, **data)
    rtol, atol = STYLE_TOL[np.dtype(book.DTYPE).name]
    assert l2 == pytest.approx(l1, rel=rtol), text
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=rtol, atol=atol, err_msg=text)
    np.testing.assert_allclose(fast.predict(params, **{k: data[k] for k in fast.INPUTS}),
                               book.predict(params, **{k: data[k] for k in book.INPUTS}),
                               rtol=rtol, atol=atol, err_msg=text)
    rows = gradcheck(fast, samples=6, batch=2, seed=2)
    assert rows and all(r.ok for r in rows), (text, [(r.name, r.max_rel, r.why) for r in rows])


GRID = [(v, o) for v in VIEWS for o in IN_PLACE]


@pytest.mark.parametrize("view,op", GRID, ids=[f"{v}-{o}" for v, o in GRID])
def test_in_place_write_never_lands_in_a_kept_view(view, op):
    _agree(spec_viewed_then_written(view, op))


THROUGH = [(v, o) for v in VIEWS for o in IN_PLACE if spec_written_through_view(v, o)]


@pytest.mark.parametrize("view,op", THROUGH, ids=[f"{v}-{o}" for v, o in THROUGH])
def test_in_place_write_into_a_view_never_lands_in_its_kept_base(view, op):
    _agree(spec_written_through_view(view, op))


@pytest.mark.parametrize("view", ["conv1x1", "conv_kernel_is_image", "reshape",
                                  "slice_steps", "transpose_then_slice", "alias"])
def test_against_the_torch_oracle(view):
    pytest.importorskip("torch")
    from diffharness import differential

    for op in ("add_const", "relu", "mul_const"):
        differential(spec_viewed_then_written(view, op), seed=0)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(random_spec(5))
def test_random_image_specs_fast_matches_textbook(spec):
    """The rich generator (convolutions with 1x1 and full-size kernels, pooling, slices,
    reshapes, layer stacks): the fast module computes what the textbook one does."""
    try:
        fast = _module(compile_text(spec.text(), "r.bp", style="fast")[1])
    except SpecError:
        return
    book = _module(compile_text(spec.text(), "r.bp", style="textbook")[1])
    params = book.init_params(np.random.default_rng(0))
    data = synthetic(book, np.random.default_rng(1), 3)
    with np.errstate(all="ignore"):
        l1, g1 = book.loss_and_grad({k: v.copy() for k, v in params.items()}, **data)
        l2, g2 = fast.loss_and_grad({k: v.copy() for k, v in params.items()}, **data)
    rtol, atol = STYLE_TOL[np.dtype(book.DTYPE).name]
    np.testing.assert_allclose(l2, l1, rtol=rtol, atol=atol, equal_nan=True)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=spec.text())
