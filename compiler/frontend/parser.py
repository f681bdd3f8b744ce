"""Parsing: ``.bp`` text -> ``ast.Spec``, with syntax errors a person can act on.

The grammar is ``grammar/bp.lark`` (LALR(1), basic lexer, so keywords are reserved).
A post-lexer drops newlines inside ``( )`` and ``[ ]``, checks that brackets balance
(pointing at the unclosed or mismatched one), and remembers the tokens of the current
statement, which ``_syntax_error`` uses to turn Lark's "unexpected token" into a
message about the statement being written: dangling operators, missing ``=``/``:``,
unknown statement keywords, keywords used as names, missing operators, and so on.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from ..errors import Diagnostic, Note, Span, SpecError, did_you_mean
from ..limits import MAX_MAGNITUDE, MAX_NESTING, MAX_NUMBER_CHARS
from .layers import LAYERS

KEYWORDS = {
    "model": "_MODEL", "dtype": "_DTYPE", "let": "_LET", "input": "_INPUT",
    "target": "_TARGET", "param": "_PARAM", "output": "_OUTPUT", "loss": "_LOSS",
    "grad": "_GRAD", "wrt": "_WRT", "optimizer": "_OPTIMIZER", "train": "_TRAIN",
    "data": "_DATA", "layers": "_LAYERS", "repeat": "_REPEAT", "scalar": "_SCALAR",
}
KEYWORD_OF_TERMINAL = {v: k for k, v in KEYWORDS.items()}
STATEMENT_KEYWORDS = [k for k in KEYWORDS if k not in ("wrt", "scalar", "repeat")] + ["state"]

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


class _BracketError(Exception):
    def __init__(self, message: str, tok: Token, hint: str | None = None, note=None):
        super().__init__(message)
        self.message, self.tok, self.hint, self.note = message, tok, hint, note


class _PostLexer:
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
                    raise _BracketError(f"unmatched '{tok}': no bracket is open here", tok)
                opener = self.stack.pop()
                if OPENERS[opener.type] != kind:
                    want = BRACKET_CHAR[OPENERS[opener.type]]
                    raise _BracketError(
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
            raise _BracketError(f"unclosed '{opener}': the file ends before its '{closer}'",
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


def _grammar_text() -> str:
    repo_copy = Path(__file__).resolve().parents[2] / "grammar" / "bp.lark"
    if repo_copy.is_file():
        return repo_copy.read_text()
    # Installed (non-editable): the grammar ships as the package ``bpc.compiler._grammar``.
    from importlib import resources

    return resources.files("bpc.compiler._grammar").joinpath("bp.lark").read_text()


_LARK_OPTIONS = dict(parser="lalr", lexer="basic", propagate_positions=True,
                     maybe_placeholders=True)


def _build_lark(grammar: str, cache: str | bool, postlex: _PostLexer | None = None) -> Lark:
    return Lark(grammar, postlex=postlex or _PostLexer(), cache=cache, **_LARK_OPTIONS)


@functools.lru_cache(maxsize=1)
def _lark() -> tuple[Lark, _PostLexer]:
    from . import tables

    post = _PostLexer()
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
    except _BracketError as e:
        raise SpecError(_bracket_diag(e, path), text) from None
    except UnexpectedInput as e:
        raise SpecError(_syntax_error(e, post, text, path), text) from None
    problem = _over_limits(tree, path)
    if problem is not None:
        raise SpecError(problem, text)
    try:
        spec = _ToAst(path).transform(tree)
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
                    return Diagnostic(problem, _tok_span(node, path),
                                      "see 'Limits' in docs/LANGUAGE.md")
            continue
        if depth > _TREE_LEVELS:
            first = next((t for t in node.scan_values(lambda v: isinstance(v, Token))), None)
            span = _tok_span(first, path) if first is not None else Span.whole_file(path)
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
        value = _number(text)
    except (ValueError, OverflowError):
        return "this number cannot be read"
    if isinstance(value, int) and value >= MAX_MAGNITUDE:
        return "this number is too large: the limit is 2^1024 (about 1.8e308)"
    return None


# ----------------------------------------------------------------------------- errors
def _tok_span(tok: Token, path: str) -> Span:
    line = tok.line or 1
    col = tok.column or 1
    end_line = tok.end_line or line
    end_col = tok.end_column or col + max(len(str(tok)), 1)
    if tok.type == "_NL":  # point just past the end of the line
        end_line, end_col = line, col + 1
    return Span(path, line, col, end_line, end_col)


def _bracket_diag(e: _BracketError, path: str) -> Diagnostic:
    notes = [Note(e.note[0], _tok_span(e.note[1], path))] if e.note else []
    return Diagnostic(e.message, _tok_span(e.tok, path), e.hint, notes)


def _syntax_error(e: UnexpectedInput, post: _PostLexer, text: str, path: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        return _bad_character(e, text, path)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    if tok.type == "$END":  # rare: parse() appends a newline, brackets are checked first
        span = _tok_span(post.last, path) if post.last else Span(path, 1, 1, 1, 2)
        return Diagnostic("unexpected end of file", span)
    expected = set(e.expected)
    openers = [t for t in post.stack if t.type != "_LBRACE"]
    if openers and tok.line is not None and tok.line > openers[-1].line:
        # A bracket left open swallowed the line breaks: blame the bracket.
        opener = openers[-1]
        closer = BRACKET_CHAR[OPENERS[opener.type]]
        return Diagnostic(
            f"unclosed '{opener}': expected '{closer}' before the statement on line {tok.line}",
            _tok_span(opener, path), f"add the missing '{closer}'",
            [Note(f"reading went on to {_describe(tok)} here", _tok_span(tok, path))])
    stmt = post.stmt[:-1] if post.stmt and post.stmt[-1] is tok else list(post.stmt)
    prev = stmt[-1] if stmt else None
    msg, hint, at = _explain(tok, prev, stmt, expected)
    return Diagnostic(msg, _tok_span(at or tok, path), hint)


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


def _inside_index(stmt: list[Token]) -> bool:
    """Whether the innermost open bracket of the statement so far is an index ``x[``
    (a '[' right after a value), not a matrix literal or a call's parentheses."""
    open_: list[bool] = []
    before = None
    for t in stmt:
        if t.type in OPENERS:
            open_.append(t.type == "_LSQB" and before is not None and before.type in VALUE_END)
        elif t.type in CLOSERS and open_:
            open_.pop()
        before = t
    return bool(open_) and open_[-1]


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
    in_index = _inside_index(stmt)
    if in_index and tok.type == "_COMMA" and prev is not None and prev.type == "_LSQB":
        return ("a subscript is missing before ','",
                "write one subscript per axis, ':' for all of an axis: x[:, 1]")

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


# ----------------------------------------------------------------------------- tree -> AST
def _number(text: str) -> int | float:
    if all(c.isdigit() for c in text):
        return int(text)
    return float(text)


def _unquote(s: str) -> str:
    body = s[1:-1]
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _ToAst(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _span(self, meta) -> Span:
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return _tok_span(tok, self.path)

    # statements --------------------------------------------------------------
    @v_args(meta=True)
    def start(self, meta, items):
        return ast.Spec(self.path, "", list(items))

    @v_args(meta=True)
    def model_stmt(self, meta, c):
        return ast.ModelStmt(self._span(meta), str(c[0]), self._tspan(c[0]))

    @v_args(meta=True)
    def dtype_stmt(self, meta, c):
        return ast.DtypeStmt(self._span(meta), str(c[0]), self._tspan(c[0]))

    @v_args(meta=True)
    def let_stmt(self, meta, c):
        return ast.Let(self._span(meta), str(c[0]), self._tspan(c[0]), c[1])

    @v_args(meta=True)
    def input_shaped(self, meta, c):
        return ast.Input(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def input_default(self, meta, c):
        return ast.Input(self._span(meta), str(c[0]), self._tspan(c[0]), None, c[1])

    @v_args(meta=True)
    def target_stmt(self, meta, c):
        return ast.Target(self._span(meta), str(c[0]), self._tspan(c[0]), c[1])

    @v_args(meta=True)
    def param_shaped(self, meta, c):
        return ast.Param(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def param_scalar(self, meta, c):
        return ast.Param(self._span(meta), str(c[0]), self._tspan(c[0]), None, c[1])

    @v_args(meta=True)
    def state_stmt(self, meta, c):
        return ast.State(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def eq_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "eq")

    @v_args(meta=True)
    def output_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "output")

    @v_args(meta=True)
    def loss_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "loss")

    @v_args(meta=True)
    def grad_stmt(self, meta, c):
        return ast.GradWrt(self._span(meta), [(str(t), self._tspan(t)) for t in c])

    @v_args(meta=True)
    def optimizer_stmt(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Optimizer(self._span(meta), str(c[0]), self._tspan(c[0]), args, kwargs)

    @v_args(meta=True)
    def train_stmt(self, meta, c):
        return ast.Train(self._span(meta), list(c))

    @v_args(meta=True)
    def setting(self, meta, c):
        return ast.Setting(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def data_file(self, meta, c):
        return ast.Data(self._span(meta), _unquote(str(c[0])), None, self._tspan(c[0]))

    @v_args(meta=True)
    def data_builtin(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Data(self._span(meta), None, str(c[0]), self._tspan(c[0]), args, kwargs)

    @v_args(meta=True)
    def layers_stmt(self, meta, c):
        src, out, *items = c
        return ast.Layers(self._span(meta), str(src), self._tspan(src), str(out),
                          self._tspan(out), items)

    @v_args(meta=True)
    def layer(self, meta, c):
        name, call, *opts = c
        args, kwargs = call if call is not None else ([], [])
        args, kwargs = list(args), list(kwargs)
        for kind, value in opts:
            (kwargs if kind == "kw" else args).append(value)
        return ast.Layer(name=str(name), span=self._span(meta), name_span=self._tspan(name),
                         args=args, kwargs=kwargs)

    def layer_pos_number(self, c):
        tok = c[0]
        return ("pos", ast.Num(self._tspan(tok), _number(str(tok)), str(tok)))

    def layer_pos_name(self, c):
        tok = c[0]
        return ("pos", ast.Name(self._tspan(tok), str(tok)))

    @v_args(meta=True)
    def layer_kw(self, meta, c):
        return ("kw", ast.Kwarg(str(c[0]), c[1], self._span(meta)))

    @v_args(meta=True)
    def repeat(self, meta, c):
        return ast.Repeat(c[0], list(c[1:]), self._span(meta))

    @v_args(meta=True)
    def block(self, meta, c):
        return ast.Block(str(c[0]), self._tspan(c[0]), list(c[1:]), self._span(meta))

    # shapes ----------------------------------------------------------------------
    @v_args(meta=True)
    def scalar_shape(self, meta, c):
        return ast.Shape([], self._span(meta))

    @v_args(meta=True)
    def dims_shape(self, meta, c):
        dims = [d for d in c if d is not None]
        return ast.Shape(dims, self._span(meta))

    def dim(self, c):
        tok = c[0]
        value = _number(str(tok)) if tok.type == "NUMBER" else str(tok)
        return ast.Dim(value, self._tspan(tok))

    # expressions -------------------------------------------------------------------
    def _bin(op):
        @v_args(meta=True)
        def build(self, meta, c):
            return ast.BinOp(self._span(meta), op, c[0], c[1])
        return build

    add, sub, mul, div = _bin("+"), _bin("-"), _bin("*"), _bin("/")
    matmul, pow = _bin("@"), _bin("^")
    del _bin

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(self._span(meta), c[0])

    @v_args(meta=True)
    def pos(self, meta, c):
        return c[0]

    @v_args(meta=True)
    def transpose(self, meta, c):
        return ast.Transpose(self._span(meta), c[0])

    @v_args(meta=True)
    def index(self, meta, c):
        return ast.Index(self._span(meta), c[0], c[1])

    def subscripts(self, c):
        return list(c)

    @v_args(meta=True)
    def slice(self, meta, c):
        start, stop, step = c
        return ast.Slice(self._span(meta), start, stop, step)

    def number(self, c):
        tok = c[0]
        return ast.Num(self._tspan(tok), _number(str(tok)), str(tok))

    def name(self, c):
        return ast.Name(self._tspan(c[0]), str(c[0]))

    @v_args(meta=True)
    def call(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Call(self._span(meta), str(c[0]), self._tspan(c[0]), args, kwargs)

    def arglist(self, c):
        args = [a for a in c if not isinstance(a, ast.Kwarg)]
        kwargs = [a for a in c if isinstance(a, ast.Kwarg)]
        for a, b in zip(c, c[1:]):
            if isinstance(a, ast.Kwarg) and not isinstance(b, ast.Kwarg):
                raise SpecError(Diagnostic(
                    "a positional argument cannot follow a keyword argument", b.span,
                    f"move it before '{a.name}=' or name it"))
        return args, kwargs

    @v_args(meta=True)
    def kwarg(self, meta, c):
        return ast.Kwarg(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def matrix(self, meta, c):
        rows = [r for r in c if r is not None]
        return ast.Matrix(self._span(meta), rows)

    def row(self, c):
        return list(c)
