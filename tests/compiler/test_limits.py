"""Issue 11: tiny specs that asked for minutes or gigabytes, spec problems that were
internal errors, file-system problems, and compile time that grew quadratically."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time

import pytest

from bpc.compiler import limits
from bpc.compiler.cache import write_text_atomic
from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import check_file, check_text, compile_text
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
BASE = "model m\ninput x : [N, 2]\n"
LOCATED = re.compile(r"^t\.bp:\d+:\d+: error: ", re.M)


def _error(text: str, seconds: float = 5.0) -> str:
    start = time.perf_counter()
    with pytest.raises(SpecError) as e:
        compile_text(text, "t.bp")
    assert time.perf_counter() - start < seconds
    message = str(e.value)
    assert "internal error" not in message
    return message


@pytest.mark.parametrize("text, says", [
    (BASE + "let a = 9^9^9\nloss L = sum(x)\n", "too large"),
    (BASE + "let a = 2^1023 * 4\nloss L = sum(x)\n", "2^1024"),
    (BASE + "let a = " + "9" * 400 + "\nloss L = sum(x)\n", "the limit is 100"),
    (BASE + "let a = " + "9" * 5000 + "\nloss L = sum(x)\n", "the limit is 100"),
    (BASE + "let a = " + "9" * 99 + "\nlet b = a * a * a * a\nloss L = sum(x)\n", "2^1024"),
    (BASE + "layers x -> y {\n  repeat 10000000 { relu }\n}\nloss L = sum(y)\n",
     "limit of 10000"),
    (BASE + "layers x -> y {\n  repeat 5000 { repeat 5000 { relu } }\n}\nloss L = sum(y)\n",
     "10000 layers"),
    (BASE + "param W : [100000000, 100000000] = zeros\nloss L = sum(x @ W)\n",
     "over the limit of 1,000,000,000"),
    (BASE + "loss L = sum(" + "tanh(" * 300 + "x" + ")" * 300 + ")\n", "nests too deeply"),
    (BASE + "loss L = sum(" + "+".join(["x"] * 600) + ")\n", "nests too deeply"),
    (BASE + "loss L = sum(" + "-" * 600 + "x)\n", "nests too deeply"),
    (BASE + "let a = " + "[" * 300 + "1" + "]" * 300 + "\nloss L = sum(x)\n",
     "nests too deeply"),
    ("model " + "m" * 300 + "\ninput x : [N, 2]\nloss L = sum(x)\n", "longer than 100"),
    ("model typing\ninput x : [N, 2]\nloss L = sum(x)\n", "shadow Python's module"),
    ("model random\ninput x : [N, 2]\nloss L = sum(x)\n", "shadow Python's module"),
    (BASE + "let a = [1, 2] + 1\nloss L = sum(x)\n", "matrix literal"),
])
def test_extreme_specs_are_located_errors(text, says):
    message = _error(text)
    assert LOCATED.search(message), message
    assert says in message


def test_long_misspelt_name_is_quick():
    message = _error(BASE + "loss L = sum(" + "x" * 10000 + "q)\n", seconds=2.0)
    assert "unknown name" in message


def test_nesting_just_inside_the_limits_compiles():
    compile_text(BASE + "loss L = sum(" + "tanh(" * 90 + "x" + ")" * 90 + ")\n", "t.bp")
    compile_text(BASE + "loss L = sum(" + "+".join(["x"] * 150) + ")\n", "t.bp")


@pytest.mark.parametrize("sep", ["\x0c", "\x85", "\u2028", "\x1c"])
def test_excerpt_counts_lines_as_the_lexer_does(sep):
    message = _error(f"model m\n# a{sep}b\ninput x : [N, 2]\nloss L = sum(y)\n")
    assert "t.bp:4:14: error: unknown name 'y'" in message
    assert "    4 | loss L = sum(y)\n" in message


def test_non_regular_and_huge_spec_files_are_refused(tmp_path):
    with pytest.raises(SpecError, match="not a regular file"):
        check_file("/dev/zero")
    fifo = tmp_path / "f.bp"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        check_file(fifo)  # refused without opening for a read that would block
    huge = tmp_path / "huge.bp"
    with open(huge, "wb") as f:
        f.truncate(limits.MAX_SPEC_BYTES + 1)
    with pytest.raises(SpecError, match="over the limit"):
        check_file(huge)
    crlf = tmp_path / "crlf.bp"
    crlf.write_bytes(b"model m\r\ninput x : [N, 2]\r\nloss L = sum(x)\r\n")
    check_file(crlf)


def test_write_problems_name_the_path(tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    with pytest.raises(SpecError, match=re.escape(f"{a_file} or a folder above it is a file")):
        write_text_atomic(a_file / "m.py", "x = 1\n")
    (tmp_path / "m.py").mkdir()
    with pytest.raises(SpecError, match="it is a folder"):
        write_text_atomic(tmp_path / "m.py", "x = 1\n")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(SpecError, match=re.escape(f"cannot write {ro}")):
                write_text_atomic(ro / "m.py", "x = 1\n")
        finally:
            ro.chmod(0o755)


def test_stale_temporaries_are_removed(tmp_path):
    stale = tmp_path / ".m.py.abc123.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".m.py.def456.tmp"  # maybe another writer's, still running
    fresh.write_text("half")
    write_text_atomic(tmp_path / "m.py", "x = 1\n")
    assert not stale.exists() and fresh.exists()


def test_cli_compile_reports_a_file_as_output_folder(tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    result = subprocess.run([sys.executable, "-m", "bpc", "compile",
                             str(REPO / "specs" / "xor.bp"), "-o", str(a_file)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert str(a_file) in result.stderr and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


def test_compile_time_is_not_quadratic():
    """4x the statements in well under 16x the time (quadratic); linear is about 4x.
    Compiled end to end as bpc compile does, final layout included (issue 22: one line
    too wide sent the whole module through black). Processor time, best of a few, so a
    busy machine does not decide it."""
    from compile_scaling import SHAPES

    def cpu(text: str) -> float:
        start = time.process_time()
        compile_text(text, "chain.bp")
        return time.process_time() - start

    for shape, make in SHAPES.items():
        cpu(make(50))
        small = min(cpu(make(250)) for _ in range(3))
        large = min(cpu(make(1000)) for _ in range(2))
        assert large / small < 8, (shape, small, large)


@pytest.mark.parametrize("shape, size", [
    ("shared_elementwise", 2000),  # del lists and comment headers thousands of names long
    ("batchnorm", 1200),  # from the 101st layer on, names too long for one line
    ("shared", 1000),  # a gradient summing a thousand terms
])
def test_wide_lines_never_send_the_module_through_black(shape, size, monkeypatch):
    """Every line bpc writes is laid out as black would lay it out, by bpc: del lists and
    equation lists in comments are bounded, statements split (issue 22)."""
    from compile_scaling import SHAPES
    from bpc.compiler.backend import layout

    def refuse(text):
        raise AssertionError("black ran")

    monkeypatch.setattr(layout, "black", refuse)
    _, source = compile_text(SHAPES[shape](size), "t.bp")
    lines = source.splitlines()
    assert max(len(line) for line in lines if not line.lstrip().startswith("#")) <= 88
    headers = [line for line in lines if line.startswith("    # ") and " and " in line]
    assert all(len(line) <= 88 for line in headers)
    assert any(line.endswith(" more") for line in headers) or shape == "batchnorm"


# The default run compiles 1,000 rounds (about 10 s); BPC_LIMITS_ROUNDS=5000 is the
# issue's own spec, MAX_LAYERS (about 30 s of processor time on a free core, 1.7 GB).
ROUNDS = int(os.environ.get("BPC_LIMITS_ROUNDS", "1000"))


@pytest.mark.slow
def test_a_deep_stack_of_batch_norm_layers_compiles_in_bounded_time_and_memory(tmp_path):
    """Issue 22: ``repeat 5000 { dense 8; batchnorm }`` (10,000 layers, MAX_LAYERS) did
    not finish in 900 s at 4.2 GB (black ran on the whole module from the 101st batch
    norm on). Bounded here at 240 s and 3 GB, in a process of its own; the module has
    about 100 lines a round."""
    spec = tmp_path / "deep.bp"
    spec.write_text("model deep\ninput x : [N, 8]\ntarget t : [N, 8]\nlayers x -> y {\n"
                    f"  repeat {ROUNDS} {{ dense 8; batchnorm }}\n}}\nloss L = mse(y, t)\n")
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_CPU, (240, 240))\n"
              "from bpc.compiler.pipeline import compile_file\n"
              "name, source = compile_file(sys.argv[1])\n"
              "print(len(source.splitlines()),"
              " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    result = subprocess.run([sys.executable, "-c", script, str(spec)], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    lines, peak_kb = map(int, result.stdout.split())
    assert lines > 80 * ROUNDS and peak_kb < 3 * 1024 * 1024, (lines, peak_kb)


def test_thousands_of_errors_are_quick_and_capped():
    text = BASE + "".join(f"v{i} = xq\n" for i in range(3000)) + "loss L = sum(x)\n"
    message = _error(text, seconds=20.0)
    assert message.count(": error: unknown name") == 100
    assert "2900 more errors not shown (at most 100 are reported)" in message
    assert "did you mean" in message  # the errors shown keep their hints


def test_a_shared_weight_used_thousands_of_times_compiles_quickly(tmp_path, monkeypatch):
    """Compile time grows linearly with the uses of one weight (its gradient sums them
    all): four times the uses, well under eight times the CPU time (quadratic: 16).
    Each compile starts from an empty cache, as on a new machine (nothing is read from
    it any more: issue 22), whatever this machine's speed or load."""
    from compile_scaling import shared_spec

    def cpu(uses: int) -> tuple[float, str]:
        monkeypatch.setenv("BPC_CACHE", str(tmp_path / f"cache{uses}"))
        start = time.process_time()
        _, source = compile_text(shared_spec(uses), "t.bp")
        return time.process_time() - start, source

    small, _ = cpu(250)
    large, source = cpu(1000)
    assert large / small < 8, (small, large)
    assert max(len(line) for line in source.splitlines()
               if not line.lstrip().startswith("#")) <= 88


def test_a_refused_repeat_is_the_only_problem_reported_for_its_stack():
    msg = _error(BASE + "layers x -> y {\n  repeat 10000000 { relu }\n}\nloss L = sum(y)\n")
    assert "over the limit of 10000" in msg
    assert "needs at least one layer" not in msg
