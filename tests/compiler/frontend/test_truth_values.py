"""A boolean is not a number: ``true`` and ``false`` are values only where an option
takes a truth value (``keepdims``, the ``shuffle`` setting). Everywhere a number is
accepted they are a located error with a hint, never silently 1 or 0."""

from __future__ import annotations

import pytest

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import compile_text

IMAGE = "input x : [N, 1, 4, 4]\n"
MATRIX = "input x : [N, 2]\n"
LOSS = "loss L = sum(y)\n"
# Every place a spec writes a number, with a truth value in it.
PLACES = {
    "dense_units": MATRIX + "layers x -> y {\n  dense true\n}\n" + LOSS,
    "repeat_count": MATRIX + "layers x -> y {\n  repeat true { dense 2 }\n}\n" + LOSS,
    "leaky_relu_alpha": MATRIX + "y = leaky_relu(x, alpha=true)\n" + LOSS,
    "leaky_relu_layer": MATRIX + "layers x -> y {\n  dense 2\n  leaky_relu(alpha=false)\n}\n"
                        + LOSS,
    "let": "let k = true\n" + MATRIX + "y = x * k\n" + LOSS,
    "let_arithmetic": "let k = true + 1\n" + MATRIX + "y = x * k\n" + LOSS,
    "let_power": "let k = 2 ^ false\n" + MATRIX + "y = x * k\n" + LOSS,
    "let_dimension": "let d = true\n" + MATRIX + "param W : [2, d] = he\ny = x @ W\n" + LOSS,
    "input_default": "input s = true\n" + MATRIX + "y = x * s\n" + LOSS,
    "param_literal": MATRIX + "param w : [2] = [true, 1]\ny = x * w\n" + LOSS,
    "axis": MATRIX + "y = sum(x, axis=true)\n" + LOSS,
    "concat_axis": MATRIX + "y = concat([x, x], axis=false)\n" + LOSS,
    "dropout_p": MATRIX + "y = dropout(x, true)\n" + LOSS,
    "dropout_layer": MATRIX + "layers x -> y {\n  dense 2\n  dropout false\n}\n" + LOSS,
    "batchnorm_momentum": MATRIX + "layers x -> y {\n  dense 2\n  batchnorm momentum=false\n}\n"
                          + LOSS,
    "conv_size": IMAGE + "layers x -> y {\n  conv 2 size=true\n}\n" + LOSS,
    "conv_pad": IMAGE + "layers x -> y {\n  conv 2 size=3 pad=true\n}\n" + LOSS,
    "pool_size": IMAGE + "y = max_pool(x, true)\n" + LOSS,
    "pool_layer_stride": IMAGE + "layers x -> y {\n  avgpool 2 stride=true\n}\n" + LOSS,
    "conv2d_stride": IMAGE + "param W : [2, 1, 1, 1] = he\ny = conv2d(x, W, stride=true)\n"
                     + LOSS,
    "reshape_dims": MATRIX + "y = reshape(x, [-1, true, 2])\n" + LOSS,
    "index": MATRIX + "y = x[:, true]\n" + LOSS,
    "expression": MATRIX + "y = x * true\n" + LOSS,
    "literal_in_expression": MATRIX + "y = x * [true, 2]\n" + LOSS,
    "param_value": MATRIX + "param w = true\ny = x * w\n" + LOSS,
    "dense_bias": MATRIX + "layers x -> y {\n  dense 2 bias=true\n}\n" + LOSS,
    "initializer_argument": MATRIX + "param W : [2, 2] = normal(std=true)\ny = x @ W\n" + LOSS,
    "constant_initializer": MATRIX + "param W : [2, 2] = constant(true)\ny = x @ W\n" + LOSS,
    "optimizer_setting": MATRIX + "y = x * 2\n" + LOSS + "optimizer sgd(lr=true)\n",
    "train_setting": MATRIX + "y = x * 2\n" + LOSS + "train { epochs = true }\n",
    "data_argument": MATRIX + "target t : [N]\nlayers x -> y { dense 3 }\n"
                     "loss L = softmax_cross_entropy(y, t)\ndata spiral(n=true)\n",
    "keepdims_number": MATRIX + "y = sum(x, axis=1, keepdims=2)\n" + LOSS,
    "shuffle_number": MATRIX + "y = x * 2\n" + LOSS + "train { shuffle = 1 }\n",
}


@pytest.mark.parametrize("name", PLACES)
def test_a_truth_value_is_not_a_number(name):
    with pytest.raises(SpecError) as info:
        compile_text(PLACES[name], "b.bp")
    rendered = info.value.render()
    assert rendered.startswith("b.bp:"), rendered
    assert "traceback" not in rendered.lower() and "internal" not in rendered.lower()
    first = rendered.splitlines()[0]
    assert "True" not in first and "False" not in first, rendered  # never Python's words
    # one located error, not a cascade after it (a refused stack's name is not unknown)
    assert rendered.count(": error: ") == 1, rendered


@pytest.mark.parametrize("text", [
    "y = sum(x, axis=1, keepdims=true)", "y = sum(x, axis=1, keepdims=false)",
    "y = mean(x, axis=0, keepdims=1)", "y = max(x, axis=1, keepdims=0)",
    "y = logsumexp(x, axis=1, keepdims=true)"])
def test_keepdims_takes_true_false_one_and_zero(text):
    compile_text(MATRIX + text + "\n" + LOSS, "k.bp")


def test_shuffle_takes_true_and_false():
    for v in ("true", "false"):
        compile_text(MATRIX + "y = x * 2\n" + LOSS + f"train {{ shuffle = {v} }}\n", "s.bp")


def test_a_let_named_true_is_a_number():
    """true and false are ordinary names: a let may take them (and is then a number)."""
    compile_text("let true = 2\n" + MATRIX + "y = x * true\n" + LOSS, "t.bp")


@pytest.mark.parametrize("value", ["True", "False", "[1, True]", "'2'", "None"])
def test_trace_at_takes_numbers_only(value):
    from bpc.runtime.errors import UserError
    from bpc.reports.trace import parse_at

    with pytest.raises(UserError, match="not a number or a list of numbers"):
        parse_at(f"x={value}")
    assert parse_at("x=[1, 2.5]")["x"].tolist() == [1.0, 2.5]
