"""Elaborating declarations: inputs, targets, parameters and states -> IR leaves.

Shapes (numbers, ``let`` constants, symbolic sizes read from the data, a layer's size
found from the value flowing into it), defaults, initializers, and each weight's
``fan_in``/``fan_out`` from how the forward graph uses it (matmul operand, conv filter),
as LANGUAGE.md defines them.
"""

from __future__ import annotations

from ..frontend import ast
from ..frontend.constants import const_value
from . import Init, Node, fmt_shape, literal_shape, topo_order
from ..vocab import INIT_ALIASES, FAN_INITIALIZERS, INITIALIZERS


class Declarations:
    """Declaring leaves, a mixin of ``elaborate._Elaborator``: reads its ``spec``,
    ``diags`` and builder ``b``; fills ``env``, ``symbols``, ``symbol_from_target``,
    ``declared`` and ``reported_layers``."""

    def _declare(self, st):
        if isinstance(st, ast.Input):
            result = self._input(st)
        elif isinstance(st, ast.Target):
            result = self._data_leaf(st.name, st.shape, target=True)
        else:
            result = self._param(st)  # a parameter or a state
        self.env.setdefault(st.name, None)  # a failed declaration poisons its uses
        return result

    def _shape(self, shape: ast.Shape, owner: str, fixed: bool,
               word: str = "parameter") -> tuple | None:
        dims = []
        for axis, d in enumerate(shape.dims):
            v = d.value
            if isinstance(v, ast.FanIn):
                v = self._fan_in(v, d.span)
                if v is None:
                    return None
            if isinstance(v, str):
                if fixed:
                    self.diags.error(f"{word} '{owner}' needs fixed dimensions; '{v}' is "
                                     "symbolic", d.span,
                                     f"use a number or a 'let' constant (let {v} = ...)")
                    return None
            dims.append(v)
        return tuple(dims)

    def _fan_in(self, v: ast.FanIn, span) -> int | None:
        """The size a layer's parameter takes from the value flowing in; None when that
        value has none (reported once per layer, not per parameter)."""
        src = self.env.get(v.of)
        if src is None:
            return None
        shape = src.shape
        if v.features and len(shape) not in (2, 4):
            problem = (f"a batchnorm layer normalizes [N, D] or [N, C, H, W] values, but "
                       f"'{v.of}' is {fmt_shape(shape)}",
                       "it normalizes each feature over a batch: declare the input with a "
                       "batch axis, e.g. [N, 64] or [N, 1, 28, 28], or flatten first")
        elif v.axis == 1 and len(shape) != 4 and not v.features:
            problem = (f"a conv layer needs an image batch [N, C, H, W], but '{v.of}' is "
                       f"{fmt_shape(shape)}",
                       "declare the input as [N, C, H, W], e.g. [N, 1, 28, 28]")
        elif not shape:
            problem = (f"a {v.layer} layer needs "
                       f"{'a value with an axis' if v.rows else 'a vector or matrix input'}"
                       f", but '{v.of}' is a scalar", None)
        elif v.axis == -1 and len(shape) > 3 and not v.rows:  # [N, T, D]: per step
            problem = (f"a dense layer needs a matrix [N, D] or a sequence [N, T, D], but "
                       f"'{v.of}' is {fmt_shape(shape)}", "put a 'flatten' layer before it")
        elif not isinstance(shape[v.axis], int):
            what = "channel count" if v.axis == 1 else "last dimension"
            problem = (f"the {what} of '{v.of}' must be a number to size a {v.layer} layer",
                       None)
        else:
            return shape[v.axis]
        if span not in self.reported_layers:
            self.reported_layers.add(span)
            self.diags.error(problem[0], span, problem[1])
        return None

    def _data_leaf(self, name: str, shape: ast.Shape, target: bool = False,
                   **attrs) -> Node | None:
        dims = self._shape(shape, name, fixed=False)
        if dims is None:
            return None
        node = self.b.leaf("input", name, dims, **attrs)
        self.env[name] = node
        for axis, d in enumerate(dims):
            # A symbolic size (N) is read from the first input that declares it, and
            # from a target only when no input does: predict takes no targets.
            if isinstance(d, str) and (d not in self.symbols or (
                    self.symbol_from_target.get(d) and not target)):
                self.symbols[d] = (name, axis)
                self.symbol_from_target[d] = target
                self.b.symbols[d] = (node, axis)
        return node

    def _input(self, st: ast.Input):
        default = None
        if st.default is not None:
            default = const_value(st.default, self.spec.constants)
            dshape = literal_shape(default)
            if st.shape is None:
                node = self.b.leaf("input", st.name, dshape, default=True)
                self.env[st.name] = node
                return node, default
            declared = self._shape(st.shape, st.name, fixed=False)
            if declared is not None and tuple(declared) != dshape:
                self.diags.error(f"the default of '{st.name}' has shape {fmt_shape(dshape)}, "
                                 f"but it is declared {fmt_shape(declared)}", st.default.span)
                return None, None
        if default is not None:  # not data: the runtime does not check its values
            return self._data_leaf(st.name, st.shape, default=True), default
        return self._data_leaf(st.name, st.shape), default

    def _param(self, st: ast.Param | ast.State):
        op = "state" if isinstance(st, ast.State) else "param"
        init_expr = st.init
        constants = self.spec.constants
        literal = None
        if not isinstance(init_expr, (ast.Name, ast.Call)) or (
                isinstance(init_expr, ast.Name) and init_expr.id in constants):
            literal = const_value(init_expr, constants)
        if st.shape is None:
            shape = literal_shape(literal) if literal is not None else ()
            if literal is None:
                self.diags.error(f"parameter '{st.name}' needs a shape for initializer "
                                 f"'{getattr(init_expr, 'id', getattr(init_expr, 'func', ''))}'",
                                 st.name_span, f"e.g. 'param {st.name} : [3, 4] = ...'")
                return None
        else:
            shape = self._shape(st.shape, st.name, fixed=True, word=op if op == "state"
                                else "parameter")
            if shape is None:
                return None
        if literal is not None:
            lshape = literal_shape(literal)
            if lshape and tuple(lshape) != tuple(shape):
                self.diags.error(f"the initial value of '{st.name}' has shape "
                                 f"{fmt_shape(lshape)}, but '{st.name}' is declared "
                                 f"{fmt_shape(shape)}", init_expr.span)
                return None
            init = Init("array" if lshape else "value", {"value": literal})
        else:
            name = init_expr.id if isinstance(init_expr, ast.Name) else init_expr.func
            args = dict(INITIALIZERS[name].defaults())
            if isinstance(init_expr, ast.Call):
                sig = INITIALIZERS[name]
                for pname, arg in zip(sig.names, init_expr.args):
                    args[pname] = const_value(arg, constants)
                for kw in init_expr.kwargs:
                    args[kw.name] = const_value(kw.value, constants)
            init = Init(INIT_ALIASES.get(name, name), args, note=st.origin)
            if init.kind == "normal" and args.get("std", 1) < 0:
                self.diags.error("'std' must not be negative", init_expr.span)
        node = self.b.leaf(op, st.name, shape)
        self.env[st.name] = node
        self.declared[st.name] = (st, init)
        return node, init



def set_fan(name: str, node: Node, init: Init, use: tuple[bool, bool, str] | None,
            filters: set[int]) -> None:
    """fan_in/fan_out from the weight's first matmul use ((is right operand, is .T,
    the other operand as the spec names it)) or its use as a conv filter (``filters``,
    from ``conv_filters``)."""
    shape = node.shape
    fan_in = fan_out = how = None
    if use is not None and (len(shape) == 2 or len(shape) > 2 and not use[1]):
        is_right, transposed, other = use
        row = is_right != transposed  # x @ W, or W.T @ h
        # a batch of matrices [H, D, K]: its matrices' axes, the last two
        fan_in, fan_out = (shape[-2], shape[-1]) if row else (shape[-1], shape[-2])
        first, second = ("first", "second") if len(shape) == 2 else ("second-to-last", "last")
        how = (f"{name} is used as {other} @ {name}{'.T' if transposed else ''}, so "
               f"fan_in is its {first if row else second} dimension" if is_right else
               f"{name} is used as {name}{'.T' if transposed else ''} @ {other}, so "
               f"fan_in is its {second if not row else first} dimension")
    if how is None and node.id in filters and len(shape) == 4:
        fan_in, fan_out = shape[1] * shape[2] * shape[3], shape[0] * shape[2] * shape[3]
        how = (f"{name} holds conv2d filters [F, C, KH, KW], so fan_in is C*KH*KW = "
               f"{fan_in}")
    if how is None:
        fan_in = shape[0] if shape else 1
        fan_out = shape[1] if len(shape) > 1 else fan_in
        how = (f"{name} is not used in a matmul; fan_in is taken as its first dimension"
               if shape else f"{name} is a scalar; fan_in is 1")
    init.fan_in, init.fan_out = int(fan_in), int(fan_out)
    if init.kind in FAN_INITIALIZERS:
        init.note = "; ".join(x for x in (init.note, how) if x)


def matmul_uses(roots, names: dict[int, str] | None = None
                 ) -> dict[int, tuple[bool, bool, str]]:
    """For each node used as a matmul operand (possibly through .T): the first such use,
    as (is the right operand, is transposed, the other operand's name in the spec or
    '(...)' when it has none). One pass over the forward graph. (LANGUAGE.md defines
    fan_in by how a weight meets '@', so this one rule is about matmul itself.)"""
    names = names or {}
    uses: dict[int, tuple[bool, bool, str]] = {}
    for n in topo_order(roots):
        if n.op != "matmul":
            continue
        left, right = n.args
        for operand, is_right, other in ((right, True, left), (left, False, right)):
            transposed = operand.op == "transpose"
            base = operand.args[0] if transposed else operand
            other_t = other.op == "transpose"
            other_base = other.args[0] if other_t else other
            other_name = names.get(other_base.id)
            other_text = f"{other_name}{'.T' if other_t else ''}" if other_name else "(...)"
            uses.setdefault(base.id, (is_right, transposed, other_text))
    return uses


def conv_filters(roots) -> set[int]:
    """The nodes used as conv2d filters (reshaped into the rows of a ``filters_matmul``):
    their fan_in is C*KH*KW, the size of one filter, as LANGUAGE.md says."""
    out: set[int] = set()
    for n in topo_order(roots):
        if n.op == "filters_matmul" and n.args[0].op == "reshape":
            out.add(n.args[0].args[0].id)
    return out


def sized_by_flow(st: ast.Param | ast.State) -> bool:
    """Whether a parameter's shape depends on an equation (a dense layer's fan-in)."""
    return st.shape is not None and any(isinstance(d.value, ast.FanIn) for d in st.shape.dims)
