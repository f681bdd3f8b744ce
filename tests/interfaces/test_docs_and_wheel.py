"""The docs stand on their own (every link resolves inside the repository, every extra
they name exists, the code the README copies is the code bpc prints), and the wheel
carries what the compiler reads at run time."""

import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def config():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_resolve_inside_the_repository(page):
    if not page.exists():
        pytest.skip(f"{page.name} is not in this tree")
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
        assert path.exists(), f"{page.name} links to a missing file: {target}"


def test_files_the_specs_and_docs_name_exist():
    for spec in (REPO / "specs").glob("*.bp"):
        for name in re.findall(r"#.*?\b([a-z0-9_]+\.bp)\b", spec.read_text()):
            assert (REPO / "specs" / name).exists(), f"{spec.name} names {name}"
    for page in PAGES:
        if page.exists():
            for name in re.findall(r"specs/([a-z0-9_]+\.bp)", page.read_text()):
                assert (REPO / "specs" / name).exists(), f"{page.name} names specs/{name}"


def test_the_readmes_bptt_code_is_what_bpc_show_prints():
    """The README's backward loop, copied from a gallery module, is still its code."""
    from bpc.compiler.compilation import Compilation

    text = (REPO / "README.md").read_text()
    section = text.split("**Backpropagation through time, written out.**")[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    spec = re.search(r"bpc show (specs/\w+\.bp)", section).group(1)
    assert "for t in reversed(" in block
    assert block in Compilation.from_file(REPO / spec, style="textbook").text


def test_the_extras_the_docs_name_exist():
    project = config()["project"]
    extras = set(project["optional-dependencies"])
    texts = [p.read_text() for p in PAGES if p.exists()]
    texts += [p.read_text() for top in ("runtime", "bpc") for p in (REPO / top).rglob("*.py")]
    named = set()
    for text in texts:
        for dist, extra in re.findall(r"([A-Za-z0-9_.-]+|\.)\[([a-z0-9_,-]+)\]'", text):
            assert dist in (".", project["name"]), f"the docs name the distribution {dist}"
            named.update(extra.split(","))
    assert named and named <= extras, f"unknown extras: {sorted(named - extras)}"


def test_the_wheel_ships_grammar_templates_tables_and_lexer(tmp_path):
    pytest.importorskip("build")  # python -m build, as a release is built
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    for name in files.stdout.splitlines():
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir",
                        str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("backprop_compiler-")
    names = zipfile.ZipFile(wheel).namelist()
    # ops/kernels.py: codegen copies the module helpers from its source (torch_kernels.py:
    # the torch target's)
    for wanted in ("_grammar/bp.lark", "templates/module.py.j2", "/_lark_tables.py",
                   "/lexer.py", "bpc/__init__.py", "bpc/magic.py",
                   "bpc/compiler/ir/ops/kernels.py", "templates/torch_module.py.j2",
                   "bpc/compiler/ir/ops/torch_kernels.py"):
        assert any(n.endswith(wanted) for n in names), f"the wheel lacks {wanted}"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "[pygments.lexers]" in text and "BpLexer" in text and "bpc = " in text
    assert not any(n.startswith(("tests/", "specs/", "bench/")) for n in names)
