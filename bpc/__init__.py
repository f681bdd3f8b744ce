"""bpc, the backprop compiler, from Python.

    >>> import bpc
    >>> model = bpc.compile('''
    ... model line
    ... input x : [N, 1]
    ... target y : [N, 1]
    ... param w : [1, 1] = 0.5
    ... f = x @ w
    ... loss L = mean((f - y)^2)
    ... ''')
    >>> model.PARAMS
    {'w': (1, 1)}

``compile`` returns the generated module itself (a ``bpc.Model``, a module type with a
few methods added); see docs/API.md.
"""

from __future__ import annotations

import os

__all__ = ["Model", "compile", "load", "load_checkpoint", "Checkpoint", "__version__"]


def _interrupted_early(signum, frame):  # pragma: no cover - timing dependent
    """Ctrl-C before ``bpc.cli.main`` runs (while Python imports bpc): exit 130, quietly."""
    os.write(2, b"bpc: interrupted\n")
    os._exit(130)


def _as_the_command() -> bool:
    """Whether this process is the ``bpc`` command (``python -m bpc``, whose argv[0] is
    "-m" while this file runs, or the ``bpc`` script), not a program importing bpc."""
    import sys  # loaded with the interpreter: no time

    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-m" or os.path.basename(argv0) == "bpc" \
        or argv0.endswith(os.path.join("bpc", "__main__.py"))


# The command's early Ctrl-C handler, first of all bpc's code: from here to the command's
# own handler (bpc.cli.main) an interrupt exits 130 without a traceback. Never over a
# handler someone else installed (or SIG_IGN). _signal is the C module: no import time.
if _as_the_command():
    import _signal

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _interrupted_early)

# The layout: installed, ``bpc/compiler`` and ``bpc/runtime`` are inside this package
# (pyproject's package-dir); in a source tree they stay the top-level folders beside
# ``bpc/``, found through this package's path (and only as ``bpc.compiler`` and
# ``bpc.runtime``: nothing imports them under another name).
# Only os (loaded with the interpreter) here: "python -m bpc" runs this file first,
# so it must take no time.
try:
    _HERE = os.path.dirname(os.path.abspath(__file__))
    _ROOT = os.path.dirname(_HERE)
    if not os.path.isdir(os.path.join(_HERE, "compiler")) \
            and os.path.isfile(os.path.join(_ROOT, "compiler", "__init__.py")) \
            and os.path.isfile(os.path.join(_ROOT, "runtime", "__init__.py")):
        __path__.append(_ROOT)  # noqa: F821 - the package's own __path__
except KeyboardInterrupt:
    # Ctrl-C while the bpc command starts (``python -m bpc...`` runs this file before
    # the command's own handler exists): exit as the command does on Ctrl-C, quietly,
    # with 130. Imported by a program, bpc leaves the interrupt to it.
    if _as_the_command():
        os._exit(130)
    raise


_API = {"Model", "Graph", "compile", "load", "load_checkpoint", "Checkpoint",
        "_from_source"}  # _from_source: what pickles of models made before bpc.api name


def __getattr__(name: str):
    """The API (``bpc.api``) and the version, imported when first asked for: ``python
    -m bpc`` runs this file before the command's Ctrl-C handler exists, and ``bpc
    --help`` needs none of it."""
    if name == "__version__":
        from bpc.runtime.version import version

        return version()
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bpc' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext bpc``: the ``%%bp`` cell magic."""
    from .magic import register

    register(ipython)
