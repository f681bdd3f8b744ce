"""Spans and diagnostics: how every spec problem reaches a person.

A diagnostic renders as::

    mlp.bp:7:9: error: matmul inner dimensions differ: x is [N, 784], W1 is [748, 50]
        7 | a1 = x @ W1 + b1
          |      ^~~~~~
    hint: ...

followed by any notes (``note:`` lines with their own source excerpt).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of spec text. Lines and columns are 1-based; ``end_col`` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        if self.line <= 0:  # a whole-file span
            return self.file
        return f"{self.file}:{self.line}:{self.col}"

    @classmethod
    def whole_file(cls, file: str) -> "Span":
        return cls(file, 0, 0, 0, 0)


@dataclass
class Note:
    message: str
    span: Span | None = None


@dataclass
class Diagnostic:
    message: str
    span: Span | None
    hint: str | None = None
    notes: list[Note] = field(default_factory=list)
    severity: str = "error"

    def render(self, source: str | None) -> str:
        out = [_headline(self.severity, self.message, self.span)]
        out += _excerpt(self.span, source)
        if self.hint:
            out.append(f"hint: {self.hint}")
        for note in self.notes:
            out.append(_headline("note", note.message, note.span))
            out += _excerpt(note.span, source)
        return "\n".join(out)


def _headline(severity: str, message: str, span: Span | None) -> str:
    return f"{span}: {severity}: {message}" if span else f"{severity}: {message}"


@functools.lru_cache(maxsize=4)
def _lines(source: str) -> list[str]:
    """As the lexer counts lines (only \\n ends one: not \\x0c, \\x85 or \\u2028); once
    per source, however many diagnostics it has."""
    return source.split("\n")


_LINE_BREAKS = {c: " " for c in (0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def _excerpt(span: Span | None, source: str | None) -> list[str]:
    if span is None or source is None or span.line <= 0:
        return []
    lines = _lines(source)
    if not 1 <= span.line <= len(lines):
        return []
    # Characters str.splitlines() would break at, shown as spaces (one column each, so
    # the caret still lines up): the excerpt stays one line.
    text = lines[span.line - 1].removesuffix("\r").translate(_LINE_BREAKS)
    start = max(span.col - 1, 0)
    if span.end_line == span.line:
        end = max(span.end_col - 1, start + 1)
    else:
        end = max(len(text), start + 1)
    # Keep tabs in the caret line so the caret lines up under tabbed source.
    pad = "".join(c if c == "\t" else " " for c in text[:start])
    number = str(span.line)
    gutter = " " * len(number)
    return [
        f"    {number} | {text}",
        f"    {gutter} | {pad}^{'~' * (end - start - 1)}",
    ]


class SpecError(Exception):
    """One or more problems in one spec file, ready to print."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, source: str | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


class Diagnostics:
    """Collects independent errors so one run reports as many as is sensible."""

    def __init__(self, source: str | None = None):
        self.source = source
        self.items: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []  # reported, but the spec still compiles

    def error(self, message: str, span: Span | None, hint: str | None = None,
              notes: list[Note] | None = None) -> None:
        self.items.append(Diagnostic(message, span, hint, list(notes or [])))

    def warning(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.warnings.append(Diagnostic(message, span, hint, severity="warning"))

    @property
    def full(self) -> bool:
        """As many errors as will be shown: hints for more need not be worked out (a
        "did you mean" costs a pass over every name in scope)."""
        return len(self.items) >= MAX_REPORTED

    def unknown(self, message: str, word: str, span: Span | None, choices,
                listing_prefix: str, also: str = "") -> None:
        """``message`` about ``word``, hinting the nearest of ``choices`` or listing them."""
        if self.full:
            self.error(message, span)
            return
        self.error(message, span, suggestion_hint(word, choices)
                   or f"{listing_prefix}: {listing(choices)}{also}")

    def extend(self, diags: list[Diagnostic]) -> None:
        self.items.extend(diags)

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(self.items, key=lambda d: (d.span is not None, d.span.line if d.span
                                                        else 0, d.span.col if d.span else 0))
            if len(ordered) > MAX_REPORTED:
                rest = len(ordered) - MAX_REPORTED
                last = ordered[MAX_REPORTED - 1].span
                ordered = ordered[:MAX_REPORTED] + [Diagnostic(
                    f"{rest} more errors not shown (at most {MAX_REPORTED} are reported)",
                    Span.whole_file(last.file) if last else None,
                    "fix these first; the rest are often consequences")]
            raise SpecError(ordered, self.source)


MAX_REPORTED = 100  # errors shown for one spec; the count of the rest follows


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (optimal string alignment)."""
    prev2: list[int] | None = None
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(word: str, candidates, limit: int = 3) -> list[str]:
    """The candidates closest to ``word`` by edit distance, nearest first."""
    from .limits import MAX_SUGGEST_CHARS

    if len(word) > MAX_SUGGEST_CHARS:  # edit distance is quadratic in the length
        return []
    best = max(1, len(word) // 3)
    scored = sorted(
        (edit_distance(word.lower(), c.lower()), c) for c in set(candidates)
        if c != word and abs(len(c) - len(word)) <= best  # else farther than best anyway
    )
    return [c for d, c in scored if d <= best][:limit]


def suggestion_hint(word: str, candidates) -> str | None:
    close = did_you_mean(word, candidates)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return None


def listing(names) -> str:
    return ", ".join(sorted(names))
