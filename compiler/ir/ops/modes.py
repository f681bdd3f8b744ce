"""Ops whose value differs between training and inference: dropout's random keep mask.

Batch norm's running statistics need no op of their own: they are ``state`` leaves
(``arithmetic``), and their updates are equations over the other ops
(``functions._batch_norm``).
"""

from __future__ import annotations

import numpy as np

from .core import CMP, PLACED, POSTFIX, defop, ex, no_gradient, paren, same


def _torch_keep_mask(a, attrs, n):
    shape = "()" if n.args[0].weak else f"{paren(a[0], POSTFIX)}.shape"
    return f"torch.rand({shape}, generator=rng, {PLACED}) >= {attrs['p']!r}", CMP

defop("keep_mask", arity=1, shape=same,
      emit=lambda a, attrs, n: (f"rng.random({paren(a[0], POSTFIX)}.shape) >= {attrs['p']!r}",
                                CMP),
      torch=_torch_keep_mask,
      evaluate=lambda v, a, rng: rng.random(np.shape(v[0])) >= a["p"],
      vjp=no_gradient,
      rule="a random mask does not depend on the values of x",
      dtype="bool", random=True,
      examples=(ex((2, 3), p=0.4, site=0), ex((), p=0.5, site=1)))
