"""Python text in black's style, for the few shapes of code bpc writes.

The generated module is black-formatted. Running black on every compile costs more than
the rest of the compiler (importing black alone takes ~0.2 s, formatting a 1,900-line
module ~1 s), so the code generator writes black's style itself: string literals in
double quotes, data literals on one line when they fit in 88 columns and one item per
line with a trailing comma when they do not, ``**`` hugging simple operands, comments on
lines of their own. ``codegen.format_source`` then runs black only on a module that has
a code line wider than 88 columns, the one thing black would still change. Tests hold
the result to black's own output on every gallery spec and on random specs.
"""

from __future__ import annotations

import re

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
    """A string literal in double quotes, as black writes it, unless ``s`` holds a double
    quote (then as ``repr`` writes it) or needs an escape (then black decides: see
    ``needs_black``)."""
    text = repr(s)
    if text[0] == "'" and '"' not in s and "\\" not in text:
        return '"' + text[1:-1] + '"'
    return text


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


def needs_black(text: str) -> bool:
    """Whether black could still change ``text`` written in this module's style: a line
    wider than 88 columns that is neither a comment nor inside a docstring (black would
    split it), or a line holding a backslash (an escape in a string: black chooses quotes
    by counting them) or a character outside ASCII (black measures those by display
    width)."""
    in_docstring = False
    for line in text.splitlines():
        if "\\" in line or not line.isascii():
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
