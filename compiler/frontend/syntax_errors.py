"""Lark's syntax errors -> located ``file:line:col: error:`` diagnostics with hints.

Lark reports "unexpected token"; the post-lexer (``tokens``) remembers the statement
being written, so the message can be about it: dangling operators, missing ``=``/``:``,
unknown statement keywords, keywords used as names, missing operators, unclosed
brackets, characters the language does not use, and so on.
"""

from __future__ import annotations

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import Diagnostic, Note, Span, did_you_mean
from .layers import LAYERS
from .tokens import (BRACKET_CHAR, CLOSERS, KEYWORD_OF_TERMINAL, OPENERS, OPERATORS,
                     STATEMENT_KEYWORDS, TERMINAL_TEXT, VALUE_END, BracketError, PostLexer,
                     tok_span)


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type in ("_NL",):
        return "end of line"
    if tok.type in KEYWORD_OF_TERMINAL:
        return f"keyword '{tok}'"
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    return f"'{tok}'"


def bracket_diag(e: BracketError, path: str) -> Diagnostic:
    notes = [Note(e.note[0], tok_span(e.note[1], path))] if e.note else []
    return Diagnostic(e.message, tok_span(e.tok, path), e.hint, notes)


def syntax_error(e: UnexpectedInput, post: PostLexer, text: str, path: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        return _bad_character(e, text, path)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    if tok.type == "$END":  # rare: parse() appends a newline, brackets are checked first
        span = tok_span(post.last, path) if post.last else Span(path, 1, 1, 1, 2)
        return Diagnostic("unexpected end of file", span)
    expected = set(e.expected)
    openers = [t for t in post.stack if t.type != "_LBRACE"]
    if openers and tok.line is not None and tok.line > openers[-1].line:
        # A bracket left open swallowed the line breaks: blame the bracket.
        opener = openers[-1]
        closer = BRACKET_CHAR[OPENERS[opener.type]]
        return Diagnostic(
            f"unclosed '{opener}': expected '{closer}' before the statement on line {tok.line}",
            tok_span(opener, path), f"add the missing '{closer}'",
            [Note(f"reading went on to {_describe(tok)} here", tok_span(tok, path))])
    stmt = post.stmt[:-1] if post.stmt and post.stmt[-1] is tok else list(post.stmt)
    prev = stmt[-1] if stmt else None
    msg, hint, at = _explain(tok, prev, stmt, expected)
    return Diagnostic(msg, tok_span(at or tok, path), hint)


def _bad_character(e: UnexpectedCharacters, text: str, path: str) -> Diagnostic:
    char = e.char
    span = Span(path, e.line, e.column, e.line, e.column + 1)
    if char == '"':
        return Diagnostic("unterminated string: the closing '\"' is missing", span,
                          "a string must end on the line where it starts")
    hints = {
        "'": "strings are written in double quotes: \"data.npz\"",
        "<": "comparisons are not part of the language; use relu, maximum or minimum",
        ">": "comparisons are not part of the language; use relu, maximum or minimum",
        "!": "'!' is not an operator in .bp specs",
        "&": "logical operators are not part of the language",
        "|": "logical operators are not part of the language",
        "%": "'%' is not an operator; comments start with '#'",
        ".": "after a value, '.' may only start '.T' (transpose); numbers like .5 are fine",
        "\\": "a statement cannot be continued with '\\'; break lines inside ( ) or [ ]",
        "`": "backquotes are not used in .bp specs",
    }
    shown = repr(char)[1:-1] if not char.isprintable() else char
    return Diagnostic(f"unexpected character '{shown}'", span,
                      hints.get(char, "the language uses letters, digits, _ and the "
                                      "operators + - * / @ ^ ** .T = : , ; ( ) [ ] { } ->"))


def _explain(tok: Token, prev: Token | None, stmt: list[Token],
             expected: set[str]) -> tuple[str, str | None, Token | None]:
    """(message, hint, token to point at or None for the unexpected one)."""
    msg, hint, *at = _explain_parts(tok, prev, stmt, expected)
    return msg, hint, (at[0] if at else None)


def _innermost(stmt: list[Token]) -> str | None:
    """What the innermost open bracket of the statement so far is: "index" (a '['
    right after a value, ``x[``), "list" (a '[' where a value begins), "call" (a '('
    right after a name), "group" (any other '('), "block" ('{'), or None."""
    open_: list[str] = []
    before = None
    for t in stmt:
        if t.type in OPENERS:
            after_value = before is not None and before.type in VALUE_END
            open_.append({"_LSQB": "index" if after_value else "list",
                          "_LPAR": "call" if before is not None and before.type == "NAME"
                          else "group"}.get(t.type, "block"))
        elif t.type in CLOSERS and open_:
            open_.pop()
        before = t
    return open_[-1] if open_ else None


def _explain_parts(tok, prev, stmt, expected):
    got = _describe(tok)
    ends_line = tok.type in ("_NL", "_SEMI", "$END", "_RBRACE")
    first = stmt[0] if stmt else None

    # A keyword where a name belongs.
    if tok.type in KEYWORD_OF_TERMINAL and "NAME" in expected:
        return (f"'{tok}' is a reserved keyword and cannot be used as a name",
                "choose another name, e.g. '" + str(tok) + "_'")

    # A keyword with no name after it: 'loss = ...'.
    if first is not None and len(stmt) == 1 and first.type in KEYWORD_OF_TERMINAL \
            and "NAME" in expected:
        hint = None
        if tok.type == "_EQ":
            hint = f"'{first}' is a keyword; name the value: '{first} NAME = ...'"
        return f"expected a name after '{first}', found {got}", hint

    # The statement has just one token, a name, and is not an equation.
    if first is not None and first.type == "NAME" and len(stmt) == 1 and tok.type != "_EQ":
        close = did_you_mean(str(first), STATEMENT_KEYWORDS)
        if tok.type == "_COLON":
            return (f"'{first}' is declared without a keyword",
                    "declare it as 'input NAME : SHAPE', 'target NAME : SHAPE' or "
                    "'param NAME : SHAPE = INIT'")
        if str(first) in LAYERS:
            return (f"'{first}' is a layer, not a statement",
                    "layers go inside a stack: 'layers x -> y { dense 8; relu }'", first)
        if close:
            return (f"unknown statement '{first}'",
                    "did you mean " + " or ".join(f"'{c}'" for c in close) + "?", first)
        if ends_line:
            return (f"'{first}' alone is not a statement; expected '=' after it",
                    "write an equation 'NAME = EXPR' or start with a keyword: "
                    + ", ".join(STATEMENT_KEYWORDS))
        return (f"unknown statement '{first}'",
                "a statement is an equation 'NAME = EXPR' or starts with a keyword: "
                + ", ".join(STATEMENT_KEYWORDS), first)

    # Declarations missing their ':' or '='.
    if first is not None and (first.type in KEYWORD_OF_TERMINAL or first.type == "_STATE") \
            and len(stmt) == 2 and stmt[1].type == "NAME":
        kw, name = str(first), str(stmt[1])
        wants = {
            "state": ("':' and a shape (a state always has one)",
                      f"e.g. 'state {name} : [64] = zeros'"),
            "param": ("':' and a shape, or '=' and a value,",
                      f"e.g. 'param {name} : [2, 3] = he' or 'param {name} = 0.5'"),
            "input": ("':' and a shape, or '=' and a default value,",
                      f"e.g. 'input {name} : [N, 784]' or 'input {name} = 1.0'"),
            "target": ("':' and a shape", f"e.g. 'target {name} : [N, 10]'"),
            "let": ("'='", f"e.g. 'let {name} = 6'"),
            "loss": ("'='", f"e.g. 'loss {name} = mean((y - t)^2)'"),
            "layers": ("'->' and the stack's output name", f"e.g. 'layers {name} -> y {{ ... }}'"),
            "output": ("'=' and an expression, or the end of the line",
                       f"e.g. 'output {name} = softmax(a2)'"),
        }
        if kw in wants:
            what, example = wants[kw]
            return f"expected {what} after '{kw} {name}', found {got}", example

    # A declaration whose shape is not followed by its initializer.
    if first is not None and str(first) == "param" and ends_line and "_EQ" in expected:
        return ("missing initializer: a 'param' needs '= INIT' after its shape",
                "e.g. '= zeros', '= he', '= normal(std=0.01)' or '= 0.5'")
    if first is not None and first.type == "_STATE" and ends_line and "_EQ" in expected:
        return ("missing initializer: a 'state' needs '= INIT' after its shape",
                "e.g. '= zeros' for a running mean, '= ones' for a running variance")

    # An operator with nothing after it.
    if prev is not None and prev.type in OPERATORS and (
            ends_line or tok.type in ("_RPAR", "_RSQB", "_COMMA") or tok.type in OPERATORS):
        if prev.type == "_EQ":
            return (f"expected a value after '=', found {got}", None)
        if prev.type == "_COLON":
            return (f"expected a shape after ':', found {got}",
                    "a shape is 'scalar' or a list of dimensions like [N, 784]")
        if prev.type == "_COMMA":
            return (f"expected a value after ',', found {got}",
                    "remove the trailing ',' or add the missing item")
        return (f"dangling operator '{prev}': expected a value after it, found {got}", None)

    # 'x[]': an index with nothing in it ('[]' where a value begins is an empty list).
    if tok.type == "_RSQB" and prev is not None and prev.type == "_LSQB":
        return ("empty brackets after a value: an index or a slice goes inside",
                "e.g. x[0], x[-1], x[:, 1:3] or x[::2]")
    inside = _innermost(stmt)
    in_index = inside == "index"
    if in_index and tok.type == "_COMMA" and prev is not None and prev.type == "_LSQB":
        return ("a subscript is missing before ','",
                "write one subscript per axis, ':' for all of an axis: x[:, 1]")
    if inside == "group" and tok.type == "_COMMA":
        return ("unexpected ',' inside parentheses: the language has no tuples",
                "write a list of values in brackets, e.g. a window's rows and columns: "
                "size=[5, 3], stride=[1, 2]")

    # Two values side by side.
    if prev is not None and prev.type in VALUE_END and tok.type in (
            "NAME", "NUMBER", "_LPAR", "_LSQB", "STRING"):
        return (f"missing operator between '{prev}' and {got}",
                "separate subscripts with ',' (x[1, 2]) or write a slice with ':' (x[1:2])"
                if in_index else "write the operation explicitly, e.g. 'a * b'")

    # '=' where an equation cannot take it.
    if tok.type == "_EQ" and first is not None and (first.type != "NAME" or len(stmt) > 1):
        return ("unexpected '=': only a single name can be defined by an equation",
                "write 'NAME = EXPR'")

    if tok.type == "NAME" and prev is not None and prev.type in ("_LBRACE",):
        return (f"unexpected {got}", None)

    names = sorted({TERMINAL_TEXT.get(t, t) for t in expected if not t.startswith("__")})
    if len(names) > 6:
        names = names[:6] + ["…"]
    wanted = ", ".join(names)
    return f"unexpected {got}" + (f"; expected {wanted}" if wanted else ""), None
