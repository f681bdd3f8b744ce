"""The front end as one call: text -> parsed, desugared, checked AST (or ``SpecError``)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from . import ast
from ..cache import read_at_most
from .check import check
from .desugar import desugar
from ..errors import Diagnostic, Diagnostics, Span, SpecError
from ..limits import MAX_SPEC_BYTES
from .parser import parse


def load_text(text: str, path: str = "<spec>") -> ast.Spec:
    text = text.removeprefix("\ufeff")  # a byte-order mark decoded as text: not the spec's
    with too_deep_is_an_error(path, text):
        spec = parse(text, path)
        diags = Diagnostics(text)
        spec = desugar(spec, diags)
        check(spec, diags)
        diags.raise_if_any()
    return spec


@contextlib.contextmanager
def too_deep_is_an_error(path: str, source: str | None):
    """The parser bounds nesting (docs/LANGUAGE.md, "Limits"); should a stage still
    run out of Python's stack, that is the spec's size, reported as such."""
    try:
        yield
    except RecursionError:
        raise SpecError(Diagnostic(
            "this spec nests too deeply for bpc to compile", Span.whole_file(path),
            "name parts of deeply nested expressions with their own statements; see "
            "'Limits' in docs/LANGUAGE.md"), source) from None


def load_file(path: str | Path) -> ast.Spec:
    p = Path(path)
    try:
        # Newlines as text mode reads them (\r\n and \r become \n); load_text drops a
        # byte-order mark, as editors on Windows write one.
        text = _read_spec(p).decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"{p}: no such file", None)) from None
    except IsADirectoryError:
        raise SpecError(Diagnostic(f"{p}: is a directory, not a spec", None)) from None
    except UnicodeDecodeError as e:
        raise SpecError(Diagnostic(f"{p}: not UTF-8 text ({e.reason})", None)) from None
    except OSError as e:
        raise SpecError(Diagnostic(f"{p}: cannot read ({e.strerror or e})", None)) from None
    return load_text(text, str(path))


def _read_spec(p: Path) -> bytes:
    """The bytes of a spec file: a regular file (following links) of at most
    ``MAX_SPEC_BYTES``; a FIFO, a device (``/dev/zero``) or a huge file is refused
    before anything is read from it."""
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(p)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(Diagnostic(f"{p}: not a regular file (a spec is a text file)",
                                       None))
        if st.st_size > MAX_SPEC_BYTES:
            raise SpecError(Diagnostic(
                f"{p}: {st.st_size:,} bytes is over the limit of {MAX_SPEC_BYTES:,} for a "
                f"spec file (see 'Limits' in docs/LANGUAGE.md)", None))
        data = read_at_most(fd, MAX_SPEC_BYTES)
        if data is None:  # it grew while being read
            raise SpecError(Diagnostic(f"{p}: over the limit of {MAX_SPEC_BYTES:,} bytes "
                                       f"for a spec file", None))
        return data
    finally:
        os.close(fd)
