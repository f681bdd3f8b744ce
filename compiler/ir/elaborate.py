"""Elaboration: the checked, desugared AST -> an IR ``Program`` with every shape known.

This module is the driver: ``elaborate`` walks the statements in order, declares the
inputs, targets, parameters and states (``declarations``), elaborates each equation
(``expressions``), collects ``output``, ``loss``, ``grad wrt`` and the training
configuration (``training_config``), then finds each weight's ``fan_in`` from how it is
used and, without an ``output`` statement, the value that is the model's output
(``implied_output``). An equation that fails poisons its name so later uses do not
report the same problem again.
"""

from __future__ import annotations

from ..frontend import ast
from ..frontend.astprint import expr as spec_text
from ..frontend.check import loop_groups, model_name
from ..errors import Diagnostics, Span
from ..names import fresh
from . import Binding, Builder, Init, Node, Program, fmt_shape, topo_order
from .declarations import Declarations, conv_filters, matmul_uses, set_fan, sized_by_flow
from .expressions import Expressions
from .implied_output import as_written, implied_output
from .loops import Loops
from .primitives import data_roles
from .training_config import data_config, optimizer_config, train_config
from .unused import warn_unused


def elaborate(spec: ast.Spec, diags: Diagnostics, train: bool = True,
              dtype: str | None = None) -> Program | None:
    """The spec's IR in training mode (what the gradient is of) or in inference mode
    (``train=False``: dropout is the identity); ``dtype`` overrides the spec's (``bpc
    train --dtype``)."""
    return _Elaborator(spec, diags, train, dtype).run()


class _Elaborator(Declarations, Expressions, Loops):
    """One spec's elaboration: the statements in order, and the state the declarations
    and expressions share."""

    def __init__(self, spec: ast.Spec, diags: Diagnostics, train: bool = True,
                 dtype: str | None = None):
        self.spec, self.diags = spec, diags
        self.lines = spec.source.splitlines()
        dtype = dtype or next((s.name for s in spec.statements
                               if isinstance(s, ast.DtypeStmt)), "float64")
        self.b = Builder(dtype)
        self.b.train = train
        self.env: dict[str, Node | None] = {}  # None: poisoned by an earlier error
        self.hints: dict[int, str] = {}
        self.symbols: dict[str, tuple[str, int]] = {}  # N -> (input, axis) it is read from
        self.symbol_from_target: dict[str, bool] = {}
        self.state_owner: dict[str, Span] = {}  # state -> the argument that updates it
        self.variances: list[str] = []  # states read as a variance: never negative
        self.streams: list[str] = []  # states loops start from and continue: reset by runs
        self.declared: dict[str, tuple] = {}  # parameter or state -> (statement, Init)
        self.reported_layers: set = set()  # layers whose input was reported (once)
        # Every name the spec defines: a function's named steps (h_xn) take others.
        self.taken = {st.name for st in spec.statements if isinstance(st, ast.Decl)}

    # ------------------------------------------------------------------------- driver
    def run(self) -> Program | None:
        spec = self.spec
        inputs, targets, params, forward, states, updates = [], [], [], [], [], []
        inits: dict[str, Init] = {}
        defaults: dict[str, object] = {}
        loss = output = None
        wrt_inputs: list[str] = []
        config: dict[str, object] = {}
        # Inputs, targets and parameters may be used anywhere, also above their own
        # line: elaborate them first (all but a dense layer's weight, whose shape comes
        # from the value flowing in and is known when its line is reached).
        early: dict[int, object] = {}
        loops = loop_groups(spec.statements)
        for st in spec.statements:
            self.b.span = st.span
            if isinstance(st, (ast.Input, ast.Target)) or (
                    isinstance(st, (ast.Param, ast.State)) and not sized_by_flow(st)):
                early[id(st)] = self._declare(st)
        for st in spec.statements:
            self.b.span = st.span
            if isinstance(st, ast.Input):
                node, default = early[id(st)]
                if node is not None:
                    inputs.append(Binding(st.name, node, "input", st.span))
                    if default is not None:
                        defaults[st.name] = default
            elif isinstance(st, ast.Target):
                node = early[id(st)]
                if node is not None:
                    targets.append(Binding(st.name, node, "target", st.span))
            elif isinstance(st, (ast.Param, ast.State)):
                result = early[id(st)] if id(st) in early else self._declare(st)
                if result is not None:
                    node, init = result
                    (params if node.op == "param" else states).append(
                        Binding(st.name, node, node.op, st.span))
                    inits[st.name] = init
            elif isinstance(st, ast.Equation) and st.time is not None:
                if st is loops[id(st)][0]:  # the loop's first step equation
                    self._loop(loops[id(st)], forward, updates)
            elif isinstance(st, ast.Equation):
                if st.value is None:  # 'output NAME' names an existing value
                    output = st.name
                    continue
                node = self._equation(st, forward, updates)
                if node is None:
                    continue
                if st.kind == "loss":
                    loss = st.name
                    if node.shape != ():
                        self.diags.error(
                            f"the loss must be a scalar, but '{st.name}' has shape "
                            f"{fmt_shape(node.shape)}", st.value.span,
                            "reduce it, e.g. mean(...) or sum(...)")
                elif st.kind == "output":
                    output = st.name
            elif isinstance(st, ast.GradWrt):
                for name, _ in st.names:
                    if any(i.name == name for i in inputs) and name not in wrt_inputs:
                        wrt_inputs.append(name)
            elif isinstance(st, ast.Optimizer):
                config["optimizer"] = optimizer_config(st, spec.constants)
            elif isinstance(st, ast.Train):
                config["train"] = train_config(st, spec.constants, self.diags)
            elif isinstance(st, ast.Data):
                config["data"] = data_config(st, spec.constants)
        if self.streams:
            self._check_streaming(config)
        if self.diags.items or loss is None:
            return None
        for bd in states:
            if bd.name not in self.state_owner:
                self.diags.warning(f"state '{bd.name}' is never used: no batch_norm or "
                                   "loop reads or updates it", bd.span,
                                   "pass it to batch_norm as its mean or var, start a loop "
                                   "from it, or remove it")
        warn_unused(params, targets, forward, loss, self.diags)
        _mark_label_targets(forward)
        uses = matmul_uses([b.node for b in forward],
                           {b.node.id: b.name for b in [*inputs, *targets, *params, *forward]})
        filters = conv_filters([b.node for b in forward])
        for bd in params:
            set_fan(bd.name, bd.node, inits[bd.name], uses.get(bd.node.id), filters)
        if self.diags.items:
            return None
        if output is None:
            output = implied_output(forward, loss, inputs, targets, defaults,
                                    as_written(spec, loss, [*inputs, *params]))
        name, _ = model_name(spec)
        if self.variances:  # a checkpoint's value for them is checked (bpc train, eval)
            config["nonnegative"] = sorted(self.variances)
        if self.streams:  # the runtime resets them at each epoch and before evaluating
            config["streams"] = sorted(self.streams)
        return Program(
            name=name, path=spec.path, dtype=self.b.dtype, inputs=inputs, targets=targets,
            params=params, inits=inits, forward=forward, loss=loss, output=output,
            wrt=[p.name for p in params] + wrt_inputs, defaults=defaults,
            symbols=self.symbols, config=config, hints=self.hints,
            lets={k: v for k, v in spec.constants.items() if isinstance(v, (int, float))},
            warnings=[d.render(self.diags.source) for d in self.diags.warnings],
            states=states, updates=updates,
            source_lines={i + 1: line for i, line in enumerate(self.lines)})

    def _equation(self, st: ast.Equation, forward: list[Binding],
                  updates: list[Binding]) -> Node | None:
        """An equation's value, after the named steps of the functions it calls, and
        the state updates they make; None when it failed (reported, and its name
        poisoned)."""
        self.b.hints.clear()
        self.b.updates.clear()
        self.b.steps.clear()
        node = self._expr_top(st.value)
        for node_id, hint in self.b.hints.items():
            self.hints.setdefault(node_id, f"{st.name}_{hint}")
        word = "loss " if st.kind == "loss" else ""
        note = f"{word}{st.name} = {spec_text(st.value)}"
        for step, name in self.b.steps if node is not None else ():
            # headed, like the equation, by the equation's line
            forward.append(Binding(fresh(f"{st.name}_{name}", self.taken), step,
                                   "eq", st.span, sources=(st.name,), note=note))
        for leaf, value in self.b.updates:
            updates.append(Binding(leaf.attr("name"), value, "update", st.span,
                                   sources=(st.name,)))
        self.env[st.name] = node
        if node is not None:
            forward.append(Binding(st.name, node, st.kind, st.span, note=note))
        return node


def _mark_label_targets(forward: list[Binding]) -> None:
    """Targets that an op reads as class labels hold integers."""
    roles = data_roles([b.node for b in forward])
    for n in topo_order([b.node for b in forward]):
        if n.op == "input" and roles.get(n.attr("name"), ("",))[0] == "labels":
            n.dtype = "int"
