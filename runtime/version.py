"""The installed bpc's version: what a checkpoint records of the bpc that wrote it, and
what ``bpc --version`` and ``bpc.__version__`` report."""

from __future__ import annotations

from importlib import metadata


def version(missing: str = "0.0.0+unknown") -> str:
    """The distribution's version; ``missing`` in a source tree that is not installed."""
    try:
        return metadata.version("backprop-compiler")
    except metadata.PackageNotFoundError:
        return missing
