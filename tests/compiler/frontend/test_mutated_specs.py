"""Mutated gallery specs: checking either succeeds or raises SpecError, never anything else.

The default run is bounded; set BPC_FUZZ_EXAMPLES=100000 for the long run.
"""

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import check_text
from conftest import SPECS

EXAMPLES = int(os.environ.get("BPC_FUZZ_EXAMPLES", "300"))
TEXTS = [p.read_text() for p in SPECS]
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.T|\*\*|->|\S")
ALPHABET = list("abcxyzNTW019_.-+*/@^=:,;()[]{}#\"' \n\t$!<>\\é") + [
    "input ", "param ", "loss ", "layers ", "repeat 2 {", "relu", "dense 3", "@", "^",
    "sum(", "axis=", "-1", "1e999", "[]", "scalar", "\"x.npz\"", ".T", "softmax(", "let "]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        tokens = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
        kind = draw(st.sampled_from(["delete_char", "insert", "replace_char", "delete_token",
                                     "duplicate_token", "swap_tokens", "replace_token"]))
        if kind in ("delete_char", "replace_char") and text:
            i = draw(st.integers(0, len(text) - 1))
            new = draw(st.sampled_from(ALPHABET)) if kind == "replace_char" else ""
            text = text[:i] + new + text[i + 1:]
        elif kind == "insert":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.sampled_from(ALPHABET)) + text[i:]
        elif tokens:
            a, b = tokens[draw(st.integers(0, len(tokens) - 1))]
            if kind == "delete_token":
                text = text[:a] + text[b:]
            elif kind == "duplicate_token":
                text = text[:b] + " " + text[a:b] + text[b:]
            elif kind == "replace_token":
                text = text[:a] + draw(st.sampled_from(ALPHABET)) + text[b:]
            else:
                c, d = tokens[draw(st.integers(0, len(tokens) - 1))]
                if (a, b) > (c, d):
                    a, b, c, d = c, d, a, b
                if b <= c:
                    text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
    return text


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
          suppress_health_check=list(HealthCheck))
@given(mutated())
def test_check_never_crashes(text):
    try:
        check_text(text, "fuzz.bp")
    except SpecError as e:
        rendered = e.render()
        assert rendered.startswith("fuzz.bp")
        assert "error:" in rendered
        assert "__ANON" not in rendered and "Token(" not in rendered
