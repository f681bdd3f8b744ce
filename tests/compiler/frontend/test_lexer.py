"""The Pygments lexer of .bp specs: the compiler's vocabulary, nothing left as an error."""

import pytest
from pygments import lex
from pygments.token import Comment, Error, Keyword, Name, Number, String

from bpc.compiler.frontend.lexer import BpLexer
from bpc.compiler.frontend.tokens import KEYWORDS
from conftest import SPECS


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_gallery_specs_lex_without_errors_and_round_trip(spec):
    text = spec.read_text()
    tokens = list(lex(text, BpLexer()))
    assert "".join(v for _, v in tokens) == text
    assert not [v for t, v in tokens if t in Error]
    assert any(t in Keyword and v == "model" for t, v in tokens)


def test_token_kinds():
    text = ('model m  # a comment\nlet K = 3\ninput x : [N, K]\nparam W : [K, 2] = he\n'
            'y = relu(x @ W.T) ^ 2e-3\nloss L = sum(y)\ndata "f.npz"\n'
            'layers h = x -> dense 4 relu\noptimizer adam(lr=0.1)\n')
    tokens = [(t, v) for t, v in lex(text, BpLexer()) if v.strip()]
    kinds = dict((v, t) for t, v in tokens)
    assert kinds["# a comment"] in Comment
    for word in ("model", "let", "input", "param", "loss", "data", "layers", "optimizer"):
        assert kinds[word] in Keyword, word
    for word in ("relu", "sum", "dense"):
        assert kinds[word] in Name.Builtin, word
    assert kinds["he"] in Name.Builtin and kinds["adam"] in Name.Builtin
    assert kinds["2e-3"] in Number and kinds["3"] in Number
    assert kinds['"f.npz"'] in String
    assert kinds["x"] is Name and kinds["W"] is Name
    assert kinds[".T"] not in Name  # the transpose is an operator, not a field


def test_vocabulary_is_the_parsers():
    text = "\n".join(KEYWORDS)
    assert all(t in Keyword for t, v in lex(text, BpLexer()) if v.strip())
    # a name that only starts like a keyword is a name
    assert [t for t, v in lex("models inputs", BpLexer()) if v.strip()] == [Name, Name]
    # 'sin' is a function only when called: as a variable it is a name
    assert [t for t, v in lex("sin = 1", BpLexer()) if v == "sin"] == [Name]
