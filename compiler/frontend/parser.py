"""Parsing: ``.bp`` text -> ``ast.Spec``, with syntax errors a person can act on.

The grammar is ``grammar/bp.lark`` (LALR(1), basic lexer, so keywords are reserved);
its tables ship with bpc (``tables``). ``parse`` runs Lark with the post-lexer of
``tokens``, turns its errors into located diagnostics (``syntax_errors``), bounds what
the rest of the compiler is given (number literals, nesting) and builds the AST
(``to_ast``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, VisitError

from . import ast
from ..errors import Diagnostic, Span, SpecError
from ..limits import MAX_MAGNITUDE, MAX_NESTING, MAX_NUMBER_CHARS
from .syntax_errors import bracket_diag, syntax_error
from .to_ast import ToAst, number_value
from .tokens import BracketError, PostLexer, tok_span


def _grammar_text() -> str:
    repo_copy = Path(__file__).resolve().parents[2] / "grammar" / "bp.lark"
    if repo_copy.is_file():
        return repo_copy.read_text()
    # Installed (non-editable): the grammar ships as the package ``bpc.compiler._grammar``.
    from importlib import resources

    return resources.files("bpc.compiler._grammar").joinpath("bp.lark").read_text()


_LARK_OPTIONS = dict(parser="lalr", lexer="basic", propagate_positions=True,
                     maybe_placeholders=True)


def _build_lark(grammar: str, cache: str | bool, postlex: PostLexer | None = None) -> Lark:
    return Lark(grammar, postlex=postlex or PostLexer(), cache=cache, **_LARK_OPTIONS)


@functools.lru_cache(maxsize=1)
def _lark() -> tuple[Lark, PostLexer]:
    from . import tables

    post = PostLexer()
    grammar = _grammar_text()
    # The tables shipped with bpc, when they are for this grammar and this Lark; else
    # built here, every time. Never Lark's own cache: it unpickles a file from a folder
    # anyone with the user's rights can write (and only then checks its hash).
    parser = tables.load(grammar, postlex=post)
    if parser is None:
        parser = _build_lark(grammar, False, post)
    return parser, post


def parse(text: str, path: str = "<spec>") -> ast.Spec:
    """Parse spec text; raise ``SpecError`` for any syntax problem."""
    parser, post = _lark()
    try:
        tree = parser.parse(text + "\n")
    except BracketError as e:
        raise SpecError(bracket_diag(e, path), text) from None
    except UnexpectedInput as e:
        raise SpecError(syntax_error(e, post, text, path), text) from None
    problem = _over_limits(tree, path)
    if problem is not None:
        raise SpecError(problem, text)
    try:
        spec = ToAst(path).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, SpecError):
            raise SpecError(e.orig_exc.diagnostics, text) from None
        raise
    spec.source = text
    if not spec.statements:
        raise SpecError(Diagnostic(
            "the spec is empty", Span.whole_file(path),
            hint="a spec needs at least a 'loss NAME = EXPR' statement; see the gallery "
                 "in specs/ for complete examples"), text)
    return spec


# ----------------------------------------------------------------------------- limits
# Syntax-tree levels per level of nesting: a call takes two, an operator one.
_TREE_LEVELS = 2 * MAX_NESTING + 8


def _over_limits(tree: Tree, path: str) -> Diagnostic | None:
    """The first number literal or nesting the rest of the compiler must not be given
    (docs/LANGUAGE.md, "Limits"), found without recursion; None when all is well."""
    stack: list[tuple[Tree | Token, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if node is None:  # an optional part that is absent
            continue
        if isinstance(node, Token):
            if node.type == "NUMBER":
                problem = _number_problem(str(node))
                if problem:
                    return Diagnostic(problem, tok_span(node, path),
                                      "see 'Limits' in docs/LANGUAGE.md")
            continue
        if depth > _TREE_LEVELS:
            first = next((t for t in node.scan_values(lambda v: isinstance(v, Token))), None)
            span = tok_span(first, path) if first is not None else Span.whole_file(path)
            return Diagnostic(
                f"this expression nests too deeply (the limit is {MAX_NESTING} calls or "
                f"brackets inside one another, or {2 * MAX_NESTING} chained operators)",
                span, "name some of the parts with their own statements "
                      "('h1 = ...', then use h1)")
        stack.extend((c, depth + 1) for c in reversed(node.children))
    return None


def _number_problem(text: str) -> str | None:
    if len(text) > MAX_NUMBER_CHARS:
        return (f"this number has {len(text)} characters; the limit is {MAX_NUMBER_CHARS}")
    try:
        value = number_value(text)
    except (ValueError, OverflowError):
        return "this number cannot be read"
    if isinstance(value, int) and value >= MAX_MAGNITUDE:
        return "this number is too large: the limit is 2^1024 (about 1.8e308)"
    return None
