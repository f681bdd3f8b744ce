"""``residual { … }``: a residual connection (UDL ch. 11), the block's output plus its
input, ``r{j} = h + x``."""

from __future__ import annotations

from .. import ast
from .base import BlockKind, Example, Expansion, Site
from ...errors import Span

DOC = """\
- `residual { … }`: a residual connection (UDL ch. 11): the block's layers, then
  `r{j} = h + x` where `x` is the value entering the block and `h` the last layer's
  output; `j` counts residual blocks from 1 across the file. The two must have the same
  shape — no broadcasting — else a located error gives both shapes. Blocks nest and
  repeat (`repeat 4 { residual { dense 64; relu; dense 64 } }`); an empty block is an
  error. In the backward pass the sum sends its adjoint to both paths, so
  `dL_dx` is the block's own chain plus `dL_dr{j}` straight through. `residual` is not a
  keyword: a layer name followed by `{` opens a block, and `residual` is the only one."""


def close(site: Site, x: str, x_span: Span) -> Expansion:
    value = ast.BinOp(site.sp, "+", site.source(), ast.Name(x_span, x), same_shape=True)
    return Expansion([], f"r{site.k}", value)


BLOCKS = (BlockKind("residual", "residual", close, "its layers' output plus its input",
                    "e.g. 'residual { dense 64; relu; dense 64 }'"),)
EXAMPLES = (Example("residual { dense 4; relu; dense 4 }"),)
