"""Desugaring on the AST: evaluate ``let`` constants and expand ``layers`` stacks.

``desugar(spec) -> spec`` returns a new spec in which every ``layers IN -> OUT { … }`` is
replaced by the ``param`` and equation statements it stands for (LANGUAGE.md §6), each
carrying the span of the layer line it came from, and ``spec.constants`` holds the value
of every ``let``. Dimensions that name a ``let`` become integers. What each layer kind
stands for is its unit's (``frontend/layers/``); this module walks a stack, binds each
layer's arguments, numbers it and names its equation. A dense layer's ``fan_in`` is left
as ``FanIn(of=h)`` for elaboration, which knows shapes.
"""

from __future__ import annotations

from collections import Counter
import dataclasses
from dataclasses import dataclass
import math

from . import ast
from .constants import NotConstant, const_value
from .layers import BLOCKS, KINDS
from .layers.base import Site
from ..errors import Diagnostics, listing, suggestion_hint
from ..limits import MAX_ELEMENTS, MAX_LAYERS, MAX_REPEAT
from ..names import fresh
from ..vocab import REQUIRED, whole_number


def desugar(spec: ast.Spec, diags: Diagnostics) -> ast.Spec:
    constants: dict[str, float | int] = {}
    out: list[ast.Stmt] = []
    counters: Counter[str] = Counter()  # W{k}, bn{j}, r{j}: continue across stacks
    refused: set[str] = set()
    declared = {st.name for st in spec.statements if isinstance(st, ast.Decl)}
    time = fresh("t", declared)  # recurrent layers' time variable
    for st in spec.statements:
        if isinstance(st, ast.Let):
            try:
                value = const_value(st.value, constants)
                if isinstance(value, list):
                    raise NotConstant(st.value, "a 'let' holds a single number")
                if isinstance(value, float) and not math.isfinite(value):
                    raise NotConstant(st.value, "a 'let' must be finite")
                constants.setdefault(st.name, value)
            except NotConstant as e:
                diags.error(e.message(f"'let {st.name}' must be a constant expression"),
                            e.expr.span, e.hint)
            out.append(st)
        elif isinstance(st, ast.Layers):
            out.extend(_expand(st, constants, counters, refused, diags, time))
        else:
            out.append(st)
    out = [_resolve_dims(st, constants, diags) for st in out]
    result = dataclasses.replace(spec, statements=out)
    result.constants = constants
    result.refused = refused
    return result


def _resolve_dims(st: ast.Stmt, constants, diags: Diagnostics) -> ast.Stmt:
    shape = getattr(st, "shape", None)
    if shape is None:
        return st
    dims = []
    for d in shape.dims:
        v = d.value
        if isinstance(v, str) and v in constants:
            v = constants[v]
            if not (isinstance(v, int) and v > 0):
                diags.error(f"dimension '{d.value}' must be a positive integer, "
                            f"but the constant is {v!r}", d.span)
        elif isinstance(v, (int, float)) and not (isinstance(v, int) and v > 0):
            diags.error(f"a dimension must be a positive integer, not {v!r}", d.span)
        dims.append(ast.Dim(v, d.span))
    fixed = [d.value for d in dims if isinstance(d.value, int) and d.value > 0]
    if math.prod(fixed) > MAX_ELEMENTS:
        diags.error(f"this shape holds {_elements(fixed)} elements, over the limit of "
                    f"{MAX_ELEMENTS:,} for one tensor", shape.span,
                    "see 'Limits' in docs/LANGUAGE.md")
    return dataclasses.replace(st, shape=ast.Shape(dims, shape.span))


def _elements(dims: list[int]) -> str:
    n = math.prod(dims)
    return f"{n:,}" if n < 10 ** 15 else f"about 10^{int(n.bit_length() * 0.30103)}"


@dataclass(frozen=True)
class _BlockEdge:
    """Where a block opens or closes in the flattened stack."""
    block: ast.Block
    opens: bool
    name: str = ""  # not a layer name: skipped where the next layers are looked at


def _flatten(items, constants, diags) -> list[ast.Layer | _BlockEdge]:
    flat: list[ast.Layer | _BlockEdge] = []
    for item in items:
        if isinstance(item, ast.Block):
            if item.name not in BLOCKS:
                diags.unknown(f"unknown block '{item.name}'", item.name, item.name_span,
                              BLOCKS, "blocks are")
                continue
            body = _flatten(item.items, constants, diags)
            if not any(isinstance(x, ast.Layer) for x in body):
                diags.error(f"a {item.name} block needs at least one layer", item.span,
                            BLOCKS[item.name].empty_hint)
                continue
            flat.extend([_BlockEdge(item, True), *body, _BlockEdge(item, False)])
        elif isinstance(item, ast.Repeat):
            try:
                count = const_value(item.count, constants)
            except NotConstant as e:
                diags.error(e.message("'repeat' needs a constant count"), e.expr.span,
                            e.hint)
                continue
            written, count = count, whole_number(count)  # 'repeat 1e2': 100
            if count is None or count < 1:
                diags.error(f"'repeat' count must be a positive integer, not {written!r}",
                            item.count.span)
                continue
            if count > MAX_REPEAT:
                diags.error(f"'repeat' count {count} is over the limit of {MAX_REPEAT}",
                            item.count.span, "write a smaller stack; see 'Limits' in "
                                             "docs/LANGUAGE.md")
                continue
            body = _flatten(item.items, constants, diags)
            if len(flat) + len(body) * count > MAX_LAYERS:
                diags.error(f"this 'repeat' makes the stack longer than the limit of "
                            f"{MAX_LAYERS} layers ({len(body)} x {count})", item.count.span,
                            "see 'Limits' in docs/LANGUAGE.md")
                continue
            flat.extend(body * count)
        else:
            flat.append(item)
    return flat


def _layer_args(layer: ast.Layer, diags: Diagnostics) -> dict[str, object] | None:
    """The layer's arguments by name, defaults filled in; None if a problem was reported."""
    kind = KINDS.get(layer.name)
    if kind is None:
        diags.unknown(f"unknown layer '{layer.name}'", layer.name, layer.name_span, KINDS,
                      "layers are")
        return None
    sig = kind.signature
    names = sig.names
    bound: dict[str, object] = {}
    ok = True
    if len(layer.args) > len(names):
        diags.error(f"'{layer.name}' takes at most {len(names)} positional argument(s), "
                    f"got {len(layer.args)}", layer.args[len(names)].span,
                    f"usage: {sig.usage(layer.name)}")
        ok = False
    for name, arg in zip(names, layer.args):
        bound[name] = arg
    for kw in layer.kwargs:
        if kw.name not in names:
            diags.error(f"'{layer.name}' has no option '{kw.name}'", kw.span,
                        suggestion_hint(kw.name, names)
                        or (f"options are: {listing(names)}" if names else
                            f"'{layer.name}' takes no options"))
            ok = False
        elif kw.name in bound:
            diags.error(f"option '{kw.name}' given twice", kw.span)
            ok = False
        else:
            bound[kw.name] = kw.value
    for name, default in sig.params:
        if name not in bound:
            if default is REQUIRED:
                diags.error(f"'{layer.name}' needs its '{name}'", layer.span,
                            f"usage: {sig.usage(layer.name)}, e.g. '{layer.name} 50'")
                ok = False
            else:
                bound[name] = default
    return bound if ok else None


def _expand(st: ast.Layers, constants, counters: Counter[str], refused: set[str],
            diags: Diagnostics, time: str) -> list[ast.Stmt]:
    """The declarations and equations of one stack; each layer's come from its kind."""
    reported = len(diags.items)
    layers = _flatten(st.items, constants, diags)
    flattened = len(diags.items) == reported  # else the stack's problem is reported
    out: list[ast.Stmt] = []
    h, h_span = st.source, st.source_span
    eqs: list[ast.Equation] = []
    opened: list[tuple[str, ast.Span]] = []  # the input of each open block
    stack = f"the stack {st.source} -> {st.out}"
    for i, layer in enumerate(layers):
        if isinstance(layer, _BlockEdge):
            if layer.opens:
                opened.append((h, h_span))
                continue
            block = BLOCKS[layer.block.name]
            counters[block.counter] += 1
            site = Site(layer.block, {}, h, h_span, counters[block.counter], layers, i, KINDS,
                        constants, diags)
            made = block.close(site, *opened.pop())
            origin = f"{block.name} block of {stack}: {block.summary}"
        else:
            args = _layer_args(layer, diags)
            if args is None:
                continue
            kind = KINDS[layer.name]
            if kind.advances:
                counters[kind.counter] += 1
            site = Site(layer, args, h, h_span, counters[kind.counter], layers, i, KINDS,
                        constants, diags, time)
            made = kind.expand(site)
            if made is None:
                continue
            origin = f"layer '{layer.name}' of {stack}"
        out.extend(made.decls)
        eq = ast.Equation(site.sp, made.name, site.at, made.value, "eq", origin=origin)
        eqs.append(eq)
        out.append(eq)
        h, h_span = eq.name, site.at
    if eqs:
        eqs[-1].name = st.out  # the stack's last value takes the name after '->'
        eqs[-1].name_span = st.out_span
    else:
        if flattened and len(diags.items) == reported:  # not when each layer was refused
            diags.error("a layer stack needs at least one layer", st.span)
        refused.add(st.out)  # reported: its uses are not unknown names
    return out
