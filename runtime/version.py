"""The installed bpc's version: what a checkpoint records of the bpc that wrote it, and
what ``bpc --version`` and ``bpc.__version__`` report.

Read from the distribution's metadata file found along ``sys.path`` as
``importlib.metadata`` finds it (the first ``backprop_compiler`` ``.dist-info`` or
``.egg-info`` folder), without importing ``importlib.metadata``: its import (the email
package) cost every ``bpc train`` run ~20 ms, a tenth of a short run. Anything this
reading does not find is asked of ``importlib.metadata`` after all."""

from __future__ import annotations

import os
import sys

NAME = "backprop_compiler"  # the distribution's name as its metadata folder spells it


def version(missing: str = "0.0.0+unknown") -> str:
    """The distribution's version; ``missing`` in a source tree that is not installed."""
    found = _from_metadata_file()
    if found:
        return found
    from importlib import metadata

    try:
        return metadata.version("backprop-compiler")
    except metadata.PackageNotFoundError:
        return missing


def _from_metadata_file() -> str | None:
    for entry in sys.path:
        folder = entry or os.getcwd()
        try:
            names = sorted(os.listdir(folder))
        except OSError:  # not a folder (a zip file), or gone
            continue
        for name in names:
            lower = name.lower()
            if lower.startswith(NAME + "-") and lower.endswith(".dist-info"):
                return _version_line(os.path.join(folder, name, "METADATA"))
            if lower == NAME + ".egg-info" or lower.startswith(NAME + "-") and \
                    lower.endswith(".egg-info"):
                return _version_line(os.path.join(folder, name, "PKG-INFO"))
    return None


def _version_line(path: str) -> str | None:
    """The ``Version:`` header of a metadata file; None when it has none."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end at the first blank line
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None
