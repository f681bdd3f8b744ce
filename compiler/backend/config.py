"""A module's ``CONFIG``: what the runtime needs to know about a model, as plain data.

The spec's training configuration (optimizer, train, data), the facts about its data
(integer labels and their classes, one-hot targets, the most steps a learned table of
positions holds), where predict's batch axis is, the
states that are variances, the memory a step holds at least, and whether (and how) the
output is a classifier's prediction that accuracy can be measured on.
"""

from __future__ import annotations

from ..ir import Program, topo_order
from ..ir.heads import head, is_token_loss
from ..ir.memory import footprint
from ..ir.ops.positions import step_limits
from ..ir.primitives import data_roles


def config_of(prog: Program) -> dict:
    """The module's ``CONFIG``: training configuration and the facts the runtime needs
    about the data and the output, as plain data (numbers and strings only)."""
    cfg = {}
    for key in ("optimizer", "train", "data"):
        if key in prog.config:
            cfg[key] = {k: v for k, v in prog.config[key].items()}
    labels, onehot = {}, {}
    for name, (role, classes) in data_roles([bd.node for bd in prog.forward]).items():
        (labels if role == "labels" else onehot)[name] = classes
    if labels:
        cfg["labels"] = labels  # integer-label targets -> number of classes
    if onehot:
        cfg["onehot"] = onehot  # targets whose rows must be distributions (sum to 1)
    limits = step_limits(topo_order([bd.node for bd in prog.forward]))
    if limits:  # symbolic dimensions a table of positions bounds: {T: [rows, table]}
        cfg["at_most"] = limits
    output = {bd.name: bd.node for bd in prog.forward}.get(prog.output or prog.loss)
    if output is not None:  # where predict's batch axis is, to evaluate it in chunks
        cfg["output_shape"] = tuple(output.shape)
    if prog.config.get("nonnegative"):  # states that are variances: never negative
        cfg["nonnegative"] = list(prog.config["nonnegative"])
    if prog.config.get("streams"):  # states loops continue: reset at epochs, evaluations
        cfg["streams"] = list(prog.config["streams"])
    if prog.backward:  # what a step holds in memory at least, checked before it runs
        cfg["memory"] = footprint(prog)
    if is_token_loss(prog):  # a language model's loss: exp(loss) is its perplexity
        cfg["perplexity"] = True
    accuracy, why_not = head(prog)
    if accuracy is not None:  # predict's output is a classifier's prediction of a target
        cfg["accuracy"] = accuracy
    elif why_not is not None:  # none, and a user might have expected one: why
        cfg["no_accuracy"] = why_not
    return cfg
