"""The targets a module is written for: NumPy (the default) and PyTorch.

A target is what differs between two modules printed from the same optimized program
with the same schedule, names and comments: which printer field of each op prints it
(``Primitive.printer``: ``emit`` or ``torch``, with ``out_form``/``torch_out`` and the
helpers of ``kernels``/``torch_kernels``), the template, the lines that turn arguments
into arrays, the initial values' formulas, how a function returns and what its
docstrings call things. Everything else (what is computed, in which order, into which
buffers) is the program's and the style's, the same on every target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import Diagnostic, SpecError
from ..ir import Binding, Init, Program, Shape
from ..ir.inits import _literal, _size, formula
from ..ir.ops import HELPERS, TORCH_HELPERS
from ..ir.primitives import format_number


@dataclass(frozen=True)
class Target:
    name: str
    lib: str  # the array library as the module names it ("np", "torch")
    array: str  # its array type, in annotations
    scalar: str  # what the loss is returned as, in annotations
    generator: str  # what draws dropout's masks, as docstrings say it
    template: str
    helpers: dict[str, str]
    # Names the function bodies use beyond the contract's: a spec value named so would
    # shadow them.
    uses: frozenset[str]
    formula: Callable[[Init, Shape, str], tuple[str, str]]
    array_call: str  # builds an array from nested lists (a wide initial value)
    decorator: str | None = None  # heads every function (torch: no autograd tape)


def _torch_formula(init: Init, shape: Shape, dtype: str) -> tuple[str, str]:
    """(expression, comment) of a parameter's initial value on torch, drawn on the CPU
    from the ``torch.Generator`` ``rng`` in ``dtype`` (the template moves it to
    ``device``). The comment is NumPy's; the numbers are torch's, not NumPy's."""
    size, a, k = _size(shape), init.args, init.kind
    _, comment = formula(init, shape, dtype)
    empty = f"torch.empty({size}, dtype=dtype)"
    if k in ("normal", "he", "xavier", "lecun"):
        mean, std = (format_number(float(a["mean"])), format_number(float(a["std"]))) \
            if k == "normal" else ("0.0", f"({2 if k == 'he' else 1} / {init.fan_in}) ** 0.5")
        return f"{empty}.normal_({mean}, {std}, generator=rng)", comment
    if k in ("uniform", "xavier_uniform"):
        if k == "uniform":
            low, high = format_number(float(a["low"])), format_number(float(a["high"]))
        else:
            high = f"(6 / {init.fan_in + init.fan_out}) ** 0.5"
            low = f"-{high}"
        return f"{empty}.uniform_({low}, {high}, generator=rng)", comment
    if k in ("zeros", "ones"):
        return f"torch.{k}({size}, dtype=dtype)", comment
    if k == "constant" or (k == "value" and shape):  # a number fills the declared shape
        return f"torch.full({size}, {format_number(a['value'])}, dtype=dtype)", comment
    return f"torch.tensor({_literal(a['value'])}, dtype=dtype)", comment


NUMPY = Target("numpy", "np", "np.ndarray", "float", "a NumPy Generator", "module.py.j2",
               HELPERS, frozenset(), formula, "np.array")
TORCH = Target("torch", "torch", "torch.Tensor", "torch.Tensor", "a torch Generator",
               "torch_module.py.j2", TORCH_HELPERS,
               frozenset({"torch", "dtype", "device"}), _torch_formula,
               "torch.tensor", "@torch.no_grad()")
TARGETS = {t.name: t for t in (NUMPY, TORCH)}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; expected one of {sorted(TARGETS)}")
    return TARGETS[name]


def check_names(prog: Program, t: Target) -> None:
    """A spec name that the target's module uses itself (``torch``, ``device``) cannot
    be printed there: a located error saying so, never a module that means otherwise."""
    for bd in prog.all_bindings():
        if bd.name in t.uses:
            raise SpecError(Diagnostic(
                f"'{bd.name}' cannot name a value of a model compiled for {t.name}: the "
                f"generated module uses that name itself", bd.span,
                f"rename '{bd.name}', or compile for another target"))


def read_input(bd: Binding, t: Target) -> str:
    """The prologue line turning a data argument into an array of the function's dtype
    (integer labels stay integers)."""
    if t is TORCH:
        dtype = "torch.long" if bd.node.dtype == "int" else "dtype"
        return f"{bd.name} = torch.as_tensor({bd.name}, dtype={dtype}, device=device)"
    if bd.node.dtype == "int":
        return f"{bd.name} = np.asarray({bd.name})"
    conv = "DTYPE({0})" if bd.node.shape == () else "np.asarray({0}, dtype=DTYPE)"
    return f"{bd.name} = " + conv.format(bd.name)


def placement(args: list[Binding]) -> str:
    """The torch prologue's first line: the dtype and device to compute in, from the
    parameters, else the first floating input (``_placement``)."""
    first = next((bd.name for bd in args if bd.node.dtype != "int"), None)
    return f"dtype, device = _placement(params{', ' + first if first else ''})"
