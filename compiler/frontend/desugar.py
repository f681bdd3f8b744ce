"""Desugaring on the AST: evaluate ``let`` constants and expand ``layers`` stacks.

``desugar(spec) -> spec`` returns a new spec in which every ``layers IN -> OUT { … }`` is
replaced by the ``param`` and equation statements it stands for (LANGUAGE.md §6), each
carrying the span of the layer line it came from, and ``spec.constants`` holds the value
of every ``let``. Dimensions that name a ``let`` become integers. A dense layer's
``fan_in`` is left as ``FanIn(of=h)`` for elaboration, which knows shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math

from . import ast
from .constants import NotConstant, const_value
from ..errors import Diagnostics, listing, suggestion_hint
from ..limits import MAX_ELEMENTS, MAX_LAYERS, MAX_REPEAT
from ..vocab import (LAYERS, RELU_FAMILY, ACTIVATIONS, POOLING_LAYERS, REQUIRED,
                     WEIGHTED_LAYERS)


def desugar(spec: ast.Spec, diags: Diagnostics) -> ast.Spec:
    constants: dict[str, float | int] = {}
    out: list[ast.Stmt] = []
    dense_index = [0]  # continues across stacks so names never repeat
    residual_index = [0]  # r1, r2, …: residual sums, likewise
    norm_index = [0]  # bn1, bn2, …: batchnorm layers, likewise
    refused: set[str] = set()
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
            out.extend(_expand(st, constants, dense_index, residual_index, norm_index,
                               refused, diags))
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
    """Where a residual block opens or closes in the flattened stack."""
    block: ast.Block
    opens: bool
    name: str = ""  # not a layer name: skipped where the next layers are looked at


BLOCKS = ("residual",)


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
                diags.error("a residual block needs at least one layer", item.span,
                            "e.g. 'residual { dense 64; relu; dense 64 }'")
                continue
            flat.extend([_BlockEdge(item, True), *body, _BlockEdge(item, False)])
        elif isinstance(item, ast.Repeat):
            try:
                count = const_value(item.count, constants)
            except NotConstant as e:
                diags.error(e.message("'repeat' needs a constant count"), e.expr.span,
                            e.hint)
                continue
            if not isinstance(count, int) or count < 1:
                diags.error(f"'repeat' count must be a positive integer, not {count!r}",
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
    sig = LAYERS.get(layer.name)
    if sig is None:
        diags.unknown(f"unknown layer '{layer.name}'", layer.name, layer.name_span, LAYERS,
                      "layers are")
        return None
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


def _expand(st: ast.Layers, constants, dense_index, residual_index, norm_index,
            refused: set[str], diags: Diagnostics) -> list[ast.Stmt]:
    reported = len(diags.items)
    layers = _flatten(st.items, constants, diags)
    flattened = len(diags.items) == reported  # else the stack's problem is reported
    out: list[ast.Stmt] = []
    h = st.source
    h_span = st.source_span
    eqs: list[ast.Equation] = []
    opened: list[tuple[str, ast.Span]] = []  # the input of each open residual block
    for i, layer in enumerate(layers):
        if isinstance(layer, _BlockEdge):
            if layer.opens:
                opened.append((h, h_span))
                continue
            x, x_span = opened.pop()
            residual_index[0] += 1
            sp = layer.block.span
            value = ast.BinOp(sp, "+", ast.Name(h_span, h), ast.Name(x_span, x),
                              same_shape=True)
            eq = ast.Equation(sp, f"r{residual_index[0]}", layer.block.name_span, value,
                              "eq", origin=f"residual block of the stack {st.source} -> "
                                           f"{st.out}: its layers' output plus its input")
            eqs.append(eq)
            out.append(eq)
            h, h_span = eq.name, layer.block.name_span
            continue
        args = _layer_args(layer, diags)
        if args is None:
            continue
        sp = layer.span
        if layer.name in ("conv", "maxpool", "avgpool", "flatten"):
            if layer.name == "conv":
                dense_index[0] += 1
            made = _image_layer(layer, args, h, h_span, dense_index[0], layers[i + 1:],
                                constants, diags)
            if made is None:
                continue
            params, value, name = made
            out.extend(params)
            eq = ast.Equation(sp, name, layer.name_span, value, "eq",
                              origin=f"layer '{layer.name}' of the stack {st.source} -> "
                                     f"{st.out}")
            eqs.append(eq)
            out.append(eq)
            h, h_span = name, layer.name_span
            continue
        if layer.name == "batchnorm":
            norm_index[0] += 1
            made = _batchnorm_layer(layer, args, h, h_span, norm_index[0])
            out.extend(made[:-1])
            eq = made[-1]
            eq.origin = f"layer 'batchnorm' of the stack {st.source} -> {st.out}"
            eqs.append(eq)
            out.append(eq)
            h, h_span = eq.name, layer.name_span
            continue
        if layer.name == "dense":
            dense_index[0] += 1
            k = dense_index[0]
            try:
                units = const_value(args["units"], constants)
            except NotConstant as e:
                diags.error(e.message("'dense' needs a constant number of units"),
                            e.expr.span, e.hint)
                continue
            if not isinstance(units, int) or units < 1:
                diags.error(f"'dense' units must be a positive integer, not {units!r}",
                            args["units"].span)
                continue
            init, origin = _default_init(args["init"], "dense", layers[i + 1:], sp)
            w, b = f"W{k}", f"b{k}"
            units_dim = ast.Dim(units, sp)
            out.append(ast.Param(sp, w, layer.name_span,
                                 ast.Shape([ast.Dim(ast.FanIn(h), sp), units_dim], sp),
                                 init, origin=origin))
            value: ast.Expr = ast.BinOp(sp, "@", ast.Name(h_span, h), ast.Name(sp, w))
            bias = args["bias"]
            if not (isinstance(bias, ast.Name) and bias.id == "none"):
                bias_init = ast.Name(sp, bias) if isinstance(bias, str) else bias
                out.append(ast.Param(sp, b, layer.name_span, ast.Shape([units_dim], sp),
                                     bias_init))
                value = ast.BinOp(sp, "+", value, ast.Name(sp, b))
            name = f"a{k}"
        else:
            k = dense_index[0]
            kwargs = []
            if layer.name == "leaky_relu":
                alpha = args["alpha"]
                if not isinstance(alpha, ast.Expr):
                    alpha = ast.Num(sp, alpha, repr(alpha))
                kwargs = [ast.Kwarg("alpha", alpha, sp)]
            value = ast.Call(sp, layer.name, layer.name_span, [ast.Name(h_span, h)], kwargs)
            name = f"z{k}"
            if layer.name == "dropout":
                p = args["p"]
                value.args.append(p if isinstance(p, ast.Expr) else ast.Num(sp, p, repr(p)))
                name = f"d{k}"
        eq = ast.Equation(sp, name, layer.name_span, value, "eq",
                          origin=f"layer '{layer.name}' of the stack {st.source} -> {st.out}")
        eqs.append(eq)
        out.append(eq)
        h, h_span = name, layer.name_span
    if eqs:
        eqs[-1].name = st.out  # the stack's last value takes the name after '->'
        eqs[-1].name_span = st.out_span
    else:
        if flattened and len(diags.items) == reported:  # not when each layer was refused
            diags.error("a layer stack needs at least one layer", st.span)
        refused.add(st.out)  # reported: its uses are not unknown names
    return out


def _batchnorm_layer(layer: ast.Layer, args: dict, h: str, h_span, j: int) -> list:
    """A batchnorm layer: its scale and shift (parameters bn{j}_gamma, bn{j}_beta), its
    running statistics (states bn{j}_running_mean, bn{j}_running_var), sized by the
    features of the value flowing in, and the equation bn{j} = batch_norm(...). The
    underscore keeps these names apart from UDL's beta0/omega0 style."""
    sp, at = layer.span, layer.name_span
    base = f"bn{j}"
    shape = ast.Shape([ast.Dim(ast.FanIn(h, axis=1, features=True), sp)], sp)
    origin = f"batchnorm layer {j}"
    made: list = [
        ast.Param(sp, f"{base}_gamma", at, shape, ast.Name(sp, "ones"),
                  origin=f"{origin}: the scale, starting at 1"),
        ast.Param(sp, f"{base}_beta", at, shape, ast.Name(sp, "zeros"),
                  origin=f"{origin}: the shift, starting at 0"),
        ast.State(sp, f"{base}_running_mean", at, shape, ast.Name(sp, "zeros"),
                  origin=f"{origin}: the running mean, for inference"),
        ast.State(sp, f"{base}_running_var", at, shape, ast.Name(sp, "ones"),
                  origin=f"{origin}: the running variance, for inference")]
    kwargs = []
    for key, default in (("momentum", 0.9), ("eps", 1e-6)):
        value = args[key]
        if isinstance(value, ast.Expr):
            kwargs.append(ast.Kwarg(key, value, value.span))
        elif value != default:
            kwargs.append(ast.Kwarg(key, ast.Num(sp, value, repr(value)), sp))
    call = ast.Call(sp, "batch_norm", at, [ast.Name(h_span, h)] + [
        ast.Name(sp, d.name) for d in made], kwargs)
    made.append(ast.Equation(sp, base, at, call, "eq"))
    return made


def _default_init(init, kind: str, rest, sp) -> tuple:
    """A weighted layer's initializer and, when it is the default, why: He before a
    ReLU-family activation, else Xavier."""
    if init is not None:
        return init, None
    nxt = _next_activation(rest)
    default = "he" if nxt in RELU_FAMILY else "xavier"
    return ast.Name(sp, default), (f"{default}: the default for a {kind} layer "
                                   + (f"followed by {nxt}" if nxt in RELU_FAMILY
                                      else "not followed by a ReLU-family activation"))


def _next_activation(rest: list[ast.Layer]) -> str | None:
    """The activation after a weighted layer (None if another weighted layer comes first):
    it chooses the default initializer."""
    return next((lay.name for lay in rest if lay.name in ACTIVATIONS
                 or lay.name in WEIGHTED_LAYERS), None)


def _whole_option(layer: ast.Layer, args: dict, key: str, low: int, constants,
                  diags: Diagnostics) -> int | None:
    """A layer's count option (filters, size, stride, pad) as a whole number >= low."""
    value = args[key]
    if not isinstance(value, ast.Expr):
        return value
    try:
        number = const_value(value, constants)
    except NotConstant as e:
        diags.error(e.message(f"'{key}' of '{layer.name}' must be a constant"), e.expr.span,
                    e.hint)
        return None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < low:
        diags.error(f"'{key}' of '{layer.name}' must be a whole number >= {low}, not "
                    f"{number!r}", value.span)
        return None
    return number


def _image_layer(layer: ast.Layer, args: dict, h: str, h_span, k: int, rest, constants,
                 diags: Diagnostics):
    """conv, maxpool, avgpool, flatten: (parameters, equation value, equation name)."""
    sp = layer.span
    source = ast.Name(h_span, h)
    if layer.name == "flatten":
        return [], ast.Call(sp, "flatten", layer.name_span, [source], []), f"f{k}"
    keys = (("filters", 1), ("size", 1), ("stride", 1), ("pad", 0)) if layer.name == "conv" \
        else (("size", 1), ("stride", 1), ("pad", 0))
    values = {}
    for key, low in keys:
        if args[key] is None:
            values[key] = None
            continue
        values[key] = _whole_option(layer, args, key, low, constants, diags)
        if values[key] is None:
            return None
    kwargs = [ast.Kwarg(key, ast.Num(sp, values[key], str(values[key])), sp)
              for key, default in (("stride", 1 if layer.name == "conv" else None), ("pad", 0))
              if values[key] is not None and values[key] != default]
    if layer.name != "conv":
        size = ast.Num(sp, values["size"], str(values["size"]))
        return [], ast.Call(sp, POOLING_LAYERS[layer.name], layer.name_span, [source, size],
                            kwargs), f"p{k}"
    init, origin = _default_init(args["init"], "conv", rest, sp)
    filters, size = values["filters"], values["size"]
    w, b = f"W{k}", f"b{k}"
    params: list[ast.Stmt] = [ast.Param(sp, w, layer.name_span, ast.Shape(
        [ast.Dim(filters, sp), ast.Dim(ast.FanIn(h, axis=1), sp), ast.Dim(size, sp),
         ast.Dim(size, sp)], sp), init, origin=origin)]
    value: ast.Expr = ast.Call(sp, "conv2d", layer.name_span, [source, ast.Name(sp, w)], kwargs)
    bias = args["bias"]
    if not (isinstance(bias, ast.Name) and bias.id == "none"):
        bias_init = ast.Name(sp, bias) if isinstance(bias, str) else bias
        params.append(ast.Param(sp, b, layer.name_span, ast.Shape(
            [ast.Dim(filters, sp), ast.Dim(1, sp), ast.Dim(1, sp)], sp), bias_init))
        value = ast.BinOp(sp, "+", value, ast.Name(sp, b))
    return params, value, f"a{k}"
