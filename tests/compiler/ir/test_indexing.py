"""Indexing, slicing, concat and stack (LANGUAGE.md, "Indexing, slicing and joining").

Each case is a spec ``loss L = sum(sin(E) * E)`` over parameters (every element of E gets
its own weight, so the whole vector-Jacobian product is exercised). The generated module
is checked against central differences of its own loss on every entry, and, when PyTorch
is installed, against the independent PyTorch oracle (tests/support/torch_oracle.py, float64).
Shapes of the grid: ranks 1-4, integer indices (negative too) dropping axes, slices with
steps (negative too) and omitted bounds, overlapping slices of one value and a value used
both sliced and whole, concat and stack on every axis, negative axes included.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bpc.compiler.ir import fmt_shape
from bpc.compiler.pipeline import compile_text
from bpc.runtime.gradcheck import format_table, gradcheck

HAVE_TORCH = importlib.util.find_spec("torch") is not None

SHAPES = {1: (5,), 2: (4, 5), 3: (3, 4, 5), 4: (2, 3, 4, 3)}
SUBSCRIPTS = {
    1: ["1", "-1", "1:4", "::2", "::-1", "-2:", ":3", "4:0:-2", "-1:-4:-1"],
    2: ["0", "-1", ":, 0", ":, -2", "1:3, ::2", "::-1, 1:", "-1, ::-2", "2:, :1", ":, 3:0:-1"],
    3: ["1", ":, -1", ":, :, 0", "::2, 1:3, ::-2", "-1, 0, 1:", ":, 1:2", "1:, ::-1, 4"],
    4: ["0", ":, 1", "1, ::2, -1", ":, :, :, ::-1", "-1, 1:, 0, 1:3", ":, ::-2, 2:, 0"],
}


def _build(text: str):
    name, source = compile_text(text, "idx.bp")
    ns: dict = {"__name__": f"bpc_generated_{name}"}
    exec(compile(source, f"<generated {name}>", "exec"), ns)
    return ns, source


class _Module:
    def __init__(self, ns):
        self.__dict__.update(ns)


def check_spec(text: str, seed: int = 0):
    """The generated module's gradients against central differences (every entry), and
    against PyTorch when it is installed."""
    ns, source = _build(text)
    rows = gradcheck(_Module(ns), samples=10**6, seed=seed, tol=1e-6)
    assert rows and all(r.ok for r in rows), "\n" + format_table(rows) + "\n" + source
    if HAVE_TORCH:
        from diffharness import differential

        differential(text, seed)  # raises Mismatch with the details
    return source


def _spec(params: dict, expr: str, extra: str = "") -> str:
    lines = [f"param {n} : {fmt_shape(s)} = normal(std=1)" for n, s in params.items()]
    lines += [extra, f"e = {expr}", "loss L = sum(sin(e) * e)"]
    return "\n".join(lines) + "\n"


CASES = [(r, s) for r, subs in SUBSCRIPTS.items() for s in subs]


@pytest.mark.parametrize("rank,sub", CASES, ids=[f"rank{r}[{s}]" for r, s in CASES])
def test_slices(rank, sub):
    shape = SHAPES[rank]
    np.empty(shape)[eval(f"np.s_[{sub}]")]  # the grid itself is valid NumPy
    check_spec(_spec({"a": shape}, f"a[{sub}]"))


@pytest.mark.parametrize("expr", [
    "a[0:3] * a[1:4] + a[::2][::-1]",         # overlapping slices of one value
    "a[1] * a + a[-1]",                      # one value used sliced and whole
    "a[:, 1] + a[:, 1] * a[:, -4]",          # the same element taken twice
    "tanh(a)[::-1, 2:] * a[:, :3]",          # a slice of a computed value
    "(a.T)[1:3].T + a[:, 1:3]",
], ids=["overlap", "sliced-and-whole", "repeated", "computed", "transposed"])
def test_overlapping_and_repeated_uses(expr):
    shape = (5,) if expr.startswith("a[0:3]") or expr.startswith("a[1]") else (4, 5)
    source = check_spec(_spec({"a": shape}, expr))
    assert "+=" in source  # the adjoints are added into one buffer


JOIN_CASES = [(r, k) for r in (1, 2, 3, 4) for k in range(-r, r)]


@pytest.mark.parametrize("rank,axis", JOIN_CASES, ids=[f"rank{r}-axis{k}" for r, k in JOIN_CASES])
def test_concat(rank, axis):
    shape = SHAPES[rank]
    other = tuple(2 if i == axis % rank else d for i, d in enumerate(shape))
    check_spec(_spec({"a": shape, "b": other}, f"concat([a, tanh(b), a], axis={axis})"))


STACK_CASES = [(r, k) for r in (0, 1, 2, 3) for k in range(-r - 1, r + 1)]


@pytest.mark.parametrize("rank,axis", STACK_CASES,
                         ids=[f"rank{r}-axis{k}" for r, k in STACK_CASES])
def test_stack(rank, axis):
    shape = SHAPES[rank] if rank else ()
    check_spec(_spec({"a": shape, "b": shape}, f"stack([a, b * a, tanh(b)], axis={axis})"))


def test_batch_axis_taken_whole():
    text = ("input x : [N, 5]\nparam W : [3, 2] = he\nparam V : [4, 2] = he\n"
            "h = concat([x[:, :3] @ W, x[:, ::-1][:, 1:] @ V], axis=-1)\n"
            "z = stack([h, tanh(h)], axis=1)\n"
            "loss L = mean(z[:, 1, ::2] * h[:, 1::2])\n")
    check_spec(text)


def test_stack_of_numbers_has_the_model_dtype():
    ns, source = _build("dtype float32\nparam a = 0.5\n"
                        "loss L = sum(stack([a, 2, 3]) * stack([1, 2, 3]))\n")
    assert "np.stack([1, 2, 3], axis=0, dtype=DTYPE)" in source
    loss, grads = ns["loss_and_grad"]({"a": np.float32(0.5)})
    assert grads["a"].dtype == np.float32 and grads["a"] == pytest.approx(1.0)


def test_readable_backward_of_a_slice():
    """The adjoint of a slice is written into the sliced positions of zeros, and the
    adjoint of concat is a slice of the joined value's adjoint."""
    text = ("input x : [N, 5]\nparam W : [3, 2] = he\nparam U : [2, 2] = he\n"
            "h = x[:, 1:4] @ W\n"
            "g = concat([h, x[:, :2] @ U], axis=1)\n"
            "loss L = sum(g[:, 0] * g[:, -1]) + sum(W[0])\n")
    source = check_spec(text)
    body = [line.strip() for line in source.split("# backward")[1].splitlines()]
    want = ["dL_dg = np.zeros_like(g)",
            "dL_dg[:, 0] += g[:, 3] * scale",
            "dL_dg[:, 3] += g[:, 0] * scale",
            "dL_dU = np.matmul(x[:, :2].T, dL_dg[:, 2:], out=grads.get(\"U\"))",
            "dL_dh = dL_dg[:, :2]",
            "dL_dW = x[:, 1:4].T @ dL_dh",
            "dL_dW[0] += scale"]
    got = [line for line in body if line and not line.startswith(("#", "del "))]
    assert got[:len(want)] == want, "\n".join(got)


def test_slice_adjoint_added_to_a_named_adjoint():
    """When the other contribution is a named array still in use, the slice's adjoint is
    added into a copy (the module's ``_index_add`` helper), never into that array."""
    text = ("param a : [4] = normal(std=1)\nc = a + 1\n"
            "loss L = sum(sin(c) * c) + sum(a[2:] * a[::-2])\n")
    source = check_spec(text)
    assert "_index_add(dL_dc, np.s_[2:], " in source


def test_identity_slices_are_the_value_itself():
    source = check_spec(_spec({"a": (2, 3)}, "a[:, :] + a[::1, 0:3] + concat([a])"))
    assert "a[" not in source.split("# forward")[1].split("# backward")[0]
