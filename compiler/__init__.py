"""bpc's compiler: ``.bp`` spec -> IR -> derivative -> standalone NumPy module."""

from .errors import Diagnostic, SpecError, Span

__all__ = ["Diagnostic", "SpecError", "Span"]
