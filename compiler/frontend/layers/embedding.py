"""``embedding V D``: a table of V rows of D numbers and the rows that integer ids pick,
``e{k} = embed(ids, E{k})``, numbered with the dense layers."""

from __future__ import annotations

from .. import ast
from .base import WEIGHTS, Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `embedding V D [init=INIT]`: `E{k} : [V, D]` (one row per id), `e{k} = embed(ids,
  E{k})`: `[N, T]` ids give `[N, T, D]` (PyTorch's `nn.Embedding(V, D)`). It comes
  first, on an input of integer ids (each checked to lie in `0..V-1`). The default
  initializer is `normal(std=0.01)`, DLFS2's scale (PyTorch draws N(0, 1)); `k` counts
  embedding, dense and conv layers together."""

DEFAULT_INIT = "normal(std=0.01): DLFS2's scale for an embedding"


def expand(site: Site) -> Expansion | None:
    values = {key: site.whole(key, 1) for key in ("rows", "features")}
    if None in values.values():
        return None
    sp, k = site.sp, site.k
    init, origin = site.args["init"], None
    if init is None:
        init = ast.Call(sp, "normal", sp, [], [ast.Kwarg("std", ast.Num(sp, 0.01, "0.01"), sp)])
        origin = DEFAULT_INIT
    table = ast.Param(sp, f"E{k}", site.at, ast.Shape(
        [ast.Dim(values["rows"], sp), ast.Dim(values["features"], sp)], sp), init,
        origin=origin)
    return Expansion([table], f"e{k}", ast.Call(sp, "embed", site.at, [
        site.source(), ast.Name(sp, table.name)], []))


KINDS = (LayerKind("embedding", sig("rows", "features", ("init", None)), expand,
                   advances=True, role=WEIGHTS),)
EXAMPLES = (Example("embedding 7 3; tanh; dense 2", "[N]"),
            Example("embedding 5 4 init=normal(std=1)", "[N, 6]"))
