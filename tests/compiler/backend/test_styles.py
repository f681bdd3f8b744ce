"""The two code styles: ``fast`` (buffers reused, what bpc train runs and generated/
holds) and ``textbook`` (one plain assignment per step, what show and explain print).

Both compute the same function: the textbook module is gradient-checked against finite
differences for every gallery spec and for random specs, and agrees with the fast one.
"""

import re
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bpc.compiler.pipeline import compile_file, compile_text
from conftest import SPECS, STYLE_TOL, run_bpc
from bpc.runtime.gradcheck import gradcheck
from bpc.runtime.modes import fixed_masks
from random_specs import plain_spec


def _module(source: str, name: str = "m") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our output
    return module


def _float64(source: str) -> str:
    return source.replace("DTYPE = np.float32", "DTYPE = np.float64")


def _outside_loops(body: str) -> str:
    """The text without the bodies of loops over time, whose ``+=`` is BPTT's sum over
    the steps as the book writes it (LANGUAGE.md, "Recurrences"), not a buffer reused."""
    return re.sub(r"\n    for \w+ in [^\n]*:(\n        [^\n]*)+", "", body)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_textbook_style_gradchecks_and_matches_fast(spec):
    _, text = compile_file(spec, style="textbook")
    _, fast = compile_file(spec, style="fast")
    assert compile_file(spec, style="textbook")[1] == text  # deterministic
    body = _outside_loops(text.split("def predict", 1)[1])
    for forbidden in ("out=", "del ", "+=", "-=", "*=", "grads=None", "can be released"):
        assert forbidden not in body, f"{spec.stem}: textbook code holds {forbidden!r}"
    tb, fm = _module(_float64(text), "tb"), _module(_float64(fast), "fast")
    # Batch norm over two examples makes every feature exactly +-1 whatever the weights
    # before it: their gradient is ~0 and a relative check says nothing. Four examples.
    rows = gradcheck(tb, samples=5, batch=4 if hasattr(tb, "STATE") else 2, seed=1)
    assert rows and all(r.ok for r in rows), [(r.name, r.max_rel, r.why) for r in rows]
    rng = np.random.default_rng(3)
    params = tb.init_params(rng)
    from bpc.runtime.datasets import synthetic

    data = synthetic(tb, np.random.default_rng(4), 4)
    l1, g1 = tb.loss_and_grad(params, **data, **fixed_masks(tb))  # the same masks
    l2, g2 = fm.loss_and_grad({k: v.copy() for k, v in params.items()}, **data,
                              **fixed_masks(fm))
    rtol, atol = STYLE_TOL[np.dtype(tb.DTYPE).name]
    assert l1 == pytest.approx(l2, rel=rtol, abs=atol)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=rtol, atol=atol)


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_scale_seeds_the_backward_pass(spec, style):
    """``loss_and_grad(..., scale=s)`` starts the backward pass from dL/dL = s: the same
    loss, every gradient s times the unscaled one (to rounding: the factor joins the
    first adjoint's scalar, not each gradient), in both styles."""
    m = _module(_float64(compile_file(spec, style=style)[1]))
    from bpc.runtime.datasets import synthetic

    params = m.init_params(np.random.default_rng(3))
    data = synthetic(m, np.random.default_rng(4), 4)
    l1, g1 = m.loss_and_grad(params, **data, **fixed_masks(m))  # masks and state afresh
    l2, g2 = m.loss_and_grad(params, **data, **fixed_masks(m), scale=-0.037)
    assert l2 == l1
    # Sums that cancel (a bias before batch norm: 0 but for rounding) round apart:
    # absolute to the largest gradient.
    size = max(float(np.max(np.abs(g), initial=0)) for g in g1.values())
    for k in g1:
        np.testing.assert_allclose(g2[k], -0.037 * g1[k], rtol=1e-10, atol=1e-12 * size)


def test_textbook_headers_are_never_repeated():
    _, text = compile_file("specs/digits.bp", style="textbook")
    backward = text.split("# backward", 1)[1]
    headers = [line.strip() for line in backward.splitlines()
               if line.strip().startswith("# ")]
    assert headers and len(headers) == len(set(headers)), headers


def test_fast_style_is_the_default_and_generated_holds_it():
    from pathlib import Path

    _, text = compile_file("specs/digits.bp")
    assert text == Path("generated/digits.py").read_text()
    assert "out=" in text or "del " in text  # the fast style does plan buffers


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(plain_spec())
def test_random_specs_textbook_style_matches_fast(spec):
    _, text = compile_text(spec.text(), "random.bp", style="textbook")
    _, fast = compile_text(spec.text(), "random.bp", style="fast")
    tb, fm = _module(text, "tb"), _module(fast, "fast")
    rng = np.random.default_rng(0)
    feeds, params = spec.feeds(rng), spec.param_values(rng)
    feeds = {k: v for k, v in feeds.items() if k in tb.INPUTS or k in tb.TARGETS}
    with np.errstate(all="ignore"):
        l1, g1 = tb.loss_and_grad({k: np.array(v) for k, v in params.items()}, **feeds)
        l2, g2 = fm.loss_and_grad({k: np.array(v) for k, v in params.items()}, **feeds)
    rtol, atol = STYLE_TOL[np.dtype(tb.DTYPE).name]
    np.testing.assert_allclose(l1, l2, rtol=rtol, atol=atol, equal_nan=True)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=rtol, atol=atol, equal_nan=True)


def test_cli_compile_style(tmp_path):
    r = run_bpc("compile", "specs/digits.bp", "--style", "textbook", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "digits.py").read_text()
    assert "bpc compile specs/digits.bp --style textbook" in text
    assert "out=" not in text.split("def predict", 1)[1]
    r = run_bpc("compile", "specs/digits.bp", "--style", "pretty", "-o", tmp_path)
    assert r.returncode == 2 and "--style" in r.stderr
    shown = run_bpc("show", "specs/digits.bp").stdout
    assert shown == text
    assert run_bpc("show", "specs/digits.bp", "--style", "fast").stdout == \
        open("generated/digits.py").read()


def test_fan_in_comment_quotes_the_spec_operands():
    """Not the placeholder 'W2 is used as x @ W2' when the spec says 'g1 @ W2'."""
    text = ("model m\ninput x : [N, 3]\nparam W1 : [3, 4] = he\nparam W2 : [4, 2] = he\n"
            "param V : [5, 2] = xavier\ng1 = relu(x @ W1)\ny = g1 @ W2\n"
            "u = V @ y.T\nloss L = sum(u^2)\n")
    _, code = compile_text(text, "m.bp", style="textbook")
    assert "W1 is used as x @ W1, so fan_in is its first dimension" in code
    assert "W2 is used as g1 @ W2, so fan_in is its first dimension" in code
    assert "V is used as V @ y.T, so fan_in is its second dimension" in code
    text = text.replace("y = g1 @ W2", "y = relu(x @ W1) @ W2")
    assert "W2 is used as (...) @ W2" in compile_text(text, "m.bp")[1]


LAM = ("model wd\nlet lam = 0.0001\nlet K = 3\ninput x : [N, K]\ntarget t : [N, 2]\n"
       "param W1 : [K, 4] = he\nparam W2 : [4, 2] = he\ng1 = relu(x @ W1)\ny = g1 @ W2\n"
       "loss L = mse(y, t) + lam * sum(W2^2) + lam * sum(W1^2)\n")


def test_textbook_keeps_let_constants_by_name():
    _, text = compile_text(LAM, "wd.bp", style="textbook")
    assert "\nlam = 0.0001\n" in text  # defined once, at module level
    assert "K = " not in text.split("def init_params")[0].split("CONFIG")[1]  # unused: none
    assert "dL_dW2 = 2 * lam * scale * W2 + g1.T @ dL_dy" in text
    assert "0.0002" not in text and "0.0001 *" not in text
    _, fast = compile_text(LAM, "wd.bp")
    code_lines = [ln for ln in fast.split("def init_params")[1].splitlines()
                  if not ln.strip().startswith("#")]
    assert "0.0002 * scale * W2" in fast and not any("lam" in ln for ln in code_lines)
    tb, fm = _module(text, "tb"), _module(fast, "fast")
    rng = np.random.default_rng(0)
    params = tb.init_params(rng)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    l1, g1 = tb.loss_and_grad(params, x, t)
    l2, g2 = fm.loss_and_grad({k: v.copy() for k, v in params.items()}, x, t)
    assert l1 == l2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    rows = gradcheck(tb, samples=5, batch=3)
    assert rows and all(r.ok for r in rows)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_no_forward_equation_is_quoted_twice_in_a_textbook_function(spec):
    _, text = compile_file(spec, style="textbook")
    _, lam = compile_text(LAM, "wd.bp", style="textbook")
    for source in (text, lam):
        # every function with a backward pass (a model with modes has one per mode)
        functions = [f for f in source.split("\n\n\ndef ") if "# backward" in f]
        assert functions
        for function in functions:
            backward = function.split("# backward", 1)[1]
            quoted = []
            for line in backward.splitlines():
                s = line.strip()
                if s.startswith("# ") and not s.startswith("#   "):  # not a rule's line
                    quoted += s[2:].split(" (")[0].split(" and ")  # not the rule after it
            assert len(quoted) == len(set(quoted)), quoted


def test_textbook_output_is_deterministic_across_hash_seeds(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    outs = []
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        d = tmp_path / seed
        subprocess.run([sys.executable, "-m", "bpc", "compile", "-q", "--style",
                        "textbook", "-o", str(d), *[str(p.relative_to(REPO)) for p in SPECS]],
                       cwd=REPO, env=env, check=True)
        outs.append({p.name: p.read_bytes() for p in d.glob("*.py")})
    assert outs[0] == outs[1] and len(outs[0]) == len(SPECS)
