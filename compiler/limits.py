"""What a spec may ask for: bounds that keep ``bpc check`` and ``bpc compile`` fast and
small on any input (docs/LANGUAGE.md, "Limits"). Each is reported as a located error
that names the limit."""

from __future__ import annotations

MAX_SPEC_BYTES = 4_000_000  # a spec file; about 100,000 statements
MAX_NESTING = 100  # brackets, calls and chained operators inside one another
MAX_NUMBER_CHARS = 100  # the text of one number literal
MAX_MAGNITUDE = 2 ** 1024  # a number or constant must be below this (a finite float)
MAX_REPEAT = 10_000  # the count of one 'repeat'
MAX_LAYERS = 10_000  # layers of one 'layers' stack, repeats expanded
MAX_ELEMENTS = 10 ** 9  # elements of one declared tensor (its fixed dimensions)
MAX_NAME_CHARS = 100  # the model name (it names a file)
MAX_SUGGEST_CHARS = 64  # longer unknown words get no "did you mean"
