"""Python text in black's style, for the shapes of code bpc writes.

The generated module is black-formatted, but black does not run on it: running black on
every compile cost more than the rest of the compiler (importing black alone takes
~0.2 s, formatting a 1,900-line module ~1 s, and a 500,000-line one minutes), so the code
generator writes black's style itself: string literals in ASCII with black's choice of
quotes, data literals on one line when they fit in 88 columns and one item per line with
a trailing comma when they do not, ``**`` hugging simple operands, signatures, calls and
operator chains split as black splits them, comments on lines of their own.
``layout.laid_out`` gives black a single statement of a shape not covered here (rare;
in memory, never cached on disk), and the whole module only if a line is still too wide.
Tests hold the result to black's own output on every gallery spec, on random specs and
on random pieces of each shape."""

from __future__ import annotations

import io
import re
import tokenize

LINE_LENGTH = 88  # black's default
STATEMENT_WIDTH = LINE_LENGTH - 4  # what a statement in a function body has left

_SIMPLE_POWER_OPERAND = re.compile(
    r"-?(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\d[\d_]*(?:\.\d*)?(?:e[+-]?\d+)?)")


def number(value: int | float) -> str:
    """A number as black writes it: ``repr``, without the ``+`` of an exponent."""
    return repr(value).replace("e+", "e")


def power(base: str, exponent: str) -> str:
    """``base ** exponent`` as black writes it: hugged when both sides are simple (a name,
    an attribute chain or a number, optionally negated)."""
    if _SIMPLE_POWER_OPERAND.fullmatch(base) and _SIMPLE_POWER_OPERAND.fullmatch(exponent):
        return f"{base}**{exponent}"
    return f"{base} ** {exponent}"


def string(s: str) -> str:
    """A string literal as black writes it, in ASCII: double quotes unless single quotes
    need fewer backslashes (black's rule), and every character outside printable ASCII
    escaped as ``ascii`` escapes it (lower-case hex, which black keeps). So no line of
    the module holds a character black would measure differently."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'  # the usual case: a name, a path
    double = "".join(_escaped(c, '"') for c in s)
    single = "".join(_escaped(c, "'") for c in s)
    if double.count("\\") <= single.count("\\"):
        return f'"{double}"'
    return f"'{single}'"


def _escaped(c: str, quote: str) -> str:
    if c == quote or c == "\\":
        return "\\" + c
    if c in "\"'":
        return c
    return ascii(c)[1:-1]


def literal(value, indent: int = 0, prefix: str = "", suffix: str = "") -> list[str]:
    """``prefix + repr(value) + suffix`` as black lays it out at ``indent`` columns.

    ``value`` is plain data: dicts, lists, tuples, strings, numbers, booleans, None."""
    pad = " " * indent
    one_line = pad + prefix + _flat(value) + suffix
    if len(one_line) <= LINE_LENGTH or not _is_collection(value) or not value:
        return [one_line]
    opening, closing = _brackets(value)
    lines = [pad + prefix + opening]
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        item_prefix = "" if key is None else _flat(key) + ": "
        lines += literal(item, indent + 4, item_prefix, ",")
    lines.append(pad + closing + suffix)
    return lines


class Code(str):
    """Python text placed in a literal as it is (a name, a call), not as a string."""


def call(callee: str, args: list, indent: int = 0, prefix: str = "",
         suffix: str = "") -> list[str]:
    """``prefix + callee(args) + suffix`` as black lays it out at ``indent`` columns, for
    arguments that are plain data or ``Code`` (``np.array([[...]], dtype=DTYPE)``): on one
    line; else the arguments on a line of their own; else one per line with a trailing
    comma, each laid out as ``literal`` lays it out."""
    pad = " " * indent
    flat = ", ".join(_flat(a) for a in args)
    one_line = f"{pad}{prefix}{callee}({flat}){suffix}"
    if len(one_line) <= LINE_LENGTH or not args:
        return [one_line]
    head, tail = f"{pad}{prefix}{callee}(", f"{pad}){suffix}"
    if len(pad) + 4 + len(flat) <= LINE_LENGTH:
        return [head, pad + "    " + flat, tail]
    return [head, *(line for a in args for line in literal(a, indent + 4, "", ",")), tail]


def definition(name: str, params: list[str], returns: str = "") -> list[str]:
    """``def name(params)returns:`` as black splits it when it is too wide: the parameters
    on a line of their own, or one per line with a trailing comma."""
    line = f"def {name}({', '.join(params)}){returns}:"
    if len(line) <= LINE_LENGTH:
        return [line]
    inner = "    " + ", ".join(params)
    if len(inner) <= LINE_LENGTH:
        return [f"def {name}(", inner, f"){returns}:"]
    return [f"def {name}(", *(f"    {p}," for p in params), f"){returns}:"]


def _is_collection(value) -> bool:
    return isinstance(value, (dict, list, tuple))


def _brackets(value) -> tuple[str, str]:
    if isinstance(value, dict):
        return "{", "}"
    return ("[", "]") if isinstance(value, list) else ("(", ")")


def _flat(value) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_flat(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return number(value)
    raise TypeError(f"not plain data: {type(value).__name__}")


_CALL_STATEMENT = re.compile(
    r"([A-Za-z_]\w* = |return )([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\((.*)\)")


def call_statement(line: str, indent: int) -> list[str] | None:
    """``name = f(a, b, out=c)`` (or ``return f(...)``: a mode handed to its private
    function) at ``indent`` columns as black lays it out when it is too wide (the shape
    buffer planning writes: ``np.add(..., out=...)``): the arguments on a line of their
    own, or one per line with a trailing comma. None for any other
    statement, or when an argument would itself need splitting (black decides those)."""
    pad = " " * indent
    if len(pad + line) <= LINE_LENGTH:
        return [pad + line]
    m = _CALL_STATEMENT.fullmatch(line)
    if m is None or "\\" in line or "'" in line:
        return None
    args = _top_level_args(m.group(3))
    if args is None or not args[-1] or any(",)" in a or ",]" in a or ",}" in a for a in args):
        return None
    head = f"{pad}{m.group(1)}{m.group(2)}("
    if len(head) > LINE_LENGTH:
        return None
    inner = pad + "    "
    one_line = inner + ", ".join(args)
    if len(one_line) <= LINE_LENGTH:
        return [head, one_line, pad + ")"]
    if len(args) > 1 and all(len(inner + a) + 1 <= LINE_LENGTH for a in args):
        return [head, *(inner + a + "," for a in args), pad + ")"]
    return None


def _top_level_args(text: str) -> list[str] | None:
    """``text`` split at its top-level commas (None when its brackets do not balance, so
    ``f(a)(b)`` or ``f(a) + g(b)`` are not taken for one call)."""
    args, depth, start, quoted = [], 0, 0, False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if depth or quoted:
        return None
    args.append(text[start:].strip())
    return args


_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*) (=|\+=|-=|\*=|/=) (.*)")  # a name, not state[...]
_PRIORITY = {"+": 5, "-": 5, "*": 4, "/": 4, "//": 4, "%": 4, "@": 4}
_OPERAND_END = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING}


def operator_statement(line: str, indent: int) -> list[str] | None:
    """``name = a + b + c`` at ``indent`` columns as black lays it out when too wide:
    the right-hand side in parentheses on a line of its own, or one operand per line
    after its operator (``_operands``). Only for two or more top-level operators of the
    loosest kind (black keeps its optional parentheses then); None otherwise."""
    pad = " " * indent
    if len(pad + line) <= LINE_LENGTH:
        return [pad + line]
    m = _ASSIGNMENT.fullmatch(line)
    if m is None:
        return None
    rhs = m.group(3)
    cuts = _top_level_operators(rhs)
    if cuts is None or not cuts:
        return None
    loosest = max(p for _, _, p in cuts)
    split = [(start, end) for start, end, p in cuts if p == loosest]
    if len(split) < 2:
        return None
    head, tail, inner = f"{pad}{m.group(1)} {m.group(2)} (", pad + ")", pad + "    "
    lines = _operands(rhs, inner)
    return None if lines is None else [head, *lines, tail]


def _operands(text: str, pad: str) -> list[str] | None:
    """``text`` on one line when it fits, else one line per operand of its loosest
    top-level operators, each operator starting its operand's line, each such line split
    again the same way while it is too wide (black's delimiter split); None when a line
    would need another kind of split."""
    if len(pad + text) <= LINE_LENGTH:
        return [pad + text]
    cuts = _top_level_operators(text)
    if not cuts:
        return None
    loosest = max(p for _, _, p in cuts)
    parts, previous = [], 0
    for start, _, p in cuts:
        if p == loosest:
            parts.append(text[previous:start].strip())
            previous = start
    parts.append(text[previous:].strip())
    lines: list[str] = []
    for part in parts:
        laid = _operands(part, pad)
        if laid is None:
            return None
        lines += laid
    return lines


def _top_level_operators(text: str):
    """(start, end, priority) of each binary operator outside brackets in ``text``, by
    column; None when ``text`` holds something this layout does not handle."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    depth, previous, out = 0, None, []
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT):
            continue
        if tok.start[0] != 1:
            return None
        s = tok.string
        if tok.type == tokenize.OP:
            if s in "([{":
                depth += 1
            elif s in ")]}":
                depth -= 1
            elif depth == 0:
                binary = previous is not None and (
                    previous.type in _OPERAND_END or previous.string in ")]}")
                if s in _PRIORITY and binary:
                    out.append((tok.start[1], tok.end[1], _PRIORITY[s]))
                elif s in ("+", "-", "~") and not binary:
                    pass  # unary
                elif s == ".":
                    pass
                else:
                    return None  # **, comparisons, commas, ... : black decides
        elif tok.type == tokenize.NAME and s in ("and", "or", "not", "if", "else", "lambda",
                                                 "in", "is", "for", "await", "yield"):
            return None
        previous = tok
    return out


def needs_black(text: str) -> bool:
    """Whether black could still change ``text`` written in this module's style: a line
    wider than 88 columns that is neither a comment nor inside a docstring (black would
    split it), or a character outside ASCII (black measures those by display width;
    bpc writes none: strings are escaped)."""
    in_docstring = False
    for line in text.splitlines():
        if not line.isascii():
            return True
        quotes = line.count('"""')
        inside = in_docstring and not quotes  # black leaves these lines' width alone
        if quotes % 2:
            in_docstring = not in_docstring
        if inside or line.lstrip().startswith("#"):
            continue
        if len(line) > LINE_LENGTH:
            return True
    return False
