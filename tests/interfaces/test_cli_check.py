"""``bpc check`` end to end through a subprocess: exit codes and output format."""

from conftest import GOLDEN, REPO, SPECS, run_bpc


def test_check_gallery_ok():
    r = run_bpc("check", *[p.relative_to(REPO) for p in SPECS])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{p.relative_to(REPO)}: ok" for p in SPECS]
    assert r.stderr == ""


def test_check_reports_every_file_and_fails(tmp_path):
    bad = tmp_path / "bad.bp"
    bad.write_text("input x : [N, 2]\nh = x *\nloss L = sum(h)\n")
    good = REPO / "specs" / "toy.bp"
    r = run_bpc("check", bad, good)
    assert r.returncode == 1
    assert f"{good}: ok" in r.stdout
    first = r.stderr.splitlines()[0]
    assert first == f"{bad}:2:8: error: dangling operator '*': expected a value after it, " \
                    "found end of line"
    assert "Traceback" not in r.stderr


def test_check_golden_error_through_cli():
    case = GOLDEN / "errors" / "unknown_name.bp"
    r = run_bpc("check", case.name, cwd=case.parent)
    assert r.returncode == 1
    assert r.stderr == case.with_suffix(".err").read_text()
    assert r.stdout == ""


def test_usage_errors_exit_2():
    assert run_bpc().returncode == 2
    assert run_bpc("check").returncode == 2
    assert run_bpc("frobnicate").returncode == 2


def test_missing_file_is_an_error_not_a_traceback(tmp_path):
    r = run_bpc("check", tmp_path / "nope.bp")
    assert r.returncode == 1
    assert "no such file" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_commands():
    r = run_bpc("--help")
    assert r.returncode == 0 and "check" in r.stdout


def test_compile_writes_good_specs_and_fails_on_bad_ones(tmp_path):
    bad = tmp_path / "bad.bp"
    bad.write_text("input x : [N, 2]\nloss L = sum(x @ x)\n")
    out = tmp_path / "out"
    r = run_bpc("compile", bad, REPO / "specs" / "toy.bp", "-o", out)
    assert r.returncode == 1
    assert "matmul inner dimensions differ" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["toy.py"]  # no partial or temp files


def test_show_every_stage():
    for stage in ("ast", "ir", "grad", "opt", "code"):
        r = run_bpc("show", "specs/toy.bp", "--stage", stage)
        assert r.returncode == 0 and r.stdout, stage
    assert "dl_df3 = 2 * (f3 - y)" in run_bpc("show", "specs/toy.bp").stdout


def test_runtime_errors_are_messages(tmp_path):
    r = run_bpc("train", "specs/spiral.bp", "--resume", "--out", tmp_path / "none")
    assert r.returncode == 1 and "nothing to resume" in r.stderr
    notmodel = tmp_path / "x.py"
    notmodel.write_text("a = 1\n")
    r = run_bpc("gradcheck", notmodel)
    assert r.returncode == 1 and "is not a bpc model" in r.stderr
    r = run_bpc("gradcheck", tmp_path / "missing.bp")
    assert r.returncode == 1 and "no such file" in r.stderr
    for r in (run_bpc("train", "specs/spiral.bp", "--epochs", "0"),
              run_bpc("train", "specs/spiral.bp", "--optimizer", "lion")):
        assert r.returncode == 2 and "Traceback" not in r.stderr  # usage errors
        assert "argument --epochs: must be a whole number in [1, 1e+15], not 0" in r.stderr or \
            "argument --optimizer: invalid choice: 'lion'" in r.stderr


def test_debug_flag_before_or_after_the_command():
    for args in (["--debug", "check", "specs/toy.bp"], ["check", "specs/toy.bp", "--debug"],
                 ["stats", "specs/toy.bp", "--debug"]):
        assert run_bpc(*args).returncode == 0, args


def test_a_pattern_no_shell_expanded_is_expanded(tmp_path):
    """``bpc check 'specs/*.bp'`` (a quoted pattern, Windows' cmd, a subprocess without a
    shell) checks the files it matches, sorted; one matching nothing is a missing file;
    a file whose name has a wildcard character is that file."""
    r = run_bpc("check", "specs/*.bp", "specs/nothing*.bp", cwd=REPO)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [f"{p.relative_to(REPO)}: ok" for p in sorted(SPECS)]
    assert r.stderr.strip() == "error: specs/nothing*.bp: no such file"
    odd = tmp_path / "a[1].bp"
    odd.write_text((REPO / "specs" / "toy.bp").read_text())
    r = run_bpc("check", odd.name, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "a[1].bp: ok\n", r.stderr
    r = run_bpc("compile", "--out", str(tmp_path), "specs/x*.bp", cwd=REPO)
    assert r.returncode == 0 and (tmp_path / "xor.py").exists(), r.stderr
