"""Convolution, pooling and flatten in generated modules: finite differences of the
generated code, PyTorch float64 (when installed), the readable backward (golden text),
image data, and a short end-to-end training run of the gallery's conv net.

The default run covers a small grid; ``BPC_CONV_GRID=1`` runs every combination of
strides, paddings, kernel and image shapes, channels and filters.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import check_file, check_text, compile_text
from conftest import GOLDEN, REPO, check_golden, run_bpc
from bpc.runtime.gradcheck import format_table, gradcheck

try:
    import torch  # noqa: F401  (the independent oracle; not installed in CI)
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
FULL = os.environ.get("BPC_CONV_GRID") == "1"


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _spelled(v):
    """A window setting as a spec writes it: 2, or [1, 2] (rows, columns)."""
    return str(v) if isinstance(v, int) else f"[{v[0]}, {v[1]}]"


def _out(hw, kernel, stride, pad):
    """The output's (height, width) by PyTorch's rule (floor), None if a window does
    not fit the padded image."""
    spans = [(n + 2 * p - k, s) for n, k, s, p in zip(hw, _pair(kernel), _pair(stride),
                                                       _pair(pad))]
    return None if min(s for s, _ in spans) < 0 else tuple(s // t + 1 for s, t in spans)


def conv_grid():
    """(C, F, H, W, KH, KW, stride, pad): stride and pad a number or (rows, columns);
    windows that leave the image's last rows or columns out too."""
    if FULL:
        combos = itertools.product((1, 3), (1, 2), (5, 6, 7), (4, 7), (1, 2, 3), (2, 3),
                                   (1, 2, 3, (1, 2)), (0, 1, 2, (2, 0)))
    else:
        combos = [(1, 1, 5, 5, 3, 3, 1, 0), (2, 3, 6, 5, 2, 3, 1, 1), (3, 2, 7, 7, 3, 3, 2, 1),
                  (2, 2, 5, 7, 1, 3, 2, 2), (2, 2, 7, 6, 5, 3, (1, 2), (2, 1)),
                  (1, 2, 8, 7, 3, 3, 2, 0), (1, 1, 6, 9, 2, 4, (3, 2), (0, 1))]
    return [c for c in combos if _out(c[2:4], c[4:6], c[6], c[7])]


def pool_grid():
    """(fn, rank, H, W, size, stride, pad), each setting a number or (rows, columns);
    pad < size."""
    if FULL:
        combos = itertools.product(("max_pool", "avg_pool"), (3, 4), (4, 5, 6), (4, 6, 7),
                                   (1, 2, 3, (3, 2)), (1, 2, 3, (2, 1)), (0, 1))
    else:
        combos = [("max_pool", 4, 4, 6, 2, 2, 0), ("max_pool", 4, 5, 5, 3, 1, 1),
                  ("avg_pool", 3, 6, 4, 2, 2, 1), ("avg_pool", 4, 5, 7, 3, 2, 0),
                  ("max_pool", 3, 5, 7, 2, 3, 0), ("max_pool", 4, 7, 6, (3, 2), (2, 1), (1, 0)),
                  ("avg_pool", 3, 7, 7, 2, 2, 0), ("max_pool", 4, 9, 8, (4, 1), (2, 3), 0),
                  ("avg_pool", 4, 7, 10, (2, 3), (3, 2), (1, 0))]
    return [c for c in combos if all(p < k for p, k in zip(_pair(c[6]), _pair(c[4])))
            and _out(c[2:4], c[4], c[5], c[6])]


def conv_spec(c, f, h, w, kh, kw, s, p, dtype="float64"):
    oh, ow = _out((h, w), (kh, kw), s, p)
    return f"""model conv
dtype {dtype}
input x : [N, {c}, {h}, {w}]
target r : [N, {f}, {oh}, {ow}]
param W : [{f}, {c}, {kh}, {kw}] = he
param b : [{f}, 1, 1] = zeros
a = conv2d(x, W, stride={_spelled(s)}, pad={_spelled(p)}) + b
loss L = sum(tanh(a) * r)
grad wrt x
"""


def pool_spec(fn, rank, h, w, size, s, p):
    lead = "N, 2" if rank == 4 else "N"
    oh, ow = _out((h, w), size, s, p)
    return f"""model pool
input x : [{lead}, {h}, {w}]
target r : [{lead}, {oh}, {ow}]
param u : [{h}, {w}] = normal
y = {fn}(x * u, {_spelled(size)}, stride={_spelled(s)}, pad={_spelled(p)})
loss L = sum(y * r)
grad wrt x
"""


def build(text):
    """The generated module for ``text`` (compiled and executed in memory)."""
    from types import SimpleNamespace

    name, source = compile_text(text, "conv.bp")
    ns: dict = {"__name__": f"bpc_generated_{name}"}
    exec(compile(source, f"<generated {name}>", "exec"), ns)
    return SimpleNamespace(**ns)


def finite_differences(text, seed=0):
    """The generated module's gradients against its own loss, by central differences."""
    mod = build(text)
    rng = np.random.default_rng(seed)
    n = 2
    data = {}
    for name, shape in {**mod.INPUTS, **mod.TARGETS}.items():
        data[name] = rng.normal(size=tuple(n if isinstance(d, str) else d for d in shape))
    params = {k: rng.normal(size=s) for k, s in mod.PARAMS.items()}
    rows = gradcheck(mod, eps=1e-6, tol=1e-6, samples=40, seed=seed, data=data,
                     params=params)
    assert all(r.ok for r in rows), "\n" + format_table(rows) + "\n" + text


def against_torch(text, seeds=(0, 1, 2)):
    from diffharness import Skip, differential  # imports torch: only when installed

    ran = 0
    for seed in seeds:
        try:
            differential(text, seed)
            ran += 1
        except Skip:
            continue
    assert ran, "every drawn point sat on a tie"


@pytest.mark.parametrize("case", conv_grid(), ids=str)
def test_conv2d_generated_code_against_finite_differences(case):
    finite_differences(conv_spec(*case))


@needs_torch
@pytest.mark.parametrize("case", conv_grid(), ids=str)
def test_conv2d_generated_code_against_torch(case):
    against_torch(conv_spec(*case))


@needs_torch
def test_conv2d_float32_against_torch():
    against_torch(conv_spec(2, 3, 6, 5, 2, 3, 1, 1, dtype="float32"))


@pytest.mark.parametrize("case", pool_grid(), ids=str)
def test_pooling_generated_code_against_finite_differences(case):
    finite_differences(pool_spec(*case))


@needs_torch
@pytest.mark.parametrize("case", pool_grid(), ids=str)
def test_pooling_generated_code_against_torch(case):
    against_torch(pool_spec(*case))


STACK = """model stack
input x : [N, 2, 8, 8]
target t : [N]
layers x -> y {
  conv 3 size=3 pad=1
  tanh
  avgpool 2
  conv 4 size=2 stride=2 bias=none
  sigmoid
  maxpool 2 stride=1
  flatten
  dense 5
}
loss L = softmax_cross_entropy(y, t)
grad wrt x
"""


def test_layer_stack_against_finite_differences():
    finite_differences(STACK.replace("target t : [N]", "target t : [N, 5]")
                       .replace("softmax_cross_entropy(y, t)", "sum(y * t)"))


@needs_torch
def test_layer_stack_against_torch():
    against_torch(STACK)


def test_conv_layer_names_shapes_and_fan_in():
    from bpc.compiler.pipeline import program_from_text

    prog = program_from_text(STACK, "stack.bp")
    shapes = {b.name: b.node.shape for b in prog.params}
    assert shapes == {"W1": (3, 2, 3, 3), "b1": (3, 1, 1), "W2": (4, 3, 2, 2),
                      "W3": (4, 5), "b3": (5,)}
    assert [b.name for b in prog.forward] == ["a1", "z1", "p1", "a2", "z2", "p2", "f2", "y",
                                              "L"]
    assert prog.inits["W1"].fan_in == 2 * 3 * 3 and prog.inits["W2"].fan_in == 3 * 2 * 2
    assert "C*KH*KW" in prog.inits["W1"].note


GOLDEN_SPEC = """model small_conv
input x : [N, 1, 6, 6]
target t : [N]
layers x -> y {
  conv 2 size=3
  relu
  maxpool 2
  flatten
  dense 3
}
loss L = softmax_cross_entropy(y, t)
grad wrt x
"""


def test_readable_conv_backward_golden():
    """The exact generated text: im2col kept for the backward, the filters' gradient as a
    product with the patch matrix, the input's adjoint folded back by col2im, the
    pooling adjoint from its argmax mask, the bias's gradient as one sum, each under the
    forward line it differentiates."""
    _, source = compile_text(GOLDEN_SPEC, "small_conv.bp")
    check_golden(GOLDEN / "stages" / "small_conv.code.txt", source)
    for text in ("a1_col = _im2col(x, 3, 3, stride=1, pad=0)",
                 "np.reshape(np.reshape(W1, (2, 9)) @ a1_col, (-1, 2, 4, 4))",
                 "dL_dW1 = np.reshape(", "_col2im(", "_max_pool_grad(",
                 "dL_db1 = np.reshape(np.sum(dL_da1, axis=(0, 2, 3)), b1.shape)",
                 "def _im2col(", "def _col2im("):
        assert text in source, text
    assert source.count("def _im2col(") == 1
    assert "_avg_pool" not in source  # helpers only when used


@pytest.mark.parametrize("text, message", [
    ("a = conv2d(x, W)", "conv2d channels differ"),
    ("a = conv2d(x, V)", "conv2d needs an image batch"),
    ("a = conv2d(x, W9)", "window's height (9) is larger than the padded input's"),
    ("a = conv2d(x, W9, pad=[1, 0])", "window's width (9) is larger than the padded input's"),
    ("a = max_pool(x, 2, pad=2)", "must be smaller than its size"),
    ("a = max_pool(x, [3, 2], pad=[1, 2])", "pad ([1, 2]) must be smaller than its size "
                                            "([3, 2])"),
    ("a = max_pool(x, [2, 3, 4])", "'size' must be a whole number >= 1 or a list [rows, "
                                   "columns] of two, not [2, 3, 4]"),
    ("a = avg_pool(x, 2, stride=[1, 0])", "'stride' must be a whole number >= 1 or a list"),
    ("a = conv2d(x, W2, stride=0)", "'stride' must be a whole number >= 1"),
    ("a = flatten(s)", "flatten needs a value with at least two axes"),
])
def test_shape_errors_are_located(text, message):
    spec = f"""input x : [N, 1, 8, 8]
input s : [N]
param W : [4, 3, 3, 3] = he
param W2 : [4, 1, 3, 3] = he
param W9 : [4, 1, 9, 9] = he
param V : [3, 3] = he
{text}
loss L = sum(a)
"""
    with pytest.raises(SpecError) as info:
        compile_text(spec, "e.bp")
    rendered = info.value.render()
    assert message in rendered, rendered
    assert rendered.startswith("e.bp:7:")
    assert "traceback" not in rendered.lower()


WARNINGS = sorted((GOLDEN / "warnings").glob("*.bp"))


@pytest.mark.parametrize("case", WARNINGS, ids=[c.stem for c in WARNINGS])
def test_windows_that_leave_pixels_out_compile_with_a_located_warning(case, monkeypatch):
    """PyTorch's rule (floor): the rows and columns past the last window are left out,
    and a warning names them, the value and the window (golden text)."""
    monkeypatch.chdir(case.parent)
    warnings = check_file(case.name).warnings
    assert warnings and all("are never read" in w or "is never read" in w for w in warnings)
    check_golden(case.with_suffix(".warn"), "\n".join(warnings) + "\n")


def test_padding_left_out_is_no_warning():
    """6 + 2*1 - 3 = 5 at stride 2 leaves the padded image's last row and column out:
    padding only, every pixel is read."""
    assert check_text("input x : [N, 6, 6]\np = avg_pool(x, 3, stride=2, pad=1)\n"
                      "loss L = sum(p)\n").warnings == []


@pytest.mark.parametrize("op", ["max_pool", "avg_pool", "maxpool", "avgpool"])
def test_max_and_average_pooling_refuse_a_window_of_padding_alike(op):
    """A pad as large as the window makes a window of padding alone (-inf or zeros);
    both poolings, as functions and as layers, refuse it the same way, located, with a
    hint, and accept every smaller pad."""
    for size, stride, pad in itertools.product((1, 2, 3), (1, 2), (0, 1, 2, 3, 4)):
        if "_" in op:
            text = f"input x : [N, 1, 8, 8]\np = {op}(x, {size}, stride={stride}, pad={pad})\n"
        else:
            text = (f"input x : [N, 1, 8, 8]\nlayers x -> p {{\n  {op} {size} "
                    f"stride={stride} pad={pad}\n}}\n")
        text += "loss L = sum(p)\n"
        if pad < size:
            compile_text(text, "e.bp")
            continue
        with pytest.raises(SpecError) as info:
            compile_text(text, "e.bp")
        rendered = info.value.render()
        assert rendered.startswith("e.bp:") and "traceback" not in rendered.lower()
        assert f"pad ({pad}) must be smaller than its size ({size})" in rendered, rendered
        assert f"hint: use a pad from 0 to {size - 1}" in rendered, rendered


def test_dense_after_an_image_asks_for_flatten():
    spec = ("input x : [N, 1, 8, 8]\ntarget t : [N]\nlayers x -> y {\n  conv 2 size=3\n"
            "  dense 10\n}\nloss L = softmax_cross_entropy(y, t)\n")
    with pytest.raises(SpecError) as info:
        compile_text(spec, "e.bp")
    assert "put a 'flatten' layer before it" in info.value.render()


def test_conv_layer_needs_an_image_batch():
    spec = ("input x : [N, 64]\ntarget t : [N]\nlayers x -> y {\n  conv 2 size=3\n"
            "  flatten\n  dense 10\n}\nloss L = softmax_cross_entropy(y, t)\n")
    with pytest.raises(SpecError) as info:
        compile_text(spec, "e.bp")
    assert "a conv layer needs an image batch [N, C, H, W], but 'x' is [N, 64]" \
        in info.value.render()


# ----------------------------------------------------------------------------- data
def _module(text):
    return build(text)


def test_builtin_digits_arrive_as_images():
    pytest.importorskip("sklearn")
    from bpc.runtime import data

    mod = _module((REPO / "specs" / "convnet_digits.bp").read_text())
    ds = data.load({"name": "digits"}, mod, seed=0)
    assert ds.train["x"].shape[1:] == (1, 8, 8) and ds.test["x"].shape[1:] == (1, 8, 8)
    flat = data.load({"name": "digits"}, _module(
        "input x : [N, 64]\ntarget t : [N]\nparam W : [64, 10] = zeros\n"
        "loss L = softmax_cross_entropy(x @ W, t)\n"), seed=0)
    assert np.array_equal(ds.train["x"].reshape(len(ds.train["x"]), -1), flat.train["x"])


def test_npz_flat_rows_are_reshaped_with_one_note(tmp_path):
    from bpc.runtime import data

    mod = _module("input x : [N, 1, 4, 3]\ntarget t : [N]\nparam W : [12, 2] = zeros\n"
                  "loss L = softmax_cross_entropy(flatten(x) @ W, t)\n")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 12))
    np.savez(tmp_path / "d.npz", x=x, t=np.arange(5) % 2, test_x=x[:2], test_t=[0, 1])
    ds = data.load(str(tmp_path / "d.npz"), mod)
    assert ds.train["x"].shape == (5, 1, 4, 3) and ds.test["x"].shape == (2, 1, 4, 3)
    assert np.array_equal(ds.train["x"][3, 0], x[3].reshape(4, 3))
    assert ds.notes == ["'x' in d.npz holds flat rows of 12 values; reshaped to "
                        "[N, 1, 4, 3] as the spec declares (row-major, as NumPy's reshape)"]
    stored = data.load(str(tmp_path / "d.npz"), mod)  # images stored as images: no note
    np.savez(tmp_path / "i.npz", x=x.reshape(5, 1, 4, 3), t=np.arange(5) % 2)
    assert data.load(str(tmp_path / "i.npz"), mod).notes == [] and stored.notes


def test_npz_image_of_the_wrong_size_names_the_array(tmp_path):
    from bpc.runtime import data
    from bpc.runtime.errors import UserError

    mod = _module("input x : [N, 1, 4, 3]\ntarget t : [N]\nparam W : [12, 2] = zeros\n"
                  "loss L = softmax_cross_entropy(flatten(x) @ W, t)\n")
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 13)), t=np.arange(5) % 2)
    ds = data.load(str(tmp_path / "d.npz"), mod)
    with pytest.raises(UserError) as info:
        data.conform(ds.train, mod, "training data (d.npz)")
    assert "'x' has shape (5, 13), but the spec declares [N, 1, 4, 3]" in str(info.value)


# ----------------------------------------------------------------------------- end to end
def test_convnet_digits_trains_from_the_command_line(tmp_path):
    pytest.importorskip("sklearn")
    out = run_bpc("train", REPO / "specs" / "convnet_digits.bp", "--epochs", "2",
                  "--out", tmp_path / "run", timeout=300)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    acc = float(last.split("test_acc ")[1].split("%")[0])
    assert acc > 80, last  # two epochs: well on the way to the gallery's 98.6%


def test_gallery_conv_specs_gradcheck_stats_and_graph(tmp_path):
    for spec in ("convnet_digits.bp", "simple_convnet.bp"):
        g = run_bpc("gradcheck", REPO / "specs" / spec, "--batch", "2")
        assert g.returncode == 0 and "ok: all" in g.stdout, g.stdout + g.stderr
    s = run_bpc("stats", REPO / "specs" / "convnet_digits.bp", "--batch", "4")
    assert s.returncode == 0 and "a1" in s.stdout and "p1" in s.stdout, s.stdout + s.stderr
    gr = run_bpc("graph", REPO / "specs" / "convnet_digits.bp", "--values")
    # The patch matrix and the filters' reshape fold into the layer the user wrote, and
    # 4-D values are summarised by shape and norm.
    assert gr.returncode == 0 and 'label="conv"' in gr.stdout, gr.stderr
    assert "im2col" not in gr.stdout and "16×8×8" in gr.stdout and "norm" in gr.stdout
