"""Arrays a caller holds in memory (``model.train(x=..., t=...)``, ``model.predict(x)``,
``model.evaluate``; ``--data x.npy,t.npy``): named after the spec's inputs and targets,
made NumPy arrays, checked against the declarations (``conform``: every problem names the
array and the shape expected) and gathered into a ``Dataset``.

Arrays are in the layout the spec declares, as the generated functions take them (an
.npz's rule); flat image rows are reshaped to a declared image shape, as from an .npz.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .arrays import host_dtype, is_tensor, to_host
from .batching import Dataset
from .conform import (as_array, conform, data_names, finite_numbers, say_label_warnings,
                      shape_text)
from .datafiles import unflatten_images
from .errors import UserError


def declared_text(module, targets: bool = True) -> str:
    """``inputs: x [N, 2]; targets: t [N]``, for a hint."""
    parts = ["inputs: " + (", ".join(f"{k} {shape_text(v)}" for k, v in module.INPUTS.items())
                            or "none")]
    if targets:
        parts.append("targets: " + (", ".join(f"{k} {shape_text(v)}"
                                              for k, v in module.TARGETS.items()) or "none"))
    return "; ".join(parts)


def named(module, given, where: str, targets: bool = True) -> dict:
    """``given`` (a mapping of name -> array, or a tuple/list of arrays in the order of
    ``data_names``) as a dict by name; a name that is no input (or target) of the model,
    a key that is no name, or too many arrays is an error naming it."""
    names = data_names(module, targets)
    if isinstance(given, Mapping):
        known = {**module.INPUTS, **(module.TARGETS if targets else {})}
        for key in given:
            if not isinstance(key, str) or key not in known:
                what = "input" if not targets else "input or target"
                raise UserError(f"{where}: {key!r} is not an {what} of the model",
                                declared_text(module, targets))
        return dict(given)
    if isinstance(given, (tuple, list)):
        if len(given) > len(names):
            raise UserError(f"{where}: {len(given)} arrays, but the model takes "
                            f"{len(names)} ({', '.join(names) or 'none'}, in this order)",
                            declared_text(module, targets))
        return dict(zip(names, given))
    raise UserError(f"{where}: expected arrays by name (a dict, or keywords such as "
                    f"{names[0] if names else 'x'}=...), not {type(given).__name__}",
                    declared_text(module, targets))


def checked(module, given, where: str, targets: bool = True) -> dict[str, np.ndarray]:
    """The arrays ``given`` (see ``named``) as ``conform`` makes them: NumPy arrays of the
    model's dtype (labels as integers), shapes as declared, values finite; every problem
    a UserError naming the array and the shape expected. ``targets=False``: the inputs
    only, as a prediction takes them."""
    declared = {**module.INPUTS, **module.TARGETS}
    arrays = {k: as_array(k, v, where, declared[k])
              for k, v in named(module, given, where, targets).items()}
    unflatten_images(arrays, {}, module, "")
    return conform(arrays, module, where, targets=targets)


def dataset(module, train, validation=None, name: str = "arrays") -> Dataset:
    """A ``Dataset`` of arrays in memory (``train``, and ``validation`` when given, each
    a mapping or a tuple, see ``named``), checked now: an error names the array."""
    data = Dataset(checked(module, train, f"training data ({name})"), {}, name)
    if validation is not None:
        data.validation = checked(module, validation, f"validation data ({name})")
    say_label_warnings(module, data)
    return data


def is_arrays(value) -> bool:
    """Whether ``value`` is arrays given by name or in order (not a --data string or a
    path)."""
    return isinstance(value, (Mapping, tuple, list)) and not isinstance(value, str)


def checked_params(module, params, where: str, state: bool = False) -> dict[str, np.ndarray]:
    """``params`` (or, ``state=True``, a state) checked against ``module.PARAMS`` (or
    ``STATE``): a mapping with every name, each of its declared shape, finite numbers;
    the arrays in the model's dtype. An error names the entry and the shape expected."""
    what, declared = ("state entry", module.STATE) if state else ("parameter", module.PARAMS)
    if not isinstance(params, Mapping):
        raise UserError(f"{where}: the {what.split()[0]} must be a dict of arrays by name, "
                        f"not {type(params).__name__}",
                        "e.g. result.params of model.train, or bpc.load_checkpoint(run).params")
    names = ", ".join(declared) or "none"
    for key in params:
        if key not in declared:
            raise UserError(f"{where}: {key!r} is not a {what} of the model", f"its {what}s: "
                            f"{names}")
    out = {}
    for name, shape in declared.items():
        if name not in params:
            raise UserError(f"{where}: no value for the {what} '{name}'", f"its {what}s: "
                            f"{names}")
        value = to_host(params[name]) if is_tensor(params[name]) else params[name]
        a = finite_numbers(name, as_array(name, value, where, shape), where)
        if a.shape != tuple(shape):
            raise UserError(f"{where}: the {what} '{name}' has shape {a.shape}, but the "
                            f"model declares {shape_text(shape)}")
        out[name] = a.astype(host_dtype(module), copy=False)
    return out
