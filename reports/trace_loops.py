"""``bpc trace`` of a loop over time: the loop's statement step by step.

The forward for t = 0, 1, … with each step equation's value at t, the backward reversed
with the adjoints each step starts from (``dL_dh_t = dL_dh[:, t] + dL_dh_next``) and
what it hands back (``dL_dh_next``), each line named as the loop's code names it
(``dL_dWh +=``: the term added at t). The values come from the evaluator's own loops
(``recurrence.scan_steps``/``scan_grad_steps``), re-run from the loop's arguments; a long
loop shows its first and last ``EDGE_STEPS`` steps and says how many are left out.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir import Program
from ..compiler.ir.ops.recurrence import scan_grad_steps, scan_steps
from .trace import Line, with_numbers

EDGE_STEPS = 2  # a loop's first and last steps are shown, the ones between left out


def loop_results(prog: Program, statements) -> list:
    """The nodes that read each loop's results (``part``s), for their values."""
    named = {bd.name: bd.node for bd in prog.forward + prog.backward}
    return [named[name] for st in statements for name in st.defines if name in named]


def _steps_shown(length: int) -> set[int]:
    """A loop's steps the trace shows: all of a short one, the first and last
    ``EDGE_STEPS`` of a long one."""
    if length <= 2 * EDGE_STEPS + 1:
        return set(range(length))
    return set(range(EDGE_STEPS)) | set(range(length - EDGE_STEPS, length))


def loop_lines(prog: Program, st, values: dict, section: str, source, spec_line,
               digits: int) -> list[Line]:
    """A loop over time step by step: each step's statements with their values at t (the
    forward for t = 0, 1, …; the backward reversed, each step starting from the adjoints
    it is seeded with, the carried ``dL_dh_next`` included), long loops elided to their
    first and last steps, then the loop's results."""
    node = st.node
    args = [values[a.id] for a in node.args]
    head = next(line for line in st.lines if line.startswith("for "))
    out = [Line(head, section, "", None, source=source, spec_line=spec_line)]
    if node.op == "scan":
        steps = scan_steps(node.attr("body"), args)
        seeds = []
    else:
        steps = ((t, got) for t, got, _ in scan_grad_steps(node.attr("grad"), args))
        seeds = [leaf for leaf in node.attr("grad").seeds if leaf is not None]
    # each step statement under the name the code gives it (dL_dh_next, dL_dWh +=)
    written, seeded_from = dict(st.written_as), dict(st.seeded_from)
    length = np.shape(args[len(_body(node).carries)])[1]
    shown, skipped = _steps_shown(length), []
    for t, got in steps:
        if t not in shown:
            skipped.append(t)
            continue
        if skipped:
            out.append(_left_out(skipped, section))
            skipped = []
        out += [Line(leaf.attr("name"), section, seeded_from.get(leaf.attr("name"), ""),
                     np.asarray(got[leaf.id], dtype=float), step=t)
                for leaf in seeds if leaf.id in got]
        out += [Line(written.get(inner.name, inner.name), section, inner.expr,
                     np.asarray(got[inner.node.id], dtype=float),
                     None if inner.alias else with_numbers(inner.node, got, digits), step=t)
                for inner in st.steps]
    named = {bd.name: bd.node for bd in prog.forward + prog.backward}
    return out + [Line(name, section, "", np.asarray(values[named[name].id], dtype=float))
                  for name in st.defines if name in named]


def _body(node):
    return node.attr("body") or node.attr("grad").body


def _left_out(steps: list[int], section: str) -> Line:
    return Line(f"… t = {min(steps)} to {max(steps)} left out ({len(steps)} steps)",
                section, "", None)
