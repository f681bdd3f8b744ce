"""``bpc explain`` in a real browser: headless Chromium loads the page from disk, runs its
script with no console message at all, and a link to a spec line highlights the code
lines it produced; a screenshot is written. Skipped (with the reason) when no Chromium
is installed — CI does not install one; locally: apt-get install chromium."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BN_EXAMPLE, REPO
from bpc.reports.explain import report
from bpc.reports.trace import parse_at

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get "
                                "install chromium to run the browser test)")


def _chromium(*args, timeout=120):
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--enable-logging=stderr", "--log-level=0"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")
        return subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True,
                              timeout=timeout)




@pytest.mark.parametrize("case", ["mazur", "batchnorm"])
def test_explain_page_in_chromium(tmp_path, case):
    if case == "mazur":
        spec, line_start = REPO / "specs" / "mazur.bp", "h = sigmoid"
        text = report(spec, parse_at("x=[0.05,0.10],t=[0.01,0.99]"), batch=50)
    else:  # states, batch norm's steps and updates, training-mode notes
        spec, line_start = tmp_path / "bn_example.bp", "  repeat 2"
        spec.write_text(BN_EXAMPLE)
        text = report(spec, batch=50)
    page = tmp_path / f"{case}.html"
    page.write_text(text)
    spec_line = next(i for i, ln in enumerate(spec.read_text().splitlines(), 1)
                     if ln.startswith(line_start))
    r = _chromium("--dump-dom", f"{page.as_uri()}?spec={spec_line}")
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    dom = r.stdout
    assert re.search(r'<body data-ready="\d+"', dom), "the page's script did not run"
    selected = re.findall(r'<span id="(code-\d+|spec-\d+)" class="sel">', dom)
    assert f"spec-{spec_line}" in selected
    assert sum(s.startswith("code-") for s in selected) >= 3  # forward and backward lines
    shot = tmp_path / "explain.png"
    r = _chromium("--window-size=1400,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000, r.stderr[-2000:]
    keep = os.environ.get("BPC_SCREENSHOT_DIR")
    if keep and case == "mazur":  # BPC_SCREENSHOT_DIR=docs/ refreshes the README's picture
        shutil.copy(shot, Path(keep) / "explain.png")
