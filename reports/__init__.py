"""Reports on a model, for a person to read: ``trace`` (every value and gradient at one
point, with the rule that made it), ``graph`` (the computation as a picture), ``stats``
(activation and gradient statistics layer by layer at initialization) and ``explain``
(one HTML page with all of them beside the spec and the generated code).

A report may use the compiler (a ``Compilation``) and the runtime; nothing below it
imports a report (``tests/test_layers.py``).
"""
