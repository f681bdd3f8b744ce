"""``bpc check``: parse and type/shape-check specs."""

from __future__ import annotations

import sys

from bpc.cli.options import add_spec_paths, spec_paths

HELP = "parse and type/shape-check specs; print errors and warnings, or 'ok'"


def add_arguments(p) -> None:
    add_spec_paths(p)


def run(args) -> int:
    from bpc.compiler.errors import SpecError
    from bpc.compiler.pipeline import check_file

    failed = False
    for path in spec_paths(args):
        try:
            prog = check_file(path)
        except SpecError as e:
            failed = True
            print(e.render(), file=sys.stderr)
            continue
        count = len(prog.warnings)
        print(f"{path}: ok" + (f" ({count} warning{'s' if count > 1 else ''})" if count else ""))
    return 1 if failed else 0
