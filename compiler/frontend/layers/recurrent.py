"""``rnn H``, ``lstm H``, ``gru H``: recurrent layers over a sequence ``[N, T, D]``, each
written out as the step equations of one loop over time (LANGUAGE.md, "Recurrences"),
numbered with the dense layers."""

from __future__ import annotations

import dataclasses

from .. import ast

from ...errors import Span
from .base import WEIGHTS, Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `rnn H`, `lstm H`, `gru H` `[last] [init=NAME] [forget_bias=0|1] [stateful=B]`: a
  recurrent layer over a sequence `[N, T, D]`, giving every step `hs{k} = h{k}` (`[N, T, H]`) or, with
  `last`, the last one `hs{k} = h{k}[:, -1]` (`[N, H]`). It is written out as step
  equations (`bpc show --stage ast` prints them), starting `from 0` or from `init=NAME`,
  an input or a value `[N, H]` (for an LSTM, the start of `h`; `c` starts at 0).
  `Wx{k} : [D, G*H]`, `Wh{k} : [H, G*H]` (Xavier), `b{k} : [G*H]` (zeros), the `G`
  gates side by side; `k` counts them with the dense layers, so `lstm 8; lstm 8` stacks.
  `rnn`: `h{k}[t] = tanh(x[:, t] @ Wx{k} + h{k}[t-1] @ Wh{k} + b{k})` (PyTorch's
  `nn.RNN`). `lstm`: DLFS2's, gates `f, g, i, o` in that order (PyTorch's `nn.LSTM`
  orders them `i, f, g, o`: its `weight_ih` is `Wx{k}.T` with the blocks reordered),
  `a{k}[t] = x[:, t] @ Wx{k} + h{k}[t-1] @ Wh{k} + b{k}` (kept per step, 4H numbers
  beyond the book's f, g, i, o, c, h: a value read by four gates is computed once),
  `c{k}[t] = f{k}[t] * c{k}[t-1] + g{k}[t] * i{k}[t]`, `h{k}[t] = o{k}[t] *
  tanh(c{k}[t])`; the forget gate's bias starts at 0 as PyTorch's, `forget_bias=1` starts
  it at 1 (Jozefowicz et al.). `gru`: PyTorch's `nn.GRU`, gates `r, z, n`, with a second
  bias `bh{k} : [3H]` because the reset gate multiplies the hidden part of `n`:
  `n{k}[t] = tanh(x[:, t] @ Wx{k}[:, 2H:] + b{k}[2H:] + r{k}[t] * (h{k}[t-1] @
  Wh{k}[:, 2H:] + bh{k}[2H:]))`, `h{k}[t] = (1 - z{k}[t]) * n{k}[t] + z{k}[t] *
  h{k}[t-1]`. `stateful=B` (B the batch size, e.g. `lstm 32 stateful=20`) declares a
  state `h{k}_state : [B, H]` (and `c{k}_state` for an LSTM) and starts the loop from it:
  each call continues the streams the last one left (LANGUAGE.md, "Stateful loops")."""

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _steps(kind: str, k: int, x: str, size: int, time: str) -> list[tuple[str, str, bool]]:
    """(name, step expression, carried) of each step equation, in the order computed."""
    def block(j: int) -> str:
        return f"[:, {j * size}:{(j + 1) * size}]"

    xw = f"{x}[:, {time}] @ Wx{k}"
    hw = f"h{k}[{time}-1] @ Wh{k}"
    if kind == "rnn":
        return [(f"h{k}", f"tanh({xw} + {hw} + b{k})", True)]
    if kind == "lstm":
        a = f"a{k}"
        gates = [(f"{g}{k}", f"{fn}({a}[{time}]{block(j)})", False)
                 for j, (g, fn) in enumerate(zip("fgio", ("sigmoid", "tanh", "sigmoid",
                                                          "sigmoid")))]
        return [(a, f"{xw} + {hw} + b{k}", False), *gates,
                (f"c{k}", f"f{k}[{time}] * c{k}[{time}-1] + g{k}[{time}] * i{k}[{time}]",
                 True),
                (f"h{k}", f"o{k}[{time}] * tanh(c{k}[{time}])", True)]
    gx, gh = f"gx{k}", f"gh{k}"
    return [(gx, f"{xw} + b{k}", False), (gh, f"{hw} + bh{k}", False),
            (f"r{k}", f"sigmoid({gx}[{time}]{block(0)} + {gh}[{time}]{block(0)})", False),
            (f"z{k}", f"sigmoid({gx}[{time}]{block(1)} + {gh}[{time}]{block(1)})", False),
            (f"n{k}", f"tanh({gx}[{time}]{block(2)} + r{k}[{time}] * {gh}[{time}]{block(2)})",
             False),
            (f"h{k}", f"(1 - z{k}[{time}]) * n{k}[{time}] + z{k}[{time}] * h{k}[{time}-1]",
             True)]


def _placed(node, span: Span):
    """``node`` (parsed from text the layer wrote) with every span the layer's own."""
    if isinstance(node, list):
        return [_placed(item, span) for item in node]
    if not dataclasses.is_dataclass(node) or isinstance(node, Span):
        return span if isinstance(node, Span) else node
    return dataclasses.replace(node, **{f.name: _placed(getattr(node, f.name), span)
                                        for f in dataclasses.fields(node) if f.init})


def _equations(text: str, span: Span) -> list[ast.Equation]:
    from ..parser import parse  # the parser reads the layer table: imported when used

    return [_placed(st, span) for st in parse(text).statements]


def expand(site: Site) -> Expansion | None:
    kind, size = site.layer.name, site.whole("units", 1)
    if size is None:
        return None
    sp, k, time = site.sp, site.k, site.time
    gates = GATES[kind]
    init = site.args["init"]
    if init is not None and not isinstance(init, ast.Name):
        site.diags.error(f"'init' of '{kind}' names the initial state, an input or a value "
                         f"[N, {size}]", init.span, f"e.g. {kind} {size} init=h0")
        return None
    streams = _streams(site, size)
    if streams is False or (streams and init is not None):
        if streams:
            site.diags.error(f"a stateful '{kind}' starts from its state, not 'init'",
                             init.span, f"leave 'init' out: it starts from h{site.k}_state, "
                             "zeros until a batch has left its last step there")
        return None
    start = init.id if init is not None else "0"
    starts = {name: st.name for st in streams for name in [st.name.split("_")[0]]}
    lines = [f"{name}[{time}] = {value}" + (
        f" from {starts.get(name, start if name == f'h{k}' else '0')}" if carried else "")
        for name, value, carried in _steps(kind, k, site.h, size, time)]
    last = site.args["last"]
    if last is not False and not (isinstance(last, ast.Name) and last.id == "last"):
        site.diags.error(f"'{kind}' takes 'last' (the last step) or nothing (every step)",
                         last.span if isinstance(last, ast.Expr) else sp,
                         f"e.g. {kind} {size} last")
        return None
    lines.append(f"hs{k} = h{k}" + ("[:, -1]" if last else ""))
    *steps, out = _equations("\n".join(lines), sp)
    # 'init' names the initial state here, so the weights take their default.
    weights, origin = dataclasses.replace(site, args={**site.args, "init": None}).weights_init()
    width = ast.Dim(gates * size, sp)
    bias = _bias(site, gates, size)
    decls: list[ast.Stmt] = [
        ast.Param(sp, f"Wx{k}", site.at, ast.Shape([ast.Dim(ast.FanIn(site.h), sp), width],
                                                   sp), weights, origin=origin),
        ast.Param(sp, f"Wh{k}", site.at, ast.Shape([ast.Dim(size, sp), width], sp), weights,
                  origin=origin),
        ast.Param(sp, f"b{k}", site.at, ast.Shape([width], sp), bias[0], origin=bias[1])]
    decls.extend(streams)
    if kind == "gru":
        decls.append(ast.Param(sp, f"bh{k}", site.at, ast.Shape([width], sp),
                               ast.Name(sp, "zeros")))
    origin = f"layer '{kind}' {size}: step of the loop over time"
    for st in steps:
        st.origin = origin
    return Expansion(decls + steps, out.name, out.value)


def _streams(site: Site, size: int) -> list[ast.State] | bool:
    """``stateful=B``: a state ``[B, H]`` for each carried value (``h{k}_state``, and
    ``c{k}_state`` for an LSTM), which the loop starts from and continues; [] without
    it, False when its value was reported."""
    rows = site.args["stateful"]
    if rows is None:
        return []
    rows = site.whole("stateful", 1)
    if rows is None:
        return False
    sp, k = site.sp, site.k
    shape = ast.Shape([ast.Dim(rows, sp), ast.Dim(size, sp)], sp)
    carried = ["h", "c"] if site.layer.name == "lstm" else ["h"]
    return [ast.State(sp, f"{v}{k}_state", site.at, shape, ast.Name(sp, "zeros"),
                      origin=f"layer '{site.layer.name}' {size}: the {v} its {rows} streams "
                             "continue from, batch to batch")
            for v in carried]


def _bias(site: Site, gates: int, size: int) -> tuple[ast.Expr, str | None]:
    """Zeros, or for an LSTM with ``forget_bias=1`` ones in the forget gate's block."""
    forget = site.args["forget_bias"]
    sp = site.sp
    if isinstance(forget, ast.Expr):
        forget = site.whole("forget_bias", 0)
        if forget is None:
            return ast.Name(sp, "zeros"), None
    if not forget:
        return ast.Name(sp, "zeros"), None
    if site.layer.name != "lstm":
        site.diags.error("'forget_bias' is the bias of an LSTM's forget gate", sp,
                         "use it on an lstm layer")
        return ast.Name(sp, "zeros"), None
    values = [float(forget)] * size + [0.0] * (gates - 1) * size
    return ast.Matrix(sp, [[ast.Num(sp, v, repr(v)) for v in values]]), f"forget gate's bias {forget} (Jozefowicz et al.), the others 0"


SIGNATURE = sig("units", ("last", False), ("init", None), ("forget_bias", 0),
                ("stateful", None))
KINDS = tuple(LayerKind(kind, SIGNATURE, expand, advances=True, role=WEIGHTS)
              for kind in GATES)
EXAMPLES = (Example("rnn 3", "[N, T, 2]"), Example("lstm 3; lstm 2", "[N, T, 2]"),
            Example("gru 3 last; dense 2", "[N, T, 2]"),
            Example("lstm 2 last forget_bias=1", "[N, T, 3]"),
            Example("lstm 3 stateful=4", "[N, T, 2]"))
