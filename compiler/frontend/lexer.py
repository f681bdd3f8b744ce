"""A Pygments lexer for ``.bp`` specs (``bpc explain`` highlights specs with it).

Its vocabulary is the compiler's own: the keywords of ``tokens.KEYWORDS``, the built-in
functions of ``functions.FUNCTIONS``, the layer kinds of ``layers``, the initializers and
optimizers of ``vocab``; the token shapes (numbers, strings, comments) are the grammar's.
So a word the language learns is highlighted without touching this file.

Registered with Pygments through the ``pygments.lexers`` entry point as ``bpc`` (also
``bpc-spec``): ``pygmentize -l bpc spec.bp``, ``get_lexer_by_name("bpc")``, or
```` ```bpc ```` in Markdown. The alias ``bp`` stays with Pygments' Soong lexer, which
claims only files named exactly ``Android.bp``; any other ``*.bp`` file is ours (an exact
file name outranks a glob in Pygments' choice, so Android.bp keeps its lexer).
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String
from pygments.token import Text, Whitespace


def _vocabulary() -> tuple[list[str], ...]:
    from ..ir.functions import FUNCTIONS
    from .tokens import CONTEXTUAL_KEYWORDS, KEYWORDS
    from .layers import LAYERS
    from ..vocab import INITIALIZERS, INIT_ALIASES, OPTIMIZERS

    keywords = sorted(KEYWORDS)
    layers = sorted(LAYERS)  # words of a layers block
    functions = sorted(set(FUNCTIONS) - set(layers))  # called: name(
    others = sorted((set(INITIALIZERS) | set(INIT_ALIASES) | set(OPTIMIZERS))
                    - set(layers) - set(functions))
    return keywords, sorted(CONTEXTUAL_KEYWORDS), layers, functions, others


_KEYWORDS, _CONTEXTUAL, _LAYER_WORDS, _FUNCTIONS, _OTHERS = _vocabulary()


class BpLexer(RegexLexer):
    """Highlights bpc's model specification language."""

    name = "bpc spec"
    aliases = ["bpc", "bpc-spec"]
    filenames = ["*.bp"]
    mimetypes = ["text/x-bpc"]

    tokens = {
        "root": [
            (r"\n", Whitespace),
            (r"[ \t\f\r]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (words(_KEYWORDS, suffix=r"\b"), Keyword),
            # 'state m : …' declares; 'state = …' is an equation defining a name
            (words(_CONTEXTUAL, suffix=r"\b(?=[ \t]+[A-Za-z_])"),
             Keyword),
            (words(_LAYER_WORDS, suffix=r"\b"), Name.Builtin),
            (words(_FUNCTIONS, suffix=r"\b(?=\s*\()"), Name.Builtin),
            (words(_OTHERS, suffix=r"\b"), Name.Builtin.Pseudo),
            (r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", Number),
            (r"\.T(?![A-Za-z0-9_])", Operator),
            (r"->|\*\*|[-+*/^@=]", Operator),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"[:,;()\[\]{}]", Punctuation),
            (r".", Text),  # anything else (an error the checker reports) stays visible
        ],
    }
