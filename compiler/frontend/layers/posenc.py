"""``posenc sinusoidal`` and ``posenc learned T_MAX``: positional encodings added to the
sequence flowing in, numbered on their own counter."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `posenc sinusoidal`, `posenc learned T_MAX [init=INIT]`: positions added to the
  sequence coming in, `[N, T, D]`: `pe{j} = h + sinusoidal(h)` (Vaswani et al.'s
  constant table for the data's `T`, computed in the module), or `pe{j} = h +
  first_rows(pe{j}_table, h)` with the parameter `pe{j}_table : [T_MAX, D] =
  normal(std=0.02)` (GPT's and BERT's), of which the first `T` rows are used (data with
  more than `T_MAX` steps is an error when the module runs); `j` counts posenc layers from
  1 across the file."""

SIGNATURE = sig(("how", None), ("steps", None), ("init", None))


def _table(site: Site, name: str) -> ast.Param | None:
    """The learned table's parameter, [T_MAX, D]; None, reported, without a T_MAX."""
    sp = site.sp
    if site.args["steps"] is None:
        site.diags.error("'posenc learned' needs the most steps a sequence may have",
                         sp, "e.g. 'posenc learned 64': a table of 64 positions")
        return None
    steps = site.whole("steps", 1)
    if steps is None:
        return None
    init = site.args["init"]
    if init is None:
        init = ast.Call(sp, "normal", sp, [], [ast.Kwarg("std", ast.Num(sp, 0.02, "0.02"),
                                                         sp)])
    shape = ast.Shape([ast.Dim(steps, sp), ast.Dim(ast.FanIn(site.h, rows=True), sp)], sp)
    return ast.Param(sp, name, site.at, shape, init,
                     origin=f"posenc layer {site.k}: one row per position")


def expand(site: Site) -> Expansion | None:
    how, sp, at = site.args["how"], site.sp, site.at
    word = how.id if isinstance(how, ast.Name) else None
    base = f"pe{site.k}"
    if word == "sinusoidal":
        extra = next((k for k in ("steps", "init") if site.args[k] is not None), None)
        if extra is not None:
            site.diags.error(f"'posenc sinusoidal' is a constant table: it takes no "
                             f"{'number of steps' if extra == 'steps' else 'init'}", sp,
                             "'posenc learned 64' is the learned one")
            return None
        positions = ast.Call(sp, "sinusoidal", at, [site.source()], [])
        return Expansion([], base, ast.BinOp(sp, "+", site.source(), positions))
    if word != "learned":
        site.diags.error("'posenc' takes which positions: sinusoidal or learned",
                         how.span if isinstance(how, ast.Expr) else sp,
                         "e.g. 'posenc sinusoidal', or 'posenc learned 64'")
        return None
    table = _table(site, f"{base}_table")
    if table is None:
        return None
    positions = ast.Call(sp, "first_rows", at, [ast.Name(sp, table.name), site.source()], [])
    return Expansion([table], base, ast.BinOp(sp, "+", site.source(), positions))


KINDS = (LayerKind("posenc", SIGNATURE, expand, counter="posenc", advances=True),)
EXAMPLES = (Example("posenc sinusoidal; tanh", "[N, 3, 4]"),
            Example("posenc learned 5; layernorm; pool mean", "[N, 3, 4]"))
