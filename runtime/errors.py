"""User-facing runtime errors (printed by the CLI as ``bpc: error: …`` with a hint)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad data, missing file); printed without a traceback."""

    def __init__(self, message: str, hint: str | None = None, code: int = 1):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code
