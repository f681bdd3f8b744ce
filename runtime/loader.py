"""Loading a model: a generated ``.py`` module, or a ``.bp`` spec compiled in memory (for
``bpc train``, reused from bpc's cache folder when the same spec was compiled before by
the same compiler: a verified entry, ``bpc.compiler.cache.read_entry``).

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
import os
import stat
import sys
import types
from pathlib import Path

from ..compiler.cache import entry_key, read_at_most, read_entry, write_entry
from ..compiler.limits import MAX_SPEC_BYTES
from .arrays import target_of
from .errors import UserError

CONTRACT = ("INPUTS", "TARGETS", "PARAMS", "DTYPE", "init_params", "predict", "loss",
            "loss_and_grad")
_counter = itertools.count()


def load_model(path: str | Path, dtype: str | None = None,
               module_type: type[types.ModuleType] = types.ModuleType,
               reuse: bool = False, target: str | None = None) -> types.ModuleType:
    """A module honouring the contract, from a spec (compiled now, for ``target``:
    "numpy" or "torch", NumPy when None; with ``reuse``, a NumPy module may be the
    verified one compiled from the same spec before) or a generated file (whose target
    must be ``target`` when given), executed once, as a ``module_type``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.suffix == ".py":
        if dtype is not None:
            raise UserError("--dtype needs a spec (.bp); a generated module has its dtype fixed")
        module = _import_file(p, module_type)
    else:
        module = _compile_spec(p, dtype, module_type, reuse, target)
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
    try:
        code = compile(source, str(p), "exec")
    except SyntaxError as e:
        raise UserError(f"{p}:{e.lineno}: not valid Python ({e.msg})") from None
    except ValueError as e:  # a NUL byte
        raise UserError(f"{p}: not valid Python ({e})") from None
    return _executed(p.stem, str(p), code, source, module_type)


def _executed(name: str, file: str, code, source: str,
              module_type: type[types.ModuleType]) -> types.ModuleType:
    module = module_type(f"bpc_model_{name}_{next(_counter)}")
    module.__file__ = file
    exec(code, module.__dict__)  # noqa: S102 - the module asked for, or bpc's own output
    module.source = source  # identity.model_identity reads it; a bpc.Model pickles by it
    return module


def _compile_spec(p: Path, dtype: str | None, module_type: type[types.ModuleType],
                  reuse: bool, target: str | None = None) -> types.ModuleType:
    if target == "torch":
        return _compiled_module(p, dtype, module_type, target)
    key = _spec_key(p, dtype) if reuse else None
    entry = read_entry("modules", key) if key else None
    if not _well_formed(entry):
        if not key:
            return _compiled_module(p, dtype, module_type, "numpy")
        entry = _compiled(p, dtype)
        write_entry("modules", key, entry)
    else:
        for text in entry["warnings"]:  # as the compilation printed them
            print(text, file=sys.stderr)
    file = f"<compiled from {p}>"
    module = _executed(entry["name"], file, compile(entry["source"], file, "exec"),
                       entry["source"], module_type)
    module._bpc_spec_file = (p, dtype)  # compiled again only if asked (compilation_of)
    return module


def _compiled_module(p: Path, dtype: str | None, module_type, target: str):
    """The spec compiled now for ``target``, its compilation kept as ``bpc.compile``
    keeps it: its NumPy twin draws a torch run's initial parameters
    (arrays.initial_params), and a resume on the other target compares the spec
    compiled for the checkpoint's (identity.retargeted)."""
    from ..compiler.compilation import Compilation

    if target == "torch":
        from .arrays import import_torch

        import_torch()  # before compiling: the module it writes imports torch
    comp = Compilation.from_file(p, dtype=dtype, layout=False,  # executed, never read
                                 target=target)
    return comp.new_module(module_type)


def compilation_of(module):
    """The compilation of the spec ``module`` was compiled from (kept by bpc.compile and
    the loader, or made now for a module the cache gave); None for a generated file."""
    comp = getattr(module, "_bpc_compilation", None)
    spec_file = getattr(module, "_bpc_spec_file", None)
    if comp is None and spec_file is not None:
        from ..compiler.compilation import Compilation

        comp = Compilation.from_file(spec_file[0], dtype=spec_file[1], layout=False)
        module._bpc_compilation = comp
    return comp


def _compiled(p: Path, dtype: str | None) -> dict:
    """The spec compiled now: the model's name, the module's text, the warnings printed."""
    from ..compiler.compilation import Compilation

    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        print(text, file=sys.stderr)

    comp = Compilation.from_file(p, dtype=dtype, layout=False, warn=warn)  # never read
    source = comp.text
    return {"name": comp.name, "source": source, "warnings": warnings}


def _well_formed(entry: dict | None) -> bool:
    return entry is not None and isinstance(entry.get("name"), str) and \
        isinstance(entry.get("source"), str) and isinstance(entry.get("warnings"), list) \
        and all(isinstance(w, str) for w in entry["warnings"])


def _spec_key(p: Path, dtype: str | None) -> str | None:
    """The cache key of the spec file at ``p`` compiled with ``dtype`` as ``load_model``
    compiles it; None when it is not a regular file of a spec's size (the compiler then
    reports why)."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        data = read_at_most(fd, MAX_SPEC_BYTES) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        data = None
    finally:
        os.close(fd)
    if data is None:
        return None
    return entry_key("module", "fast", "no layout", str(p), dtype or "", data)


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
