"""``bpc show``: the generated code, or an IR stage, on standard output."""

from __future__ import annotations

import os
import sys

HELP = "print the generated code, or an IR stage, to stdout"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--stage", choices=["ast", "ir", "grad", "opt", "code"], default="code",
                   help="ast: the desugared spec; ir: forward IR with shapes; grad: with the "
                        "raw derivative; opt: simplified; code: the generated module "
                        "(default)")
    p.add_argument("--style", choices=["fast", "textbook"], default="textbook",
                   help="the code style of --stage code (default: textbook)")
    p.add_argument("--target", choices=["numpy", "torch"], default="numpy",
                   help="the array library of --stage code (default: numpy)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   nargs="?", const="always",
                   help="highlight the output (auto, the default: only on a terminal, and "
                        "not when NO_COLOR is set)")


def run(args) -> int:
    from bpc.compiler.pipeline import show

    text = show(args.spec, args.stage, args.style, args.target)
    color = args.color == "always" or args.color == "auto" and sys.stdout.isatty() \
        and os.environ.get("NO_COLOR", "") == "" and os.environ.get("TERM") != "dumb"
    if color:
        from pygments import highlight
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import PythonLexer

        from bpc.compiler.frontend.lexer import BpLexer

        lexer = PythonLexer() if args.stage == "code" else BpLexer()
        text = highlight(text, lexer, TerminalFormatter())
    sys.stdout.write(text)
    return 0
