"""Layer kinds as units (compiler/frontend/layers/): each unit's examples agree with the
PyTorch oracle, its documentation is what docs/LANGUAGE.md says, and desugaring numbers
and names a stack's layers by the counters the units declare."""

import re

import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.frontend import ast
from bpc.compiler.frontend.layers import BLOCKS, KINDS, LAYERS, UNITS, reference
from bpc.compiler.frontend.load import load_text
from conftest import REPO, UPDATE_GOLDEN
from diffharness import differential

LANGUAGE = REPO / "docs" / "LANGUAGE.md"
BEGIN = "<!-- layer kinds: each unit's DOC in compiler/frontend/layers/ (a test keeps this " \
        "current) -->\n"
END = "<!-- end of the layer kinds -->\n"

EXAMPLES = [pytest.param(example, id=f"{unit.__name__.rsplit('.', 1)[1]}: {example.layers}")
            for unit in UNITS for example in unit.EXAMPLES]


def spec(layers: str, input_shape: str = "[N, 4]") -> str:
    return (f"model example\ninput x : {input_shape}\nlayers x -> y {{ {layers} }}\n"
            "loss L = mean(y * y)\n")


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_agrees_with_the_oracle(example):
    pytest.importorskip("torch")  # the oracle; CI installs none
    differential(spec(example.layers, example.input), 0)


def test_the_language_reference_lists_the_units_documentation():
    """LANGUAGE.md's layer kinds are the units' DOC; BPC_UPDATE_GOLDEN=1 rewrites them."""
    text = LANGUAGE.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "docs/LANGUAGE.md lost its layer-kind markers"
    head, rest = text.split(BEGIN, 1)
    listed, tail = rest.split(END, 1)
    if UPDATE_GOLDEN:
        LANGUAGE.write_text(head + BEGIN + reference() + END + tail, encoding="utf-8")
        return
    assert listed == reference(), ("docs/LANGUAGE.md's layer kinds differ from the units' "
                                   "DOC; run this test with BPC_UPDATE_GOLDEN=1")


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.__name__.rsplit(".", 1)[1])
def test_every_kind_is_documented_and_exemplified_by_its_unit(unit):
    names = [k.name for k in getattr(unit, "KINDS", ())] \
        + [b.name for b in getattr(unit, "BLOCKS", ())]
    assert names, f"{unit.__name__} defines no kind"
    for name in names:
        assert re.search(rf"`[^`]*\b{name}\b[^`]*`", unit.DOC), f"'{name}' is not documented"
        assert any(re.search(rf"\b{name}\b", e.layers) for e in unit.EXAMPLES), \
            f"'{name}' has no example"


def test_the_registry_holds_each_word_once():
    words = [k.name for u in UNITS for k in getattr(u, "KINDS", ())]
    blocks = [b.name for u in UNITS for b in getattr(u, "BLOCKS", ())]
    assert len(words) == len(set(words)) == len(KINDS) == len(LAYERS)
    assert len(blocks) == len(set(blocks)) == len(BLOCKS)
    assert not set(words) & set(blocks)


def test_names_follow_the_counters_across_stacks():
    text = ("model names\ninput x : [N, 1, 6, 6]\n"
            "layers x -> h { conv 2 size=3; relu; maxpool 2; flatten; dense 4; batchnorm; "
            "dropout 0.5; residual { dense 4; tanh }; dense 3 }\n"
            "layers h -> y { dense 3; batchnorm; residual { dense 3 } }\n"
            "loss L = mean(y * y)\n")
    eqs = [st for st in load_text(text, "names.bp").statements if isinstance(st, ast.Equation)]
    assert [e.name for e in eqs] == ["a1", "z1", "p1", "f1", "a2", "bn1", "d2", "a3", "z3",
                                     "r1", "h", "a5", "bn2", "a6", "y", "L"]
    assert eqs[0].origin == "layer 'conv' of the stack x -> h"
    assert eqs[9].origin == ("residual block of the stack x -> h: its layers' output plus "
                             "its input")


def test_a_count_written_as_a_whole_float_is_that_count():
    """'dense 1e1', 'repeat 2.0' and 'size=2.0' are 10 units, 2 repeats and size 2, as
    written with integers; 2.5 and true are still located errors."""
    def spec(body: str) -> str:
        return ("model counts\ninput x : [N, 1, 4, 4]\ntarget t : [N, 1]\nlayers x -> y {\n"
                f"{body}\n  dense 1\n}}\nloss L = mse(y, t)\n")

    whole = spec("  conv 2 size=2.0; flatten\n  repeat 2.0 { dense 1e1; relu }")
    ints = spec("  conv 2 size=2; flatten\n  repeat 2 { dense 10; relu }")
    assert Compilation.from_text(whole).text == Compilation.from_text(ints).text
    for bad, message in (("dense 2.5", "'dense' units must be a positive integer, not 2.5"),
                         ("repeat 2.5 { dense 2 }", "'repeat' count must be a positive integer"),
                         ("conv 2 size=1.5", "'size' of 'conv' must be a whole number")):
        with pytest.raises(SpecError, match=re.escape(message)):
            load_text(spec(f"  flatten\n  {bad}" if "conv" not in bad else f"  {bad}"))
