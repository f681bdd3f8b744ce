"""The list a family of differential cases is collected in, one pytest param a case."""

from __future__ import annotations

import pytest


class Cases(list):
    """Cases in the order they are added; ``add`` makes a case a param named by its id."""

    def add(self, name, text, marks=(), **kw):
        """Add the spec ``text`` as case ``name``; ``kw`` goes to ``differential``."""
        self.append(pytest.param(name, text, kw, id=name, marks=list(marks)))
