"""A torch module seen from the host: NumPy arrays in and out, computed on a device.

``bpc gradcheck``, ``predict`` and ``eval`` are written over NumPy arrays (finite
differences perturb them entry by entry; predictions are written to files). ``Hosted``
gives them a torch-target module as if it were a NumPy one: every call moves its
arrays to the device, computes there (in the module's dtype: float64 for a gradient
check) and brings the results back. Training does not go through here: its data and
parameters stay on the device (``arrays``).
"""

from __future__ import annotations

import functools

import numpy as np

from .arrays import host_dict, initial_params, namespace, target_of, to_host


class Hosted:
    """``module`` (torch target) with ``predict``, ``loss`` and ``loss_and_grad`` taking
    and returning NumPy arrays, computing on ``device``. A ``state`` dict given is
    updated in place as the module updates its own; a NumPy generator given as ``rng``
    seeds the torch generator the masks are drawn from (the same seed, the same
    masks)."""

    def __init__(self, module, device: str | None = None):
        self._module = module
        self._xp = namespace(module, device)
        self.__doc__ = module.__doc__
        for name in ("predict", "loss", "loss_and_grad"):
            call = functools.partial(self._call, getattr(module, name))
            setattr(self, name, functools.wraps(getattr(module, name))(call))

    def __getattr__(self, name):
        return getattr(self._module, name)

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial parameters drawn from a NumPy generator (``arrays.initial_params``)."""
        return host_dict(initial_params(self._module, rng))

    def _call(self, function, params, *args, **kwargs):
        xp = self._xp

        def put(v):
            return xp.to_device(v) if isinstance(v, dict) else xp.to_device({"": v})[""]

        kwargs.pop("grads", None)  # the module's own arrays, on the device
        if isinstance(kwargs.get("rng"), np.random.Generator):
            kwargs["rng"] = xp.mask_generator(int(kwargs["rng"].integers(2 ** 62)))
        moved = {k: put(v) for k, v in kwargs.items() if k not in ("rng", "training")}
        result = function(put(params), *map(put, args), **{**kwargs, **moved})
        for k, v in moved.get("state", {}).items():  # training mode assigned them
            kwargs["state"][k][...] = to_host(v)
        if isinstance(result, tuple):
            value, grads = result
            return float(value), host_dict(grads)
        return float(result) if function is self._module.loss else to_host(result)


def hosted(module, device: str | None = None):
    """``module`` itself for the NumPy target; a torch module as ``Hosted`` on
    ``device``."""
    return module if target_of(module) == "numpy" else Hosted(module, device)
