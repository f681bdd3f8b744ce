"""Loops over time: ``scan``, its derivative ``scan_grad``, and ``part`` (one of their results).

A loop is one node whose attribute is its step as a graph of its own (a ``Body``), in
the manner of JAX's ``lax.scan``: ``scan(inits..., sequences..., closed...; body)``
runs the step for t = 0 .. T-1 (T = the first sequence's axis 1), each step reading the
carried values' previous step (the initial values at t = 0), each sequence's slice
``x[:, t]`` and the values it closes over, and stacks each step equation's values along
axis 1 (``[N, H]`` per step -> ``[N, T, H]``). Its results are read by ``part`` nodes.

Its vjp is ``scan_grad``: the step's derivative (the body differentiated by the usual
reverse mode, ``BodyGrad``) run for t = T-1 .. 0, with the carried adjoint added to the
adjoint flowing into each carried equation's step, the closed-over values' gradients
summed over steps and the sequences' written per step. The derivative reads each step
equation's value at t from the stacked results, never recomputing them: what the
backward keeps is what the forward stacks (LANGUAGE.md, "Recurrences").
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .. import Binding, Node, Program, ShapeError, fmt_shape, topo_order
from .core import POSTFIX, defop, expand


# The loops (their results are ``part`` nodes): statements of lines, never expressions.
LOOPS = ("scan", "scan_grad")


@dataclass(frozen=True, eq=False)
class Body:
    """One step of a loop (compared and hashed by identity). Leaves: ``carries`` (each
    carried value's previous step), ``slices`` (each sequence at t) and ``closed`` (the
    values read from outside the loop, as leaves named like them); ``steps`` the step
    equations' values, ``names`` their names, ``carried[k]`` the step equation that
    carry ``k`` carries; ``time`` the time variable. The fast style's hoisting
    (passes/hoist.py) sets ``hoisted``, how many of the last slices are values it
    computed before the loop, and ``reads``, the spec's sequence a sequence of length 0
    is reported as when the first one is such a value."""

    carries: tuple[Node, ...]
    slices: tuple[Node, ...]
    closed: tuple[Node, ...]
    steps: tuple[Node, ...]
    names: tuple[str, ...]
    carried: tuple[int, ...]
    time: str
    hoisted: int = 0
    reads: str | None = None

    @property
    def leaves(self) -> tuple[Node, ...]:
        return self.carries + self.slices + self.closed

    def stacked(self, j: int, length) -> tuple:
        """The shape of step equation ``j`` stacked over ``length`` steps, on axis 1."""
        shape = self.steps[j].shape
        return (shape[0], length, *shape[1:])


@dataclass(frozen=True, eq=False)
class BodyGrad:
    """A step's derivative: ``given[j]``: whether step equation ``j`` has an adjoint from
    the loss; ``seeds[j]`` (a leaf, or None when no adjoint reaches it from outside the
    step) is the adjoint flowing into step equation ``j`` at t from the loss and, for a
    carried value, the next step; ``saved[j]`` (a leaf) its value at t, read from the
    stacked results; ``grads[i]`` the adjoint of the body's leaf ``i`` at t (None: not a
    float value, no gradient); ``program`` the differentiated, optimized step."""

    body: Body
    given: tuple[bool, ...]
    seeds: tuple[Node | None, ...]
    saved: tuple[Node, ...]
    grads: tuple[Node | None, ...]
    program: Program


def _split(body: Body, values: list) -> tuple[list, list, list]:
    k, m = len(body.carries), len(body.slices)
    return values[:k], values[k:k + m], values[k + m:]


def _scan_shape(args, attrs) -> tuple:
    body: Body = attrs["body"]
    inits, seqs, closed = _split(body, list(args))
    for init, carry in zip(inits, body.carries):
        if init.shape != carry.shape:
            raise ShapeError(f"an initial value is {fmt_shape(init.shape)}, its step "
                             f"{fmt_shape(carry.shape)}", ())
    lengths = {s.shape[1] for s in seqs}
    if len(lengths) > 1:
        raise ShapeError("the sequences a loop steps through have different lengths "
                         f"(axis 1): {', '.join(fmt_shape(s.shape) for s in seqs)}", ())
    return ()


def _length(body: Body, seqs: list) -> int:
    """The loop's number of steps: the length of its sequences (those its derivative
    reads, and the stacked values and adjoints it is given, are all as long)."""
    length = next(np.shape(s)[1] for s in seqs if np.ndim(s) > 1)
    if length == 0:
        raise ValueError("a loop over time needs at least one step: the sequence has "
                         "length 0 (axis 1)")
    return length


def _run_step(nodes, feeds: dict[int, np.ndarray], dtype) -> dict[int, np.ndarray]:
    from ..evaluate import evaluate_graph

    return evaluate_graph(list(nodes), dict(feeds), dtype.name)


def scan_steps(body: Body, values):
    """The forward loop step by step: ``(t, got)`` for t = 0 .. T-1, ``got`` the value
    of every node of the step at t (its leaves included), by node id; ``values`` the
    loop's arguments. The evaluator stacks them; ``bpc trace`` shows them."""
    inits, seqs, closed = _split(body, [np.asarray(v) for v in values])
    dtype = np.result_type(*(v for v in values if np.asarray(v).dtype.kind == "f"))
    prev = list(inits)
    fixed = {leaf.id: v for leaf, v in zip(body.closed, closed)}
    for t in range(_length(body, seqs)):
        feeds = {**fixed, **{leaf.id: v for leaf, v in zip(body.carries, prev)},
                 **{leaf.id: s[:, t] for leaf, s in zip(body.slices, seqs)}}
        got = _run_step(body.steps, feeds, dtype)
        yield t, got
        prev = [got[body.steps[j].id] for j in body.carried]


def _scan_evaluate(values, attrs):
    body: Body = attrs["body"]
    length = _length(body, _split(body, list(values))[1])
    out: list[np.ndarray | None] = [None] * len(body.steps)
    for t, got in scan_steps(body, values):
        for j, step in enumerate(body.steps):
            value = np.asarray(got[step.id])
            if out[j] is None:
                out[j] = np.empty((value.shape[0], length, *value.shape[1:]), value.dtype)
            out[j][:, t] = value
    return tuple(out)


def _part_shape(args, attrs) -> tuple:
    made, i = args[0], attrs["index"]
    body: Body = made.attr("body") or made.attr("grad").body
    if made.op == "scan":
        return body.stacked(i, made.args[len(body.carries)].shape[1])
    return made.attr("shapes")[i]  # scan_grad: the adjoint of the loop's argument i


def _scan_vjp(b, n: Node, results: dict[int, Node]) -> list[Node | None]:
    """``results``: the adjoint of each result (stacked step equation) that has one."""
    body: Body = n.attr("body")
    given = tuple(j in results for j in range(len(body.steps)))
    grad = body_grad(body, b.dtype, b.loss or "L", given)
    read = {m.id for m in topo_order([bd.node for bd in grad.program.backward])}
    # A step value the derivative does not read (an LSTM's pre-activation, whose gate
    # slices' adjoints are joined) is passed as 0, so the forward does not stack it; a
    # carried one is read a step back (``h_prev``).
    stacked = [b.op("part", n, index=j) if saved.id in read or j in body.carried
               else b.const(0) for j, saved in enumerate(grad.saved)]
    seeds = [expand(b, results[j], stacked[j]) for j in range(len(body.steps)) if given[j]]
    # Likewise a hoisted sequence it does not read (passes/hoist.py: an LSTM's x @ Wx + b,
    # whose adjoint is the step's as it is) is passed as 0, so the backward does not keep
    # it; ``shapes`` keeps each argument's shape, its gradient's.
    end = len(body.carries) + len(body.slices)
    args = [b.const(0) if end - body.hoisted <= i < end
            and body.slices[i - end].id not in read else a for i, a in enumerate(n.args)]
    made = b.op("scan_grad", *args, *stacked, *seeds, grad=grad,
                shapes=tuple(a.shape for a in n.args))
    return [b.op("part", made, index=i) if g is not None else None
            for i, g in enumerate(grad.grads)]


def scan_grad_steps(grad: BodyGrad, values):
    """Backpropagation through time step by step: ``(t, got, d_next)`` for t = T-1 .. 0,
    ``got`` the value of every node of the step's derivative at t (seeds and saved values
    included), by node id, ``d_next`` each carried value's adjoint handed to the step
    before (``dL_dh_next``); ``values`` the ``scan_grad``'s arguments. The evaluator sums
    them; ``bpc trace`` shows them."""
    body = grad.body
    n_args, n_steps = len(body.leaves), len(body.steps)
    args = [np.asarray(v) for v in values[:n_args]]
    stacked = [np.asarray(v) for v in values[n_args:n_args + n_steps]]
    outer = iter(values[n_args + n_steps:])
    given = [np.asarray(next(outer)) if g else None for g in grad.given]
    inits, seqs, closed = _split(body, args)
    dtype = np.result_type(*(v for v in args if v.dtype.kind == "f"))
    carried = {j: k for k, j in enumerate(body.carried)}
    d_next = [np.zeros_like(v) for v in inits]
    fixed = {leaf.id: v for leaf, v in zip(body.closed, closed)}
    roots = [g for g in grad.grads if g is not None]
    length = _length(body, seqs + stacked + [g for g in given if g is not None])
    for t in reversed(range(length)):
        feeds = {**fixed}
        for k, leaf in enumerate(body.carries):
            feeds[leaf.id] = stacked[body.carried[k]][:, t - 1] if t else inits[k]
        feeds.update({leaf.id: s[:, t] for leaf, s in zip(body.slices, seqs) if s.ndim})
        feeds.update({leaf.id: s[:, t] for leaf, s in zip(grad.saved, stacked) if s.ndim})
        for j, leaf in enumerate(grad.seeds):
            if leaf is None:
                continue
            seed = given[j][:, t] if given[j] is not None else 0
            feeds[leaf.id] = seed + d_next[carried[j]] if j in carried else seed
        got = _run_step(roots, feeds, dtype)
        d_next = [np.asarray(got[g.id] if g is not None else None)
                  for g in grad.grads[:len(body.carries)]]
        yield t, got, d_next


def _scan_grad_evaluate(values, attrs):
    grad: BodyGrad = attrs["grad"]
    body = grad.body
    inits, seqs, closed = _split(body, [np.asarray(v) for v in values[:len(body.leaves)]])
    dtype = np.result_type(*(v for v in inits + seqs + closed if v.dtype.kind == "f"))
    d_next = [np.zeros_like(v) for v in inits]
    d_closed = [np.zeros_like(v, dtype=dtype) for v in closed]
    d_seqs: list = [np.zeros_like(v, dtype=dtype) if v.ndim else None for v in seqs]
    for t, got, d_next in scan_grad_steps(grad, values):
        at = [got[g.id] if g is not None else None for g in grad.grads]
        _, d_slice, d_fixed = _split(body, at)
        for k, d in enumerate(d_slice):
            if d is None:
                continue
            if d_seqs[k] is None:  # a sequence passed as 0: its adjoint, step by step
                d = np.asarray(d)
                d_seqs[k] = np.zeros((d.shape[0], t + 1, *d.shape[1:]), dtype)
            d_seqs[k][:, t] = d
        for k, d in enumerate(d_fixed):
            if d is not None:
                d_closed[k] += d
    return tuple(d_next + d_seqs + d_closed)


def time_axes(prog: Program) -> set[str]:
    """The symbolic lengths (``T``) of the sequences the program's loops step through."""
    loops = [bd.node.args[0] for bd in prog.forward if bd.node.op == "part"]
    return {a.shape[1] for node in loops for a in node.args[len(node.attr("body").carries):]
            if len(a.shape) > 1 and isinstance(a.shape[1], str)}


def step_grad_norms(grad: BodyGrad, values, last_only: bool = False
                    ) -> dict[str, list[float]]:
    """Each step equation with an adjoint from outside its step (the loss's at t, or the
    next step's for a carried value) -> the norm of that adjoint at t = 0 .. T-1
    (``||dL/dh_t||``): how the gradient vanishes or explodes going back in time; with
    ``last_only``, of the loss's adjoints at the last step alone, carried back."""
    if last_only:
        k = len(grad.body.leaves) + len(grad.body.steps)
        values = list(values[:k]) + [_at_last(np.asarray(v)) for v in values[k:]]
    seeds = [(name, leaf) for name, leaf in zip(grad.body.names, grad.seeds) if leaf is not None]
    norms: dict[str, list[float]] = {name: [] for name, _ in seeds}
    for _, got, _ in scan_grad_steps(grad, values):
        for name, leaf in seeds:
            norms[name].append(float(np.linalg.norm(got[leaf.id])))
    return {name: steps[::-1] for name, steps in norms.items()}  # t = 0 first


def _at_last(stacked: np.ndarray) -> np.ndarray:
    out = np.zeros_like(stacked)
    out[:, -1] = stacked[:, -1]
    return out


def body_grad(body: Body, dtype: str, loss: str, given: tuple[bool, ...]) -> BodyGrad:
    """The step's derivative, made once per body and adjoints given: the body's
    equations (``h_t``) and a pseudo-loss ``sum_j sum(step_j * seed_j)`` over the steps
    with an adjoint from outside the step (the loss, or the next step for a carried
    value) differentiated with respect to every float leaf, named after ``loss``
    (``dL_dh_t``), each step equation's value replaced by its saved value, optimized."""
    key = (dtype, loss, given)
    cached = _GRADS.setdefault(body, {}).get(key)
    if cached is not None:
        return cached
    from ...names import fresh
    from ...passes import rewrite
    from ...passes.autodiff import adjoint_name, differentiate
    from ...passes.optimize import optimize
    from .. import Builder

    b = Builder(dtype)
    taken = {leaf.attr("name") for leaf in body.leaves} | set(body.names) | {loss}
    names = [fresh(f"{name}_t", taken) for name in body.names]
    seeds = tuple(b.leaf("input", fresh(adjoint_name(loss, name), taken), step.shape)
                  if given[j] or j in body.carried else None
                  for j, (name, step) in enumerate(zip(names, body.steps)))
    saved = tuple(b.leaf("input", name, step.shape) for name, step in zip(names, body.steps))
    total = None
    for step, seed in zip(body.steps, seeds):
        if seed is not None:
            term = b.op("sum", b.op("mul", step, seed), axis=None, keepdims=False)
            total = term if total is None else b.op("add", total, term)
    floats = [leaf for leaf in body.leaves if leaf.dtype not in ("bool", "int")]
    leaf_bds = [Binding(leaf.attr("name"), leaf, "input")
                for leaf in body.leaves + tuple(s for s in seeds if s is not None)]
    prog = Program(name="step", path="", dtype=dtype, inputs=leaf_bds, targets=[], params=[],
                   inits={}, forward=[*(Binding(nm, st, "eq") for nm, st in
                                        zip(names, body.steps)), Binding(loss, total, "loss")],
                   loss=loss, output=None, wrt=[leaf.attr("name") for leaf in floats])
    grad = differentiate(prog, scaled=False)  # the seeds carry the scale already
    swap = {step.id: leaf for step, leaf in zip(body.steps, saved)}
    grad = optimize(rewrite(grad, lambda _b, node, _args: swap.get(node.id)))
    by_name = {bd.name: bd.node for bd in grad.backward}
    grads = tuple(by_name[grad.grads[leaf.attr("name")]] if leaf in floats else None
                  for leaf in body.leaves)
    made = BodyGrad(body, given, seeds, saved, grads, grad)
    _GRADS[body][key] = made
    return made


_GRADS: weakref.WeakKeyDictionary[Body, dict] = weakref.WeakKeyDictionary()


def _not_an_expression(a, attrs, node):
    """Loops are written as the lines of a ``for`` loop (``backend/loops``), never as
    expressions: the printer makes each a statement of its own."""
    raise TypeError(f"'{node.op}' is a loop, not an expression")


defop("scan", arity=None, shape=_scan_shape, dtype="tuple", loop=True,
      emit=_not_an_expression, torch=_not_an_expression,
      evaluate=_scan_evaluate, vjp=_scan_vjp,
      rule="backpropagation through time: the step's derivative, run from the last step "
           "to the first, carrying each carried value's adjoint to the step before")
defop("scan_grad", arity=None, shape=lambda args, attrs: (), dtype="tuple", loop=True,
      emit=_not_an_expression, torch=_not_an_expression,
      evaluate=_scan_grad_evaluate)
defop("part", arity=1, shape=_part_shape, loop=True,
      emit=lambda a, attrs, n: (f"{a[0][0]}[{attrs['index']}]", POSTFIX),
      torch=lambda a, attrs, n: (f"{a[0][0]}[{attrs['index']}]", POSTFIX),
      evaluate=lambda v, a: v[0][a["index"]])  # autodiff hands its adjoint to the loop
