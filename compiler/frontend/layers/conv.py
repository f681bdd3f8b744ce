"""``conv F size=K``: a convolution layer over an image batch,
``a{k} = conv2d(h, W{k}) + b{k}``, numbered with the dense layers."""

from __future__ import annotations

from .. import ast
from .base import WEIGHTS, Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `conv F size=K [stride=S] [pad=P] [init=INIT] [bias=zeros|none|INIT]`: `W{k} : [F, C,
  K, K]` (C: the channels, axis 1 of the value coming in, which must be an image batch
  `[N, C, H, W]`; `size=[KH, KW]` makes `[F, C, KH, KW]`), `b{k} : [F, 1, 1]` (one bias
  per filter, broadcast over the pixels), `a{k} = conv2d(h, W{k}, stride=S, pad=P) +
  b{k}`. Defaults `stride=1`, `pad=0`. A conv layer is numbered with the dense layers:
  `k` counts both, so `conv; relu; maxpool; flatten; dense; relu; dense` makes `W1, b1`
  (conv), `W2, b2`, `W3, b3`."""


def expand(site: Site) -> Expansion | None:
    values = {}
    for key, low in (("filters", 1), ("size", 1), ("stride", 1), ("pad", 0)):
        values[key] = site.whole(key, low) if key == "filters" else site.window(key, low)
        if values[key] is None:
            return None
    sp, k = site.sp, site.k
    kwargs = [ast.Kwarg(key, site.spelled(values[key]), sp)
              for key, default in (("stride", 1), ("pad", 0)) if values[key] != default]
    init, origin = site.weights_init()
    filters, size = values["filters"], values["size"]
    kh, kw = (size, size) if isinstance(size, int) else size
    decls: list[ast.Stmt] = [ast.Param(sp, f"W{k}", site.at, ast.Shape(
        [ast.Dim(filters, sp), ast.Dim(ast.FanIn(site.h, axis=1), sp), ast.Dim(kh, sp),
         ast.Dim(kw, sp)], sp), init, origin=origin)]
    out: ast.Expr = ast.Call(sp, "conv2d", site.at, [site.source(), ast.Name(sp, f"W{k}")],
                             kwargs)
    bias = site.bias(f"b{k}", [ast.Dim(filters, sp), ast.Dim(1, sp), ast.Dim(1, sp)])
    if bias is not None:
        decls.append(bias)
        out = ast.BinOp(sp, "+", out, ast.Name(sp, bias.name))
    return Expansion(decls, f"a{k}", out)


KINDS = (LayerKind("conv", sig("filters", "size", ("stride", 1), ("pad", 0), ("init", None),
                               ("bias", "zeros")), expand, advances=True, role=WEIGHTS),)
EXAMPLES = (Example("conv 2 size=3 pad=1; relu", "[N, 2, 5, 5]"),
            Example("conv 3 size=2 stride=2 bias=none; sigmoid", "[N, 1, 6, 6]"),
            Example("conv 2 size=[3, 2] stride=[1, 2] pad=[1, 0]; tanh", "[N, 2, 5, 6]"))
