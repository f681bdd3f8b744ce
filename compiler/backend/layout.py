"""Black's layout of what pyfmt does not lay out itself: one statement of a function
body at a time (``laid_out``), or, should a line of another shape remain, the whole
module (``black``). Computed in memory every time; nothing is read back from a file.
"""

from __future__ import annotations

import functools

from ..errors import Diagnostic, SpecError
from .pyfmt import LINE_LENGTH, call_statement, operator_statement


def laid_out(line: str) -> list[str]:
    """A statement of a function body (written at 4 columns) in black's layout: as it is
    when it fits, ``pyfmt.call_statement``'s layout for a call (what buffer planning
    writes), ``pyfmt.operator_statement``'s for a chain of operators (a long fused loss),
    else black's own layout of that one statement. A line of a loop keeps its own
    indentation (its body is nested one level deeper)."""
    if len(line) + 4 <= LINE_LENGTH:
        return [line]
    statement = line.lstrip(" ")
    indent = 4 + len(line) - len(statement)
    laid = call_statement(statement, indent) or operator_statement(statement, indent) \
        or black_statement(statement, indent)
    return [text[4:] for text in laid]


@functools.lru_cache(maxsize=1024)
def black_statement(line: str, indent: int = 4) -> list[str]:
    """Black's layout of one statement at ``indent`` columns of a function body. Black
    lays out each logical line on its own, so this is what it writes for that statement
    in the whole module, at a cost that grows with the statement, not with the module."""
    levels = indent // 4
    nesting = "".join(" " * (4 * k) + "if _:\n" for k in range(1, levels))
    formatted = black("def _():\n" + nesting + " " * indent + line + "\n")
    return formatted.splitlines()[levels:]


def black(text: str) -> str:
    """``text`` formatted by black (py310 target). Only for code shapes ``pyfmt`` does not
    lay out itself; computed here every time, never read back from a file."""
    import black

    mode = black.Mode(target_versions={black.TargetVersion.PY310})
    try:
        return black.format_str(text, mode=mode)
    except black.InvalidInput as e:  # a bug in bpc, never in the spec
        raise SpecError(Diagnostic(f"internal error: generated code does not parse "
                                   f"({e})", None)) from e
