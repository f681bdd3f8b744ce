"""The version bpc records and reports is importlib.metadata's, read without importing it."""

import subprocess
import sys
from importlib import metadata

import pytest

from bpc.runtime.version import version
from conftest import REPO


def test_the_version_is_the_distributions():
    try:
        want = metadata.version("backprop-compiler")
    except metadata.PackageNotFoundError:
        pytest.skip("bpc is not installed here")
    assert version() == want


def test_reading_the_version_imports_no_importlib_metadata():
    code = ("import sys; from bpc.runtime.version import version; version(); "
            "print('importlib.metadata' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, check=True)
    try:
        metadata.version("backprop-compiler")
    except metadata.PackageNotFoundError:
        pytest.skip("bpc is not installed here: the fallback asks importlib.metadata")
    assert r.stdout.strip() == "False"
