"""Every built-in function: its derived gradient against central finite differences.

Functions as a spec calls them, through the whole pipeline; the primitives they lower
to are checked one by one over their stanzas' examples in tests/test_op_examples.py.

Operands are parameters, so every argument is differentiated; the loss is
``sum(f(...) * r)`` with random weights ``r``, so the whole vector-Jacobian product is
exercised, not just its sum. Binary operators run over every broadcasting pair of the
shapes (), (3,), (2,3), (1,3), (2,1). Points within 1e-3 of a kink are re-drawn.
"""

import itertools

import numpy as np
import pytest

from bpc.compiler.errors import SpecError
from bpc.compiler.ir.functions import FUNCTIONS
from bpc.compiler.ir import fmt_shape
from bpc.compiler.pipeline import program_from_text
from bpc.compiler.ir.primitives import PRIMITIVES, broadcast_shapes
from bpc.compiler.ir import ShapeError
from gradcheck_ir import as_module, away_from_kinks, check

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]
TOL = 1e-6
TESTED_FUNCTIONS: set[str] = set()


def decl(shape):
    return fmt_shape(shape)


def run_case(params, expr, out_shape, positive=(), extra="", feeds=None, seed=0, r_shape=None):
    """Compile ``loss L = sum((expr) * r)`` and gradient-check it."""
    lines = [f"param {n} : {decl(s)} = zeros" for n, s in params.items()]
    lines.append(f"input r : {decl(out_shape)}")
    lines.append(extra)
    lines.append(f"loss L = sum(({expr}) * r)")
    prog = program_from_text("\n".join(lines) + "\n", "prim.bp")
    rng = np.random.default_rng(seed)
    for _ in range(50):
        values = {}
        for n, s in params.items():
            v = rng.normal(size=s)
            values[n] = np.abs(v) + 0.5 if n in positive else v
        data = {"r": rng.normal(size=r_shape or out_shape), **(feeds or {})}
        if away_from_kinks(prog, data, values):
            break
    else:
        pytest.fail("could not draw a point away from kinks")
    check(prog, data, values, tol=TOL)
    return prog


UNARY = ["exp", "log", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "softplus", "sqrt",
         "abs", "square", "sign"]


@pytest.mark.parametrize("fn", UNARY)
@pytest.mark.parametrize("shape", SHAPES, ids=fmt_shape)
def test_unary(fn, shape):
    TESTED_FUNCTIONS.add(fn)
    positive = ("a",) if fn in ("log", "sqrt") else ()
    run_case({"a": shape}, f"{fn}(a)", shape, positive)


@pytest.mark.parametrize("shape", SHAPES, ids=fmt_shape)
def test_leaky_relu_and_negation(shape):
    TESTED_FUNCTIONS.add("leaky_relu")
    run_case({"a": shape}, "leaky_relu(a, alpha=0.2)", shape)
    run_case({"a": shape}, "-a", shape)
    run_case({"a": shape}, "leaky_relu(a)", shape)


BINARY = {"+": "a + b", "-": "a - b", "*": "a * b", "/": "a / b", "^": "a ^ b",
          "maximum": "maximum(a, b)", "minimum": "minimum(a, b)"}
PAIRS = [(s, t) for s, t in itertools.product(SHAPES, SHAPES)]


def _broadcastable(s, t):
    try:
        return broadcast_shapes(s, t)
    except ShapeError:
        return None


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("s,t", PAIRS, ids=[f"{fmt_shape(s)}-{fmt_shape(t)}" for s, t in PAIRS])
def test_binary_broadcasting(op, s, t):
    TESTED_FUNCTIONS.update({"maximum", "minimum"} & {op})
    out = _broadcastable(s, t)
    text = BINARY[op]
    if out is None:
        with pytest.raises(SpecError, match="do not broadcast"):
            run_case({"a": s, "b": t}, text, s)
        return
    positive = {"/": ("b",), "^": ("a",)}.get(op, ())
    run_case({"a": s, "b": t}, text, out, positive)


@pytest.mark.parametrize("s,t", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                                 ((1, 3), (3, 1)), ((2, 4, 3), (3, 2)), ((2, 4, 3), (2, 3, 2)),
                                 ((2, 2, 4, 3), (2, 2, 3, 4)), ((2, 1, 4, 3), (3, 3, 2)),
                                 ((3, 2), (2, 2, 4)), ((1, 4, 3), (2, 3, 2)), ((2, 4, 3), (3,))],
                         ids=lambda s: fmt_shape(s))
def test_matmul(s, t):
    """NumPy's matmul, batch axes broadcast (and summed back in the gradient)."""
    out = np.matmul(np.zeros(s), np.zeros(t)).shape
    run_case({"a": s, "b": t}, "a @ b", out)


@pytest.mark.parametrize("s,t,message", [((2, 4, 3), (3, 3, 2), "batch axes"),
                                         ((3,), (2, 3, 2), "vector on the left"),
                                         ((2, 4, 3), (4, 2), "inner dimensions")])
def test_matmul_errors_name_both_operands(s, t, message):
    with pytest.raises(SpecError, match=message) as err:
        run_case({"a": s, "b": t}, "a @ b", ())
    assert f"'a' is {fmt_shape(s)}, 'b' is {fmt_shape(t)}" in str(err.value)


@pytest.mark.parametrize("expr,out", [("transpose(a, axes=[0, 2, 1, 3])", (2, 4, 3, 5)),
                                      ("transpose(a, axes=[3, 0, -2, 1])", (5, 2, 4, 3)),
                                      ("swapaxes(a, -1, -2)", (2, 3, 5, 4)),
                                      ("swapaxes(a, 0, 3)", (5, 3, 4, 2)),
                                      ("transpose(a, axes=[3, 2, 1, 0])", (5, 4, 3, 2)),
                                      ("swapaxes(swapaxes(a, 1, 2), 1, 2) @ b", (2, 3, 4, 2))])
def test_axis_moves(expr, out):
    TESTED_FUNCTIONS.update({"transpose", "swapaxes"})
    run_case({"a": (2, 3, 4, 5), "b": (5, 2)}, expr, out)


@pytest.mark.parametrize("axes", ["[0, 1]", "[0, 1, 1, 2]", "[0, 1, 2, 4]", "2"])
def test_transpose_axes_must_be_a_permutation(axes):
    with pytest.raises(SpecError, match="axis|axes"):
        run_case({"a": (2, 3, 4)}, f"transpose(a, axes={axes})", ())


@pytest.mark.parametrize("fn", ["sum", "mean", "max", "logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((2, 3, 4), 1), ((2, 3, 4), -1), ((2, 3, 2, 4), 2),
                                        ((2, 3, 2, 4), [1, 3]), ((2, 3, 2, 4), 0)])
def test_any_axis_of_rank_3_and_4(fn, shape, axis):
    rank, axes = len(shape), axis if isinstance(axis, list) else [axis]
    if fn in ("softmax", "log_softmax"):
        if len(axes) > 1:
            return
        out = shape
    else:
        out = tuple(d for i, d in enumerate(shape) if i not in {a % rank for a in axes})
    run_case({"a": shape}, f"{fn}(a, axis={axis})", out)


def _masked(x, keep, axis=-1):
    e = np.where(keep, np.exp(x - x.max(axis=axis, keepdims=True)), 0)
    total = e.sum(axis=axis, keepdims=True)
    return e / np.where(total > 0, total, 1)


@pytest.mark.parametrize("mask_shape,axis", [((4, 4), -1), ((2, 1, 1, 4), 3), ((2, 3, 4, 4), 2)])
def test_masked_softmax_with_a_row_masked_whole(mask_shape, axis):
    """Weight 0 where masked, rows masked whole all 0; the gradient is 0 there too,
    and nothing is NaN."""
    TESTED_FUNCTIONS.add("softmax")
    keep = np.random.default_rng(1).random(mask_shape) > 0.3
    keep[(0,) * (len(mask_shape) - 1)] = False  # a row, or a column for axis 2, masked whole
    prog = run_case({"a": (2, 3, 4, 4)}, f"softmax(a, axis={axis}, mask=m)", (2, 3, 4, 4),
                    extra=f"input m : {decl(mask_shape)}", feeds={"m": keep * 1.0})
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 4))
    loss, grads = as_module(prog).loss_and_grad({"a": x}, m=keep * 1.0, r=np.ones(x.shape))
    assert np.isfinite(loss) and np.isfinite(grads["a"]).all()
    masked = ~np.broadcast_to(keep, x.shape)
    assert not grads["a"][masked].any()


def test_causal_mask_from_a_symbolic_length():
    TESTED_FUNCTIONS.add("causal")
    x = np.random.default_rng(3).normal(size=(4, 3))
    run_case({"a": (3, 3)}, "softmax(x @ a @ x.T, mask=causal(T))", ("T", "T"),
             extra="input x : [T, 3]", feeds={"x": x}, r_shape=(4, 4))
    run_case({"a": (2, 3, 3)}, "softmax(a, mask=causal(3))", (2, 3, 3))


@pytest.mark.parametrize("expr,message", [("softmax(a, mask=m)", "must broadcast"),
                                          ("softmax(a, mask=causal(2.5))", "whole number"),
                                          ("softmax(a, mask=causal(a[0, 0, 0]))", "length")])
def test_mask_errors(expr, message):
    with pytest.raises(SpecError, match=message):
        run_case({"a": (2, 3, 3)}, expr, (2, 3, 3), extra="input m : [2, 3]")


@pytest.mark.parametrize("shape", [(2, 3), (3,), ()], ids=fmt_shape)
def test_transpose(shape):
    TESTED_FUNCTIONS.add("transpose")
    run_case({"a": shape}, "a.T", tuple(reversed(shape)))
    run_case({"a": shape}, "transpose(a)", tuple(reversed(shape)))
    if len(shape) == 2:
        run_case({"a": shape, "b": (2, 4)}, "a.T @ b", (3, 4))


REDUCTIONS = ["sum", "mean", "max", "logsumexp"]
AXES = [("", None), (", axis=0", (0,)), (", axis=1", (1,)), (", axis=-1", (-1,)),
        (", axis=[0, 1]", (0, 1)), (", axis=1, keepdims=1", "keep1")]


REDUCTION_CASES = [(fn, shape, text, axes) for fn in REDUCTIONS
                   for shape in [(2, 3), (3,), ()] for text, axes in AXES
                   if not (axes == "keep1" and len(shape) < 2)]  # keepdims case needs 2 axes


@pytest.mark.parametrize("fn,shape,axis_text,axes", REDUCTION_CASES,
                         ids=[f"{f}-{fmt_shape(s)}{t}" for f, s, t, _ in REDUCTION_CASES])
def test_reductions(fn, shape, axis_text, axes):
    TESTED_FUNCTIONS.add(fn)
    rank = len(shape)
    if axes == "keep1":
        out = (shape[0], 1)
    elif axes is None:
        out = ()
    elif any(not -rank <= a < rank for a in axes):
        with pytest.raises(SpecError, match="out of range"):
            run_case({"a": shape}, f"{fn}(a{axis_text})", ())
        return
    else:
        axes = {a % rank for a in axes}
        out = tuple(d for i, d in enumerate(shape) if i not in axes)
    run_case({"a": shape}, f"{fn}(a{axis_text})", out)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((2, 3), ""), ((2, 3), ", axis=0"), ((2, 3), ", axis=1"),
                                        ((3,), ""), ((1, 3), ", axis=-1")])
def test_normalisers(fn, shape, axis):
    TESTED_FUNCTIONS.add(fn)
    run_case({"a": shape}, f"{fn}(a{axis})", shape)


@pytest.mark.parametrize("target", [[3, 2], [6], [-1], [1, 6, 1], [2, 3]])
def test_reshape(target):
    TESTED_FUNCTIONS.add("reshape")
    out = tuple(6 if d == -1 else d for d in target)
    run_case({"a": (2, 3)}, f"reshape(a, {target}) * 2", out)


def test_reshape_with_symbolic_dimension():
    prog = run_case({"w": (6,)}, "reshape(x * w, [N, 2, 3])", ("N", 2, 3),
                    extra="input x : [N, 6]", feeds={"x": np.arange(24.0).reshape(4, 6)},
                    r_shape=(4, 2, 3))
    assert prog is not None


def test_reshape_size_mismatch():
    with pytest.raises(SpecError, match="changes the number of elements"):
        run_case({"a": (2, 3)}, "reshape(a, [4, 2])", (4, 2))


@pytest.mark.parametrize("shape,sub,out", [
    ((3,), "1", ()), ((3,), "-1", ()), ((3,), "::-1", (3,)), ((2, 3), ":, 1:", (2, 2)),
    ((2, 3), "-1, ::2", (2,)), ((2, 3), "1", (3,)), ((2, 3), "::-1, -1", (2,)),
    ((2, 3, 4), "1:, :, 3:0:-2", (1, 3, 2))])
def test_slice(shape, sub, out):
    run_case({"a": shape}, f"a[{sub}]", out)
    run_case({"a": shape}, f"a[{sub}] * a[{sub}] + a[{sub}]", out)  # adjoints accumulate


@pytest.mark.parametrize("shape,axis", [((3,), 0), ((3,), -1), ((2, 3), 0), ((2, 3), 1),
                                        ((2, 3), -2), ((2, 1, 3), 2)])
def test_concat(shape, axis):
    TESTED_FUNCTIONS.add("concat")
    k = axis % len(shape)
    out = tuple(3 * d if i == k else d for i, d in enumerate(shape))
    run_case({"a": shape, "b": shape}, f"concat([a, b * a, b], axis={axis})", out)


@pytest.mark.parametrize("shape,axis", [((), 0), ((3,), 0), ((3,), 1), ((3,), -1),
                                        ((2, 3), 1), ((2, 3), -3)])
def test_stack(shape, axis):
    TESTED_FUNCTIONS.add("stack")
    k = axis % (len(shape) + 1)
    out = shape[:k] + (2,) + shape[k:]
    run_case({"a": shape, "b": shape}, f"stack([a * b, b], axis={axis})", out)


def test_joining_shape_errors():
    with pytest.raises(SpecError, match="concat along axis 1 needs the other axes equal"):
        run_case({"a": (2, 3), "b": (3, 3)}, "concat([a, b], axis=1)", (2, 6))
    with pytest.raises(SpecError, match="stack needs values of one shape"):
        run_case({"a": (2, 3), "b": (3,)}, "stack([a, b])", (2, 2, 3))
    with pytest.raises(SpecError, match="axis 2 is out of range"):
        run_case({"a": (2, 3)}, "concat([a, a], axis=2)", (2, 6))


@pytest.mark.parametrize("fn", ["mse", "sse", "least_squares"])
@pytest.mark.parametrize("shape", [(2, 3), (3,), ()], ids=fmt_shape)
def test_regression_losses(fn, shape):
    TESTED_FUNCTIONS.add(fn)
    run_case({"a": shape, "b": shape}, f"{fn}(a, b)", ())


def test_regression_loss_values():
    prog = program_from_text("param y : [2] = zeros\ninput t : [2]\nloss L = mse(y, t)\n", "v.bp")
    from bpc.compiler.ir.evaluate import evaluate
    out = evaluate(prog, {"t": np.array([1.0, 3.0])}, {"y": np.array([0.0, 0.0])})
    assert out["L"] == pytest.approx(5.0)
    for fn, want in (("sse", 5.0), ("least_squares", 10.0)):
        p = program_from_text(f"param y : [2] = zeros\ninput t : [2]\nloss L = {fn}(y, t)\n",
                              "v.bp")
        got = evaluate(p, {"t": np.array([1.0, 3.0])}, {"y": np.zeros(2)})["L"]
        assert got == pytest.approx(want)


def test_cross_entropy_of_probabilities():
    TESTED_FUNCTIONS.add("cross_entropy")
    onehot = np.eye(3)[[0, 2]]
    run_case({"a": (2, 3)}, "cross_entropy(softmax(a), t)", (), extra="input t : [2, 3]",
             feeds={"t": onehot})


@pytest.mark.parametrize("kind", ["onehot", "labels"])
@pytest.mark.parametrize("shape", [(4, 3), (3,)], ids=fmt_shape)
def test_softmax_cross_entropy(kind, shape):
    TESTED_FUNCTIONS.add("softmax_cross_entropy")
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 3, size=shape[:-1])
    if kind == "onehot":
        t, tshape = np.eye(3)[classes], shape
    else:
        t, tshape = classes, shape[:-1]
    run_case({"a": shape}, "softmax_cross_entropy(a, t)", (),
             extra=f"target t : {decl(tshape)}", feeds={"t": t})


def test_softmax_cross_entropy_matches_the_definition():
    from bpc.compiler.ir.evaluate import evaluate
    logits = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    labels = np.array([1, 2])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    want = -np.mean(np.log(p[[0, 1], labels]))
    for tdecl, t in (("[N]", labels), ("[N, 3]", np.eye(3)[labels])):
        prog = program_from_text(f"input a : [N, 3]\ntarget t : {tdecl}\nparam w = 1.0\n"
                                 "loss L = softmax_cross_entropy(w * a, t)\n", "x.bp")
        got = evaluate(prog, {"a": logits, "t": t}, {"w": np.array(1.0)})
        assert got["L"] == pytest.approx(want)
        dw = got[prog.grads["w"]]
        assert dw == pytest.approx(np.sum((p - np.eye(3)[labels]) * logits) / 2)


@pytest.mark.parametrize("shape", [(4, 1), (4,), (4, 3)], ids=fmt_shape)
def test_sigmoid_cross_entropy(shape):
    TESTED_FUNCTIONS.add("sigmoid_cross_entropy")
    t = (np.random.default_rng(2).random(shape) > 0.5).astype(float)
    run_case({"a": shape}, "sigmoid_cross_entropy(a, t)", (), extra=f"target t : {decl(shape)}",
             feeds={"t": t})


def test_stable_for_large_logits():
    from bpc.compiler.ir.evaluate import evaluate
    prog = program_from_text("param a : [2] = zeros\ninput t : [2]\n"
                             "loss L = softmax_cross_entropy(a, t) + "
                             "sigmoid_cross_entropy(a, t)\n", "s.bp")
    out = evaluate(prog, {"t": np.array([1.0, 0.0])}, {"a": np.array([1000.0, -1000.0])})
    assert np.isfinite(out["L"]) and np.all(np.isfinite(out[prog.grads["a"]]))


# Convolution and pooling (the IR's own rules, against finite differences; the
# generated code and PyTorch are compared in tests/test_conv.py).
CONV_CASES = [  # x shape, W shape, stride, pad
    ((2, 1, 5, 5), (1, 1, 3, 3), 1, 0),
    ((2, 2, 6, 5), (3, 2, 2, 3), 1, 1),  # non-square kernel and image, C, F > 1
    ((1, 3, 7, 7), (2, 3, 3, 3), 2, 1),  # stride 2 with padding
    ((2, 2, 4, 6), (2, 2, 4, 2), 2, 0),
]


def _conv_out(x, w, stride, pad):
    return (x[0], w[0], (x[2] + 2 * pad - w[2]) // stride + 1,
            (x[3] + 2 * pad - w[3]) // stride + 1)


@pytest.mark.parametrize("x, w, stride, pad", CONV_CASES, ids=str)
def test_conv2d(x, w, stride, pad):
    TESTED_FUNCTIONS.add("conv2d")
    run_case({"x": x, "W": w}, f"conv2d(x, W, stride={stride}, pad={pad})",
             _conv_out(x, w, stride, pad))


POOL_CASES = [  # x shape, size, stride, pad
    ((2, 2, 4, 4), 2, 2, 0),  # the usual: windows tile the image
    ((1, 2, 5, 5), 3, 1, 1),  # overlapping windows with padding
    ((2, 5, 8), 2, 3, 0),  # gaps between windows; a rank-3 value
    ((3, 4), 2, 1, 1),  # a matrix: its two axes are pooled
]


@pytest.mark.parametrize("fn", ["max_pool", "avg_pool"])
@pytest.mark.parametrize("x, size, stride, pad", POOL_CASES, ids=str)
def test_pooling(fn, x, size, stride, pad):
    TESTED_FUNCTIONS.add(fn)
    out = x[:-2] + tuple((d + 2 * pad - size) // stride + 1 for d in x[-2:])
    run_case({"x": x}, f"{fn}(x, {size}, stride={stride}, pad={pad})", out)


@pytest.mark.parametrize("x", [(2, 3), (2, 3, 4), (1, 2, 3, 2)], ids=str)
def test_flatten(x):
    TESTED_FUNCTIONS.add("flatten")
    size = 1
    for d in x[1:]:
        size *= d
    run_case({"x": x}, "flatten(x)", (x[0], size))


@pytest.mark.parametrize("shape", [(3,), (2, 3), (4, 5)], ids=fmt_shape)
def test_dropout_with_fixed_masks(shape):
    """Training mode; the evaluator draws every evaluation's masks from a generator seeded
    with 0, so finite differences see one fixed mask."""
    TESTED_FUNCTIONS.add("dropout")
    run_case({"a": shape}, "dropout(a, 0.4) + dropout(a * a, 0.5)", shape)


@pytest.mark.parametrize("shape", [(3, 4), (5, 1), (2, 3, 2, 2)], ids=fmt_shape)
def test_batch_norm_in_training_mode(shape):
    """Batch statistics (training mode): the gradient flows through mu and var too."""
    TESTED_FUNCTIONS.add("batch_norm")
    c = shape[1]
    states = f"state m : [{c}] = zeros\nstate v : [{c}] = ones"
    run_case({"a": shape, "g": (c,), "be": (c,)}, "batch_norm(a, g, be, m, v)", shape,
             extra=states)


@pytest.mark.parametrize("shape", [(3, 4), (5, 1), (2, 3, 4)], ids=fmt_shape)
def test_layer_norm(shape):
    """Each row over its last axis: the gradient flows through its mean and variance."""
    TESTED_FUNCTIONS.add("layer_norm")
    d = shape[-1]
    run_case({"a": shape, "g": (d,), "be": (d,)}, "layer_norm(a, g, be, eps=1e-3)", shape)


@pytest.mark.parametrize("fn", ["masked_mean", "masked_max"])
def test_masked_pooling(fn):
    """Over the steps of [2, 3, 2] a 0/1 mask keeps (a sequence without a real step is
    tested in test_sequence_functions.py: its padded steps tie, a kink of max)."""
    TESTED_FUNCTIONS.add(fn)
    run_case({"a": (2, 3, 2)}, f"{fn}(a, k)", (2, 2), extra="input k : [2, 3]",
             feeds={"k": np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])})


def test_positional_encodings():
    """A learned table's first T rows (T the data's) get the gradient; a sinusoidal table
    added alongside is a constant."""
    TESTED_FUNCTIONS.update({"first_rows", "sinusoidal"})
    run_case({"P": (5, 3)}, "x * first_rows(P, T) + sinusoidal(T, 3)", ("N", "T", 3),
             extra="input x : [N, T, 3]", feeds={"x": np.ones((2, 4, 3))}, r_shape=(2, 4, 3))


@pytest.mark.parametrize("how", ["", ", causal=true", ", keys=k", ", mask=causal(3), keys=k"])
def test_attention_and_heads(how):
    """Heads split from a [2, 3, 4] sequence, attended over (masked or not) and merged:
    the gradient reaches q, k and v through the scores, the softmax and the product."""
    TESTED_FUNCTIONS.update({"attention", "split_heads", "merge_heads"})
    heads = "attention(split_heads(a, 2), split_heads(b, 2), split_heads(c, 2)" + how + ")"
    run_case({"a": (2, 3, 4), "b": (2, 3, 4), "c": (2, 3, 4)}, f"merge_heads({heads})",
             (2, 3, 4), extra="input k : [2, 3]",
             feeds={"k": np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])})


def test_stop_gradient():
    """stop_gradient(a) * b: the value a * b; the gradient of b is that of c * b with c a
    constant input equal to a (finite differences of that spec), and a gets none."""
    TESTED_FUNCTIONS.add("stop_gradient")
    from bpc.compiler.ir.evaluate import evaluate

    rng = np.random.default_rng(3)
    a, b, r = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    stopped = program_from_text("param a : [2, 3] = zeros\nparam b : [2, 3] = zeros\n"
                                "input r : [2, 3]\nloss L = sum(stop_gradient(a) * b * r)\n", "sg.bp")
    held = run_case({"b": (2, 3)}, "c * b", (2, 3), extra="input c : [2, 3]",
                    feeds={"c": a})
    got = evaluate(stopped, {"r": r}, {"a": a, "b": b})
    want = evaluate(held, {"r": r, "c": a}, {"b": b})
    assert np.isclose(got["L"], np.sum(a * b * r))
    assert np.allclose(got["dL_db"], want["dL_db"]) and np.allclose(got["dL_db"], a * r)
    assert np.all(got.get("dL_da", 0) == 0)


@pytest.mark.parametrize("ids", [[[0, 2, 2], [3, 0, 2]], [1, 1, 1], 2])
def test_embed_picks_rows_and_adds_the_gradients_of_repeated_ids(ids):
    TESTED_FUNCTIONS.add("embed")
    ids = np.array(ids)
    run_case({"E": (4, 3)}, "embed(ids, E)", ids.shape + (3,),
             extra=f"input ids : {decl(ids.shape)}",
             feeds={"ids": ids})


def test_embed_takes_ids_from_an_input_only():
    with pytest.raises(SpecError, match="embed picks rows by integer ids, so its first "
                                        "argument must be an input"):
        program_from_text("input x : [N, 2]\nparam E : [4, 3] = zeros\n"
                          "loss L = sum(embed(x * 2, E))\n", "e.bp")


def test_every_function_is_tested():
    # Runs last in this module (pytest keeps file order).
    assert set(FUNCTIONS) <= TESTED_FUNCTIONS, set(FUNCTIONS) - TESTED_FUNCTIONS


def test_every_differentiable_primitive_has_a_rule_text():
    for p in PRIMITIVES.values():
        if p.vjp is not None and p.name not in ("input", "param", "const"):
            assert p.rule, p.name
