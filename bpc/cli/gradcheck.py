"""``bpc gradcheck``: the backward pass against finite differences, and the verdict."""

from __future__ import annotations

from bpc.compiler.vocab import RUNTIME_RANGES

from .options import add_target_arguments, number, target_of

HELP = ("compare the backward pass with finite differences (of a model with dropout or "
        "batch norm: in training and inference mode)")


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC_OR_MODULE")
    p.add_argument("--eps", type=number(RUNTIME_RANGES["eps"]), default=1e-6,
                   help="finite-difference step")
    p.add_argument("--tol", type=number(RUNTIME_RANGES["tol"]), default=1e-5,
                   help="largest relative error allowed")
    p.add_argument("--samples", type=number(RUNTIME_RANGES["samples"]), default=20,
                   metavar="K", help="entries checked per variable (all of a smaller one)")
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=3,
                   help="examples in the random batch")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    add_target_arguments(p)


def run(args) -> int:
    import numpy as np

    from bpc.runtime.arrays import host_dtype
    from bpc.runtime.devices import hosted
    from bpc.runtime.gradcheck import format_table, gradcheck
    from bpc.runtime.loader import load_model

    is_py = args.spec.endswith(".py")
    # float64 (on the device, for the torch target): differences of a float32 loss
    # are mostly rounding.
    module = hosted(load_model(args.spec, None if is_py else "float64",
                               target=target_of(args)), args.device)
    eps, tol = args.eps, args.tol
    dtype = host_dtype(module)
    if dtype != np.float64:
        eps, tol = max(eps, 1e-3), max(tol, 1e-2)
        print(f"note: {args.spec} computes in {dtype.name}; checking with "
              f"eps={eps:g}, tol={tol:g}")
    rows = gradcheck(module, eps=eps, tol=tol, samples=args.samples, seed=args.seed,
                     batch=args.batch)
    print(f"gradcheck {args.spec}: central differences, eps={eps:g}, tol={tol:g}, "
          f"{args.samples} entries per variable at most, batch {args.batch}")
    if not rows:
        print(f"FAILED: nothing to compare: {args.spec} has no gradients (no parameters and "
              "no 'grad wrt' inputs)")
        return 1
    print(format_table(rows))
    return _verdict(rows)


def _verdict(rows) -> int:
    """``ok`` only when every variable had entries compared and all of them matched."""
    mismatched = [r.label for r in rows if not r.ok and not r.why]
    unchecked = [r for r in rows if not r.ok and r.why]
    if mismatched:
        print(f"FAILED: the gradient of {', '.join(mismatched)} does not match finite "
              "differences")
    for r in unchecked:
        print(f"FAILED: {r.label} was not checked: {r.why}")
    if any("kinks" in r.why for r in unchecked):
        print("hint: try another --seed, or a larger --samples, to land on smooth points")
    if mismatched or unchecked:
        return 1
    modes = list(dict.fromkeys(r.mode for r in rows if r.mode))
    where = f" in {' and '.join(modes)} mode" if modes else ""
    print(f"ok: all {len({r.name for r in rows})} gradients match{where} "
          f"({sum(r.checked for r in rows)} entries compared)")
    return 0
