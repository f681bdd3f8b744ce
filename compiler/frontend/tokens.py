"""The token layer between Lark's lexer and its parser.

The language's keywords and how each terminal is named in messages; the post-lexer,
which drops newlines inside ``( )`` and ``[ ]``, checks that brackets balance (pointing at
the unclosed or mismatched one), retypes contextual keywords, and remembers the tokens of
the current statement for the syntax-error messages (``syntax_errors``); a token's span.
"""

from __future__ import annotations

from lark import Token

from ..errors import Span

KEYWORDS = {
    "model": "_MODEL", "dtype": "_DTYPE", "let": "_LET", "input": "_INPUT",
    "target": "_TARGET", "param": "_PARAM", "output": "_OUTPUT", "loss": "_LOSS",
    "grad": "_GRAD", "wrt": "_WRT", "optimizer": "_OPTIMIZER", "train": "_TRAIN",
    "data": "_DATA", "layers": "_LAYERS", "repeat": "_REPEAT", "scalar": "_SCALAR",
    "from": "_FROM",
}
KEYWORD_OF_TERMINAL = {v: k for k, v in KEYWORDS.items()}
STATEMENT_KEYWORDS = [k for k in KEYWORDS
                      if k not in ("wrt", "scalar", "repeat", "from")] + ["state"]

# How each terminal is named in messages.
TERMINAL_TEXT = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "end of line",
    "_SEMI": "';'", "_ARROW": "'->'", "_POW": "'^'", "_PLUS": "'+'", "_MINUS": "'-'",
    "_STAR": "'*'", "_SLASH": "'/'", "_AT": "'@'", "_EQ": "'='", "_COLON": "':'",
    "_COMMA": "','", "_LPAR": "'('", "_RPAR": "')'", "_LSQB": "'['", "_RSQB": "']'",
    "_LBRACE": "'{'", "_RBRACE": "'}'", "_TRANSPOSE": "'.T'", "$END": "end of file",
    **{t: f"'{k}'" for k, t in KEYWORDS.items()}, "_STATE": "'state'",
}
OPERATORS = {"_POW", "_PLUS", "_MINUS", "_STAR", "_SLASH", "_AT", "_EQ", "_COLON",
             "_COMMA", "_ARROW"}
VALUE_END = {"NAME", "NUMBER", "STRING", "_RPAR", "_RSQB", "_TRANSPOSE"}
OPENERS = {"_LPAR": "_RPAR", "_LSQB": "_RSQB", "_LBRACE": "_RBRACE"}
CLOSERS = {v: k for k, v in OPENERS.items()}
BRACKET_CHAR = {"_LPAR": "(", "_RPAR": ")", "_LSQB": "[", "_RSQB": "]", "_LBRACE": "{",
                "_RBRACE": "}"}


class BracketError(Exception):
    """Brackets that do not balance, found by the post-lexer; ``parse`` reports it."""

    def __init__(self, message: str, tok: Token, hint: str | None = None, note=None):
        super().__init__(message)
        self.message, self.tok, self.hint, self.note = message, tok, hint, note


class PostLexer:
    """Drops newlines inside ( ) and [ ], balances brackets, records statement context."""

    always_accept = ()

    def __init__(self):
        self.reset()

    def reset(self):
        self.stack: list[Token] = []
        self.stmt: list[Token] = []  # tokens of the statement being read, incl. the last
        self.last: Token | None = None
        self._ended = False

    def process(self, stream):
        self.reset()
        for tok in _contextual_keywords(stream):
            kind = tok.type
            if kind in OPENERS:
                self.stack.append(tok)
            elif kind in CLOSERS:
                if not self.stack:
                    raise BracketError(f"unmatched '{tok}': no bracket is open here", tok)
                opener = self.stack.pop()
                if OPENERS[opener.type] != kind:
                    want = BRACKET_CHAR[OPENERS[opener.type]]
                    raise BracketError(
                        f"mismatched '{tok}': expected '{want}' to close the "
                        f"'{opener}' on line {opener.line}", tok,
                        note=("the bracket opened here", opener))
            elif kind == "_NL" and self._inside_brackets():
                continue  # a newline inside ( ) or [ ] does not end a statement
            if self._ended:
                self.stmt = []
            self.stmt.append(tok)
            self._ended = kind in ("_NL", "_LBRACE", "_RBRACE") or (
                kind == "_SEMI" and not self._inside_brackets())
            self.last = tok
            yield tok
        if self.stack:
            opener = self.stack[-1]
            closer = BRACKET_CHAR[OPENERS[opener.type]]
            raise BracketError(f"unclosed '{opener}': the file ends before its '{closer}'",
                                opener)

    def _inside_brackets(self) -> bool:
        return any(t.type != "_LBRACE" for t in self.stack)


# Words that are keywords only at the start of a statement and before a name, so that
# specs written before they existed, which may use them as names, parse as they did.
CONTEXTUAL_KEYWORDS = {"state": "_STATE"}


def _contextual_keywords(stream):
    """Retype 'state' to its keyword when it starts a statement and a name follows it
    ('state m1 : [64] = zeros'); 'state = h * 2' stays an equation defining 'state'."""
    pending = None
    starts = True  # the next token starts a statement
    for tok in stream:
        if pending is not None:
            if tok.type == "NAME":
                pending = Token.new_borrow_pos(CONTEXTUAL_KEYWORDS[str(pending)],
                                               str(pending), pending)
            yield pending
            pending = None
        if starts and tok.type == "NAME" and str(tok) in CONTEXTUAL_KEYWORDS:
            pending = tok
            starts = False
            continue
        starts = tok.type in ("_NL", "_SEMI", "_LBRACE", "_RBRACE")
        yield tok
    if pending is not None:
        yield pending


def tok_span(tok: Token, path: str) -> Span:
    """Where a token was written; a newline's span is the column just past the line."""
    line = tok.line or 1
    col = tok.column or 1
    end_line = tok.end_line or line
    end_col = tok.end_column or col + max(len(str(tok)), 1)
    if tok.type == "_NL":  # point just past the end of the line
        end_line, end_col = line, col + 1
    return Span(path, line, col, end_line, end_col)
