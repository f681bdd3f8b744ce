"""How compile time grows with the size of a spec: every pass should be linear (or
n log n), so doubling the statements should about double the time.

    python3 bench/compile_scaling.py                 # 1k, 5k and 20k statements
    python3 bench/compile_scaling.py 500 1000 2000   # other sizes

Five shapes of spec: "mlp", a deep MLP written out by hand; "elementwise", one layer
then a long run of elementwise steps; "shared", one weight used by every layer;
"shared_elementwise", one elementwise parameter used by every step; "batchnorm",
``repeat K { dense 8; batchnorm }``.

Each size is a generated spec of that many statements, compiled end to end (parse,
check, elaborate, differentiate, optimize, generate, in its final layout) in this process,
as ``bpc compile`` does. Prints
seconds, the process's peak resident memory so far (sizes run in increasing order), and
the time per statement relative to the previous size (1.0: linear).
"""

from __future__ import annotations

import sys
import resource
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def chain_spec(statements: int) -> str:
    """A spec of about ``statements`` statements: a deep MLP written out by hand (each
    layer its own parameter), with elementwise steps and skip connections between."""
    lines = ["model chain", "input x : [N, 8]", "target t : [N, 8]", "h0 = x"]
    kinds = ("param W{i} : [8, 8] = uniform(low=-0.3, high=0.3)",
             "h{i} = tanh(h{p} @ W{w})", "h{i} = h{p} * 0.5 + h{q}",
             "h{i} = relu(h{p}) - 0.1 * h{q}", "h{i} = sigmoid(h{p}) * h{q}")
    h, w = 0, 0
    for i in range(1, statements):
        kind = kinds[(i - 1) % len(kinds)]
        if kind.startswith("param"):
            lines.append(kind.format(i=i))
            w = i
            continue
        h += 1
        lines.append(kind.format(i=h, p=h - 1, q=max(h - 3, 0), w=w))
    lines.append(f"loss L = mse(h{h}, t)")
    return "\n".join(lines) + "\n"


def elementwise_spec(statements: int) -> str:
    """One layer, then a long run of elementwise steps: the backward updates one buffer
    in place all the way down (buffer planning's largest groups)."""
    lines = ["model chain", "input x : [N, 8]", "target t : [N, 8]",
             "param W : [8, 8] = uniform(low=-0.3, high=0.3)", "h0 = x @ W"]
    kinds = ("h{i} = tanh(h{p})", "h{i} = h{p} * 0.9 + 0.1", "h{i} = sigmoid(h{p})")
    for i in range(1, statements - 3):
        lines.append(kinds[i % len(kinds)].format(i=i, p=i - 1))
    lines.append(f"loss L = mse(h{statements - 4}, t)")
    return "\n".join(lines) + "\n"


def shared_spec(statements: int) -> str:
    """One weight shared by every layer (as an unrolled recurrent net shares it): its
    gradient is a sum with a term per use, one expression thousands of terms long."""
    lines = ["model chain", "input x : [N, 8]", "target t : [N, 8]",
             "param W : [8, 8] = uniform(low=-0.3, high=0.3)", "param b : [8] = zeros",
             "h0 = x"]
    kinds = ("h{i} = tanh(h{p} @ W + b)", "h{i} = h{p} * 0.5 + h{q}",
             "h{i} = relu(h{p}) - 0.1 * h{q}", "h{i} = sigmoid(h{p}) * h{q}")
    for i in range(1, statements - 5):
        lines.append(kinds[i % len(kinds)].format(i=i, p=i - 1, q=max(i - 3, 0)))
    lines.append(f"loss L = mse(h{statements - 6}, t)")
    return "\n".join(lines) + "\n"


def shared_elementwise_spec(statements: int) -> str:
    """A chain through one elementwise parameter: its gradient sums a term per step and
    every step's value is kept for it (long ``del`` lists, long comment headers)."""
    lines = ["model chain", "input x : [N, 8]", "target t : [N, 8]",
             "param a : [8] = 0.5", "h0 = x"]
    lines += [f"h{i} = h{i - 1} * a" for i in range(1, statements - 4)]
    lines.append(f"loss L = mse(h{statements - 5}, t)")
    return "\n".join(lines) + "\n"


def batchnorm_spec(statements: int) -> str:
    """``repeat K { dense 8; batchnorm }``, K a tenth of ``statements`` (each round is
    about ten equations and steps): batch norm's steps, state updates and names such as
    ``dL_dbn101_xc_div`` that no longer fit a line."""
    return ("model chain\ninput x : [N, 8]\ntarget t : [N, 8]\nlayers x -> y {\n"
            f"  repeat {max(1, statements // 10)} {{ dense 8; batchnorm }}\n}}\n"
            "loss L = mse(y, t)\n")


SHAPES = {"mlp": chain_spec, "elementwise": elementwise_spec, "shared": shared_spec,
          "shared_elementwise": shared_elementwise_spec, "batchnorm": batchnorm_spec}


def compile_seconds(statements: int, shape: str = "mlp") -> tuple[float, float]:
    from bpc.compiler.pipeline import compile_text

    text = SHAPES[shape](statements)
    start = time.perf_counter()
    compile_text(text, "chain.bp")
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1000, 5000, 20000]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for shape in SHAPES:
        compile_seconds(50, shape)  # imports and first-use costs out of the way
        previous = None
        print(f"{shape:>12} {'seconds':>9} {'peak MB':>8} {'ratio/stmt':>10}")
        for n in sizes:
            seconds, peak = compile_seconds(n, shape)
            ratio = ""
            if previous:
                pn, ps = previous
                ratio = f"{(seconds / ps) / (n / pn):10.2f}"
            print(f"{n:>12} {seconds:9.2f} {peak:8.0f} {ratio}", flush=True)
            previous = (n, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
