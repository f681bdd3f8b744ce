"""What the PyTorch oracle (torch_oracle) reads from a loaded spec: its declarations by
kind, whether it has modes and which equation predict returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from bpc.compiler.frontend import ast


@dataclass
class Decls:
    """A spec's declarations by kind (name -> statement), in spec order."""

    inputs: dict = field(default_factory=dict)  # name -> ast.Input
    targets: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)  # name -> ast.State
    equations: list = field(default_factory=list)  # ast.Equation with a value
    output: str | None = None
    loss: str | None = None
    wrt_inputs: list = field(default_factory=list)
    dtype: str = "float64"


def _deps(e, out: set):
    """Names an expression reads."""
    if isinstance(e, ast.Name):
        out.add(e.id)
    elif isinstance(e, ast.BinOp):
        _deps(e.left, out)
        _deps(e.right, out)
    elif isinstance(e, (ast.Neg, ast.Transpose)):
        _deps(e.operand, out)
    elif isinstance(e, ast.Matrix):
        for row in e.rows:
            for item in row:
                _deps(item, out)
    elif isinstance(e, ast.Index):  # the indices are constants
        _deps(e.value, out)
    elif isinstance(e, ast.Call):
        for a in e.args:
            _deps(a, out)
        for k in e.kwargs:
            _deps(k.value, out)
    return out


def declarations(spec) -> Decls:
    """What a loaded spec declares, by kind, and its equations in order."""
    d = Decls()
    for st in spec.statements:
        if isinstance(st, ast.DtypeStmt):
            d.dtype = st.name
        elif isinstance(st, ast.Input):
            d.inputs[st.name] = st
        elif isinstance(st, ast.Target):
            d.targets[st.name] = st
        elif isinstance(st, ast.Param):
            d.params[st.name] = st
        elif isinstance(st, ast.State):
            d.states[st.name] = st
        elif isinstance(st, ast.Equation):
            if st.value is None:
                d.output = st.name
                continue
            d.equations.append(st)
            if st.kind == "loss":
                d.loss = st.name
            elif st.kind == "output":
                d.output = st.name
        elif isinstance(st, ast.GradWrt):
            for name, _ in st.names:
                if name in d.inputs and name not in d.wrt_inputs:
                    d.wrt_inputs.append(name)
    return d


def has_modes(d: Decls) -> bool:
    """Whether training and inference differ: batch_norm or dropout (any p: every
    dropout site draws its mask in training mode)."""
    found = []

    def visit(e):
        if isinstance(e, ast.Call):
            if e.func == "batch_norm":
                found.append(e)
            elif e.func == "dropout":
                found.append(e)
            for a in e.args:
                visit(a)
            for k in e.kwargs:
                visit(k.value)
        elif isinstance(e, ast.BinOp):
            visit(e.left)
            visit(e.right)
        elif isinstance(e, (ast.Neg, ast.Transpose)):
            visit(e.operand)
        elif isinstance(e, ast.Index):
            visit(e.value)
        elif isinstance(e, ast.Matrix):
            for row in e.rows:
                for item in row:
                    visit(item)

    for st in d.equations:
        visit(st.value)
    return bool(found)


def implied_output(d: Decls) -> str:
    """The model's prediction (LANGUAGE.md, "The generated functions"): among the
    equations before the loss that the loss depends on and that read no target, the
    last one of the first kind there is: computed from a data input (one without a
    default) and a parameter; from a data input; computed at all; another name for
    an input or a parameter. The loss when every such equation reads a target."""
    eqs = {st.name: st for st in d.equations}
    loss = eqs[d.loss]
    needed, todo = set(), [loss]
    while todo:
        st = todo.pop()
        for n in _deps(st.value, set()):
            if n in eqs and n not in needed and n != st.name:
                needed.add(n)
                todo.append(eqs[n])
    leaves: dict[str, set] = {st.name: set() for st in d.equations}
    # equation -> the declared names it is computed from; to a fixed point, since a step
    # equation may read a later one a step back (g[t] = f(c[t-1]) above c[t] = ...)
    changed = True
    while changed:
        changed = False
        for st in d.equations:
            # a carried value is computed from its initial value too (h[t] = ... from h0)
            read = _deps(st.value, set()) | (_deps(st.init, set()) if st.init else set())
            new = set().union(*(leaves[n] if n in eqs else {n} for n in read))
            changed, leaves[st.name] = changed or new != leaves[st.name], new
    reads = leaves.__getitem__
    data = {n for n, st in d.inputs.items() if st.default is None}
    best, best_rank = d.loss, -1
    for st in d.equations:
        if st.name == d.loss:
            break
        if st.name not in needed or reads(st.name) & set(d.targets):
            continue
        used = reads(st.name)
        bare = isinstance(st.value, ast.Name) and st.value.id in (
            set(d.inputs) | set(d.params))
        rank = 0 if bare else 3 if used & data and used & set(d.params) else \
            2 if used & data else 1
        if rank >= best_rank:
            best, best_rank = st.name, rank
    return best
