"""``bpc graph``: the computation graph, as Graphviz DOT or as a self-drawn SVG.

Values are boxes (inputs, targets, parameters and named equations), operations are
circles; unnamed intermediate results flow straight from one operation to the next.
At a point (``values=True``, or a point from ``trace.point``) each edge carries the
forward value that flows along it and, below it in a second colour, the gradient of the
loss with respect to that value — the picture of the "apples and oranges" receipt in
"Deep Learning from Scratch". Gradients are shown on edges out of unnamed operations too:
the graph is differentiated with every intermediate value named, by the same autodiff
and primitive table as the compiled code (so any operation of the language works, with
no case of its own), and its loss and gradients are checked against the generated
module's. Values are labelled by ``trace.summarize``: small tensors in full, larger ones
as shape, norm, min and max.

``to_svg`` lays the graph out itself (layers by longest path, ordered by the mean
position of their predecessors), so ``bpc explain`` needs no Graphviz binary.

State (batch norm's running statistics) is drawn as leaves of their own colour. A
function's named steps (batch norm's ``bn1_mu``, ``bn1_xc``, ``bn1_var``, ``bn1_std``,
``bn1_xn``) are folded into the one node of the call the spec wrote (``batchnorm`` or
``batch_norm``), like any helper node: the graph shows the network, and the steps with
their values and gradients are in ``bpc trace`` and the code. In training mode that node
also writes the running statistics: a dashed edge to each state, labelled with the new
value at a point, and never a gradient (an update is not differentiated).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from ..compiler.compilation import Compilation
from ..compiler.ir import NAMED_LEAVES, Program, topo_order

from .trace import summarize

SYMBOLS = {"add": "+", "sub": "-", "mul": "×", "div": "÷", "matmul": "@", "pow": "^",
           "neg": "-", "transpose": "T"}
VALUE_COLOUR, GRAD_COLOUR, STATE_COLOUR = "#1f3b73", "#c0392b", "#2e7d32"
LOOP_FILL = "#f3ecfa"  # a loop over time's box


@dataclass
class GNode:
    key: str
    label: str
    kind: str  # input target param state value loss op const loop
    value: str = ""  # a box's value, at a point


@dataclass
class GEdge:
    src: str
    dst: str
    value: str = ""
    grad: str = ""
    kind: str = ""  # "update": an op writes a state (training mode), not a data flow;
    # "carry": a loop's carried value (``value``: 'h[t-1] → h[t]'), from its box to itself


@dataclass
class Graph:
    name: str
    nodes: list[GNode] = field(default_factory=list)
    edges: list[GEdge] = field(default_factory=list)
    loss: str = ""
    loss_value: str = ""
    at: bool = False


def steps(prog: Program) -> dict[str, str]:
    """A function's named steps -> the equation they belong to (batch norm's ``bn1_mu``
    … ``bn1_xn`` of ``bn1``): the forward bindings whose ``sources`` name it."""
    return {bd.name: bd.sources[0] for bd in prog.forward if bd.sources}


def build(comp: Compilation, feeds: dict | None = None, params: dict | None = None,
          module=None, collapse: bool = True, state: dict | None = None,
          inference: bool = False) -> Graph:
    """The graph of the spec as written (``comp.ir``); with ``feeds`` and ``params``
    (and ``state``, by default the initial state), its values and gradients at that
    point, checked against ``module`` (by default the textbook-style module of
    ``comp``). With ``inference``: the graph of the inference-mode program, without
    values (state is read, never updated)."""
    if inference and feeds is not None:
        raise ValueError("the graph of the inference program is drawn without values")
    prog = (comp.inference or comp.program) if inference else comp.ir
    folded = steps(prog)
    names = {bd.node.id: bd.name for bd in prog.leaves + prog.forward
             if bd.name not in folded}
    kinds = {bd.node.id: bd.kind for bd in prog.leaves + prog.forward}
    nodes = topo_order([bd.node for bd in prog.forward])
    fwd: dict[int, np.ndarray] = {}
    grad: dict[int, np.ndarray] = {}
    g = Graph(prog.name, loss=prog.loss, at=feeds is not None)
    if feeds is not None:
        from ..compiler.ir.evaluate import evaluate_nodes
        from ..compiler.passes.autodiff import adjoint_name

        from ..compiler.ir.evaluate import initial_state

        full, _ = comp.named
        wanted = [bd.node for bd in full.forward + full.backward + full.updates]
        state = initial_state(prog) if state is None else state
        with np.errstate(all="ignore"):
            values = evaluate_nodes(full, feeds, params, wanted, state=state)
        from .trace import _agree

        module = module or comp.restyled("textbook").module
        _agree(full, module, feeds, params, values, state)
        for bd in full.updates:
            fwd[bd.node.id] = values[bd.node.id]
        fwd.update({n.id: values[n.id]
                    for n in topo_order([bd.node for bd in full.forward])})
        adjoints = {bd.name: bd for bd in full.backward}
        for bd in full.leaves + full.forward:
            adj = adjoints.get(adjoint_name(prog.loss, bd.name))
            if adj is not None:
                grad[bd.node.id] = values[adj.node.id]
        loss_node = next(b.node for b in prog.forward if b.name == prog.loss)
        grad[loss_node.id] = np.asarray(1.0)
        g.loss_value = summarize(fwd[loss_node.id])
    ident = {n.id: f"n{i}" for i, n in enumerate(nodes)}
    into = _helpers(nodes, names)
    members: dict[int, list] = {}
    for n in nodes:
        if n.id in into:
            members.setdefault(into[n.id], []).append(n)
    for n in nodes:
        if n.id in into:
            continue  # drawn as part of the operation the spec wrote
        if n.id in names:
            kind = kinds[n.id] if kinds[n.id] in ("param", "input", "target", "state",
                                                  "loss") else "value"
            value = summarize(fwd[n.id]) if kind == "loss" and n.id in fwd else ""
            g.nodes.append(GNode(f"{ident[n.id]}_v", names[n.id], kind, value))
        if n.op in NAMED_LEAVES or n.op == "part":  # a loop's result: its box
            continue
        if n.op == "scan":
            label, carries = _loop_label(prog, n)
            g.nodes.append(GNode(ident[n.id], label, "loop"))
            g.edges += [GEdge(ident[n.id], ident[n.id], carry, kind="carry")
                        for carry in carries]
            continue
        if n.op == "const":
            g.nodes.append(GNode(ident[n.id], summarize(n.value), "const"))
            continue
        label = SYMBOLS.get(n.op, n.op)
        if n.id in members:
            label = _call_name(prog, n) or label
        g.nodes.append(GNode(ident[n.id], label, "op"))
        if n.id in names:
            g.edges.append(GEdge(ident[n.id], f"{ident[n.id]}_v"))
    for n in nodes:
        if n.op == "part":  # from the loop's box straight to the result's
            g.edges.append(GEdge(ident[n.args[0].id], f"{ident[n.id]}_v"))
            continue
        if n.op in NAMED_LEAVES or n.op == "const" or n.id in into:
            continue
        group = {n.id} | {m.id for m in members.get(n.id, [])}
        seen: set[int] = set()
        for a in [a for m in [n, *members.get(n.id, [])] for a in m.args]:
            if a.id in group or a.id in seen:
                continue
            seen.add(a.id)
            src = f"{ident[a.id]}_v" if a.id in names else ident[a.id]
            edge = GEdge(src, ident[n.id])
            if a.id in fwd and a.op != "const":
                edge.value = summarize(fwd[a.id])
                if a.id in grad:
                    edge.grad = summarize(grad[a.id])
            g.edges.append(edge)
    _updates(g, prog, ident, fwd)
    if collapse:
        _collapse_repeats(g, prog, ident, folded)
    return g


def _loop_label(prog: Program, loop) -> tuple[str, list[str]]:
    """A loop's box: 'loop over t' and its step equations as the spec wrote them, one a
    line; and its carried edges (``h[t-1] → h[t]``)."""
    from ..compiler.backend.printer import source_text

    body = loop.attr("body")
    results = {bd.node.attr("index"): bd for bd in prog.forward
               if bd.node.op == "part" and bd.node.args[0] is loop}
    lines = [source_text(prog, results[j]) if j in results else f"{name}[{body.time}] = …"
             for j, name in enumerate(body.names)]
    time = body.time
    carries = [f"{body.names[j]}[{time}-1] → {body.names[j]}[{time}]" for j in body.carried]
    return "\n".join([f"loop over {time}", *lines]), carries


def _updates(g: Graph, prog: Program, ident: dict[int, str], fwd: dict) -> None:
    """Training mode's state updates: each state a leaf box, written by the node of the
    equation that updates it (a dashed edge, the new value on it at a point)."""
    forward = {bd.name: bd for bd in prog.forward}
    for i, bd in enumerate(prog.updates):
        eq = forward.get(bd.sources[0]) if bd.sources else None
        if eq is None or eq.node.id not in ident:
            continue
        key = f"s{i}"
        g.nodes.append(GNode(key, bd.name, "state"))
        value = summarize(fwd[bd.node.id]) if bd.node.id in fwd else ""
        g.edges.append(GEdge(ident[eq.node.id], key, value, "", "update"))


def _collapse_repeats(g: Graph, prog: Program, ident: dict[int, str],
                      folded: dict[str, str] | None = None, least: int = 4) -> None:
    """A ``repeat`` block (its equations come from the same spec text again and again)
    of ``least`` or more rounds is drawn as its first round, one box standing for the
    rounds in between, and its last round: deep50 is 3 layers wide, not 50."""
    def where(bd):
        sp = bd.node.span
        return None if sp is None else (sp.line, sp.col, sp.end_line, sp.end_col)

    folded = folded or {}
    equations = [bd for bd in prog.forward if bd.name not in folded]  # steps go along
    rounds: dict[tuple, int] = {}
    for bd in equations:
        if where(bd) is not None:
            rounds[where(bd)] = rounds.get(where(bd), 0) + 1
    done: dict[tuple, int] = {}
    middle: list[str] = []
    for bd in equations:
        k = where(bd)
        if k is None or rounds[k] < least:
            continue
        i = done.get(k, 0)
        done[k] = i + 1
        if 0 < i < rounds[k] - 1:
            middle.append(bd.name)
    if not middle:
        return
    hidden_ids, seen = set(), set()
    names = set(middle)
    for bd in prog.forward:  # a node belongs to the first equation that reaches it
        for n in topo_order([bd.node]):
            if n.id not in seen:
                seen.add(n.id)
                if bd.name in names or folded.get(bd.name) in names:
                    hidden_ids.add(n.id)
    hidden = {ident[i] for i in hidden_ids if i in ident}
    hidden |= {k + "_v" for k in list(hidden)}
    # the running statistics of the rounds in between go with them
    hidden |= {e.dst for e in g.edges if e.kind == "update" and e.src in hidden}
    key = "repeat"
    label = f"{middle[0]} … {middle[-1]} ({len(middle)} equations)"
    kept = [n for n in g.nodes if n.key not in hidden]
    at = next((i for i, n in enumerate(g.nodes) if n.key in hidden), len(kept))
    kept.insert(min(at, len(kept)), GNode(key, label, "value"))
    g.nodes = kept
    edges, pairs = [], set()
    for e in g.edges:
        src = key if e.src in hidden else e.src
        dst = key if e.dst in hidden else e.dst
        if src == dst == key or (src, dst) in pairs:
            continue
        pairs.add((src, dst))
        edges.append(GEdge(src, dst, e.value, e.grad, e.kind))
    g.edges = edges


def _helpers(nodes, names: dict[int, str]) -> dict[int, int]:
    """Internal helper nodes -> the node of the operation the spec wrote: an unnamed node
    made by the same spec text (the same span) as every one of its users, which all
    belong to one operation (``sse(y, t)`` is elaborated into sub, pow, sum and mul, and
    is drawn as one 'sse' node)."""
    users: dict[int, list] = {}
    for n in nodes:
        for a in n.args:
            users.setdefault(a.id, []).append(n)

    def where(node):
        sp = node.span
        return None if sp is None else (sp.line, sp.col, sp.end_line, sp.end_col)

    into: dict[int, int] = {}
    for n in reversed(nodes):  # users before their arguments
        if n.id in names or n.op in ("input", "param", "scan") or where(n) is None:
            continue
        us = users.get(n.id, [])
        if not us or any(where(u) != where(n) for u in us):
            continue
        roots = {into.get(u.id, u.id) for u in us}
        if len(roots) == 1:
            into[n.id] = roots.pop()
    return into


def _call_name(prog: Program, node) -> str | None:
    """The function the spec called where ``node`` was made (``sse`` of ``sse(y, t)``,
    ``dense`` of a layer stack's ``dense 80``)."""
    sp = node.span
    if sp is None or sp.line != sp.end_line or sp.line not in prog.source_lines:
        return None
    import re

    text = prog.source_lines[sp.line][sp.col - 1:sp.end_col - 1]
    head = re.match(r"\s*([A-Za-z_]\w*)\s*(\(|\s+\S|$)", text)  # sse(y, t); dense 80
    return head.group(1) if head else None


# -- DOT ---------------------------------------------------------------------------------

def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return html.escape(text, quote=True)


def dot(g: Graph) -> str:
    lines = [f"digraph {_quote(g.name)} {{", "  rankdir=LR;",
             '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];']
    fills = {"param": "lightyellow", "input": "lightblue", "target": "lightblue",
             "loss": "mistyrose", "state": '"#e2f4e0"'}
    for n in g.nodes:
        if n.kind == "const":
            lines.append(f"  {n.key} [label={_quote(n.label)}, shape=plaintext];")
        elif n.kind == "op":
            lines.append(f"  {n.key} [label={_quote(n.label)}, shape=circle];")
        elif n.kind == "loop":  # left-justified lines (\l), a rounded box
            label = _quote(n.label + "\n").replace("\\n", "\\l")
            lines.append(f"  {n.key} [label={label}, shape=box, style=\"rounded,filled\", "
                         f"fillcolor=\"{LOOP_FILL}\"];")
        else:
            label = _quote(n.label + (f"\n= {n.value}" if n.value else ""))
            fill = fills.get(n.kind)
            style = f", style=filled, fillcolor={fill}" if fill else ""
            lines.append(f"  {n.key} [label={label}, shape=box{style}];")
    for e in g.edges:
        attr = ""
        if e.kind == "carry":
            attr = f' [style=dashed, label={_quote(e.value)}]'
        elif e.kind == "update":
            text = "update" + (f": {e.value}" if e.value else "")
            attr = (f' [style=dashed, color="{STATE_COLOUR}", label=<<font color='
                    f'"{STATE_COLOUR}">{_html(text)}</font>>]')
        elif e.value:
            label = f'<font color="{VALUE_COLOUR}">{_html(e.value)}</font>'
            if e.grad:
                label += f'<br/><font color="{GRAD_COLOUR}">{_html(e.grad)}</font>'
            attr = f" [label=<{label}>]"
        lines.append(f"  {e.src} -> {e.dst}{attr};")
    if g.at:
        lines.append(f'  legend [shape=plaintext, label=<<font color="{VALUE_COLOUR}">'
                     f'value (above)</font><br/><font color="{GRAD_COLOUR}">'
                     f'gradient of {_html(g.loss)} (below)</font>>];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG ---------------------------------------------------------------------------------

CHAR_W, LINE_H = 6.6, 13
CARRY_H = 18  # the height of each carried arc over a loop's box
HALO = 'stroke="white" stroke-width="3" paint-order="stroke"'  # labels stay legible on lines


def _size(n: GNode) -> tuple[float, float]:
    if n.kind == "op":
        return max(28.0, len(n.label) * CHAR_W + 12), 28.0
    text = n.label.split("\n") + ([f"= {n.value}"] if n.value else [])
    return max(len(t) for t in text) * CHAR_W + 16, 12 + LINE_H * len(text)


def layout(g: Graph) -> dict[str, tuple[float, float, float, float]]:
    """Node key -> (x, y, width, height): layers by longest path from the sources, left
    to right, each ordered by the mean position of its predecessors (two sweeps)."""
    preds: dict[str, list[str]] = {n.key: [] for n in g.nodes}
    flows = [e for e in g.edges if e.src != e.dst]  # a loop's carried edge: not a layer
    for e in flows:
        preds[e.dst].append(e.src)
    layer: dict[str, int] = {}
    pending = [n.key for n in g.nodes]
    while pending:  # longest path from a source, without recursion
        key = pending[-1]
        todo = [p for p in preds[key] if p not in layer]
        if todo:
            pending.extend(todo)
            continue
        pending.pop()
        layer[key] = max((layer[p] + 1 for p in preds[key]), default=0)
    # a leaf sits one layer before its first user, not at the far left
    users: dict[str, list[str]] = {}
    for e in flows:
        users.setdefault(e.src, []).append(e.dst)
    for n in g.nodes:
        if not preds[n.key] and users.get(n.key):
            layer[n.key] = max(0, min(layer[u] for u in users[n.key]) - 1)
    layers: dict[int, list[str]] = {}
    for n in g.nodes:
        layers.setdefault(layer[n.key], []).append(n.key)
    pos: dict[str, float] = {}
    for _ in range(2):
        for k in sorted(layers):
            keys = layers[k]
            for i, key in enumerate(keys):
                ps = [pos[p] for p in preds[key] if p in pos]
                pos[key] = sum(ps) / len(ps) if ps else pos.get(key, i)
            keys.sort(key=lambda key: pos[key])
            for i, key in enumerate(keys):
                pos[key] = i
    by_key = {n.key: n for n in g.nodes}
    # column width: the widest node, and the widest edge label entering the column
    widths = {k: max(_size(by_key[key])[0] for key in keys) for k, keys in layers.items()}
    gaps = {k: 60.0 for k in layers}
    for e in flows:
        k = layer[e.dst]
        gaps[k] = max(gaps[k], max(len(_edge_text(e)), len(e.grad)) * CHAR_W * 0.85 + 30)
    above = {n.key: 0.0 for n in g.nodes}  # room over a loop's box for its carried arcs
    for e in g.edges:
        if e.src == e.dst:
            above[e.src] += CARRY_H
    heights = {k: sum(_size(by_key[key])[1] + 46 + above[key] for key in keys)
               for k, keys in layers.items()}
    total_h = max(heights.values(), default=0)
    boxes = {}
    x = 20.0
    for k in sorted(layers):
        x += gaps[k] if k else 0
        y = 30 + (total_h - heights[k]) / 2
        for key in layers[k]:
            w, h = _size(by_key[key])
            y += above[key]
            boxes[key] = (x + (widths[k] - w) / 2, y + 23, w, h)
            y += h + 46
        x += widths[k]
    return boxes


def _edge_text(e: GEdge) -> str:
    """The upper label of an edge: its value, or for an update 'update: new value'."""
    if e.kind == "update":
        return "update" + (f": {e.value}" if e.value else "")
    return e.value


LEGEND = (("input", "input or target"), ("param", "parameter"),
          ("state", "state (not trained)"), ("loss", "loss"))


def _carried_arcs(g: Graph, boxes) -> list[str]:
    """Each carried value of a loop: a dashed arc over its box, from its right end back
    to its left (the step hands the value to the next step), labelled h[t-1] → h[t]."""
    out, count = [], {}
    for e in g.edges:
        if e.src != e.dst:
            continue
        x, y, w, _ = boxes[e.src]
        k = count[e.src] = count.get(e.src, 0) + 1
        top, right, left = y - CARRY_H * k, x + w * (0.6 + 0.1 * k), x + w * (0.4 - 0.1 * k)
        out.append(f'<path class="carry" d="M {right:.1f} {y:.1f} C {right:.1f} {top:.1f}, '
                   f'{left:.1f} {top:.1f}, {left:.1f} {y:.1f}" '
                   f'fill="none" stroke="#6a4c93" stroke-dasharray="5 3" '
                   f'marker-end="url(#arrow)"/><text x="{x + w / 2:.1f}" '
                   f'y="{y - CARRY_H * k * 0.75 - 3:.1f}" text-anchor="middle" fill="#6a4c93" '
                   f'{HALO}>{_html(e.value)}</text>')
    return out


def to_svg(g: Graph) -> str:
    """The graph as one standalone SVG element (inline styles, no external resources)."""
    esc = _html
    boxes = layout(g)
    width = max((x + w for x, _, w, _ in boxes.values()), default=100) + 30
    height = max((y + h for _, y, _, h in boxes.values()), default=60) + 60
    fills = {"param": "#fffbd6", "input": "#dcecff", "target": "#dcecff",
             "loss": "#ffe1e1", "value": "#ffffff", "state": "#e2f4e0"}
    kinds = {n.kind if n.kind != "target" else "input" for n in g.nodes}
    legend = [(k, text) for k, text in LEGEND if k in kinds]
    height += 24 if legend else 0
    wide = sum(37 + len(text) * CHAR_W for _, text in legend) + 20 + (
        300 if any(e.kind == "update" for e in g.edges) else 0)
    width = max(width, wide)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    # ports: the edges into (out of) a node arrive (leave) spread over its side, in the
    # order of the nodes at their other ends, so converging edges and labels part
    into: dict[str, list[GEdge]] = {}
    out_of: dict[str, list[GEdge]] = {}
    flows = [e for e in g.edges if e.src != e.dst]
    for e in flows:
        into.setdefault(e.dst, []).append(e)
        out_of.setdefault(e.src, []).append(e)

    def port(edges: list[GEdge], e: GEdge, other: str, box) -> float:
        order = sorted(edges, key=lambda f: boxes[getattr(f, other)][1])
        i, k = order.index(e), len(order)
        return box[1] + box[3] * (i + 1) / (k + 1)

    out += _carried_arcs(g, boxes)
    for e in flows:
        x1, y1, w1, h1 = boxes[e.src]
        x2, y2, w2, h2 = boxes[e.dst]
        ax, bx = x1 + w1, x2
        ay = port(out_of[e.src], e, "dst", boxes[e.src])
        by = port(into[e.dst], e, "src", boxes[e.dst])
        mx = (ax + bx) / 2
        style = (f'stroke="{STATE_COLOUR}" stroke-dasharray="5 3"' if e.kind == "update"
                 else 'stroke="#888"')
        out.append(f'<path d="M {ax:.1f} {ay:.1f} C {mx:.1f} {ay:.1f}, {mx:.1f} {by:.1f}, '
                   f'{bx:.1f} {by:.1f}" fill="none" {style} '
                   f'marker-end="url(#arrow)"/>')
        if e.kind == "update":
            out.append(f'<text x="{mx:.1f}" y="{(ay + by) / 2 - 4:.1f}" text-anchor="middle" '
                       f'fill="{STATE_COLOUR}" class="s" {HALO}>{esc(_edge_text(e))}</text>')
        elif e.value:
            lx, ly = mx, (ay + by) / 2
            out.append(f'<text x="{lx:.1f}" y="{ly - 4:.1f}" text-anchor="middle" '
                       f'fill="{VALUE_COLOUR}" class="v" {HALO}>{esc(e.value)}</text>')
            if e.grad:
                out.append(f'<text x="{lx:.1f}" y="{ly + 11:.1f}" text-anchor="middle" '
                           f'fill="{GRAD_COLOUR}" class="g" {HALO}>{esc(e.grad)}</text>')
    for n in g.nodes:
        x, y, w, h = boxes[n.key]
        title = f"<title>{esc(n.label)}</title>"
        if n.kind == "op":
            out.append(f'<g>{title}<ellipse cx="{x + w / 2:.1f}" cy="{y + h / 2:.1f}" '
                       f'rx="{w / 2:.1f}" ry="{h / 2:.1f}" fill="#f4f4f4" stroke="#555"/>'
                       f'<text x="{x + w / 2:.1f}" y="{y + h / 2 + 4:.1f}" '
                       f'text-anchor="middle">{esc(n.label)}</text></g>')
        elif n.kind == "const":
            out.append(f'<text x="{x + w / 2:.1f}" y="{y + h / 2 + 4:.1f}" '
                       f'text-anchor="middle" fill="#555">{esc(n.label)}</text>')
        elif n.kind == "loop":
            head, *lines = n.label.split("\n")
            out.append(f'<g class="loop">{title}<rect x="{x:.1f}" y="{y:.1f}" '
                       f'width="{w:.1f}" height="{h:.1f}" rx="8" fill="{LOOP_FILL}" '
                       f'stroke="#6a4c93"/><text x="{x + 8:.1f}" y="{y + 17:.1f}" '
                       f'font-weight="bold">{esc(head)}</text>')
            out += [f'<text x="{x + 8:.1f}" y="{y + 17 + LINE_H * (i + 1):.1f}">'
                    f'{esc(line)}</text>' for i, line in enumerate(lines)]
            out.append("</g>")
        else:
            out.append(f'<g>{title}<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                       f'height="{h:.1f}" rx="3" fill="{fills.get(n.kind, "#fff")}" '
                       f'stroke="#444"/><text x="{x + w / 2:.1f}" y="{y + 17:.1f}" '
                       f'text-anchor="middle" font-weight="bold">{esc(n.label)}</text>')
            if n.value:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + 17 + LINE_H:.1f}" '
                           f'text-anchor="middle">= {esc(n.value)}</text>')
            out.append("</g>")
    if g.at:
        out.append(f'<text x="20" y="18" fill="{VALUE_COLOUR}">value along an edge '
                   f'(above)</text><text x="200" y="18" fill="{GRAD_COLOUR}">gradient of '
                   f'{esc(g.loss)} with respect to it (below)</text>')
    x = 20.0
    for kind, text in legend:  # the colours of the boxes, one line at the bottom
        y = height - 22
        out.append(f'<g class="legend"><rect x="{x:.1f}" y="{y:.1f}" width="14" height="12" '
                   f'rx="2" fill="{fills[kind]}" stroke="#444"/><text x="{x + 19:.1f}" '
                   f'y="{y + 10:.1f}">{esc(text)}</text></g>')
        x += 19 + len(text) * CHAR_W + 18
    if any(e.kind == "update" for e in g.edges):
        y = height - 22
        out.append(f'<g class="legend"><path d="M {x:.1f} {y + 6:.1f} h 24" '
                   f'stroke="{STATE_COLOUR}" stroke-dasharray="5 3"/><text x="{x + 29:.1f}" '
                   f'y="{y + 10:.1f}" fill="{STATE_COLOUR}">training mode updates a state '
                   f'(no gradient)</text></g>')
    out.append("</svg>")
    return "\n".join(out)
