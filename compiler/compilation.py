"""One spec compiled with its options: every stage's product, each built once, on demand.

    Compilation.from_file("mlp.bp", style="textbook", target="numpy")
        .spec        the checked AST
        .ir          the IR as the spec wrote it (training mode)
        .grad        with its backward pass
        .program     optimized: what the module computes ("opt")
        .inference   the optimized program in inference mode (None: the same program)
        .coded_inference  the inference program the module is printed from (with the
                     fast forms in the fast style)
        .coded       the training program the module is printed from: ``program``, or in
                     the fast style ``fast_program`` (its fast forms, passes/fast_forms.py,
                     and its loops' hoisting, passes/hoist.py)
        .named       the IR with every value named, differentiated (``bpc graph``)
        .generated   the module's text and the binding each line was printed from
        .text        the module's text
        .module      the module, executed once

Everything that compiles — ``bpc.compile``, the loader, ``bpc compile``/``show``, trace,
graph, stats and explain — asks a ``Compilation``; nothing else runs a stage. Another
style or target shares the stages (``restyled``, ``retargeted``); another dtype is
another compilation (``with_dtype``), since elaboration gives every node its dtype.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import sys
import types
from pathlib import Path
from typing import Callable

from .errors import Diagnostic, Diagnostics, SpecError
from .frontend import ast
from .frontend.load import load_file, load_text, too_deep_is_an_error
from .ir import Binding, Program, random_sites
from .ir.elaborate import elaborate
from .passes.autodiff import differentiate
from .passes.fast_forms import fast_forms
from .passes.hoist import hoist
from .passes.optimize import optimize
from .vocab import DTYPES

STAGES = ("ast", "ir", "grad", "opt", "code")
STYLES = ("fast", "textbook")
TARGETS = ("numpy", "torch")
_counter = itertools.count()


def _print_warning(text: str) -> None:
    print(text, file=sys.stderr)


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off while compiling. The IR is hundreds of
    thousands of small objects, all alive until the module is written and none in a
    reference cycle, so every collection walked them all for nothing: half of the time of
    compiling a large spec (repeat 1600 { dense 8; batchnorm }: 16.7 s, 8.2 s without).
    Back on, as it was, when the outermost stage returns."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Compilation:
    """A checked spec and its options (``style``: "fast" or "textbook", see
    ``buffers.plan``; ``dtype``: the spec's own when None; ``layout``: lay the code out
    in black's style, or leave long lines whole for a module only executed; ``target``:
    the module's array library, "numpy" or "torch", see ``backend/targets.py``).
    Warnings (the spec compiles, but probably does not mean what it says) go to
    ``warn(text)``, by default standard error, once."""

    def __init__(self, spec: ast.Spec, style: str = "fast", dtype: str | None = None,
                 layout: bool = True, warn: Callable[[str], None] | None = None,
                 target: str = "numpy"):
        if style not in STYLES:
            raise ValueError(f"unknown code style {style!r}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}")
        if dtype is not None and dtype not in DTYPES:
            raise SpecError(Diagnostic(f"unknown dtype '{dtype}'", None,
                                       f"dtypes are {', '.join(sorted(DTYPES))}"))
        self.spec, self.style, self.dtype, self.layout = spec, style, dtype, layout
        self.target = target
        self.warn = warn or _print_warning
        # Shared with every restyled sibling: the stages' products, and the siblings.
        self._products: dict[str, object] = {}
        self._siblings: dict[tuple[str, bool, str], Compilation] = {
            (style, layout, target): self}

    def _once(self, stage: str, make: Callable[[], object]):
        if stage not in self._products:
            self._products[stage] = make()
        return self._products[stage]

    @classmethod
    def from_file(cls, path: str | Path, **options) -> Compilation:
        return cls(load_file(path), **options)

    @classmethod
    def from_text(cls, text: str, path: str = "<spec>", **options) -> Compilation:
        return cls(load_text(text, path), **options)

    @property
    def path(self) -> str:
        return self.spec.path

    @property
    def name(self) -> str:
        return self.ir.name

    # -- the stages ------------------------------------------------------------------
    @property
    def ir(self) -> Program:
        return self._once("ir", lambda: self._elaborated(train=True, warn=self.warn))

    @property
    def grad(self) -> Program:
        return self._once("grad", lambda: self._run(differentiate, self.ir))

    @property
    def program(self) -> Program:
        return self._once("opt", lambda: self._run(optimize, self.grad))

    @property
    def fast_program(self) -> Program:
        """The fast style's training program: ``ir`` with the fast forms
        (``passes/fast_forms.py``: batch norm's closed-form backward, running statistics
        updated in place) and its loops' sequence-only work hoisted (``passes/hoist.py``),
        differentiated and optimized; ``program`` itself when neither applies."""
        def make():
            fast = self._run(hoist, self._run(fast_forms, self.ir))
            return self.program if fast is self.ir else \
                self._run(optimize, self._run(differentiate, fast))
        return self._once("fast", make)

    @property
    def coded(self) -> Program:
        """The training program the module is printed from, in this compilation's style."""
        return self.fast_program if self.style == "fast" else self.program

    @property
    def inference(self) -> Program | None:
        """The optimized program in inference mode, or None when training and inference
        do not differ (no dropout, no batch norm)."""
        def make():
            if not has_modes(self.program):
                return None
            return self._run(optimize, self._run(differentiate, self._inference_ir))
        return self._once("inference", make)

    @property
    def coded_inference(self) -> Program | None:
        """The inference program the module is printed from, in this compilation's style:
        ``inference``, with the fast forms in the fast style (its loss's)."""
        def make():
            fast = self._run(fast_forms, self._inference_ir)
            return self.inference if fast is self._inference_ir else \
                self._run(optimize, self._run(differentiate, fast))
        if self.style != "fast" or self.inference is None:
            return self.inference
        return self._once("fast_inference", make)

    @property
    def _inference_ir(self) -> Program:
        return self._once("inference_ir", lambda: self._elaborated(
            train=False, warn=lambda text: None))  # its warnings: said already

    @property
    def named(self) -> tuple[Program, dict[int, str]]:
        """``ir`` with every unnamed operation bound to a name, differentiated (its
        backward pass has an adjoint for every value of the graph), and the names given
        (node id -> name)."""
        def make():
            from .passes.name_values import name_every_value

            prog, given = name_every_value(self.ir)
            return self._run(differentiate, prog), given
        return self._once("named", make)

    def stage(self, name: str) -> Program:
        """The IR at stage "ir", "grad" or "opt"."""
        return {"ir": lambda: self.ir, "grad": lambda: self.grad,
                "opt": lambda: self.program}[name]()

    def _elaborated(self, train: bool, warn) -> Program:
        with self._stage():
            diags = Diagnostics(self.spec.source)
            prog = elaborate(self.spec, diags, train, self.dtype)
            diags.raise_if_any()
            assert prog is not None
        for text in prog.warnings:
            warn(text)
        return prog

    def _stage(self):
        """A stage runs with the collector paused; running out of stack is the spec's
        depth, reported against it."""
        stack = contextlib.ExitStack()
        stack.enter_context(too_deep_is_an_error(self.spec.path, self.spec.source))
        stack.enter_context(gc_paused())
        return stack

    def _run(self, stage: Callable[[Program], Program], prog: Program) -> Program:
        with self._stage():
            return stage(prog)

    # -- the code ----------------------------------------------------------------------
    @functools.cached_property
    def generated(self):
        """The module's text and line origins (``codegen.GeneratedModule``)."""
        from .backend.codegen import generate_module

        prog, infer = self.coded, self.coded_inference
        with gc_paused(), too_deep_is_an_error(self.spec.path, None):
            return generate_module(prog, self.spec.path, fmt=self.layout, style=self.style,
                                   inference=infer, target_name=self.target)

    @property
    def text(self) -> str:
        return self.generated.text

    @functools.cached_property
    def spec_lines(self) -> dict[int, int]:
        """The source map: module line -> the spec line it comes from. A forward value's
        statement maps to its equation; a backward step, its heading and its temporaries
        to the equation it differentiates; a running statistic's update to the equation
        that computes it. (A line reading an input or a parameter is not mapped.)"""
        bindings: dict[str, Binding] = {}  # by name, the training program's first
        for prog in filter(None, (self.coded_inference, self.coded)):
            bindings.update((bd.name, bd) for bd in prog.all_bindings())
        found: dict[str, int | None] = {}

        def spec_line(name: str) -> int | None:
            if name not in found:
                found[name] = None  # a cycle of sources, were there one, ends here
                bd = bindings.get(name)
                if bd is not None and bd.kind in ("seed", "adjoint", "grad", "update"):
                    # a backward step or an update: the equation it comes from
                    found[name] = next(filter(None, map(spec_line, bd.sources)), None)
                elif bd is not None and bd.span is not None:
                    found[name] = bd.span.line
            return found[name]

        lines = {line: spec_line(origin) for line, origin in self.generated.origins.items()}
        return {line: spec for line, spec in lines.items() if spec is not None}

    def new_module(self, module_type: type[types.ModuleType] = types.ModuleType
                   ) -> types.ModuleType:
        """A fresh module executed from ``text`` (``source`` keeps the text;
        ``_bpc_compilation`` this compilation, which the runtime asks for the spec's
        other forms: a torch module's parameters are drawn by its NumPy twin)."""
        module = module_type(f"bpc_model_{self.name}_{next(_counter)}")
        module.__file__ = f"<compiled from {self.spec.path}>"
        exec(compile(self.text, module.__file__, "exec"),  # noqa: S102 - our own output
             module.__dict__)
        module.source = self.text
        module._bpc_compilation = self
        return module

    @functools.cached_property
    def module(self) -> types.ModuleType:
        return self.new_module()

    # -- other options -----------------------------------------------------------------
    def restyled(self, style: str, layout: bool | None = None,
                 target: str | None = None) -> Compilation:
        """The same compilation written in another style (or for another target): the
        stages are shared."""
        layout = self.layout if layout is None else layout
        target = self.target if target is None else target
        key = (style, layout, target)
        if key not in self._siblings:
            other = Compilation(self.spec, style, self.dtype, layout, self.warn, target)
            other._products, other._siblings = self._products, self._siblings
            self._siblings[key] = other
        return self._siblings[key]

    def retargeted(self, target: str) -> Compilation:
        """The same compilation written for another target: the stages are shared."""
        return self.restyled(self.style, target=target)

    def with_dtype(self, dtype: str) -> Compilation:
        """The same spec in another dtype; itself when that is its dtype already."""
        if dtype == self.ir.dtype:
            return self
        return Compilation(self.spec, self.style, dtype, self.layout, lambda text: None,
                           self.target)


def has_modes(prog: Program) -> bool:
    """Whether training and inference differ: the program draws random numbers
    (dropout) or updates state (batch norm; a loop continuing a state does so in both)."""
    streams = prog.config.get("streams", ())
    return any(u.name not in streams for u in prog.updates) or bool(random_sites(prog))
