"""``bpc sample``: text written by a trained language model (charlm, zen_lm, tiny_gpt),
started from a prompt, each next character drawn from the model's prediction."""

from __future__ import annotations

from bpc.compiler.vocab import RUNTIME_RANGES

from .options import add_target_arguments, number

HELP = "text written by a trained language model, from a prompt"


def add_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC_OR_MODULE")
    p.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="a run's checkpoint.npz (or its folder), from bpc train")
    p.add_argument("--prompt", required=True,
                   help="the text to continue, in the data set's characters (ids "
                        "separated by spaces for a data set that is not text)")
    p.add_argument("--length", type=number(RUNTIME_RANGES["length"]), default=200,
                   help="how many characters to write (default 200)")
    p.add_argument("--temperature", type=number(RUNTIME_RANGES["temperature"]), default=1.0,
                   help="below 1 sharper, above 1 flatter than the model's prediction; 0 "
                        "takes the most likely character (default 1)")
    p.add_argument("--samples", type=number(RUNTIME_RANGES["samples"]), default=1,
                   help="how many continuations, one a line (default 1)")
    p.add_argument("--context", type=number(RUNTIME_RANGES["context"]),
                   help="the last steps the model is given (default: its table of "
                        "positions' rows, else its data's window length)")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    p.add_argument("--data", metavar="NAME",
                   help="the data set whose characters the ids number (default: the "
                        "spec's data line)")
    add_target_arguments(p)


def run(args) -> int:
    from pathlib import Path

    from bpc.runtime.checkpoint import checkpoint_params
    from bpc.runtime.devices import hosted
    from bpc.runtime.loader import load_model
    from bpc.runtime.sampling import language_model, texts

    from .options import target_of

    module = hosted(load_model(args.spec, target=target_of(args)), args.device)
    language_model(module)  # refused before the checkpoint is read
    params, state, _ = checkpoint_params(Path(args.checkpoint), module)
    for text in texts(module, params, args.prompt, args.length, args.temperature,
                      args.samples, args.seed, state, args.context, args.data):
        print(text)
    return 0
