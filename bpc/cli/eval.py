"""``bpc eval``: a trained model's loss (and accuracy, a language model's perplexity, and
a seq2seq model's exact match under greedy decoding) on a data set."""

from __future__ import annotations

from .options import add_trained_arguments, trained

HELP = "the trained model's loss (and accuracy) on a data set"


def add_arguments(p) -> None:
    add_trained_arguments(p)


def run(args) -> int:
    import numpy as np

    from bpc.runtime.data import batch_axes, example_count
    from bpc.runtime.decoding import decoder_of, exact_match
    from bpc.runtime.evaluate import (accuracy, has_perplexity, mean_loss, no_accuracy_note,
                                      task_kind)
    from bpc.runtime.points import eval_chunk

    module, params, state, arrays, split, name = trained(args)
    chunk = eval_chunk(module, arrays)  # examples per call whose forward pass fits
    with np.errstate(all="ignore"):  # inference mode, with the checkpoint's state
        loss = mean_loss(module, params, arrays, chunk, state)
        acc = accuracy(module, params, arrays, task_kind(module, arrays), state, chunk)
        decoder = decoder_of(module, name)
        exact = exact_match(module, params, arrays, *decoder, state) if decoder else None
    n = example_count(arrays, batch_axes(module))
    text = f"{args.spec}: {split} split of {name}, {n} examples: loss {loss:.6g}"
    if has_perplexity(module):  # a language model: the loss is a mean per token
        text += f"  perplexity {np.exp(min(loss, 700.0)):.6g}"
    if acc is not None:
        text += f"  accuracy {100 * acc:.2f}%"
    if exact is not None:  # accuracy above: per character, the true answer fed in
        text += f"  exact match (greedy) {100 * exact:.2f}%"
    print(text)
    note = no_accuracy_note(module, arrays)
    if note:
        print(f"note: {note}")
    return 0
