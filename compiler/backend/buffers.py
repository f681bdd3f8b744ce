"""Buffer planning for generated functions: in-place updates and early release.

Works on the scheduled statements of one function, using liveness:

- **In place into a dead operand.** ``dL_da1 = (a1 > 0) * dL_dz1`` where ``dL_dz1`` is
  never read again and has the result's shape and dtype becomes
  ``dL_da1 = np.multiply(a1 > 0, dL_dz1, out=dL_dz1)``: no new array.
- **In place into a fresh left operand.** ``a1 = x @ W1 + b1`` becomes ``a1 = x @ W1``
  then ``a1 += b1``: the matmul's result is the buffer, the bias is added into it.
- **Early release.** A batch-sized intermediate is ``del``-eted after its last use when
  another batch-sized array is allocated later, which lowers the function's peak memory.

The ``textbook`` style (``bpc show``, ``bpc explain``) plans nothing: every statement is
``name = expression`` as the derivation writes it, with no ``out=``, no in-place update
and no ``del``; only the ``fast`` style (``bpc train``, the default of ``bpc compile``)
does the above. This function is the one place where the two styles differ in code.

A buffer is only ever reused when every name bound to it (aliases such as
``dl_dbeta3 = dl_df3``, views such as ``h.T`` bound by the spec) is dead and none of them
is returned; inputs and parameters are never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import batch_sized
from ..names import mentioned
from ..ir.primitives import PRIMITIVES
from .printer import Statement


@dataclass
class Step:
    statement: Statement
    code: list[str]
    release: list[str] = field(default_factory=list)
    into: bool = False  # computed straight into the caller's buffer (``into``)


STYLES = ("fast", "textbook")


def plan(statements: list[Statement], returns: list[str],
         into: dict[str, str] | None = None, style: str = "fast") -> list[Step]:
    """Steps for ``statements``; ``into`` maps a returned name to a caller's buffer
    expression (``grads.get("W1")``) that its value is computed into when it can be.
    In the ``textbook`` style each statement is one plain assignment."""
    if style not in STYLES:
        raise ValueError(f"unknown code style {style!r}; expected one of {STYLES}")
    if style == "textbook":
        return [Step(st, [f"{st.target} = {st.expr}"]) for st in statements]
    into = into or {}
    # A state update assigns the caller's state entry (its name is the state's): it
    # reads values but binds no name the function reads again.
    names = {st.name for st in statements if st.kind != "update"}
    reads: list[set[str]] = [
        {m for m in mentioned(st.expr) if m in names} for st in statements]
    last_read: dict[str, int] = {}
    for i, used in enumerate(reads):
        for n in used:
            last_read[n] = i
    returned = set(returns)

    group: dict[str, int] = {}  # name -> buffer id
    members: dict[int, list[str]] = {}
    fresh: dict[int, bool] = {}
    shapes: dict[str, tuple] = {}

    # Per buffer, the last statement reading any of its names and whether one of them is
    # returned, kept up to date as names join: dead_after is O(1), not O(group), so
    # planning is linear even when one buffer is updated in place all along a chain.
    group_last: dict[int, int] = {}
    group_returned: dict[int, bool] = {}

    def join(name: str, gid: int) -> None:
        group[name] = gid
        members.setdefault(gid, []).append(name)
        group_last[gid] = max(group_last.get(gid, -1), last_read.get(name, -1))
        group_returned[gid] = group_returned.get(gid, False) or name in returned

    def dead_after(gid: int, i: int) -> bool:
        return fresh.get(gid, False) and group_last[gid] <= i and not group_returned[gid]

    allocates_batch = [not st.alias and not PRIMITIVES[st.node.op].cheap
                       and batch_sized(st.node.shape) for st in statements]
    later_alloc = [False] * len(statements)  # a batch-sized allocation comes after i
    for i in range(len(statements) - 2, -1, -1):
        later_alloc[i] = later_alloc[i + 1] or allocates_batch[i + 1]
    steps: list[Step] = []
    released: set[int] = set()
    for i, st in enumerate(statements):
        node = st.node
        if st.kind == "update":
            steps.append(Step(st, [f"{st.target} = {st.expr}"]))
            continue
        shapes[st.name] = node.shape
        code = [f"{st.name} = {st.expr}"]
        view = st.alias or PRIMITIVES[node.op].cheap
        if view:
            # The array a view shares memory with is its first argument's (``h.T``,
            # ``np.reshape(dL_dv7, v5.shape)``: dL_dv7, not v5). Names in textual order,
            # so the plan never depends on set order (that is, on PYTHONHASHSEED).
            viewed = st.args[0] if st.args and not st.alias else st.expr
            base = next((n for n in mentioned(viewed) if n in group), None)
            if base is not None:
                join(st.name, group[base])
            else:
                gid = len(members)
                fresh[gid] = False  # a view of an input or parameter: never written
                join(st.name, gid)
        else:
            reused = None
            prim = PRIMITIVES[node.op]
            target = into.get(st.name) if node.shape != () else None
            direct = prim.write_into(list(st.args), dict(node.attrs), target) if target else None
            if direct is None and node.shape != () and prim.out_form and prim.elementwise:
                for k, arg_name in enumerate(st.arg_names):
                    if arg_name is None or arg_name not in group:
                        continue
                    arg_node = node.args[k]
                    if arg_node.shape == node.shape and arg_node.dtype == node.dtype \
                            and dead_after(group[arg_name], i):
                        reused = arg_name
                        break
            if direct is not None:  # straight into the caller's buffer
                code = [f"{st.name} = {direct}"]
                gid = len(members)
                fresh[gid] = False  # the caller's array: never reused or released
                join(st.name, gid)
            elif reused is not None:
                code = [f"{st.name} = " + prim.write_into(list(st.args), dict(node.attrs),
                                                          reused)]
                join(st.name, group[reused])
            else:
                k = _fresh_operand(st) if node.shape != () else None
                if k is not None and callable(prim.augmented):  # dL_dx[:, :3] += dL_dh
                    code = [f"{st.name} = {st.args[0]}",
                            *prim.augmented(list(st.args), dict(node.attrs), st.name)]
                elif k is not None:
                    other = st.args[1 - k]
                    code = [f"{st.name} = {st.args[k]}",
                            f"{st.name} {prim.augmented} {other}"]
                gid = len(members)
                fresh[gid] = True
                join(st.name, gid)
        step = Step(st, code, into=not view and direct is not None)
        if later_alloc[i]:
            # Only a buffer read here (or just made and never read) can die here.
            candidates = {group[n] for n in reads[i] if n in group} | {group[st.name]}
            for gid in sorted(candidates):
                names_ = members[gid]
                if gid in released or not dead_after(gid, i):
                    continue
                if not any(batch_sized(shapes.get(n, ())) for n in names_):
                    continue
                released.add(gid)
                step.release.extend(n for n in names_ if n not in step.release)
        steps.append(step)
    return steps


def _fresh_operand(st: Statement) -> int | None:
    """Which operand is a freshly computed array of the result's shape, to update in
    place (``a1 = x @ W1; a1 += b1``): the left one, or the right one of + and *."""
    node = st.node
    if not PRIMITIVES[node.op].augmented or not st.inline_fresh:
        return None
    order = (0, 1) if PRIMITIVES[node.op].augmented in ("+=", "*=") else (0,)
    for k in order:
        arg = node.args[k]
        if st.inline_fresh[k] and arg.shape == node.shape and arg.dtype == node.dtype:
            return k
    return None
