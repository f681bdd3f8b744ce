"""``maxpool K`` and ``avgpool K``: pooling layers, ``p{k} = max_pool(h, K)`` /
``avg_pool``, numbered with the layer before them."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `maxpool K [stride=S] [pad=P]`, `avgpool K [stride=S] [pad=P]`: `p{k} = max_pool(h, K,
  …)` / `avg_pool`, `stride` defaulting to `K` (windows side by side).
- Options `filters`, `size`, `stride`, `pad` are whole-number constants (`size`,
  `filters`, `stride` >= 1, `pad` >= 0); `size`, `stride` and `pad` may also be a pair
  `[rows, columns]` (`conv 8 size=[5, 3] stride=[1, 2]`, `maxpool size=[2, 3]`: the
  positional `maxpool K` is one number); a whole number may be written `2.0` or `1e1`,
  as may `dense`'s units and a `repeat` count (2.5 is an error). Pooling and flatten
  layers take the index of the preceding dense or conv layer, as activations do, so two
  layers of one kind between the same two weighted layers (`relu; relu`, `maxpool 2;
  maxpool 2`) would share a name: that is a "defined twice" error saying so."""


def _pooling(function: str):
    def expand(site: Site) -> Expansion | None:
        values = {}
        for key, low in (("size", 1), ("stride", 1), ("pad", 0)):
            if site.args[key] is None:  # stride: the window size
                values[key] = None
                continue
            values[key] = site.window(key, low)
            if values[key] is None:
                return None
        sp = site.sp
        kwargs = [ast.Kwarg(key, site.spelled(values[key]), sp)
                  for key, default in (("stride", None), ("pad", 0))
                  if values[key] is not None and values[key] != default]
        return Expansion([], f"p{site.k}", ast.Call(sp, function, site.at, [
            site.source(), site.spelled(values["size"])], kwargs))
    return expand


SIGNATURE = sig("size", ("stride", None), ("pad", 0))
KINDS = (LayerKind("maxpool", SIGNATURE, _pooling("max_pool")),
         LayerKind("avgpool", SIGNATURE, _pooling("avg_pool")))
EXAMPLES = (Example("maxpool 2", "[N, 2, 4, 4]"),
            Example("avgpool 3 stride=1 pad=1", "[N, 2, 4, 4]"),
            Example("maxpool size=[2, 3] stride=[2, 1] pad=[1, 0]", "[N, 2, 5, 6]"))
