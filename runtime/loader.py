"""Loading a model: a generated ``.py`` module, or a ``.bp`` spec compiled in memory.

The runtime relies on the generated module's contract only (INPUTS, TARGETS, PARAMS,
DTYPE, init_params, predict, loss, loss_and_grad; CONFIG, OUTPUT, LOSS, TARGET when
present), so a module compiled elsewhere and copied here still trains. A relative data
path in its CONFIG is read from the folder of the file loaded (the spec's, or the
module's). A spec is compiled for the target asked for (NumPy by default, or torch); a
generated module has its target fixed, as it has its dtype.
"""

from __future__ import annotations

import importlib.util
import itertools
import types
from pathlib import Path

from .arrays import target_of
from .errors import UserError

CONTRACT = ("INPUTS", "TARGETS", "PARAMS", "DTYPE", "init_params", "predict", "loss",
            "loss_and_grad")
_counter = itertools.count()


def load_model(path: str | Path, dtype: str | None = None,
               module_type: type[types.ModuleType] = types.ModuleType,
               target: str | None = None) -> types.ModuleType:
    """A module honouring the contract, from a spec (compiled now, for ``target``:
    "numpy" or "torch", NumPy when None) or a generated file (whose target must be
    ``target`` when given), executed once, as a ``module_type``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.suffix == ".py":
        if dtype is not None:
            raise UserError("--dtype needs a spec (.bp); a generated module has its dtype fixed")
        module = _import_file(p, module_type)
    else:
        module = _compile_spec(p, dtype, module_type, target)
    missing = [name for name in CONTRACT if not hasattr(module, name)]
    if missing:
        raise UserError(f"{p} is not a bpc model: it lacks {', '.join(missing)}",
                        "give a .bp spec or a module written by 'bpc compile'")
    if target is not None and target_of(module) != target:
        raise UserError(f"{p} was compiled for the {target_of(module)} target, not {target}",
                        f"give the spec (.bp), or compile it with: bpc compile --target "
                        f"{target}")
    # Where the spec's relative data path is read from (data.spec_folder): the folder of
    # the file given, whatever the working directory.
    module._bpc_folder = p.resolve().parent
    return module


def _import_file(p: Path, module_type: type[types.ModuleType]) -> types.ModuleType:
    """The module in file ``p``, executed once from its text as Python's import decodes
    it (a coding cookie, else UTF-8). Never through the import system's bytecode cache:
    a ``.pyc`` in ``__pycache__`` beside the file, which anyone who can write the folder
    can plant, is neither read nor written. ``source`` keeps the text executed (a
    ``bpc.Model`` pickles by it)."""
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        source = importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise UserError(f"{p}: not a Python module in a known encoding ({e})") from None
    module = module_type(f"bpc_model_{p.stem}_{next(_counter)}")
    module.__file__ = str(p)
    try:
        code = compile(source, str(p), "exec")
    except SyntaxError as e:
        raise UserError(f"{p}:{e.lineno}: not valid Python ({e.msg})") from None
    except ValueError as e:  # a NUL byte
        raise UserError(f"{p}: not valid Python ({e})") from None
    exec(code, module.__dict__)  # noqa: S102 - the module the user asked to load
    module.source = source  # identity.model_identity reads it; a bpc.Model pickles by it
    return module


def _compile_spec(p: Path, dtype: str | None, module_type: type[types.ModuleType],
                  target: str | None = None) -> types.ModuleType:
    from ..compiler.compilation import Compilation

    if target == "torch":
        from .arrays import import_torch

        import_torch()  # before compiling: the module it writes imports torch
    comp = Compilation.from_file(p, dtype=dtype, layout=False,  # executed, never read
                                 target=target or "numpy")
    module = comp.new_module(module_type)
    # The spec's compilation, as bpc.compile keeps it: its NumPy twin draws a torch run's
    # initial parameters (arrays.initial_params), and a resume on the other target
    # compares the spec compiled for the checkpoint's (identity.retargeted).
    module._bpc_compilation = comp
    return module


def compiled_model(comp, path: str | Path) -> types.ModuleType:
    """The module of a ``Compilation`` of the spec at ``path``, as ``load_model`` gives
    it (a report that has compiled the spec already asks this, not the loader again)."""
    module = comp.module
    module._bpc_folder = Path(path).resolve().parent
    return module


def model_name(module) -> str:
    """The model's name: the first word of the generated module's docstring."""
    doc = (getattr(module, "__doc__", None) or "").split(":", 1)[0].strip()
    return doc if doc.isidentifier() else getattr(module, "__name__", "model")
