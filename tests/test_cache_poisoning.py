"""Issue 11: nothing planted in bpc's cache folder decides generated code or runs.

The cache folder is writable by the user (and by anything running as the user): black's
remembered output, a Lark cache file, a FIFO or a symbolic link planted there must leave
``compile`` output identical to a clean compile, and run nothing.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import threading
from pathlib import Path

import pytest

from bpc.compiler import cache

from bpc.compiler.backend import codegen

from bpc.compiler.frontend import parser, tables
from bpc.compiler.pipeline import compile_file

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "specs" / "xor.bp"
# Wide enough that black runs (pyfmt's own layout covers the usual module).
RAW = "x = [" + ", ".join(str(i) for i in range(40)) + "]\n"
PLANTED = "import os\nos.environ['BPC_PWNED'] = '1'\nx = [0]\n"


def _black_entry(folder: Path, raw: str) -> Path:
    key = f"{codegen._black_identity()} py310\n{raw}"
    return folder / "black" / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".txt")


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BPC_CACHE", str(tmp_path))
    monkeypatch.delenv("BPC_PWNED", raising=False)
    codegen._ast_dump.cache_clear()
    (tmp_path / "black").mkdir()
    return tmp_path


def test_planted_black_output_is_discarded(cache_folder):
    clean = codegen.format_source(RAW)
    entry = _black_entry(cache_folder, RAW)
    assert entry.read_text() == clean  # remembered, and used again while it is genuine
    assert codegen.format_source(RAW) == clean
    entry.write_text(PLANTED)  # parses, but is another program
    assert codegen.format_source(RAW) == clean
    assert entry.read_text() == clean  # replaced by the real output
    entry.write_text("x = [\n")  # does not even parse
    assert codegen.format_source(RAW) == clean
    entry.write_bytes(b"\xff\xfe not utf-8")
    assert codegen.format_source(RAW) == clean
    assert "BPC_PWNED" not in os.environ


def test_planted_fifo_symlink_and_huge_file(cache_folder, tmp_path_factory, monkeypatch):
    clean = codegen.format_source(RAW)
    entry = _black_entry(cache_folder, RAW)

    entry.unlink()
    os.mkfifo(entry)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(codegen.format_source(RAW)),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "a FIFO in the cache hangs the compile"
    assert result == [clean]
    assert stat.S_ISREG(entry.lstat().st_mode)

    elsewhere = tmp_path_factory.mktemp("elsewhere") / "target.txt"
    elsewhere.write_text(clean)  # even a link to the right text is not followed
    entry.unlink()
    entry.symlink_to(elsewhere)
    assert codegen.format_source(RAW) == clean
    assert not entry.is_symlink() and elsewhere.read_text() == clean

    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 10)
    assert cache.read_regular(entry, 10) is None  # over the bound: not read
    assert cache.read_regular(Path("/dev/zero")) is None
    assert codegen.format_source(RAW) == clean


def test_planted_lark_cache_is_never_unpickled(cache_folder, monkeypatch):
    ran: list = []

    class Boom:
        def __reduce__(self):
            return (exec, ("import os; os.environ['BPC_PWNED'] = '1'",))

    lark_dir = cache_folder / "lark"
    lark_dir.mkdir()
    payload = pickle.dumps(Boom())
    for name in ("bp-grammar.lark-cache", "bp.lark-cache"):
        (lark_dir / name).write_bytes(payload)
    import lark.lark as lark_module

    original = lark_module.Lark.__init__

    def spy(self, grammar, **options):
        ran.append(options.get("cache"))
        return original(self, grammar, **options)

    monkeypatch.setattr(lark_module.Lark, "__init__", spy)
    monkeypatch.setattr(tables, "load", lambda grammar, **options: None)  # stale tables
    parser._lark.cache_clear()
    try:
        name, source = compile_file(SPEC)
    finally:
        parser._lark.cache_clear()
    assert ran and all(c is False for c in ran)
    assert "BPC_PWNED" not in os.environ
    _, reference = compile_file(SPEC)
    assert source == reference


def test_generated_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        target = tmp_path / "m.py"
        cache.write_text_atomic(target, "x = 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() == "x = 1\n"
    assert not list(tmp_path.glob(".*.tmp"))
