"""The front end as one call: text -> parsed, desugared, checked AST (or ``SpecError``)."""

from __future__ import annotations

from pathlib import Path

from . import ast
from .check import check
from .desugar import desugar
from .errors import Diagnostic, Diagnostics, SpecError
from .parser import parse


def load_text(text: str, path: str = "<spec>") -> ast.Spec:
    spec = parse(text, path)
    diags = Diagnostics(text)
    spec = desugar(spec, diags)
    check(spec, diags)
    diags.raise_if_any()
    return spec


def load_file(path: str | Path) -> ast.Spec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(Diagnostic(f"{p}: no such file", None)) from None
    except IsADirectoryError:
        raise SpecError(Diagnostic(f"{p}: is a directory, not a spec", None)) from None
    except UnicodeDecodeError as e:
        raise SpecError(Diagnostic(f"{p}: not UTF-8 text ({e.reason})", None)) from None
    return load_text(text, str(path))
