"""The arguments several commands share, and how they are read: numbers checked against
the spec's own ranges, ``--data``, the training settings' flags, the point of a worked
example (``--at``/``--row``/``--seed``) and a trained model's checkpoint and data."""

from __future__ import annotations

import argparse
from pathlib import Path

from bpc.compiler.vocab import RUNTIME_RANGES, TRAIN_SETTINGS, Range
from bpc.runtime.errors import UserError


def add_spec_paths(p) -> None:
    """SPEC..., where a pattern no shell expanded (``bpc compile 'specs/*.bp'``, Windows'
    cmd, a subprocess without a shell) is expanded as the shell would."""
    p.add_argument("specs", nargs="+", metavar="SPEC")


def spec_paths(args) -> list[str]:
    """The specs named: each pattern with wildcards that is not itself a file, replaced by
    the files it matches in sorted order (one matching nothing stays, so loading it
    reports the missing file)."""
    import glob

    out = []
    for path in args.specs:
        matches = [] if Path(path).exists() or not glob.has_magic(path) else glob.glob(path)
        out += sorted(matches) or [path]
    return out


def number(rng: Range):
    """An argparse ``type`` that accepts what ``rng`` accepts — the spec's own range for
    the setting a flag overrides — so a bad flag is a usage error (exit 2) naming it."""
    def parse(text: str):
        try:
            value = rng.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rng.describe()}, not {text!r}") \
                from None
        problem = rng.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return rng.coerce(value)
    parse.range = rng  # lets the tests find every numeric flag
    return parse


def train_flag(key: str):
    """The argparse ``type`` of the flag that overrides the spec's training setting ``key``."""
    return number(TRAIN_SETTINGS[key].range)


def data_flag(text: str) -> str:
    """``--data``: a built-in data set's arguments checked against the spec's ranges
    (``spiral:classes=1`` is refused as ``data spiral(classes=1)`` is)."""
    from bpc.runtime.data import data_flag_problem

    problem = data_flag_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_target_arguments(p) -> None:
    """--target / --device / --threads: which array library the model is compiled for,
    where torch computes, and with how many threads the libraries compute."""
    p.add_argument("--target", choices=["numpy", "torch"],
                   help="compile the spec for NumPy (default) or PyTorch (needs: pip "
                        "install 'backprop-compiler[torch]'); a generated module keeps "
                        "its own")
    p.add_argument("--device", metavar="DEVICE",
                   help="where the torch target computes: cpu (default), cuda, cuda:1, mps")
    p.add_argument("--threads", type=number(RUNTIME_RANGES["threads"]), metavar="N",
                   help="threads NumPy's BLAS and torch compute with (default: theirs); "
                        "1 is fastest for a small model on a busy machine")


def target_of(args) -> str | None:
    """The target the flags ask for: --target, or torch when only --device is given."""
    return args.target or ("torch" if args.device else None)


def add_point_arguments(p) -> None:
    """--at / --row / --seed: the point a worked example (trace, graph, explain) is at."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--at", metavar="NAME=VALUE,...",
                       help="values of inputs, targets or parameters, e.g. x=2.3,y=2.0 or "
                            "'x=[0.05,0.1],t=[0.01,0.99]' (others: random, from --seed)")
    where.add_argument("--row", type=number(RUNTIME_RANGES["row"]), metavar="K",
                       help="row K of the spec's data")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0,
                   help="seed for random parameters and data (default 0)")


def point(args, comp):
    """(feeds, params, where) of the point ``add_point_arguments`` named, for the spec
    compiled as ``comp``."""
    from bpc.reports.trace import parse_at, point as trace_point

    return trace_point(comp, parse_at(args.at) if args.at else None, args.row, args.seed)


def add_trained_arguments(p) -> None:
    """SPEC_OR_MODULE, --checkpoint, --data and --split: a trained model and the examples
    it runs on (``bpc predict`` and ``bpc eval``)."""
    p.add_argument("spec", metavar="SPEC_OR_MODULE")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a run's checkpoint.npz (or its folder), from bpc train; "
                        "its parameters, and the state (batch norm's running "
                        "statistics) inference reads")
    p.add_argument("--data", type=data_flag,
                   help="as for bpc train: a .npz, .csv or .npy file (x.npy,t.npy), or a "
                        "built-in data set (default: the spec's data line)")
    p.add_argument("--split", choices=["train", "validation", "test"],
                   help="which part of the data (default: test when there is one); a run "
                        "trained with --validation held its validation part out of train")
    add_target_arguments(p)


def trained(args, targets: bool = True):
    """(module, params, state, arrays, split name, data name) for ``bpc predict`` and
    ``bpc eval``: the model, the checkpoint's parameters and state (refused if of another
    model, the state verified against the model's STATE) and the examples (with
    ``targets=False``, the inputs are enough: data without labels, to predict on)."""
    from bpc.runtime.checkpoint import checkpoint_params
    from bpc.runtime.data import conform, load
    from bpc.runtime.devices import hosted
    from bpc.runtime.loader import load_model
    from bpc.runtime.points import check_memory
    from bpc.runtime.settings import spec_data_seed

    module = hosted(load_model(args.spec, target=target_of(args)), args.device)
    check_memory(module, 1, "a prediction", "", forward_only=True)  # before any data
    params, state, run = checkpoint_params(Path(args.checkpoint), module)
    config = getattr(module, "CONFIG", {}) or {}
    # The data as the run drew it (its data seed: the same test split), else the spec's.
    seed = run.get("data_seed", spec_data_seed(module))
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0
    dataset = load(args.data if args.data else config.get("data"), module, seed, targets)
    split = args.split or ("test" if dataset.test else "train")
    arrays = dataset.test if split == "test" else held_out(dataset, module, run, seed, split,
                                                                   targets)
    if not arrays:
        raise UserError(f"{dataset.name} has no {split} split", "use --split train")
    return module, params, state, conform(arrays, module, f"{split} data ({dataset.name})",
                                          targets), split, dataset.name


def held_out(dataset, module, run: dict, seed: int, split: str, targets: bool) -> dict:
    """The ``train`` or ``validation`` part of a data set's training examples as the run
    split them (its --validation fraction, drawn from its data seed)."""
    from bpc.runtime.data import batch_axes, conform
    from bpc.runtime.datasets import validation_split

    fraction = run.get("validation")
    if not isinstance(fraction, float) or not 0 < fraction < 1 or not dataset.train:
        if split == "validation":
            raise UserError("the run held no validation data out (it was trained without "
                            "--validation)", "use --split train or --split test")
        return dataset.train
    arrays = conform(dataset.train, module, f"training data ({dataset.name})", targets)
    train, validation = validation_split(arrays, batch_axes(module), fraction, seed)
    return validation if split == "validation" else train
