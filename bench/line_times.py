"""Line timing of one step of a row of bench/model_rows.py: where the generated
``loss_and_grad`` spends its time, statement by statement, beside the hand-fused
reference's ``loss_and_grad``; the profile bench/README.md quotes.

    python3 bench/line_times.py "BN MLP" float64 [--steps 200] [--top 15]

Each statement of the function (inside a ``for`` loop or an ``if``, each of its own) is
wrapped in two reads of the process's CPU clock (``time.process_time``: time other
processes take from the core is not counted), so the figures carry ~0.5 us of overhead
each; their sum is printed against the step's time without the wrapping. A statement in
a loop is counted once by its text, all its runs summed."""

from __future__ import annotations

import argparse
import ast
import collections
import inspect
import os
import sys
import tempfile
import textwrap
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]

from model_rows import ROWS, generated_step, hand_fused, row_setup  # noqa: E402


def timed(fn, namespace: dict, source: str | None = None):
    """``fn`` recompiled with every top-level statement of its body timed into the
    returned counter (line text -> seconds)."""
    source = textwrap.dedent(source or inspect.getsource(fn))
    lines = source.splitlines()
    tree = ast.parse(source)
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fn.__name__)
    func.body = _timed_body(func.body, lines)
    func.decorator_list = []
    ast.fix_missing_locations(tree)
    acc: collections.Counter = collections.Counter()
    ns = {**namespace, "_lt_acc": acc, "_lt_clock": time.process_time}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "<timed>", "exec"), ns)  # noqa: S102
    return ns[fn.__name__], acc


def _timed_body(stmts: list, lines: list[str], depth: int = 0) -> list:
    """``stmts`` with each one timed into ``_lt_acc`` by its first line's text; the
    statements inside a ``for`` loop or an ``if`` are timed one by one instead."""
    body = []
    for stmt in stmts:
        if isinstance(stmt, (ast.For, ast.If)):
            stmt.body = _timed_body(stmt.body, lines, depth + 1)
            stmt.orelse = _timed_body(stmt.orelse, lines, depth + 1)
            body.append(stmt)
            continue
        text = lines[stmt.lineno - 1].strip()
        clock = f"_lt_t{depth}"
        start = ast.parse(f"{clock} = _lt_clock()").body[0]
        stop = ast.parse(f"_lt_acc[{text!r}] += _lt_clock() - {clock}").body[0]
        if isinstance(stmt, ast.Return):
            value = ast.parse("_lt_ret = 0").body[0]
            value.value = stmt.value
            body += [start, value, stop, ast.parse("return _lt_ret").body[0]]
        else:
            body += [start, stmt, stop]
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("row", choices=ROWS)
    parser.add_argument("dtype", choices=["float64", "float32"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    from bpc.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        module, params, state, x, t = row_setup(args.row, args.dtype, tmp)
    step, _ = generated_step(module, params, state)
    ref = hand_fused(args.row, params, state, args.dtype)
    for name, run, fn, ns, source in (
            ("generated", step, module.loss_and_grad, vars(module), module.source),
            ("hand-fused", ref, type(ref.net).loss_and_grad,
             vars(sys.modules[type(ref.net).__module__]), None)):
        for _ in range(10):
            run(x, t)
        start = time.process_time()
        for _ in range(args.steps):
            run(x, t)
        whole = (time.process_time() - start) / args.steps
        wrapped, acc = timed(fn, ns, source)
        holder = module if name == "generated" else type(ref.net)
        setattr(holder, "loss_and_grad", wrapped)
        for _ in range(args.steps):
            run(x, t)
        setattr(holder, "loss_and_grad", fn)
        total = sum(acc.values()) / args.steps
        print(f"\n{name}: step {whole * 1e6:.0f} us (process time), loss_and_grad's "
              f"statements {total * 1e6:.0f} us; the {args.top} slowest:")
        product = [k for k in acc if "@" in k or "matmul" in k]
        products = sum(acc[k] for k in product) / args.steps
        print(f"  {len(product)} matrix products {products * 1e6:.0f} us; the other "
              f"{len(acc) - len(product)} statements {(total - products) * 1e6:.0f} us")
        for text, secs in acc.most_common(args.top):
            print(f"  {secs / args.steps * 1e6:8.1f} us {100 * secs / args.steps / total:5.1f}%"
                  f"  {text[:90]}")


if __name__ == "__main__":
    main()
