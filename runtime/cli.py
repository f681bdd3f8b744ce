"""The ``bpc`` command line.

Exit codes: 0 ok, 1 a check failed (spec errors, gradient check, diverged training),
2 usage. No Python traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compiler.errors import SpecError


class UserError(Exception):
    """A problem the user can fix (bad data, missing file); printed without a traceback."""

    def __init__(self, message: str, hint: str | None = None, code: int = 1):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


def _cmd_check(args) -> int:
    from compiler.pipeline import check_file

    failed = False
    for path in args.specs:
        try:
            check_file(path)
        except SpecError as e:
            failed = True
            print(e.render(), file=sys.stderr)
            continue
        print(f"{path}: ok")
    return 1 if failed else 0


def _cmd_compile(args) -> int:
    from compiler.pipeline import compile_file

    out = Path(args.out)
    failed = False
    written: dict[str, str] = {}
    for path in args.specs:
        try:
            name, source = compile_file(path)
        except SpecError as e:
            failed = True
            print(e.render(), file=sys.stderr)
            continue
        if name in written:
            print(f"bpc: error: {path} and {written[name]} both define model '{name}'; "
                  f"they would write the same {name}.py", file=sys.stderr)
            failed = True
            continue
        written[name] = path
        target = out / f"{name}.py"
        write_atomic(target, source)
        if not args.quiet:
            print(f"{path} -> {target}")
    return 1 if failed else 0


def write_atomic(target: Path, text: str) -> None:
    """Write via a temporary file in the same folder and a rename: never half a file."""
    import os
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _cmd_show(args) -> int:
    from compiler.pipeline import show

    sys.stdout.write(show(args.spec, args.stage))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpc",
        description="The backprop compiler: .bp specs to readable NumPy forward/backward "
                    "code, and a runtime that trains and gradient-checks it.")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="parse and type/shape-check specs; print errors or 'ok'")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(run=_cmd_check)

    p = sub.add_parser("compile", help="compile specs to standalone NumPy modules")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-o", "--out", default="generated", metavar="DIR",
                   help="where to write <model>.py (default: generated/)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=_cmd_compile)

    p = sub.add_parser("show", help="print the generated code, or an IR stage, to stdout")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--stage", choices=["ast", "ir", "grad", "opt", "code"], default="code",
                   help="ast: the desugared spec; ir: forward IR with shapes; grad: with the "
                        "raw derivative; opt: simplified; code: the generated module "
                        "(default)")
    p.set_defaults(run=_cmd_show)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add subcommands here (keeps this file about the command line only).
_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
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
        return 0
    except Exception as e:  # an internal error: say so, without a traceback
        if args.debug:
            raise
        print(f"bpc: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: run again with --debug for the traceback, and please report it",
              file=sys.stderr)
        return 1


def run() -> None:  # pragma: no cover - console entry point
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
