"""The activation layers ``relu sigmoid tanh softplus leaky_relu softmax``:
``z{k} = f(h)``, each the built-in function of its name, numbered with the layer before."""

from __future__ import annotations

from .. import ast
from .base import ACTIVATION, Example, Expansion, LayerKind, Site
from ...vocab import Signature, sig

DOC = """\
- `relu sigmoid tanh softplus leaky_relu(alpha) softmax`: `z{k} = f(a{k})`, with the
  index of the preceding dense layer."""


def expand(site: Site) -> Expansion:
    kwargs = []
    for key in site.kinds[site.layer.name].signature.names:  # options pass to the function
        value = site.args[key]
        if not isinstance(value, ast.Expr):
            value = ast.Num(site.sp, value, repr(value))
        kwargs.append(ast.Kwarg(key, value, site.sp))
    name = site.layer.name
    return Expansion([], f"z{site.k}", ast.Call(site.sp, name, site.at, [site.source()],
                                                 kwargs))


def _activation(name: str, signature: Signature = sig(), relu_family: bool = False):
    return LayerKind(name, signature, expand, role=ACTIVATION, relu_family=relu_family)


KINDS = (_activation("relu", relu_family=True), _activation("sigmoid"),
         _activation("tanh"), _activation("softplus"),
         _activation("leaky_relu", sig(("alpha", 0.01)), relu_family=True),
         _activation("softmax"))
EXAMPLES = (Example("dense 3; relu; dense 3; sigmoid; dense 3; tanh"),
            Example("dense 3; softplus; dense 3; leaky_relu alpha=0.2; dense 3; softmax"))
