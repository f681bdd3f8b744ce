"""Which spec identifiers may reach generated Python, and how generated names are made.

Spec identifiers already match ``[A-Za-z_][A-Za-z0-9_]*`` (the grammar's NAME). On top of
that a name is rejected when it could change what the generated module means: Python
keywords and soft keywords, every Python built-in, the names the generated module itself
defines or uses (``np``, ``params``, ``grads``, ``rng``, the contract's ``INPUTS`` …), and
anything starting with ``_`` (reserved for helpers such as ``_softmax``).
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

GENERATED_NAMES = frozenset({
    "np", "numpy", "params", "grads", "rng", "INPUTS", "TARGETS", "PARAMS", "DTYPE",
    "CONFIG", "OUTPUT", "LOSS", "init_params", "predict", "loss", "loss_and_grad",
    "training",  # the mode keyword of loss and loss_and_grad (a model with modes)
    "scale",  # loss_and_grad's seed of the backward pass (dL/dL)
})
# Names a module defines or takes only when its spec declares state.
STATE_NAMES = frozenset({"state", "STATE", "init_state"})
PYTHON_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(
    n for n in dir(builtins) if not n.startswith("_"))


def reserved_reason(name: str) -> str | None:
    """Why ``name`` cannot be a spec identifier, or None when it can."""
    if name.startswith("_"):
        return "names starting with '_' are reserved for generated helpers"
    if not IDENTIFIER.match(name):
        return "not a valid identifier"
    if name in GENERATED_NAMES:
        return "the generated module uses this name itself"
    if keyword.iskeyword(name) or name in keyword.softkwlist:
        return "it is a Python keyword"
    if name in PYTHON_NAMES:
        return "it is a Python built-in"
    return None


def model_name_reason(name: str) -> str | None:
    """Why ``name`` cannot name a model (and so its generated ``NAME.py``), or None."""
    from .limits import MAX_NAME_CHARS

    why = reserved_reason(name)
    if why:
        return why
    if len(name) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters (it names the generated file)"
    if name in sys.stdlib_module_names:
        return (f"the generated {name}.py would shadow Python's module '{name}' (which "
                f"NumPy imports) wherever its folder is on the import path; choose "
                f"another name, e.g. '{name}_model'")
    return None


def fresh(base: str, taken: set[str]) -> str:
    """``base`` if free, else ``base_2``, ``base_3`` …; the result is added to ``taken``."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name
