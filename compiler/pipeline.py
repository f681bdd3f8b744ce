"""The compiler as plain calls, for the common questions: each is one ``Compilation``.

    text --parse/desugar/check--> AST --elaborate--> IR --differentiate--> IR + backward
         --optimize--> IR --codegen--> Python source

``compilation.Compilation`` runs the stages (once each, on demand) and keeps what each
made; these functions ask it one thing.
"""

from __future__ import annotations

from pathlib import Path

from .compilation import STAGES, Compilation
from .errors import SpecError
from .frontend import ast
from .frontend.load import load_file
from .ir import Program


def program(spec: ast.Spec, stage: str = "opt", warn=None) -> Program:
    """The IR of a checked spec at ``stage`` ("ir", "grad" or "opt"). Warnings (the
    spec compiles, but probably does not mean what it says) go to ``warn(text)``,
    by default printed on standard error."""
    return Compilation(spec, warn=warn).stage(stage)


def program_from_text(text: str, path: str = "<spec>", stage: str = "opt") -> Program:
    return Compilation.from_text(text, path).stage(stage)


def program_from_file(path: str | Path, stage: str = "opt") -> Program:
    return Compilation.from_file(path).stage(stage)


def check_file(path: str | Path) -> Program:
    """Everything ``bpc check`` runs; raises ``SpecError`` with all problems found."""
    return Compilation.from_file(path).ir


def check_text(text: str, path: str = "<spec>") -> Program:
    """``check_file`` for text in memory."""
    return Compilation.from_text(text, path).ir


def compile_file(path: str | Path, style: str = "fast",
                 target: str = "numpy") -> tuple[str, str]:
    """(model name, generated module source) for a spec file, in ``style``
    ("fast" or "textbook", see ``buffers.plan``), for ``target`` ("numpy" or "torch")."""
    comp = Compilation.from_file(path, style=style, target=target)
    return comp.name, comp.text


def compile_text(text: str, path: str = "<spec>", style: str = "fast",
                 target: str = "numpy") -> tuple[str, str]:
    comp = Compilation.from_text(text, path, style=style, target=target)
    return comp.name, comp.text


def show(path: str | Path, stage: str = "code", style: str = "textbook",
         target: str = "numpy") -> str:
    """What ``bpc show --stage STAGE`` prints (the code for ``target``)."""
    spec = load_file(path)
    if stage == "ast":
        from .frontend.astprint import show_ast

        return show_ast(spec)
    comp = Compilation(spec, style=style, target=target)
    if stage == "code":
        return comp.text
    from .backend.printer import show_stage

    return show_stage(comp.stage(stage))


__all__ = ["STAGES", "Compilation", "SpecError", "check_file", "check_text", "compile_file",
           "compile_text", "program", "program_from_file", "program_from_text", "show"]
