"""The import layers: compiler <- runtime <- reports <- interfaces. A module imports only
from its own layer or the layers below it (docs/DESIGN.md, "Layers"); every module
belongs to a layer."""

import ast
from pathlib import Path

from conftest import REPO

# Each source folder and the package it installs as (pyproject's package-dir).
PACKAGES = {"compiler": "bpc.compiler", "runtime": "bpc.runtime", "reports": "bpc.reports",
            "bpc": "bpc"}
LAYERS = ("compiler", "runtime", "reports", "interfaces")
INTERFACES = ("bpc", "bpc.__main__", "bpc.api", "bpc.checkpoints", "bpc.magic", "bpc.cli")


def module_name(path: Path) -> str:
    """``runtime/train.py`` -> ``bpc.runtime.train``; a package's ``__init__.py`` is the
    package."""
    top, *rest = path.relative_to(REPO).with_suffix("").parts
    parts = [PACKAGES[top], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of a module inside bpc, None for a module of no layer."""
    for layer, package in enumerate(("bpc.compiler", "bpc.runtime", "bpc.reports")):
        if module == package or module.startswith(package + "."):
            return layer
    if module in INTERFACES or module.startswith("bpc.cli."):
        return LAYERS.index("interfaces")
    return None


def imported(tree: ast.Module, module: str, is_package: bool, known: set[str]):
    """(line, module) for every import of a bpc module in ``tree``, at module level or
    inside a function; relative imports resolved from ``module``, and ``from p import x``
    taken as ``p.x`` when that is a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in known else base


def violations(files: dict[Path, str]) -> list[str]:
    """Every import in ``files`` (path -> source) that goes up a layer, and every file
    that belongs to no layer, as ``file:line`` messages."""
    names = {path: module_name(path) for path in files}
    known = set(names.values())
    found = []
    for path, source in sorted(files.items()):
        where = path.relative_to(REPO)
        module = names[path]
        layer = layer_of(module)
        if layer is None:
            found.append(f"{where}: {module} belongs to no layer ({', '.join(LAYERS)})")
            continue
        tree = ast.parse(source, str(path))
        for line, target in imported(tree, module, path.name == "__init__.py", known):
            if target != "bpc" and not target.startswith("bpc."):
                continue  # the standard library, NumPy, ...
            up = layer_of(target)
            if up is None:
                found.append(f"{where}:{line}: imports {target}, which belongs to no layer")
            elif up > layer:
                found.append(f"{where}:{line}: {LAYERS[layer]} imports {target} of "
                             f"{LAYERS[up]}, a higher layer")
    return found


def source_files() -> dict[Path, str]:
    return {p: p.read_text() for top in PACKAGES for p in (REPO / top).rglob("*.py")}


def test_no_module_imports_from_a_higher_layer():
    files = source_files()
    layers = {layer_of(module_name(p)) for p in files}
    assert layers >= set(range(len(LAYERS))), "a layer has no modules: the folders moved?"
    problems = violations(files)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_an_import_up_or_a_module_of_no_layer_is_found():
    files = {REPO / "runtime" / "fake.py": "def f():\n    from ..reports.trace import trace\n",
             REPO / "compiler" / "fake.py": "import bpc.cli\nfrom bpc import magic\n",
             REPO / "reports" / "fake.py": "from ..runtime import train\nimport numpy\n",
             REPO / "bpc" / "extra.py": "import os\n"}
    assert violations(files) == [
        "bpc/extra.py: bpc.extra belongs to no layer (compiler, runtime, reports, interfaces)",
        "compiler/fake.py:1: compiler imports bpc.cli of interfaces, a higher layer",
        "compiler/fake.py:2: compiler imports bpc of interfaces, a higher layer",
        "runtime/fake.py:2: runtime imports bpc.reports.trace of reports, a higher layer"]
