"""The compiler pipeline as plain calls: each stage is a pure function of the last.

    text --parse/desugar/check--> AST --elaborate--> IR --differentiate--> IR + backward
         --optimize--> IR --codegen--> Python source
"""

from __future__ import annotations

import contextlib
import gc
import sys
from pathlib import Path

from .frontend import ast
from .passes.autodiff import differentiate
from .ir.elaborate import elaborate
from .errors import Diagnostics, SpecError
from .frontend.load import load_file, load_text, too_deep_is_an_error
from .ir import Program
from .passes.optimize import optimize

STAGES = ("ast", "ir", "grad", "opt", "code")


def _print_warning(text: str) -> None:
    print(text, file=sys.stderr)


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off while compiling. The IR is hundreds of
    thousands of small objects, all alive until the module is written and none in a
    reference cycle, so every collection walked them all for nothing: half of the time of
    compiling a large spec (repeat 1600 { dense 8; batchnorm }: 16.7 s, 8.2 s without).
    Back on, as it was, when the outermost stage returns."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _elaborated(spec: ast.Spec, warn, train: bool = True) -> Program:
    diags = Diagnostics(spec.source)
    prog = elaborate(spec, diags, train)
    diags.raise_if_any()
    assert prog is not None
    for text in prog.warnings:
        (warn or _print_warning)(text)
    return prog


def program(spec: ast.Spec, stage: str = "opt", warn=None) -> Program:
    """The IR of a checked spec at ``stage`` ("ir", "grad" or "opt"). Warnings (the
    spec compiles, but probably does not mean what it says) go to ``warn(text)``,
    by default printed on standard error."""
    with too_deep_is_an_error(spec.path, spec.source), gc_paused():
        prog = _elaborated(spec, warn)
        if stage == "ir":
            return prog
        prog = differentiate(prog)
        if stage == "grad":
            return prog
        return optimize(prog)


def has_modes(prog: Program) -> bool:
    """Whether training and inference differ: the program draws random numbers
    (dropout) or updates state (batch norm)."""
    from .ir import topo_order
    from .ir.primitives import PRIMITIVES

    return bool(prog.updates) or any(
        PRIMITIVES[n.op].random for n in topo_order([bd.node for bd in prog.forward]))


def inference_program(spec: ast.Spec, prog: Program) -> Program | None:
    """The optimized IR in inference mode, or None when it would be ``prog`` itself."""
    if not has_modes(prog):
        return None
    with too_deep_is_an_error(spec.path, spec.source), gc_paused():
        return optimize(differentiate(_elaborated(spec, lambda text: None, train=False)))


def _generate(spec: ast.Spec, path: str, style: str) -> tuple[str, str]:
    from .backend.codegen import generate

    with gc_paused():
        prog = program(spec, "opt")
        infer = inference_program(spec, prog)
        with too_deep_is_an_error(path, None):
            return prog.name, generate(prog, path, style=style, inference=infer)


def program_from_text(text: str, path: str = "<spec>", stage: str = "opt") -> Program:
    return program(load_text(text, path), stage)


def program_from_file(path: str | Path, stage: str = "opt") -> Program:
    return program(load_file(path), stage)


def check_file(path: str | Path) -> Program:
    """Everything ``bpc check`` runs; raises ``SpecError`` with all problems found."""
    return program(load_file(path), "ir")


def check_text(text: str, path: str = "<spec>") -> Program:
    """``check_file`` for text in memory."""
    return program(load_text(text, path), "ir")


def compile_file(path: str | Path, style: str = "fast") -> tuple[str, str]:
    """(model name, generated module source) for a spec file, in ``style``
    ("fast" or "textbook", see ``buffers.plan``)."""
    return _generate(load_file(path), str(path), style)


def compile_text(text: str, path: str = "<spec>", style: str = "fast") -> tuple[str, str]:
    return _generate(load_text(text, path), path, style)


def show(path: str | Path, stage: str = "code", style: str = "textbook") -> str:
    """What ``bpc show --stage STAGE`` prints."""
    spec = load_file(path)
    if stage == "ast":
        from .frontend.astprint import show_ast

        return show_ast(spec)
    if stage == "code":
        return _generate(spec, str(path), style)[1]
    from .backend.printer import show_stage

    return show_stage(program(spec, stage))


__all__ = ["STAGES", "SpecError", "check_file", "check_text", "program", "program_from_file",
           "program_from_text"]
