"""The oracle's tensors: float64, values made tensors, axes reversed, and its error."""

from __future__ import annotations

import torch

DT = torch.float64


class OracleError(Exception):
    """The spec uses something the oracle does not interpret (or data of the wrong shape)."""


def tensor(v):
    return v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=DT)


def reverse_axes(x):
    return x.permute(*reversed(range(x.ndim))) if x.ndim > 1 else x
