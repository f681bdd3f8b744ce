"""The code generator writes black's style itself (compiler/backend/pyfmt.py); black is the oracle.

Every generated module must be exactly what black makes of it, and black must never run
on a whole module: checked on every gallery spec, on random specs, and piece by piece on
random data and statements.
"""

import keyword
import os

import black
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpc.compiler.backend import layout, pyfmt
from bpc.compiler.backend.codegen import generate
from bpc.compiler.pipeline import program_from_file, program_from_text
from conftest import SPECS
from random_specs import plain_spec

MODE = black.Mode(target_versions={black.TargetVersion.PY310})
EXAMPLES = int(os.environ.get("BPC_PROPERTY_EXAMPLES", "60"))


def black_format(text: str) -> str:
    return black.format_str(text, mode=MODE)


def assert_black_stable(text: str):
    assert black_format(text) == text


@pytest.fixture
def no_module_black(monkeypatch):
    """Fails a test that formats a whole module with black (only single statements of a
    shape pyfmt does not lay out itself may go through black)."""
    whole_module = layout.black

    def refuse(text):
        # layout.black_statement formats one statement wrapped in "def _():" (cached, so
        # only the first spec with a statement calls it): allowed
        if text.startswith("def _():\n"):
            return whole_module(text)
        raise AssertionError("black ran on the whole module")

    monkeypatch.setattr(layout, "black", refuse)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
@pytest.mark.parametrize("style", ["fast", "textbook"])
def test_gallery_modules_are_black_stable_without_running_black_on_them(spec, style,
                                                                         no_module_black):
    raw = generate(program_from_file(spec), str(spec), fmt=False, style=style)
    formatted = generate(program_from_file(spec), str(spec), style=style)
    assert not pyfmt.needs_black(formatted)
    assert formatted == black_format(raw)
    assert_black_stable(formatted)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(plain_spec())
def test_random_spec_modules_are_black_stable(spec):
    prog = program_from_text(spec.text(), "random.bp")
    formatted = generate(prog, "random.bp")
    assert_black_stable(formatted)
    assert formatted == black_format(generate(prog, "random.bp", fmt=False))


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


@given(st.text(max_size=20) | st.text(st.sampled_from("ab'\"\\\n\xe9"), max_size=8))
@settings(max_examples=500, deadline=None, derandomize=True)
def test_strings_are_quoted_as_black_quotes_them(s):
    line = f"z = {pyfmt.string(s)}\n"
    assert eval(pyfmt.string(s)) == s  # noqa: S307
    assert line.isascii()
    if len(line) <= 89:
        assert not pyfmt.needs_black(line)
        assert_black_stable(line)


CALL_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and not keyword.issoftkeyword(n))
ATOMS = st.one_of(CALL_NAMES, CALL_NAMES.map(lambda n: n + ".shape[0]"),
                  st.sampled_from(["1", "0.5", "(3, 1, 1)", "(3,)", "x[:, 1:]"]),
                  CALL_NAMES.map(lambda n: f'grads.get("{n}")'))
EXPRESSIONS = st.recursive(ATOMS, lambda e: st.one_of(
    st.tuples(e, st.sampled_from([" + ", " * ", " - ", " / ", " @ "]), e).map("".join),
    st.tuples(e, st.sampled_from([" + ", " * "]), e).map(lambda t: "(" + "".join(t) + ")"),
    st.tuples(st.sampled_from(["np.sum", "np.exp", "f"]), st.lists(e, min_size=1, max_size=3))
    .map(lambda t: f"{t[0]}({', '.join(t[1])})")), max_leaves=8)
ARGUMENTS = st.one_of(EXPRESSIONS, st.tuples(st.sampled_from(["out", "axis"]), EXPRESSIONS)
                      .map(lambda t: f"{t[0]}={t[1]}"))


@given(CALL_NAMES, st.sampled_from(["np.add", "np.multiply", "_index_add", "f"]),
       st.lists(ARGUMENTS, min_size=1, max_size=6), st.sampled_from([0, 4, 8]))
@settings(max_examples=400, deadline=None, derandomize=True)
def test_call_statements_are_split_as_black_splits_them(target, callee, args, indent):
    line = f"{target} = {callee}({', '.join(args)})"
    lines = pyfmt.call_statement(line, indent)
    if lines is None:  # a shape left to black
        return
    text = "".join(" " * i + "if True:\n" for i in range(0, indent, 4)) + "\n".join(lines)
    assert_black_stable(text + "\n")


OPERANDS = st.one_of(
    ATOMS, CALL_NAMES.map(lambda n: "-" + n),
    st.tuples(st.sampled_from(["np.sum", "-np.sum", "np.take_along_axis"]),
              st.lists(ATOMS, min_size=1, max_size=3))
    .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    st.lists(ATOMS, min_size=2, max_size=4).map(lambda a: "(" + " - ".join(a) + ")"))


@given(CALL_NAMES, st.sampled_from(["=", "+="]),
       st.lists(st.tuples(OPERANDS, st.sampled_from(["+", "-", "*", "/", "@"])), min_size=2,
                max_size=7), st.sampled_from([0, 4, 8]))
@settings(max_examples=400, deadline=None, derandomize=True)
def test_operator_statements_are_split_as_black_splits_them(target, op, terms, indent):
    expr = " ".join(f"{t} {o}" for t, o in terms)[:-2]
    lines = pyfmt.operator_statement(f"{target} {op} {expr}", indent)
    if lines is None:  # a shape left to black
        return
    text = "".join(" " * i + "if True:\n" for i in range(0, indent, 4)) + "\n".join(lines)
    assert_black_stable(text + "\n")


def test_a_long_fused_loss_is_laid_out_without_black(no_module_black, monkeypatch):
    """The one statement random specs still sent through black: a loss summing a fused
    cross-entropy that prints as one long expression."""
    monkeypatch.setattr(layout, "black_statement", lambda line, indent=4: pytest.fail(line))
    text = ("model rnd\ninput x : [N, 3]\ntarget t0 : [N]\nv1 = transpose(x)\n"
            "v4 = transpose(v1[0::2])\n"
            "loss L = sum(sin(v4)) + softmax_cross_entropy(v4, t0) + 0.5 * mean(v1)\n"
            "grad wrt x\n")
    prog = program_from_text(text, "r.bp")
    raw = generate(prog, "r.bp", fmt=False)
    assert any(len(line) > 88 for line in raw.splitlines())
    assert generate(prog, "r.bp") == black_format(raw)


@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12), min_size=1,
                max_size=4), st.sampled_from([4, 8]))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_calls_of_data_are_laid_out_as_black_lays_them_out(rows, indent):
    lines = pyfmt.call("np.array", [rows, pyfmt.Code("dtype=DTYPE")], indent, '"W": ', ",")
    text = "".join(" " * i + "if True:\n" for i in range(0, indent - 4, 4))
    text += " " * max(indent - 4, 0) + "z = {\n" + "\n".join(lines) + "\n" + \
        " " * max(indent - 4, 0) + "}\n"
    assert_black_stable(text)


def test_needs_black():
    assert not pyfmt.needs_black("x = 1\n# " + "c" * 100 + "\n")
    assert not pyfmt.needs_black('"""Doc\n' + "d" * 100 + '\n"""\n')
    assert pyfmt.needs_black('"""' + "d" * 100 + '"""\n')
    assert pyfmt.needs_black("x = " + "1 + " * 30 + "1\n")
    assert not pyfmt.needs_black('x = "a\\tb"\n')  # bpc's escapes are black's
    assert pyfmt.needs_black('x = "\u00e9"\n')


def test_a_module_with_wide_arrays_and_statements_is_laid_out_without_black(
        tmp_path, no_module_black):
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
