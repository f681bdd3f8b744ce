"""``bpc compile``: specs to standalone NumPy (or PyTorch) modules, written into a folder."""

from __future__ import annotations

import sys
from pathlib import Path

from bpc.cli.options import add_spec_paths, spec_paths

HELP = "compile specs to standalone NumPy (or PyTorch) modules"


def add_arguments(p) -> None:
    add_spec_paths(p)
    p.add_argument("-o", "--out", default="generated", metavar="DIR",
                   help="where to write <model>.py (default: generated/)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--style", choices=["fast", "textbook"], default="fast",
                   help="fast (default): buffers reused in place and released early, "
                        "what bpc train runs; textbook: one plain assignment per step, "
                        "no out=, no in-place update, no del")
    p.add_argument("--target", choices=["numpy", "torch"], default="numpy",
                   help="numpy (default): <model>.py imports NumPy; torch: <model>_torch.py "
                        "imports PyTorch (tensors in and out, on their device)")


def run(args) -> int:
    from bpc.compiler.cache import write_text_atomic
    from bpc.compiler.errors import SpecError
    from bpc.compiler.pipeline import compile_file

    out = Path(args.out)
    failed = False
    written: dict[str, str] = {}
    for path in spec_paths(args):
        try:
            name, source = compile_file(path, args.style, args.target)
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
        written_to = out / (f"{name}.py" if args.target == "numpy" else f"{name}_torch.py")
        write_text_atomic(written_to, source)
        if not args.quiet:
            print(f"{path} -> {written_to}")
    return 1 if failed else 0
