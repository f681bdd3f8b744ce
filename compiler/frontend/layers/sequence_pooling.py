"""``pool mean|max|last [mask=M]``: a sequence ``[N, T, D]`` reduced over its time axis to
``[N, D]``, for sequence classification, numbered on its own counter."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `pool mean|max|last [mask=M]`: the sequence coming in, `[N, T, D]` (or `[N, T]`),
  reduced over its time axis (axis 1) to `[N, D]`: `pool{j} = mean(h, axis=1)`,
  `max(h, axis=1)` or `h[:, -1]` (the last step); `j` counts pool layers from 1 across
  the file. With `mask=M`, a padding mask `[N, T]` of 0s and 1s (1 at a real step), `mean`
  and `max` take the real steps only: `masked_mean(h, M)`, `masked_max(h, M)` (a sequence
  without a real step pools to 0). `last` takes no mask: pad sequences at the front
  (Keras's default, `padding="pre"`) so that the last step is real."""

HOWS = {"mean": ("mean", "masked_mean"), "max": ("max", "masked_max"), "last": ("", "")}


def expand(site: Site) -> Expansion | None:
    how, mask = site.args["how"], site.args["mask"]
    sp, at = site.sp, site.at
    word = how.id if isinstance(how, ast.Name) else None
    if word not in HOWS:
        site.diags.error("'pool' takes what to take of each sequence: mean, max or last",
                         how.span if isinstance(how, ast.Expr) else sp,
                         "e.g. 'pool mean', or 'pool max mask=m' with a padding mask m")
        return None
    name = f"pool{site.k}"
    if word == "last":
        if mask is not None:
            site.diags.error("'pool last' takes the last step, so it takes no mask", mask.span,
                             "pad the sequences at the front so that the last step is "
                             "real, or pool with mean or max over the real steps")
            return None
        index = ast.Index(sp, site.source(), [ast.Slice(sp, None, None, None),
                                              ast.Neg(sp, ast.Num(sp, 1, "1"))])
        return Expansion([], name, index)
    plain, masked = HOWS[word]
    if mask is None:
        call = ast.Call(sp, plain, at, [site.source()],
                        [ast.Kwarg("axis", ast.Num(sp, 1, "1"), sp)])
    else:
        call = ast.Call(sp, masked, at, [site.source(), mask], [])
    return Expansion([], name, call)


KINDS = (LayerKind("pool", sig(("how", None), ("mask", None)), expand, counter="pool",
                   advances=True),)
EXAMPLES = (Example("pool mean; dense 2", "[N, 3, 4]"),
            Example("pool max; tanh", "[N, 3, 4]"),
            Example("pool last", "[N, 3, 4]"))
