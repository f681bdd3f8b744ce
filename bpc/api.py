"""The Python API: ``bpc.compile``, ``bpc.load``, ``bpc.load_checkpoint`` and the
``Model`` they return (re-exported by the ``bpc`` package; see docs/API.md)."""

from __future__ import annotations

import builtins
import types


class Model(types.ModuleType):
    """A generated module (INPUTS, PARAMS, init_params, predict, loss, loss_and_grad, ...)
    plus ``source`` (its Python text), ``spec`` (the spec text, when known) and the
    runtime's commands as methods. The module's own names come first: ``model.predict``
    is the generated ``predict(params, **inputs)``.

    Pickled by source: a pickle holds the generated Python text (and the spec), and
    unpickling executes that text again, so it needs bpc but not the spec file."""

    source: str
    spec: str | None
    path: str | None

    def __reduce__(self):
        return _from_source, (self.source, self.spec, self.path, self.__name__)

    # ------------------------------------------------------------------ notebook display
    def _repr_markdown_(self) -> str:
        return f"```python\n{self.source}```\n"

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(noclasses=True, nowrap=False)
        return highlight(self.source, PythonLexer(), formatter)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"<bpc model {self.__name__}{where}>"

    # ------------------------------------------------------------------ the runtime
    def train(self, data=None, epochs=None, *, iters=None, batch=None, lr=None,
              optimizer=None, seed=None, eval_every=None, out=None, resume=False,
              quiet=False, checkpoint_every=None, device=None):
        """Train as ``bpc train`` does; returns the runtime's Result, whose ``params``
        are the trained parameters, ``state`` the trained state (batch norm's running
        statistics, what ``predict(params, x, state=...)`` reads; {} for a model without
        state) and ``history`` a ``History`` of numbers.
        ``data``: a --data string (``"spiral:n=200"``, a .npz/.csv path) or None for the
        spec's data line; ``out``: a run folder for checkpoint.npz and history.csv
        (None: nothing written); ``device``: where a torch-target model trains ("cpu",
        "cuda", "mps"; its parameters come back as tensors there)."""
        from pathlib import Path

        from bpc.runtime.errors import UserError
        from bpc.runtime.train import run

        overrides = {"epochs": epochs, "iters": iters, "batch": batch, "lr": lr,
                     "optimizer": optimizer, "seed": seed, "eval_every": eval_every}
        if isinstance(data, str):
            from bpc.runtime.data import data_flag_problem

            problem = data_flag_problem(data)
            if problem:
                raise UserError(f"data {data!r}: {problem}")
        result, _, _ = run(self, data, overrides, None if out is None else Path(out),
                           resume=resume, quiet=quiet, checkpoint_every=checkpoint_every,
                           device=device)
        return result

    def gradcheck(self, eps: float = 1e-6, tol: float = 1e-5, samples: int = 20,
                  seed: int = 0, batch: int = 3):
        """The rows of ``bpc gradcheck`` (name, relative error, ok, ...)."""
        from bpc.runtime.gradcheck import gradcheck

        return gradcheck(self, eps=eps, tol=tol, samples=samples, seed=seed, batch=batch)

    def _compilation(self):
        """The compilation this model came from (its spec compiled again after
        unpickling, once)."""
        comp = self.__dict__.get("_bpc_compilation")
        if comp is not None:
            return comp
        if self.spec is None:
            from bpc.runtime.errors import UserError

            raise UserError(f"{self.__name__} was loaded from generated Python; statistics "
                            "and the graph need its spec", "use bpc.compile on the .bp spec")
        from bpc.compiler.compilation import Compilation

        self._bpc_compilation = Compilation.from_text(self.spec, self.path or "<spec>")
        return self._bpc_compilation

    def stats(self, batch: int = 100, seed: int = 0) -> list[dict]:
        """Per-layer statistics at initialization, the rows of ``bpc stats --json``."""
        from bpc.reports.stats import layer_stats

        return layer_stats(self._compilation().program, batch=batch, seed=seed)

    def graph(self) -> "Graph":
        """The computation graph; shows as SVG in a notebook, ``.dot`` is Graphviz text."""
        from bpc.reports.graph import build, dot, to_svg

        g = build(self._compilation())
        return Graph(to_svg(g), dot(g))


class Graph:
    """A computation graph drawn by bpc: ``svg`` and ``dot`` text."""

    def __init__(self, svg: str, dot: str):
        self.svg, self.dot = svg, dot

    def _repr_svg_(self) -> str:
        return self.svg


def _from_source(source: str, spec: str | None, path: str | None, name: str) -> Model:
    from pathlib import Path

    module = Model(name)
    module.__file__ = f"<bpc model {name}>"
    exec(builtins.compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    module.source, module.spec, module.path = source, spec, path
    if path:
        module._bpc_folder = Path(path).resolve().parent  # relative data paths
    return module


def compile(text_or_path, style: str = "fast",  # noqa: A001 - bpc.compile
            target: str = "numpy") -> Model:
    """Compile a spec (its text, or the path of a .bp file) into a ``Model``
    (``target="torch"``: the PyTorch module, docs/API.md).
    Spec errors raise ``bpc.compiler.errors.SpecError`` whose ``str`` is the
    ``file:line:col: error:`` message with its caret."""
    from pathlib import Path

    from bpc.compiler.compilation import Compilation

    if isinstance(text_or_path, Path) or ("\n" not in text_or_path
                                          and str(text_or_path).endswith(".bp")):
        path = str(text_or_path)
        if not Path(path).is_file():
            from bpc.runtime.errors import UserError

            raise UserError(f"{path}: no such file")
        spec = Path(path).read_text()
        comp = Compilation.from_file(path, style=style, target=target)
    else:
        path, spec = None, text_or_path
        comp = Compilation.from_text(spec, "<spec>", style=style, target=target)
    model = _from_source(comp.text, spec, path, comp.name)
    model._bpc_compilation = comp
    return model


def load(path) -> Model:
    """A module written by ``bpc compile`` (or a .bp spec, compiled)."""
    from pathlib import Path

    p = Path(path)
    if p.suffix == ".bp":
        return compile(p)
    from bpc.runtime.loader import load_model

    from bpc.runtime.loader import model_name

    # Executed once (checks the contract, names the file on any problem); it pickles by
    # the text that was executed, as a compiled model does.
    module = load_model(p, module_type=Model)
    name = model_name(module)
    module.__name__ = name if name.isidentifier() else p.stem
    module.spec, module.path = None, str(p)
    return module


class Checkpoint(types.SimpleNamespace):
    """``params`` (name -> array), ``state`` (the model's state, name -> array: batch
    norm's running statistics; {} for a model without state), ``opt_state`` (the
    optimizer's), ``history`` (a ``History`` of numbers) and ``meta`` (position,
    settings) of a checkpoint.npz."""


def load_checkpoint(path, model=None) -> Checkpoint:
    """A checkpoint.npz (or the run folder holding it). Given the ``model`` it was
    trained from, its parameters and state are verified against ``model.PARAMS`` and
    ``model.STATE`` (names, shapes, dtype, finite values, no negative running variance:
    a UserError naming the file and the entry otherwise)."""
    from pathlib import Path

    from bpc.runtime.errors import UserError
    from bpc.runtime.history import History, HISTORY_FIELDS
    from bpc.runtime.checkpoint import read_checkpoint_file, verified_params, verified_state

    c = read_checkpoint_file(Path(path))
    params = c.params if model is None else verified_params(c.path, c.params, model)
    state = c.state if model is None else verified_state(c.path, c.state, model)
    rows = c.meta.get("history", [])
    try:
        if not isinstance(rows, list):
            raise TypeError
        history = History(dict(zip(HISTORY_FIELDS, row)) for row in rows)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{c.path}: the 'meta' entry is damaged: its history rows are not "
                        "rows of numbers", "it is damaged or not from bpc") from None
    return Checkpoint(params=params, state=state, opt_state=c.opt_state, history=history,
                      meta=c.meta)
