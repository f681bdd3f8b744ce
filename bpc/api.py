"""The Python API: ``bpc.compile``, ``bpc.load`` and the ``Model`` they return, with
``bpc.load_checkpoint`` (``checkpoints.py``) beside them (re-exported by the ``bpc``
package; see docs/API.md)."""

from __future__ import annotations

import builtins
import types

from .checkpoints import Checkpoint, load_checkpoint  # noqa: F401 - the API's, as bpc.*


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
              quiet=False, checkpoint_every=None, validation=None, data_seed=None,
              early_stop=None, patience=None, min_delta=None, keep=None, force=False,
              device=None, **arrays):
        """Train as ``bpc train`` does; returns the runtime's Result, whose ``params``
        are the trained parameters (after an early stop, the best epoch's), ``state`` the
        trained state (batch norm's running statistics, what ``predict(params, x,
        state=...)`` reads; {} for a model without state), ``history`` a ``History`` of
        numbers and ``stopped`` why the run stopped early (None: it did not). The model
        keeps them: ``model.predict(x)`` and ``model.evaluate(...)`` use them afterwards.
        ``data``: a --data string (``"spiral:n=200"``, a .npz/.csv/.npy path), a dict
        of arrays by name, or None for the spec's data line; or the arrays as keywords
        named after the spec's inputs and targets (``x=..., t=...``); ``out``: a run
        folder for checkpoint.npz and history.csv (None: nothing written; one that holds
        a run needs ``resume`` or ``force``). ``validation``: held-out arrays (a tuple
        in the spec's order or a dict), or the fraction of the training data held out,
        drawn from ``data_seed``; ``early_stop``: the metric to stop on ("auto":
        val_loss with validation data, else loss) after ``patience`` epochs without an
        improvement of more than ``min_delta``; ``keep="best"``: best.npz in ``out``;
        ``device``: where a torch-target model trains ("cpu", "cuda", "mps"; its
        parameters come back as tensors there)."""
        import numbers

        from bpc.runtime import in_memory
        from bpc.runtime.errors import UserError
        from bpc.runtime.train import run

        fraction = None if validation is None or in_memory.is_arrays(validation) \
            else _plain(validation)
        if fraction is not None and (isinstance(fraction, (bool, str)) or
                                     not isinstance(fraction, numbers.Real)):
            raise UserError("model.train: validation= takes held-out arrays (a tuple in "
                            "the spec's order, (x, t), or a dict {'x': ..., 't': ...}) or "
                            f"the fraction of the training data to hold out, not {validation!r}")
        held_out = None if fraction is not None else validation
        overrides = _settings(epochs=epochs, iters=iters, batch=batch, lr=lr, seed=seed,
                              eval_every=eval_every, checkpoint_every=checkpoint_every,
                              validation=fraction, data_seed=data_seed)
        every = overrides.pop("checkpoint_every")
        # Model selection's keywords are checked by the runtime, as a Python caller's.
        overrides.update(optimizer=_optimizer(optimizer), early_stop=early_stop, keep=keep,
                         patience=_plain(patience), min_delta=_plain(min_delta))
        source = _data_source(data, arrays, "model.train")
        if held_out is not None or in_memory.is_arrays(source):
            source = _dataset(self, source, held_out, overrides)
        result, _, _ = run(self, source, overrides, _folder(out),
                           resume=_flag("resume", resume), quiet=_flag("quiet", quiet),
                           checkpoint_every=every, force=_flag("force", force),
                           device=device)
        self._bpc_trained = (result.params, result.state)
        return result

    def evaluate(self, data=None, *, params=None, state=None, split=None, **arrays) -> dict:
        """``{"loss": …, "accuracy": …, "examples": …}`` of the trained model (or of
        ``params``/``state``) on arrays by name (``x=..., t=...``, or ``data`` a dict),
        or on a --data string or file (its ``split``: "test" when it has one);
        accuracy is None for a model that is not a classifier. On ``addition_seq2seq``
        also ``"exact_match"``: whole answers right under greedy decoding."""
        import numpy as np

        from bpc.runtime import in_memory
        from bpc.runtime.data import batch_axes, example_count, load
        from bpc.runtime.decoding import decoder_of, exact_match
        from bpc.runtime.devices import hosted
        from bpc.runtime.errors import UserError
        from bpc.runtime.evaluate import accuracy, mean_loss, task_kind
        from bpc.runtime.points import eval_chunk
        from bpc.runtime.settings import spec_data_seed

        if split is not None and (not isinstance(split, str) or split not in ("train", "test")):
            raise UserError(f"model.evaluate: split must be 'train' or 'test', not {split!r}")
        params, state = self._parameters("model.evaluate", params, state)
        source = _data_source(data, arrays, "model.evaluate")
        if in_memory.is_arrays(source):
            name, data_arrays = "arrays", source
        else:
            config = getattr(self, "CONFIG", {}) or {}
            dataset = load(source or config.get("data"), self, spec_data_seed(self))
            split = split or ("test" if dataset.test else "train")
            name, data_arrays = dataset.name, getattr(dataset, split)
            if not data_arrays:
                raise UserError(f"{dataset.name} has no {split} split", "use split='train'")
        checked = in_memory.checked(self, data_arrays, f"model.evaluate ({name})")
        chunk = eval_chunk(self, checked)
        model = hosted(self)  # a torch model computes on its device, NumPy in and out
        with np.errstate(all="ignore"):
            loss = mean_loss(model, params, checked, chunk, state)
            acc = accuracy(model, params, checked, task_kind(self, checked), state, chunk)
            decoder = decoder_of(self, name)
            exact = {"exact_match": exact_match(model, params, checked, *decoder, state)
                     } if decoder else {}
        return {"loss": loss, "accuracy": acc,
                "examples": example_count(checked, batch_axes(self)), **exact}

    def _predict(self, generated, args: tuple, kwargs: dict, outputs):
        """``model.predict``: the generated ``predict(params, x, ...)``, or, without the
        parameters, the trained model's (``predict(x)``, ``predict(x=...)``); inputs and
        parameters checked first, ``outputs`` "raw", "proba" or "class"."""
        from collections.abc import Mapping

        import numpy as np

        from bpc.runtime.errors import UserError
        from bpc.runtime.evaluate import (OUTPUTS, classes_and_probability, not_a_classifier,
                                          predict_all, probabilities)
        from bpc.runtime.points import eval_chunk

        if not isinstance(outputs, str) or outputs not in OUTPUTS:
            raise UserError(f"model.predict: outputs must be one of {', '.join(OUTPUTS)}, "
                            f"not {outputs!r}")
        state = kwargs.pop("state", None) if _has_state(self) else None
        if args and isinstance(args[0], Mapping):
            params, args = args[0], args[1:]
        else:
            params = kwargs.pop("params", None)
        params, state = self._parameters("model.predict", params, state)
        inputs = self._predict_inputs(args, kwargs)
        with np.errstate(all="ignore"):
            y = predict_all(self, params, inputs, eval_chunk(self, inputs), state, generated)
        if outputs == "raw":
            return y
        why = not_a_classifier(self)
        if why:
            raise UserError(f"model.predict: outputs={outputs!r} needs a classifier, and "
                            f"{self.__name__} is not one: {why}")
        return probabilities(self, y) if outputs == "proba" else \
            classes_and_probability(self, y)[0]

    def sample(self, prompt: str, length: int = 200, temperature: float = 1.0,
               samples: int = 1, seed: int = 0, context: int | None = None, params=None,
               state=None, data: str | None = None) -> list[str]:
        """Text a trained language model writes after ``prompt``, as ``bpc sample``:
        ``samples`` continuations of ``length`` characters (ids, for data that is not
        text), each next one drawn from the model's prediction at ``temperature`` (0:
        the most likely); ``context``: the last steps the model is given (default: its
        table of positions' rows, else its data's window length); ``data``: the data set
        whose characters the ids number (default: the spec's data line)."""
        from bpc.runtime.devices import hosted
        from bpc.runtime.sampling import language_model, texts

        language_model(self)  # refused before the parameters are looked for
        params, state = self._parameters("model.sample", params, state)
        given = _settings(length=length, temperature=temperature, samples=samples, seed=seed,
                          ranges="runtime", **({} if context is None else {"context": context}))
        return texts(hosted(self), params, prompt, given["length"], given["temperature"],
                     given["samples"], given["seed"], state, given.get("context"), data)

    def _predict_inputs(self, args: tuple, kwargs: dict) -> dict:
        """The inputs of a ``predict`` call, checked: positional in the spec's order, by
        name, or ``data=`` a file (when no input is called ``data``)."""
        from bpc.runtime.in_memory import checked
        from bpc.runtime.conform import data_names
        from bpc.runtime.errors import UserError

        names = data_names(self, targets=False)
        if "data" in kwargs and "data" not in self.INPUTS:  # a file, as train's data=
            if args or len(kwargs) > 1:
                raise UserError("model.predict: data= names a file; give no arrays with it")
            kwargs = self._file_inputs(kwargs.pop("data"))
        if len(args) > len(names):
            raise UserError(f"model.predict: {len(args)} arrays, but the model takes "
                            f"{len(names)} inputs ({', '.join(names) or 'none'})")
        for name, _ in zip(names, args):
            if name in kwargs:
                raise UserError(f"model.predict: '{name}' is given twice (in order and "
                                "by name)")
        return checked(self, {**dict(zip(names, args)), **kwargs}, "model.predict",
                       targets=False)

    def _file_inputs(self, source) -> dict:
        """The inputs of a --data string or file (its targets, if any, left out)."""
        from bpc.runtime.data import load
        from bpc.runtime.errors import UserError

        source = _data_source(source, {}, "model.predict")
        if not isinstance(source, str):
            raise UserError("model.predict: data= takes a file's path or a --data string; "
                            "give arrays as predict(x) or predict(x=...)")
        dataset = load(source, self, 0, targets=False)
        return {k: v for k, v in dataset.train.items() if k in self.INPUTS}

    def _parameters(self, where: str, params, state) -> tuple[dict, dict | None]:
        """The parameters (and state) to compute with, checked: those given, else the
        last ``model.train``'s."""
        from bpc.runtime.in_memory import checked_params
        from bpc.runtime.errors import UserError

        trained = self.__dict__.get("_bpc_trained")
        if params is None:
            if trained is None:
                raise UserError(f"{where}: {self.__name__} has not been trained, and no "
                                "parameters were given",
                                "call model.train(...) first, or pass the parameters: "
                                "params=bpc.load_checkpoint(run).params")
            params, state = trained[0], state if state is not None else trained[1]
        params = checked_params(self, params, where)
        if not _has_state(self):
            return params, None
        if state is None:
            raise UserError(f"{where}: {self.__name__} has state (batch norm's running "
                            "statistics), and none was given",
                            "pass state=result.state (or bpc.load_checkpoint(run).state)")
        return params, checked_params(self, state, where, state=True)

    def gradcheck(self, eps: float = 1e-6, tol: float = 1e-5, samples: int = 20,
                  seed: int = 0, batch: int = 3):
        """The rows of ``bpc gradcheck`` (name, relative error, ok, ...)."""
        from bpc.runtime.gradcheck import gradcheck

        return gradcheck(self, **_settings(eps=eps, tol=tol, samples=samples, seed=seed,
                                           batch=batch, ranges="runtime"))

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

    def stats(self, batch: int = 100, seed: int = 0, steps: int | None = None,
              data: bool | str = False, params=None) -> list[dict]:
        """Per-layer statistics, the rows of ``bpc stats --json``: at initialization on a
        random batch (``steps``: the length of the random sequences a loop over time
        steps through, 20 unless given); ``data=True``: on the first ``batch`` examples
        of the spec's training data instead, or of ``data`` (a data set or file, as
        ``--data``); ``params``: with these parameters (a trained model's) instead of
        the initial ones."""
        from bpc.compiler.vocab import STATS_STEPS
        from bpc.reports.stats import data_batch, layer_stats
        from bpc.runtime.data import data_flag_problem
        from bpc.runtime.errors import UserError
        from bpc.runtime.in_memory import checked_params

        prog = self._compilation().program
        settings = _settings(batch=batch, seed=seed, ranges="runtime",
                             steps=STATS_STEPS if steps is None else steps)
        feeds = None
        if data is not False:
            if steps is not None:
                raise UserError("model.stats: steps and data exclude each other",
                                "with data the sequences are the data's own, of its length")
            source = "" if data is True else data
            problem = data_flag_problem(source) if source else None
            if problem:
                raise UserError(f"model.stats: data={source!r}: {problem}")
            feeds = data_batch(prog, self, settings["batch"], source)[0]
        if params is not None:
            params = checked_params(self, params, "model.stats")
        return layer_stats(prog, batch=settings["batch"], seed=settings["seed"],
                           steps=settings["steps"], params=params, feeds=feeds)

    def graph(self) -> "Graph":
        """The computation graph; shows as SVG in a notebook, ``.dot`` is Graphviz text."""
        from bpc.reports.graph import build, dot, to_svg

        g = build(self._compilation())
        return Graph(to_svg(g), dot(g))


def _has_state(model) -> bool:
    from bpc.runtime.modes import takes_state

    return takes_state(model)


def _plain(value):
    """A NumPy scalar as the Python number it holds (np.int64(5) is 5)."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _settings(ranges: str = "train", **values) -> dict:
    """Keyword settings of an API call checked against the range table the command
    line's flags use (``--epochs``, ``--lr``, ``--eps`` …) and coerced as they are (1e3
    epochs is 1000); None is left as None (the spec's value). An error names the keyword."""
    from bpc.compiler.vocab import OPTIMIZER_RANGES, RUNTIME_RANGES, TRAIN_SETTINGS
    from bpc.runtime.errors import UserError

    table = dict(RUNTIME_RANGES) if ranges == "runtime" else {
        **{k: s.range for k, s in TRAIN_SETTINGS.items() if s.range is not None},
        "lr": OPTIMIZER_RANGES["lr"], "checkpoint_every": RUNTIME_RANGES["checkpoint_every"]}
    out = {}
    for key, value in values.items():
        value = _plain(value)
        if value is not None or ranges == "runtime":  # None: the spec's own setting
            problem = table[key].problem(value)
            if problem:
                raise UserError(f"{key}= {problem}")
            value = table[key].coerce(value)
        out[key] = value
    return out


def _optimizer(name):
    from bpc.compiler.vocab import OPTIMIZERS
    from bpc.runtime.errors import UserError

    if name is not None and (not isinstance(name, str) or name not in OPTIMIZERS):
        raise UserError(f"optimizer= must be one of {', '.join(sorted(OPTIMIZERS))}, not "
                        f"{name!r}")
    return name


def _flag(key: str, value) -> bool:
    import numpy as np

    from bpc.runtime.errors import UserError

    if not isinstance(value, (bool, int, np.bool_, np.integer)):
        raise UserError(f"{key}= must be True or False, not {value!r}")
    return bool(value)


def _folder(out):
    import os
    from pathlib import Path

    from bpc.runtime.errors import UserError

    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)) or not str(out) or "\0" in str(out):
        raise UserError(f"out= must be a folder's path, not {out!r}")
    return Path(out)


def _data_source(data, arrays: dict, where: str):
    """What ``data`` and the keyword arrays of a call name: a --data string, a dict of
    arrays, or None (the spec's data line). Both at once, or anything else, is an error."""
    import os

    from bpc.runtime.in_memory import is_arrays
    from bpc.runtime.data import data_flag_problem
    from bpc.runtime.errors import UserError

    if arrays:
        if data is not None:
            raise UserError(f"{where}: arrays given both as data= and as keywords "
                            f"({', '.join(arrays)})", "give them one way")
        return arrays
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if isinstance(data, bytes) or data is not None and not isinstance(data, str) \
            and not is_arrays(data):
        raise UserError(f"{where}: data must be a --data string, a file's path or a dict "
                        f"of arrays by name, not {type(data).__name__}")
    if isinstance(data, str):
        problem = data_flag_problem(data) if data else "it is empty"
        if problem:
            raise UserError(f"data {data!r}: {problem}")
    return data


def _dataset(model, source, validation, overrides: dict):
    """The Dataset a training run takes: arrays in memory, or the data ``source`` names
    (loaded as the run would, with its seed), and the ``validation`` arrays (None, or
    arrays: ``Model.train`` took a fraction as the run's setting)."""
    from bpc.runtime import in_memory
    from bpc.runtime.data import load
    from bpc.runtime.settings import Settings

    if in_memory.is_arrays(source):
        return in_memory.dataset(model, source, validation)
    config = getattr(model, "CONFIG", {}) or {}
    dataset = load(source or config.get("data"), model,
                   Settings.from_module(model, overrides).data_seed)
    dataset.validation = in_memory.checked(model, validation,
                                           f"validation data ({dataset.name})")
    return dataset


def _checked_predict(model: Model) -> Model:
    """``model`` whose ``predict`` checks its inputs and parameters before calling the
    generated one, and also takes the inputs alone once the model is trained."""
    generated = model.__dict__.get("predict")
    if callable(generated) and not hasattr(generated, "generated"):
        def predict(*args, outputs="raw", **kwargs):
            return model._predict(generated, args, kwargs, outputs)

        predict.__doc__ = PREDICT_DOC + (generated.__doc__ or "")
        predict.generated = generated  # the module's own function, unchecked
        model.predict = predict
    return model


PREDICT_DOC = """predict(params, x, ..., outputs="raw") or, once trained, predict(x, ...):
the model's output for the inputs (positional in the spec's order, or by name; or
``data=`` a file without targets), checked first. ``outputs``: "raw" (predict's own
output), "proba" (a classifier's probabilities) or "class" (its predicted class). The
generated function:

"""


class Graph:
    """A computation graph drawn by bpc: ``svg`` and ``dot`` text."""

    def __init__(self, svg: str, dot: str):
        self.svg, self.dot = svg, dot

    def _repr_svg_(self) -> str:
        return self.svg


def _from_source(source: str, spec: str | None, path: str | None, name: str,
                 checked: bool = True) -> Model:
    """The model of a module's ``source``; ``checked``: its ``predict`` checks NumPy
    inputs first (a torch module's takes tensors, on their device, unchecked)."""
    from pathlib import Path

    module = Model(name)
    module.__file__ = f"<bpc model {name}>"
    exec(builtins.compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    module.source, module.spec, module.path = source, spec, path
    if path:
        module._bpc_folder = Path(path).resolve().parent  # relative data paths
    return _checked_predict(module) if checked else module


def compile(text_or_path, style: str = "fast",  # noqa: A001 - bpc.compile
            target: str = "numpy") -> Model:
    """Compile a spec (its text, or the path of a .bp file) into a ``Model``
    (``target="torch"``: the PyTorch module, docs/API.md).
    Spec errors raise ``bpc.compiler.errors.SpecError`` whose ``str`` is the
    ``file:line:col: error:`` message with its caret. One line of text is a path when
    that file exists, else spec text (``_is_path``)."""
    from pathlib import Path

    from bpc.compiler.compilation import STYLES, TARGETS, Compilation
    from bpc.runtime.errors import UserError

    if not isinstance(style, str) or style not in STYLES:
        raise UserError(f"style= must be one of {', '.join(STYLES)}, not {style!r}")
    if not isinstance(target, str) or target not in TARGETS:
        raise UserError(f"target= must be one of {', '.join(TARGETS)}, not {target!r}")
    if _is_path(text_or_path):
        path = str(text_or_path)
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file", "one line ending in .bp that does not "
                            "parse as a spec is read as a path" if isinstance(
                                text_or_path, str) else None)
        comp = Compilation.from_file(path, style=style, target=target)
        spec = comp.spec.source
    else:
        path, spec = None, text_or_path
        comp = Compilation.from_text(spec, "<spec>", style=style, target=target)
    model = _from_source(comp.text, spec, path, comp.name, checked=target == "numpy")
    model._bpc_compilation = comp
    return model


def _is_path(text_or_path) -> bool:
    """Whether ``bpc.compile``'s argument names a file: a path object; one line of text
    naming a file that exists; or one line ending in ``.bp`` that does not parse as a
    spec (reported as a missing file). Other text is the spec itself."""
    import os
    from pathlib import Path

    from bpc.runtime.errors import UserError

    if isinstance(text_or_path, os.PathLike):
        return True
    if not isinstance(text_or_path, str):
        raise UserError(f"bpc.compile takes a spec's text or the path of a .bp file, not "
                        f"{type(text_or_path).__name__}")
    text = text_or_path
    if "\n" in text or "\0" in text:
        return False
    try:
        if Path(text).is_file():
            return True
    except (OSError, ValueError):  # a name too long for a path
        return False
    if not text.strip().endswith(".bp"):
        return False
    from bpc.compiler.errors import SpecError
    from bpc.compiler.frontend.load import load_text

    try:
        load_text(text, "<spec>")
    except SpecError:
        return True
    return False


def _path(path, what: str):
    """``path`` (a str or path object) as a Path; an error naming ``what`` otherwise."""
    import os
    from pathlib import Path

    from bpc.runtime.errors import UserError

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path) \
            or "\0" in os.fspath(path):
        raise UserError(f"{what} takes the path of a file, not {path!r}")
    return Path(path)


def load(path) -> Model:
    """A module written by ``bpc compile`` (or a .bp spec, compiled)."""
    p = _path(path, "bpc.load")
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
    return _checked_predict(module)
