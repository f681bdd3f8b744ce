"""``flatten``: ``f{k} = flatten(h)``, an image batch as a matrix for dense layers."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `flatten`: `f{k} = flatten(h)`. A `dense` layer needs a matrix `[N, features]`: after
  an image layer it is an error that asks for a `flatten` first; after `flatten` its
  fan-in is the flattened size (`[N, 30, 12, 12]` → 4320)."""


def expand(site: Site) -> Expansion:
    return Expansion([], f"f{site.k}", ast.Call(site.sp, "flatten", site.at, [site.source()],
                                                 []))


KINDS = (LayerKind("flatten", sig(), expand),)
EXAMPLES = (Example("flatten; dense 3", "[N, 2, 3, 3]"),)
