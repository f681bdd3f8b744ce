"""The LALR tables shipped in compiler/frontend/_lark_tables.py: current, used, and equivalent to
tables Lark builds from the grammar."""

import subprocess
import sys

import lark
import pytest
from lark.exceptions import UnexpectedInput

from bpc.compiler.frontend import parser, tables, tokens
from conftest import GOLDEN, REPO, SPECS

TEXTS = [p.read_text() for p in SPECS] + [
    p.read_text() for p in sorted((GOLDEN / "errors").glob("*.bp"))]


def test_tables_are_for_this_grammar():
    # Fails when grammar/bp.lark was edited without `python3 -m bpc.compiler.frontend.tables`.
    from bpc.compiler.frontend import _lark_tables

    assert _lark_tables.GRAMMAR_SHA256 == tables.grammar_key(parser._grammar_text())


def _outcome(p, post, text):
    try:
        return ("tree", p.parse(text + "\n"))
    except UnexpectedInput as e:
        return ("error", type(e).__name__, e.line, e.column, sorted(getattr(e, "expected", ())),
                [t.type for t in post.stmt])
    except Exception as e:  # bracket errors from the post-lexer
        return ("raised", type(e).__name__, str(e))


@pytest.mark.skipif(tables.stale_reason(parser._grammar_text()) is not None,
                    reason="the shipped tables are for another Lark version; not used here")
def test_shipped_tables_parse_like_freshly_built_ones():
    grammar = parser._grammar_text()
    shipped_post = tokens.PostLexer()
    shipped = tables.load(grammar, postlex=shipped_post)
    assert shipped is not None
    built_post = tokens.PostLexer()
    built = parser._build_lark(grammar, cache=False, postlex=built_post)
    for text in TEXTS:
        assert _outcome(shipped, shipped_post, text) == _outcome(built, built_post, text)


def test_foreign_tables_are_not_used(monkeypatch):
    monkeypatch.setattr(lark, "__version__", "0.0-not-this-one")
    assert tables.load(parser._grammar_text()) is None
    assert "Lark 0.0-not-this-one" in tables.stale_reason(parser._grammar_text())
    assert tables.load("start: NAME") is None


def test_parser_falls_back_to_building_tables(monkeypatch, tmp_path):
    monkeypatch.setenv("BPC_CACHE", str(tmp_path))
    monkeypatch.setattr(tables, "load", lambda grammar, **options: None)
    parser._lark.cache_clear()
    try:
        spec = parser.parse(SPECS[0].read_text(), str(SPECS[0]))
        assert spec.statements
        # Never through Lark's pickle cache: the cache folder is user-writable.
        assert not (tmp_path / "lark").exists()
    finally:
        parser._lark.cache_clear()


def test_check_command():
    result = subprocess.run([sys.executable, "-m", "bpc.compiler.frontend.tables", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    if tables.stale_reason(parser._grammar_text()) is None:
        assert result.returncode == 0 and result.stdout.strip() == "up to date"
    else:
        assert result.returncode == 1 and "stale" in result.stdout
