"""``bpc graph``: the computation graph as Graphviz DOT.

Values are boxes (inputs, targets, parameters and named equations), operations are
circles; unnamed intermediate results flow straight from one operation to the next.
With ``values=True`` each edge carries the forward value that flows along it and, below
it, the gradient of the loss with respect to that value, for one data point — the
picture of the "apples and oranges" receipt in "Deep Learning from Scratch".
"""

from __future__ import annotations

import numpy as np

from compiler.evaluate import evaluate, evaluate_nodes, initial_params, random_feeds
from compiler.ir import Program, topo_order

SYMBOLS = {"add": "+", "sub": "-", "mul": "×", "div": "÷", "matmul": "@", "pow": "^",
           "neg": "-", "transpose": "T"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _short(value) -> str:
    a = np.asarray(value)
    if a.size == 1:
        return f"{a.item():.4g}"
    return "[" + "x".join(map(str, a.shape)) + f"] mean {float(np.mean(a)):.3g}"


def to_dot(prog: Program, values: bool = False, seed: int = 0) -> str:
    names = {bd.node.id: bd.name for bd in prog.leaves + prog.forward}
    kinds = {bd.node.id: bd.kind for bd in prog.leaves + prog.forward}
    nodes = topo_order([bd.node for bd in prog.forward])
    fwd = grad = {}
    if values:
        rng = np.random.default_rng(seed)
        feeds = random_feeds(prog, rng, 1)  # one data point
        params = initial_params(prog, rng)
        out = evaluate(prog, feeds, params)
        fwd = evaluate_nodes(prog, feeds, params, [bd.node for bd in prog.forward])
        grad = {}
        adjoints = {b.name: b for b in prog.backward}
        for bd in prog.leaves + prog.forward:
            key = f"d{prog.loss}_d{bd.name}"
            if key in adjoints and key in out:
                grad[bd.node.id] = out[key]
        loss_node = next(b.node for b in prog.forward if b.name == prog.loss)
        grad[loss_node.id] = 1.0
    lines = [f"digraph {_quote(prog.name)} {{", "  rankdir=LR;",
             '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];']
    ident = {}
    for n in nodes:
        ident[n.id] = f"n{len(ident)}"
    for n in nodes:
        if n.id in names:
            shape = {"param": "box, style=filled, fillcolor=lightyellow",
                     "input": "box, style=filled, fillcolor=lightblue",
                     "target": "box, style=filled, fillcolor=lightblue",
                     "loss": "box, style=filled, fillcolor=mistyrose"}.get(kinds[n.id], "box")
            lines.append(f"  {ident[n.id]}_v [label={_quote(names[n.id])}, shape={shape}];")
        if n.op in ("input", "param"):
            continue
        if n.op == "const":
            lines.append(f"  {ident[n.id]} [label={_quote(repr(n.value))}, shape=plaintext];")
            continue
        label = SYMBOLS.get(n.op, n.op)
        lines.append(f"  {ident[n.id]} [label={_quote(label)}, shape=circle];")
        if n.id in names:
            lines.append(f"  {ident[n.id]} -> {ident[n.id]}_v;")
    for n in nodes:
        if n.op in ("input", "param", "const"):
            continue
        for a in n.args:
            src = f"{ident[a.id]}_v" if a.id in names else ident[a.id]
            label = ""
            if values and a.id in fwd:
                label = _short(fwd[a.id])
                if a.id in grad:
                    label += "\n" + _short(grad[a.id])
            attr = f" [label={_quote(label)}]" if label else ""
            lines.append(f"  {src} -> {ident[n.id]}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"
