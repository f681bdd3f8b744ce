"""``dense M``: a fully connected layer, ``a{k} = h @ W{k} + b{k}``."""

from __future__ import annotations

from .. import ast
from ..constants import NotConstant, const_value
from .base import WEIGHTS, Example, Expansion, LayerKind, Site
from ...vocab import sig, whole_number

DOC = """\
- `dense M [init=INIT] [bias=zeros|none|INIT]`: `W{k} : [fan_in, M]`, `b{k} : [M]`,
  `a{k} = h @ W{k} + b{k}` (`bias=none` drops `b{k}`). `k` counts dense layers from 1
  **across the whole file**, so two stacks never collide. `fan_in` is the last dimension
  of the value coming in: a matrix `[N, D]`, or a sequence `[N, T, D]`, which it maps
  step by step to `[N, T, M]` (one weight for every step, `@` over the batch axes)."""


def expand(site: Site) -> Expansion | None:
    units = site.args["units"]
    try:
        value = const_value(units, site.constants)
    except NotConstant as e:
        site.diags.error(e.message("'dense' needs a constant number of units"), e.expr.span,
                         e.hint)
        return None
    units_count = whole_number(value)  # 1e3 or 100.0 units: 1000, 100
    if units_count is None or units_count < 1:
        site.diags.error(f"'dense' units must be a positive integer, not {value!r}",
                         units.span)
        return None
    sp, k = site.sp, site.k
    init, origin = site.weights_init()
    units_dim = ast.Dim(units_count, sp)
    decls: list[ast.Stmt] = [ast.Param(sp, f"W{k}", site.at, ast.Shape(
        [ast.Dim(ast.FanIn(site.h), sp), units_dim], sp), init, origin=origin)]
    out: ast.Expr = ast.BinOp(sp, "@", site.source(), ast.Name(sp, f"W{k}"))
    bias = site.bias(f"b{k}", [units_dim])
    if bias is not None:
        decls.append(bias)
        out = ast.BinOp(sp, "+", out, ast.Name(sp, bias.name))
    return Expansion(decls, f"a{k}", out)


KINDS = (LayerKind("dense", sig("units", ("init", None), ("bias", "zeros")), expand,
                   advances=True, role=WEIGHTS),)
EXAMPLES = (Example("dense 3; tanh; dense 2 bias=none"),
            Example("dense 3 init=normal(std=0.5) bias=constant(0.1); relu"),
            Example("dense 3; tanh; dense 2", "[N, T, 4]"))
