"""The package ships everything it imports: every package folder is listed, data included."""

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(("bpc",) + p.parent.relative_to(REPO).parts)
             for top in ("compiler", "runtime") for p in (REPO / top).rglob("__init__.py")}
    assert found <= listed, f"missing from pyproject.toml packages: {sorted(found - listed)}"
    assert config["tool"]["setuptools"]["package-dir"]["bpc.compiler._grammar"] == "grammar"
    assert "*.lark" in config["tool"]["setuptools"]["package-data"]["bpc.compiler._grammar"]
    assert "*.j2" in config["tool"]["setuptools"]["package-data"]["bpc.compiler.backend.templates"]
