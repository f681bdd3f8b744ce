"""``batchnorm``: batch normalization of the value flowing in, with its scale and shift
(parameters) and its running statistics (states), numbered on its own counter."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `batchnorm [momentum=0.9] [eps=1e-6]`: batch normalization of the value coming in,
  `[N, D]` (each feature over the batch) or `[N, C, H, W]` (each channel over the batch
  and the pixels). It makes the parameters `bn{j}_gamma : [C] = ones` (the scale) and
  `bn{j}_beta : [C] = zeros` (the shift), the states `bn{j}_running_mean : [C] = zeros`
  and `bn{j}_running_var : [C] = ones`, and the equation `bn{j} = batch_norm(h,
  bn{j}_gamma, bn{j}_beta, bn{j}_running_mean, bn{j}_running_var)`; `j` counts batchnorm
  layers from 1 across the file. The underscore keeps these names apart from the
  `beta0`/`omega0` style of hand-written UDL specs. DLFS's order is `dense; batchnorm;
  relu`; the dense layer's default initializer looks past the batchnorm to the
  activation. A running variance starts at 1, not at DLFS's 0, so that inference before
  any training step is the identity instead of a division by √eps."""

SIGNATURE = sig(("momentum", 0.9), ("eps", 1e-6))


def expand(site: Site) -> Expansion:
    """Sized by the features of the value flowing in (axis 1)."""
    sp, at, j = site.sp, site.at, site.k
    base = f"bn{j}"
    shape = ast.Shape([ast.Dim(ast.FanIn(site.h, axis=1, features=True), sp)], sp)
    origin = f"batchnorm layer {j}"
    decls: list[ast.Stmt] = [
        ast.Param(sp, f"{base}_gamma", at, shape, ast.Name(sp, "ones"),
                  origin=f"{origin}: the scale, starting at 1"),
        ast.Param(sp, f"{base}_beta", at, shape, ast.Name(sp, "zeros"),
                  origin=f"{origin}: the shift, starting at 0"),
        ast.State(sp, f"{base}_running_mean", at, shape, ast.Name(sp, "zeros"),
                  origin=f"{origin}: the running mean, for inference"),
        ast.State(sp, f"{base}_running_var", at, shape, ast.Name(sp, "ones"),
                  origin=f"{origin}: the running variance, for inference")]
    kwargs = []
    for key, default in SIGNATURE.params:  # written only where it differs from batch_norm's
        value = site.args[key]
        if isinstance(value, ast.Expr):
            kwargs.append(ast.Kwarg(key, value, value.span))
        elif value != default:
            kwargs.append(ast.Kwarg(key, ast.Num(sp, value, repr(value)), sp))
    call = ast.Call(sp, "batch_norm", at, [site.source()] + [
        ast.Name(sp, d.name) for d in decls], kwargs)
    return Expansion(decls, base, call)


KINDS = (LayerKind("batchnorm", SIGNATURE, expand, counter="batchnorm", advances=True),)
EXAMPLES = (Example("dense 3; batchnorm; relu"),
            Example("batchnorm momentum=0.5 eps=1e-4", "[N, 2, 3, 3]"))
