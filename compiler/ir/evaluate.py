"""A reference interpreter of the IR: each op's ``evaluate`` from the op table, in NumPy.

The ops evaluate with the same helper functions generated modules copy (``ops/kernels``),
so the interpreter and the generated code share one implementation of the maths; each
helper is checked against PyTorch on its own (tests/compiler/ir/test_kernels.py).

Used to test elaboration, autodiff and every pass without code generation, and later as
the other side of differential tests (IR evaluator vs generated module).

State (batch norm's running statistics) is given like parameters, by name: ``state=``,
by default every state's initial value (``initial_state``, the formula of the generated
``init_state()``). An inference program reads it; a training program only updates it,
and ``new_state`` gives the values its updates compute (what ``loss_and_grad`` assigns
into the caller's ``state``).
"""

from __future__ import annotations

import numpy as np

from . import Program, random_sites, topo_order
from .primitives import PRIMITIVES


def evaluate(prog: Program, feeds: dict[str, np.ndarray], params: dict[str, np.ndarray],
             names: list[str] | None = None, rng=None,
             state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Values of the named bindings (default: every forward and backward binding)."""
    wanted = [bd for bd in prog.forward + prog.backward if names is None or bd.name in names]
    values = evaluate_nodes(prog, feeds, params, [bd.node for bd in wanted], rng, state)
    return {bd.name: values[bd.node.id] for bd in wanted}


def initial_state(prog: Program) -> dict[str, np.ndarray]:
    """Every state's initial value (zeros, ones, a constant), as ``init_state()``."""
    from .inits import sample

    return {bd.name: sample(prog.inits[bd.name], bd.node.shape, None, prog.dtype)
            for bd in prog.states}


def new_state(prog: Program, feeds, params, state: dict | None = None,
              rng=None) -> dict[str, np.ndarray]:
    """The state after one training-mode evaluation: each updated state's new value
    (``momentum * running + (1 - momentum) * batch_statistic``), the others as given.
    Empty for a program without state; an inference program updates nothing."""
    state = initial_state(prog) if state is None else state
    # the whole forward pass first: random draws come in the order the module makes them
    roots = [bd.node for bd in prog.forward + prog.updates]
    values = evaluate_nodes(prog, feeds, params, roots, rng, state)
    out = {bd.name: np.asarray(state[bd.name]) for bd in prog.states}
    out.update({bd.name: values[bd.node.id] for bd in prog.updates})
    return out


def evaluate_nodes(prog: Program, feeds, params, roots, rng=None,
                   state: dict | None = None) -> dict[int, np.ndarray]:
    """The value of every node needed for ``roots``, by node id. Random draws (dropout's
    masks, in training mode) come from ``rng``, by default a generator seeded with 0 made
    for this call, so every evaluation draws the same masks; every site of the program
    draws, in site order, whatever ``roots`` need (``random_sites``: what a generated
    module's training-mode call draws). States take their values from ``state``
    (default: their initial values)."""
    values: dict[int, np.ndarray] = {}
    dtype = np.dtype(prog.dtype)
    _state_values(prog, state, values)
    for bd in prog.inputs + prog.targets:
        if bd.name in feeds:
            raw = feeds[bd.name]
        elif bd.name in prog.defaults:
            raw = prog.defaults[bd.name]
        else:
            raise KeyError(f"no value for input '{bd.name}'")
        values[bd.node.id] = np.asarray(raw, dtype=int if bd.node.dtype == "int" else dtype)
    for bd in prog.params:
        values[bd.node.id] = np.asarray(params[bd.name], dtype=dtype)
    return evaluate_graph([*random_sites(prog), *roots], values, prog.dtype, rng)


def evaluate_graph(roots, values: dict[int, np.ndarray], dtype: str = "float64",
                   rng=None) -> dict[int, np.ndarray]:
    """Complete ``values`` (node id -> value, given for every leaf) with every node that
    ``roots`` need, in the order ``topo_order`` gives (random draws come from ``rng`` in
    that order, as in ``evaluate_nodes``); results of the program's float type are cast
    to ``dtype``. No program needed: tests evaluate single ops with it."""
    for node in topo_order(roots):
        if node.id in values:
            continue
        prim = PRIMITIVES[node.op]
        out, rng = _compute(prim, [values[a.id] for a in node.args], dict(node.attrs), rng)
        if prim.dtype is None and node.op != "const":
            out = np.asarray(out).astype(dtype, copy=False)
        values[node.id] = out
    return values


def random_feeds(prog: Program, rng: np.random.Generator, n: int,
                 sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random data for every input and target without a default: symbolic dimensions of
    size ``n`` (or as ``sizes`` says, by name; fewer where a table of positions holds
    fewer; the batch of a loop continuing a state as many as its rows); integer labels
    or one-hot rows where an op needs them (the primitive table's ``data_roles``),
    N(0, 1) elsewhere."""
    from .ops.positions import step_limits
    from .primitives import data_roles

    roles = data_roles([bd.node for bd in prog.forward])
    nodes = topo_order([bd.node for bd in prog.forward])
    limits = step_limits(nodes)
    # A loop continuing a state: the batch is as many rows as the state's streams.
    streams = {n.args[1].shape[0]: n.args[0].shape[0] for n in nodes if n.op == "stream"}
    feeds = {}
    for bd in prog.inputs + prog.targets:
        if bd.name in prog.defaults:
            continue
        size = {d: streams.get(d, (sizes or {}).get(d, n)) for d in bd.node.shape
                if isinstance(d, str)}
        shape = tuple(min(size[d], limits.get(d, [size[d]])[0]) if isinstance(d, str) else d
                      for d in bd.node.shape)
        role, classes = roles.get(bd.name, ("", 0))
        if role == "labels":
            feeds[bd.name] = rng.integers(0, classes, size=shape)
        elif role == "onehot":
            feeds[bd.name] = np.eye(classes)[rng.integers(0, classes, size=shape[:-1])]
        else:
            feeds[bd.name] = rng.normal(size=shape)
    return feeds


def initial_params(prog: Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sample parameters from their initializers (the same formulas as generated code)."""
    from .inits import sample

    return {bd.name: sample(prog.inits[bd.name], bd.node.shape, rng, prog.dtype)
            for bd in prog.params}


def kink_distance(prog: Program, feeds, params, state: dict | None = None) -> float:
    """How close this point is to a kink of any forward op (inf when all are smooth)."""
    values: dict[int, np.ndarray] = {}
    dtype = np.dtype(prog.dtype)
    _state_values(prog, state, values)
    for bd in prog.inputs + prog.targets:
        raw = feeds.get(bd.name, prog.defaults.get(bd.name))
        values[bd.node.id] = np.asarray(raw, dtype=int if bd.node.dtype == "int" else dtype)
    for bd in prog.params:
        values[bd.node.id] = np.asarray(params[bd.name], dtype=dtype)
    best, rng = np.inf, None
    for node in topo_order([*random_sites(prog), *(bd.node for bd in prog.forward)]):
        if node.id in values:
            continue
        prim = PRIMITIVES[node.op]
        args = [values[a.id] for a in node.args]
        if prim.kink is not None:
            best = min(best, prim.kink(args, dict(node.attrs)))
        values[node.id], rng = _compute(prim, args, dict(node.attrs), rng)
    return best


def _state_values(prog: Program, state: dict | None, values: dict) -> None:
    """The state leaves' values, by node id: given by name, else their initial values."""
    from .inits import sample

    dtype = np.dtype(prog.dtype)
    for bd in prog.states:
        if state is not None and bd.name in state:
            value = np.asarray(state[bd.name], dtype=dtype)
            if value.shape != tuple(bd.node.shape):
                raise ValueError(f"state '{bd.name}' is {list(value.shape)}, the program "
                                 f"declares {list(bd.node.shape)}")
        else:
            value = sample(prog.inits[bd.name], bd.node.shape, None, prog.dtype)
        values[bd.node.id] = value


def _compute(prim, args, attrs, rng):
    """(the op's value, the generator): a random op draws from ``rng``, made when first
    needed with seed 0, so every evaluation draws the same masks."""
    if not prim.random:
        return prim.evaluate(args, attrs), rng
    if rng is None:
        rng = np.random.default_rng(0)
    return prim.evaluate(args, attrs, rng), rng
