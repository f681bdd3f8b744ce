"""The ``%%bp`` cell magic (``%load_ext bpc``)::

    %%bp xor
    model xor
    ...

compiles the cell's spec and binds the model to ``xor`` in the notebook (without a
name: to the model's own name). ``--style textbook`` picks the code style. A spec error
raises IPython's ``UsageError``, shown as ``bpc check`` shows it, caret and all, without
a traceback; being an error, it stops "Run all" at that cell as a failing cell should.
"""

from __future__ import annotations


def register(ipython) -> None:
    def bp(line: str, cell: str):
        import shlex

        from IPython.core.error import UsageError

        from bpc.compiler.errors import SpecError

        from . import compile as compile_spec

        words = shlex.split(line)
        style = "fast"
        if "--style" in words:
            i = words.index("--style")
            if i + 1 >= len(words) or words[i + 1] not in ("fast", "textbook"):
                print("%%bp: --style takes fast or textbook")
                return None
            style = words[i + 1]
            del words[i:i + 2]
        if len(words) > 1 or (words and not words[0].isidentifier()):
            print(f"%%bp: expected at most one name to bind the model to, not {line!r}")
            return None
        try:
            model = compile_spec(cell, style=style)
        except SpecError as e:
            raise UsageError(e.render()) from None
        name = words[0] if words else model.__name__
        ipython.user_ns[name] = model
        print(f"compiled model {model.__name__} -> {name}")
        return None

    ipython.register_magic_function(bp, magic_kind="cell", magic_name="bp")
