"""The ``bpc`` command line: the table of commands, the parser built from it, and
``main``, which runs one command and turns every error into a message and an exit code.

Each command is a module beside this file: ``HELP`` (its line in ``bpc --help``),
``add_arguments(parser)`` and ``run(args) -> exit code``. Adding a command is one such
module and one line in ``COMMANDS``.

Exit codes: 0 ok, 1 a check failed (spec errors, gradient check, diverged training),
2 usage. No Python traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from bpc import _interrupted_early  # the early Ctrl-C handler, installed by bpc/__init__
from bpc.compiler.errors import SpecError
from bpc.runtime.errors import UserError
from bpc.runtime.threads import limited

# The commands, in the order ``bpc --help`` lists them: each names a module of this package.
COMMANDS = (
    "check",
    "compile",
    "train",
    "gradcheck",
    "stats",
    "graph",
    "show",
    "trace",
    "explain",
    "predict",
    "eval",
    "sample",
    "plot",
    "params",
)


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (reading the
    distribution's metadata costs every other command a few milliseconds)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from bpc.runtime.version import version

        print(f"bpc {version('unknown (not installed)')}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone (its module is the
    only one imported: ``bpc train`` starts without the other twelve)."""
    parser = argparse.ArgumentParser(
        prog="bpc",
        description="The backprop compiler: .bp specs to readable NumPy forward/backward "
                    "code, and a runtime that trains and gradient-checks it.")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for internal errors")
    parser.add_argument("--version", action=_Version, help="show bpc's version and exit")
    # --debug also works after the command (bpc train spec.bp --debug).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS if only is None else (only,):
        command = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, parents=[common], help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


_sigint_seen = False


def _interrupt(signum, frame):
    """Ctrl-C once bpc runs: KeyboardInterrupt, remembered, since a library may turn it
    into another error (NumPy's import reports an interrupted import as ImportError)."""
    global _sigint_seen
    _sigint_seen = True
    if frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        # Inside the import system (a module lock's weakref callback among others) Python
        # may print the exception as "Exception ignored" and go on: end here instead;
        # nothing of a run is under way during an import (training defers Ctrl-C).
        sys.stdout.flush()
        print("bpc: interrupted", file=sys.stderr, flush=True)
        os._exit(130)
    raise KeyboardInterrupt


_interrupt.raises_keyboard_interrupt = True  # training may defer it (runfolder.DeferredInterrupt)


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is _interrupted_early:
        signal.signal(signal.SIGINT, _interrupt)  # now caught below
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while parsing the command line
        print("bpc: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_parsed(build_parser(_command_named(argv)).parse_args(argv))


def _command_named(argv: list[str]) -> str | None:
    """The command ``argv`` runs when its first word that is not an option names one
    and no help is asked for before it; else None (the whole parser answers)."""
    for word in argv:
        if word in ("-h", "--help", "--version") or not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def run_parsed(args) -> int:
    """The command the parsed ``args`` name, run; its exit status (errors printed as
    ``bpc: error: ...``). A worker process of ``bpc train --workers`` starts here."""
    try:
        with limited(getattr(args, "threads", None)):
            code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except UserError as e:
        print(f"bpc: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("bpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (bpc show x.bp | head -1): end quietly, and let nothing
        # write to the closed pipe at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except Exception as e:  # an internal error: say so, without a traceback
        if _sigint_seen:  # Ctrl-C, reported by a library as its own error
            print("bpc: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            raise
        print(f"bpc: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: run again with --debug for the traceback, and please report it",
              file=sys.stderr)
        return 1
