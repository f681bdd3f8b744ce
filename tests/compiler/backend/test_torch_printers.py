"""The PyTorch target's printers (no torch needed: the compiler only writes text): every
op prints on torch, the module imports only torch, reads like the NumPy module line for
line, and a spec name the torch module uses itself is a located error."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bpc.compiler.compilation import Compilation
from bpc.compiler.errors import SpecError
from bpc.compiler.ir.ops import HELPERS, PRIMITIVES, TORCH_HELPERS

SPECS = sorted((Path(__file__).resolve().parents[3] / "specs").glob("*.bp"))


def test_every_op_has_a_torch_printer():
    """The op table: a torch printer for every op, and a torch twin of every helper a
    torch printer calls (none is refused: every construct of the language prints)."""
    missing = [name for name, prim in PRIMITIVES.items() if not callable(prim.torch)]
    assert not missing, f"ops without a torch printer: {missing}"
    helpers = {h for prim in PRIMITIVES.values() for h in prim.torch_helpers}
    assert helpers <= set(TORCH_HELPERS), helpers - set(TORCH_HELPERS)


def _target(node: ast.expr) -> str:
    """An assignment's target; into part of an array, the array alone: torch writes a
    slice with a negative step (``dL_dx[:, ::-1] +=``) with positive steps and a flip."""
    return f"{ast.unparse(node.value)}[…]" if isinstance(node, ast.Subscript) else \
        ast.unparse(node)


def _functions(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """Each generated function (helpers left out): the names its statements assign
    (the torch prologue's placement left out) and its comments, in order."""
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name not in HELPERS:
            names = []
            for st in ast.walk(node):
                if isinstance(st, (ast.Assign, ast.AugAssign)):
                    targets = st.targets if isinstance(st, ast.Assign) else [st.target]
                    names += [_target(t) for t in targets]
            lines = ast.get_source_segment(text, node).splitlines()
            # a temporary's note sits after its line when it fits, else above it, named
            comments = [re.sub(r"^ \w+: \[", " [", line.split("#", 1)[1]) for line in lines
                        if "#" in line
                        and "NumPy scalars" not in line and "own array" not in line
                        and "own tensor" not in line]
            out[node.name] = ([n for n in names if n not in ("(dtype, device)", "values")],
                              comments)
    return out


@pytest.mark.parametrize("style", ["fast", "textbook"])
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_torch_module_reads_like_the_numpy_module(path, style):
    comp = Compilation.from_file(path, style=style)
    numpy, torch = comp.text, comp.retargeted("torch").text
    imports = {alias.name for node in ast.walk(ast.parse(torch))
               if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imports == {"torch"}
    ours = _functions(numpy)
    assert {k: v for k, v in _functions(torch).items() if k in ours} == ours


@pytest.mark.parametrize("name", ["torch", "device"])
def test_a_name_the_torch_module_uses_is_a_located_error(name):
    text = (f"model m\ninput x : [N, 2]\nparam w : [2] = zeros\n{name} = x * w\n"
            f"loss L = sum({name})\n")
    Compilation.from_text(text, "m.bp").text  # NumPy prints it
    with pytest.raises(SpecError) as e:
        Compilation.from_text(text, "m.bp", target="torch").text
    assert f"m.bp:4:1: error: '{name}' cannot name a value" in str(e.value)


def test_compile_and_show_take_the_target(tmp_path):
    from conftest import run_bpc

    done = run_bpc("compile", "specs/xor.bp", "--target", "torch", "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "xor_torch.py").read_text()
    assert written == Compilation.from_file("specs/xor.bp", target="torch").text
    shown = run_bpc("show", "specs/xor.bp", "--target", "torch", "--color", "never")
    assert shown.returncode == 0 and "\nimport torch\n" in shown.stdout
    assert "--target torch --style textbook" in shown.stdout
