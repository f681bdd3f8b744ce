"""What a model whose loops continue states from batch to batch asks of its batches
(LANGUAGE.md, "Stateful loops"), said once: the spec's check (``ir/loops.py``, located
in the spec) and the run's check of its flags (``runtime/streams.py``) report the same
rule in the same words, each with its own hint."""


def in_order(state: str) -> str:
    return f"loops continue state '{state}' from batch to batch, so the batches must " \
        "come in order"


def no_split(state: str) -> str:
    return f"loops continue state '{state}' from batch to batch: a validation split " \
        "would cut its streams"


def rows(state: str, streams: int, batch: int) -> str:
    return f"state '{state}' carries {streams} streams, but batches have {batch} rows"
