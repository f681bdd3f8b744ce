"""What a run is, and whether a resume continues it: the identity a checkpoint records
(``run_identity``: parameter shapes, dtype, settings, a hash of the data, and the compiled
model itself, ``model_identity``), and what differs between a checkpoint's run and this
one, in words (``resume_problems``), with the notes a resume prints (``legacy_note``,
``lr_change``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from .arrays import dtype_name, host_dtype, target_of
from .errors import UserError
from .version import version


def data_hash(arrays: dict[str, np.ndarray]) -> str:
    """A hash of named arrays: names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def run_identity(module, settings, optimizer, params, train_arrays,
                 test_arrays, val_arrays=None, select: str | None = None) -> dict:
    """What a run is, as recorded in its checkpoint: what a resume must agree with. The
    model is recorded as itself (``model_identity``: a digest of its compiled code, part
    by part), not by probing it. A run with validation data records its hash, and one
    that selects its best epoch the metric it watches (``select``)."""
    extra = {"val_data": data_hash(val_arrays)} if val_arrays else {}
    if settings.validation:  # bpc eval/predict split the data as the run did
        extra["validation"] = settings.validation
    if select is not None:
        extra["select"] = select
    return {**extra, "params": {k: list(v.shape) for k, v in params.items()},
            "dtype": host_dtype(module).name,
            "model": model_identity(module), "target": target_of(module),
            "batch": settings.batch, "seed": settings.seed, "shuffle": settings.shuffle,
            "data_seed": settings.data_seed,
            "optimizer": optimizer.name,
            "opt": {k: v for k, v in sorted(optimizer.cfg.items())},
            "data": data_hash(train_arrays), "test_data": data_hash(test_arrays)}


def retargeted(run: dict, saved: dict | None, module) -> dict:
    """``run`` as a resume compares it with the checkpoint's run ``saved``: when that was
    trained on another target (NumPy and torch share the checkpoint format), the model
    is the spec compiled for that target, so the same spec continues on either."""
    target = (saved or {}).get("target", "numpy") if isinstance(saved, dict) else "numpy"
    if not isinstance(saved, dict) or "model" not in saved or target == run["target"]:
        return run
    from .loader import compilation_of

    comp = compilation_of(module)
    if comp is None:
        raise UserError(f"the checkpoint was trained on the {target} target, and this "
                        f"module is compiled for {run['target']}",
                        "resume from the spec (.bp), which bpc compiles for either target")
    from types import SimpleNamespace

    twin = SimpleNamespace(source=comp.retargeted(target).text)
    return {**run, "model": model_identity(twin)}


# CONFIG entries that are settings, not the model: the run records the ones that matter
# (batch, seed, optimizer, data) itself, and the number of epochs may grow on resume.
# CONFIG entries that are not the model: its settings, and the memory estimate (derived
# from the model, naming spec lines, which a comment added above them moves)
_SETTINGS_CONFIG = ("train", "optimizer", "data", "memory")


def model_identity(module) -> dict:
    """The compiled model itself, as a run's checkpoint records it: a digest of each
    top-level definition of its Python text (``parts``: functions, ``PARAMS``,
    ``DTYPE``, ``CONFIG`` less its settings ...) and of them all (``digest``).

    The text is read as a syntax tree without docstrings, comments or layout, so the
    module compiled in memory from a spec and the same spec's ``bpc compile`` output (or
    a reformatted copy) are the same model, and anything that changes what it computes
    (a dropout rate, batch norm's momentum, a ``stop_gradient``, an initializer, the
    dtype, the code style) is another. A module whose text is unknown (built in
    memory) is described by its functions' code objects instead.

    Reading a text's tree costs 2-40 ms (a tenth of a short run), so the digests of a
    text are kept in bpc's cache as a verified entry (``compiler.cache.read_entry``)
    keyed by the text itself, this file and the Python version: a text's entry is what
    reading it again would give."""
    source = getattr(module, "source", None)
    digests = _source_digests(source) if isinstance(source, str) else None
    how = "code" if digests is None else "source"
    if digests is None:
        digests = _digests(_code_parts(module))
    whole = hashlib.blake2b(json.dumps([how, digests]).encode(), digest_size=16)
    return {"digest": whole.hexdigest(), "from": how, "parts": digests,
            "bpc": version()}


def _source_digests(source: str) -> dict[str, str] | None:
    """The digest of each top-level definition of the module text ``source`` (None when
    it is not Python), from the cache when this text was read before."""
    from ..compiler.cache import read_entry, write_entry

    here = os.stat(__file__)
    key = hashlib.sha256(f"identity\0{sys.version}\0{here.st_size}:{here.st_mtime_ns}\0"
                         .encode() + source.encode("utf-8", "surrogatepass")).hexdigest()
    entry = read_entry("identities", key)
    if entry is not None and isinstance(entry.get("parts"), dict):
        return entry["parts"]
    parts = _source_parts(source)
    if parts is None:
        return None
    digests = _digests(parts)
    write_entry("identities", key, {"parts": digests})
    return digests


def _digests(parts: dict[str, list[str]]) -> dict[str, str]:
    return {name: hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()
            for name, texts in sorted(parts.items())}


def _source_parts(source: str) -> dict[str, list[str]] | None:
    """Each top-level name of the module text ``source`` with the canonical text of its
    definitions; None when the text is not Python."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    parts: dict[str, list[str]] = {}
    for node in tree.body:
        if _docstring(node):
            continue
        name = _defined_name(node)
        if name == "CONFIG" and isinstance(getattr(node, "value", None), ast.Dict):
            d = node.value
            kept = [(k, v) for k, v in zip(d.keys, d.values)
                    if not (isinstance(k, ast.Constant) and k.value in _SETTINGS_CONFIG)]
            node.value = ast.Dict(keys=[k for k, _ in kept], values=[v for _, v in kept])
        for sub in ast.walk(node):  # docstrings of functions are not the model
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and sub.body and _docstring(sub.body[0]):
                sub.body = sub.body[1:] or [ast.Pass()]
        parts.setdefault(name, []).append(_canonical(node))
    return parts


def _code_parts(module) -> dict[str, list[str]]:
    """Each name of a module built in memory with the text of its code or value."""
    parts: dict[str, list[str]] = {}
    for name in sorted(vars(module) if hasattr(module, "__dict__") else dir(module)):
        if name.startswith("__") or name.startswith("_bpc") or \
                name in ("source", "spec", "path"):
            continue
        value = getattr(module, name)
        if isinstance(value, type(np)):  # an imported module
            continue
        if name == "CONFIG" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _SETTINGS_CONFIG}
        code = getattr(value, "__code__", None)
        parts[name] = [_code_text(code) + repr(getattr(value, "__defaults__", None))
                       if code is not None else _value_text(value)]
    return parts


def _docstring(node) -> bool:
    import ast

    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
        isinstance(node.value.value, str)


def _defined_name(node) -> str:
    import ast

    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        return targets[0].id
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "imports"
    return "(module)"


def _canonical(node) -> str:
    """A syntax tree as text, without positions and without the empty or absent fields
    that Python versions add (so a checkpoint resumes under another Python)."""
    import ast

    if isinstance(node, ast.AST):
        fields = [f"{k}={_canonical(v)}" for k, v in ast.iter_fields(node)
                  if v is not None and v != [] and k not in ("type_comment", "kind")]
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return repr(node)


def _code_text(code) -> str:
    consts = [_code_text(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts]
    return repr((code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars))


def _value_text(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype.str}{value.shape}{value.tobytes().hex()}"
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_value_text(v)}" for k, v in sorted(
            value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, (set, frozenset)):  # in an order that does not depend on hashing
        return "{" + ",".join(sorted(_value_text(v) for v in value)) + "}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "[" + ",".join(_value_text(v) for v in value) + "]"
    text = repr(value)
    return type(value).__qualname__ if " at 0x" in text else text  # not an address


# What each definition of a module is, for a refused resume's message.
_PART_WORDS = {"loss_and_grad": "the training step (loss_and_grad)",
               "predict": "the output (predict)", "loss": "the inference loss (loss)",
               "_loss_training": "the training-mode loss (loss(training=True))",
               "_loss_and_grad_inference":
                   "the inference-mode gradient (loss_and_grad(training=False))",
               "init_params": "the initial parameters (init_params)",
               "init_state": "the initial state (init_state)",
               "DTYPE": "the dtype (DTYPE)", "PARAMS": "the parameters (PARAMS)",
               "STATE": "the state (STATE)", "INPUTS": "the inputs (INPUTS)",
               "TARGETS": "the targets (TARGETS)",
               "CONFIG": "what the compiler records of the model (CONFIG)"}


def model_difference(saved: dict, now: dict) -> str | None:
    """What differs between the model a checkpoint records and this one, in words; None
    when they are the same."""
    if saved.get("digest") == now["digest"]:
        return None
    text = "the model is not the one the run trained"
    old_parts = saved.get("parts") if isinstance(saved.get("parts"), dict) else {}
    if saved.get("from") == now["from"] and old_parts:
        order = list(_PART_WORDS)  # the public functions first, as _PART_WORDS lists them
        changed = sorted((k for k in set(old_parts) | set(now["parts"])
                          if old_parts.get(k) != now["parts"].get(k)),
                         key=lambda k: (order.index(k) if k in order else len(order), k))
        if changed:
            text += ": " + ", ".join(_PART_WORDS.get(k, k) for k in changed) + (
                " differ" if len(changed) > 1 else " differs")
    elif saved.get("from") != now["from"]:
        text += " (or it cannot be compared: one was described by its text, the other " \
                "by its code)"
    text += " (the spec changed, or another compilation of it"
    if isinstance(saved.get("bpc"), str) and saved["bpc"] != now["bpc"]:
        text += f": the checkpoint was written by bpc {saved['bpc']}, this is {now['bpc']}"
    return text + ")"


def _contract_hash(module) -> str:
    """The model's interface, as checkpoints before ``model_identity`` recorded it."""
    config = {k: v for k, v in (getattr(module, "CONFIG", {}) or {}).items()
              if k not in ("train", "optimizer", "data", "nonnegative", "memory", "accuracy",
                           "no_accuracy")}  # entries newer than these checkpoints
    text = repr([sorted(module.INPUTS.items()), sorted(module.TARGETS.items()),
                 getattr(module, "OUTPUT", None), getattr(module, "LOSS", None),
                 sorted(config.items(), key=repr)])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_FLAGS = {"batch": "--batch", "seed": "--seed", "lr": "--lr", "optimizer": "--optimizer",
          "select": "the metric --early-stop/--keep best watch"}


def resume_problems(saved: dict, now: dict, saved_params: dict, params: dict,
                    saved_start: float | None = None, start: float | None = None,
                    contract: str | None = None) -> list[str]:
    """What differs between the checkpoint's run and this one, in words; empty when the
    resume continues the same run. Parameter shapes and dtype are checked whatever the
    checkpoint's age; the rest when the checkpoint records it. The learning rate may
    change (``lr_change``).

    The model is compared as itself (``model_identity``). A checkpoint written before
    bpc recorded it (``legacy_note``) is compared as it was then: by the model's
    interface (``contract``, ``_contract_hash``) and its loss at initialization
    (``saved_start`` against ``start``)."""
    problems = [f"parameter '{k}' has shape {tuple(saved_params[k].shape)} there, "
                f"{tuple(v.shape)} here" for k, v in params.items()
                if saved_params[k].shape != v.shape]
    dtypes = {dtype_name(saved_params[k]) for k in params} - set(map(dtype_name,
                                                                     params.values()))
    if dtypes and not problems:
        problems.append(f"the parameters are {', '.join(sorted(dtypes))} there, "
                        f"{dtype_name(next(iter(params.values())))} here (dtype)")
    if not saved or problems:
        return problems
    if isinstance(saved.get("model"), dict):
        differs = model_difference(saved["model"], now["model"])
        if differs:
            problems.append(differs)
    elif contract is not None and saved.get("contract") != contract:
        problems.append("the model's inputs, targets, output or loss differ (the spec changed)")
    for key in ("batch", "seed", "shuffle", "select"):
        if saved.get(key) != now.get(key):
            problems.append(f"{_FLAGS.get(key, key)} was {saved.get(key)}, now {now.get(key)}")
    old_opt, new_opt = saved.get("opt", {}), now["opt"]
    for key in sorted(set(old_opt) | set(new_opt)):
        if old_opt.get(key) != new_opt.get(key) and key != "lr":  # see lr_change
            problems.append(f"{_FLAGS.get(key, 'optimizer setting ' + repr(key))} was "
                            f"{old_opt.get(key)}, now {new_opt.get(key)}")
    differ = [what for what, key in (("training", "data"), ("test", "test_data"),
                                     ("validation", "val_data"))
              if saved.get(key) != now.get(key)]
    if differ:
        problems.append(f"the {differ[0]} data differ (another file, edited data, or "
                        "another --data-seed or --validation splitting it)")
    if not problems and "model" not in saved and saved_start is not None and \
            start is not None and \
            not math.isclose(saved_start, start, rel_tol=1e-6, abs_tol=1e-12):
        problems.append(f"the model computes another loss at initialization ({start:.8g}, "
                        f"was {saved_start:.8g}): the spec changed")
    return problems


def legacy_note(path: Path, saved: dict | None) -> str | None:
    """A checkpoint written before bpc recorded the compiled model resumes, with this
    note: what it could check is checked, but a change of the model that leaves its
    loss at initialization as it was (a dropout rate, batch norm's momentum) cannot be
    seen. The checkpoints the resumed run writes record the model."""
    if isinstance(saved, dict) and isinstance(saved.get("model"), dict):
        return None
    return (f"note: {path} was written by an older bpc, which did not record the compiled "
            "model; resuming after checking what it records (parameter shapes, settings, "
            "data, the model's inputs and outputs and its loss at initialization), but a "
            "change that keeps the loss at initialization (a dropout rate, batch norm's "
            "momentum) would go unnoticed: resume only with the run's own spec")


def lr_change(saved: dict | None, now: dict) -> str | None:
    """A new learning rate is the one change a resume accepts (to continue more gently,
    say); it is pointed out, since the run is then no longer the one it was."""
    old = (saved or {}).get("opt", {}).get("lr")
    if old is None or old == now["opt"].get("lr"):
        return None
    return (f"note: resuming with --lr {now['opt'].get('lr')}; the run was trained with "
            f"{old} so far")
