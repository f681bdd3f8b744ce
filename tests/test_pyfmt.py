"""The code generator writes black's style itself (compiler/backend/pyfmt.py); black is the oracle.

Whenever ``needs_black`` says a module can skip black, black must leave it unchanged:
checked on every gallery spec, on random specs, and piece by piece on random data.
"""

import keyword
import os

import black
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpc.compiler.backend import pyfmt
from bpc.compiler.backend.codegen import generate
from bpc.compiler.pipeline import program_from_file, program_from_text
from conftest import SPECS
from specgen import random_spec

MODE = black.Mode(target_versions={black.TargetVersion.PY310})
EXAMPLES = int(os.environ.get("BPC_PROPERTY_EXAMPLES", "60"))


def black_format(text: str) -> str:
    return black.format_str(text, mode=MODE)


def assert_black_stable(text: str):
    assert black_format(text) == text


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_gallery_modules_are_black_stable_without_black(spec):
    raw = generate(program_from_file(spec), str(spec), fmt=False)
    if pyfmt.needs_black(raw):
        assert generate(program_from_file(spec), str(spec)) == black_format(raw)
    else:
        assert_black_stable(raw)


def test_most_gallery_modules_skip_black():
    # The point of writing black's style: a compile that does not import black. Only a
    # code line wider than 88 columns (spiral's take_along_axis loss) still needs it.
    skipped = [p.stem for p in SPECS
               if not pyfmt.needs_black(generate(program_from_file(p), str(p), fmt=False))]
    assert len(skipped) >= len(SPECS) - 1, skipped


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(random_spec())
def test_random_spec_modules_are_black_stable_when_black_is_skipped(spec):
    raw = generate(program_from_text(spec.text(), "random.bp"), "random.bp", fmt=False)
    if not pyfmt.needs_black(raw):
        assert_black_stable(raw)


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and not keyword.issoftkeyword(n))
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
SCALARS = st.one_of(st.integers(-10**12, 10**12), TEXT, st.booleans(), st.none(),
                    st.floats(allow_nan=False, allow_infinity=False))
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.lists(inner, min_size=1, max_size=6).map(tuple),
                            st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=40)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(DATA, NAMES, st.sampled_from([0, 4, 8]))
def test_literals_are_laid_out_as_black_lays_them_out(value, name, indent):
    lines = pyfmt.literal(value, indent, f"{name} = ")
    # Inside nested blocks when indented, as in a function body.
    text = "".join(" " * i + "if True:\n" for i in range(0, indent, 4)) + "\n".join(lines) + "\n"
    if not pyfmt.needs_black(text):
        assert_black_stable(text)
    namespace: dict = {}
    exec(compile(text, "<literal>", "exec"), namespace)  # noqa: S102
    assert namespace[name] == value


BASES = ["x", "x.T", "np.e", "2", "0.5", "1e-08", "(a + b)", "f(x)", "x[0]", "(-x)",
         "x_1.shape"]
EXPONENTS = BASES + ["-1", "-x", "-(1)", "-x.T"]  # a base is never negated unbracketed


@given(st.sampled_from(BASES), st.sampled_from(EXPONENTS))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_power_spacing_matches_black(base, exponent):
    line = f"z = {pyfmt.power(base, exponent)}\n"
    assert_black_stable(line)


@given(st.lists(st.one_of(NAMES, NAMES.map(lambda n: f"{n}=1.5"), st.just("*")),
                min_size=1, max_size=14, unique=True), NAMES,
       st.sampled_from(["", " -> float", " -> tuple[float, dict[str, np.ndarray]]"]))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_definitions_are_split_as_black_splits_them(params, name, returns):
    if params == ["*"] or params[-1] == "*":
        params = [p for p in params if p != "*"] or ["x"]
    if params[0] == "*":
        params = ["x", *params]
    lines = pyfmt.definition(name, params, returns)
    assert_black_stable("\n".join(lines) + "\n    pass\n")


@given(st.text(max_size=20))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_strings_are_quoted_as_black_quotes_them(s):
    line = f"z = {pyfmt.string(s)}\n"
    assert eval(pyfmt.string(s)) == s  # noqa: S307
    if not pyfmt.needs_black(line):
        assert_black_stable(line)


def test_needs_black():
    assert not pyfmt.needs_black("x = 1\n# " + "c" * 100 + "\n")
    assert not pyfmt.needs_black('"""Doc\n' + "d" * 100 + '\n"""\n')
    assert pyfmt.needs_black('"""' + "d" * 100 + '"""\n')
    assert pyfmt.needs_black("x = " + "1 + " * 30 + "1\n")
    assert pyfmt.needs_black('x = "a\\tb"\n')
    assert pyfmt.needs_black('x = "\u00e9"\n')


def test_a_module_with_an_over_wide_line_goes_through_black(tmp_path):
    row = ", ".join(f"0.{i + 1}23456789" for i in range(8))
    text = ("model wide\ninput x : [N, 8]\ntarget y : [N, 1]\n"
            f"param W : [8, 1] = [{'; '.join(row.split(', '))}]\n"
            "param v : [8] = [" + row + "]\n"
            "loss L = mean((x @ W + sum(v) - y)^2)\n")
    prog = program_from_text(text, "wide.bp")
    raw = generate(prog, "wide.bp", fmt=False)
    assert pyfmt.needs_black(raw)
    formatted = generate(prog, "wide.bp")
    assert formatted == black_format(raw) and formatted != raw
    assert max(len(line) for line in formatted.splitlines()) <= 88
