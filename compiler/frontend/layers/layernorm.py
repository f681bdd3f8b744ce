"""``layernorm``: layer normalization of the value flowing in over its last axis, with its
scale and shift (parameters), numbered on its own counter."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `layernorm [eps=1e-5]`: layer normalization of the value coming in over its last axis
  `D` (`[N, D]`, `[N, T, D]`: each example's, or each time step's, features). It makes
  the parameters `ln{j}_gamma : [D] = ones` (the scale) and `ln{j}_beta : [D] = zeros`
  (the shift) and the equation `ln{j} = layer_norm(h, ln{j}_gamma, ln{j}_beta)`; `j`
  counts layernorm layers from 1 across the file. No state: training and inference
  compute the same."""

SIGNATURE = sig(("eps", 1e-5))


def expand(site: Site) -> Expansion:
    """Sized by the last axis of the value flowing in."""
    sp, at, j = site.sp, site.at, site.k
    base = f"ln{j}"
    shape = ast.Shape([ast.Dim(ast.FanIn(site.h, rows=True), sp)], sp)
    origin = f"layernorm layer {j}"
    decls: list[ast.Stmt] = [
        ast.Param(sp, f"{base}_gamma", at, shape, ast.Name(sp, "ones"),
                  origin=f"{origin}: the scale, starting at 1"),
        ast.Param(sp, f"{base}_beta", at, shape, ast.Name(sp, "zeros"),
                  origin=f"{origin}: the shift, starting at 0")]
    eps = site.args["eps"]
    kwargs = [] if eps == SIGNATURE.params[0][1] else [ast.Kwarg(
        "eps", eps if isinstance(eps, ast.Expr) else ast.Num(sp, eps, repr(eps)), sp)]
    call = ast.Call(sp, "layer_norm", at, [site.source()] + [
        ast.Name(sp, d.name) for d in decls], kwargs)
    return Expansion(decls, base, call)


KINDS = (LayerKind("layernorm", SIGNATURE, expand, counter="layernorm", advances=True),)
EXAMPLES = (Example("dense 3; layernorm; relu"),
            Example("layernorm eps=1e-3; tanh", "[N, 3, 4]"))
