"""``dropout P``: ``d{k} = dropout(h, P)``, inverted dropout in training, the identity in
inference."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `dropout P`: `d{k} = dropout(h, P)` (the index of the preceding dense or conv layer, as
  activations take it); `P` from 0 up to (not including) 1."""


def expand(site: Site) -> Expansion:
    p = site.args["p"]  # required, so always an expression from the layer line
    return Expansion([], f"d{site.k}", ast.Call(site.sp, "dropout", site.at,
                                                 [site.source(), p], []))


KINDS = (LayerKind("dropout", sig("p"), expand),)
EXAMPLES = (Example("dense 3; dropout 0.5"),)
