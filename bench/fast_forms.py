"""The fast style's forms, measured: batch norm's closed-form backward and the sigmoid.

    python bench/fast_forms.py [--rounds 24] [--before /work/main]

- **Steps**: a training step (gradient into kept buffers, then an in-place SGD update)
  of the batch-norm MLP 64-(100, batchnorm, relu)x5-10 and of the 784-50-10 sigmoid
  MLP, batch 100, float64 and float32: the generated fast module against the hand-fused
  NumPy reference (``references.BatchNormNet``; the sigmoid net has none) and, with
  ``--before``, the module another checkout of bpc generates (the form before a change).
  Contenders alternate within each round (order rotating), after an untimed warm-up
  step; the figure is each contender's median over the rounds of the best of a few
  steps, and ratios are taken within this one run.
- **Sigmoid forms**: time per call on [100, 50] and [100, 100] arrays, and the largest
  relative and absolute error against a long-double reference over [-1000, 1000].

Run it alone on a quiet machine, one BLAS thread (it sets OMP/OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from references import BatchNormNet  # noqa: E402
from step_peers import spec_text  # noqa: E402

BATCHNORM_SIZES = [64, 100, 100, 100, 100, 100, 10]
SIGMOID_SIZES = [784, 50, 10]
BATCH = 100


def batchnorm_spec_text(sizes: list[int], dtype: str) -> str:
    """An MLP with batch norm after every hidden dense layer, then ReLU."""
    return spec_text(sizes, dtype, ("batchnorm", "relu"), "bench_bn")


def sigmoid_spec_text(sizes: list[int], dtype: str) -> str:
    return spec_text(sizes, dtype, ("sigmoid",), "bench_sigmoid")


def module_text(spec: str, root: Path = ROOT) -> str:
    """The fast module bpc at ``root`` (a checkout) generates for ``spec``."""
    code = ("import sys; sys.path.insert(0, '.'); from bpc.compiler.pipeline import "
            "compile_text; sys.stdout.write(compile_text(sys.stdin.read(), 'bench.bp')[1])")
    return subprocess.run([sys.executable, "-c", code], input=spec, text=True, cwd=root,
                          check=True, capture_output=True).stdout


def load(text: str) -> dict:
    ns: dict = {}
    exec(compile(text, "<bench module>", "exec"), ns)  # noqa: S102 - bpc's own output
    return ns


def module_step(ns: dict, params: dict, lr: float):
    """One SGD step of a generated module: its gradient into kept buffers, then the same
    in-place update the hand-fused reference makes."""
    grads = {k: np.empty_like(v) for k, v in params.items()}
    scratch = {k: np.empty_like(v) for k, v in params.items()}
    kw = {"state": ns["init_state"]()} if "init_state" in ns else {}

    def step(x, t):
        loss, g = ns["loss_and_grad"](params, x, t, grads=grads, **kw)
        for k, p in params.items():
            p -= np.multiply(g[k], lr, out=scratch[k])
        return loss
    return step


def contenders(kind: str, dtype: str, before: Path | None) -> dict:
    sizes, text = (BATCHNORM_SIZES, batchnorm_spec_text) if kind == "batchnorm" else \
        (SIGMOID_SIZES, sigmoid_spec_text)
    spec = text(sizes, dtype)
    ns = load(module_text(spec))
    rng = np.random.default_rng(0)
    params = {k: np.asarray(v, dtype) for k, v in ns["init_params"](rng).items()}
    out = {"bpc": module_step(ns, {k: v.copy() for k, v in params.items()}, 0.01)}
    if before is not None:
        out["bpc before"] = module_step(load(module_text(spec, before)),
                                        {k: v.copy() for k, v in params.items()}, 0.01)
    if kind == "batchnorm":
        ref = BatchNormNet({k: v.copy() for k, v in params.items()}, ns["init_state"](),
                           len(sizes) - 1, BATCH, dtype)
        out["hand-fused"] = lambda x, t: ref.step(x, t, 0.01)
    return out


def time_steps(steps: dict, x, t, rounds: int, per_round: int = 5) -> dict[str, float]:
    """Median over ``rounds`` of each contender's best of ``per_round`` steps (seconds),
    contenders alternating, their order rotating from round to round."""
    for step in steps.values():
        step(x, t)  # warm-up: first-call costs and allocator growth are not timed
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best = float("inf")
            for _ in range(per_round):
                start = time.perf_counter()
                steps[name](x, t)
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_steps(rounds: int, before: Path | None) -> None:
    print(f"training steps, batch {BATCH}: median of {rounds} rounds (ms); "
          "ratio = contender's time / bpc's")
    for kind, sizes in (("batchnorm", BATCHNORM_SIZES), ("sigmoid", SIGMOID_SIZES)):
        for dtype in ("float64", "float32"):
            rng = np.random.default_rng(1)
            x = rng.normal(size=(BATCH, sizes[0])).astype(dtype)
            t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], BATCH)]
            got = time_steps(contenders(kind, dtype, before), x, t, rounds)
            cells = "  ".join(f"{k} {v * 1e3:.3f} ({v / got['bpc']:.2f})"
                              for k, v in got.items())
            print(f"  {kind:<10}{dtype:<9}{cells}")


# ----------------------------------------------------------------------------- sigmoid
def _logaddexp_form(x):
    return np.exp(-np.logaddexp(0, -x))


def _tanh_form(x):
    s = np.multiply(x, 0.5)
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return s


def _exp_form(x):
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf below -709 (float64)
        e = np.exp(-x)
    e += 1
    return np.reciprocal(e, out=e)


def _two_sided_form(x):
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


SIGMOID_FORMS = {"exp(-logaddexp(0, -x))": _logaddexp_form,
                 "0.5 * tanh(x / 2) + 0.5": _tanh_form,
                 "1 / (1 + exp(-x)) (overflows)": _exp_form,
                 "exp(-|x|), where": _two_sided_form}


def sigmoid_accuracy(form, dtype) -> tuple[float, float]:
    """(max relative, max absolute) error over [-1000, 1000] against long double."""
    x = np.concatenate([np.linspace(-1000, 1000, 200_001), np.linspace(-40, 40, 200_001)])
    x = x.astype(dtype)
    ref = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    with np.errstate(all="ignore"):
        got = form(x).astype(np.longdouble)
    tiny = np.finfo(dtype).tiny  # below it the dtype holds 0 or a subnormal: no relative
    normal = ref >= tiny
    rel = np.abs(got[normal] - ref[normal]) / ref[normal]
    return float(rel.max()), float(np.abs(got - ref).max())


def bench_sigmoid(rounds: int) -> None:
    print("\nsigmoid forms: microseconds per call (best of 7 rounds of 200 calls); "
          "errors against long double over [-1000, 1000]")
    import timeit

    for dtype in (np.float64, np.float32):
        for shape in ((100, 50), (100, 100)):
            x = np.random.default_rng(0).normal(scale=4, size=shape).astype(dtype)
            for name, form in SIGMOID_FORMS.items():
                with np.errstate(all="ignore"):
                    us = min(timeit.repeat(lambda: form(x), number=200,
                                           repeat=max(3, rounds // 3))) / 200 * 1e6
                line = f"  {np.dtype(dtype).name:<9}{str(shape):<11}{name:<32}{us:8.1f} us"
                if shape == (100, 50):
                    rel, ab = sigmoid_accuracy(form, dtype)
                    line += f"   max rel {rel:.1e}  max abs {ab:.1e}"
                print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--before", type=Path, help="a checkout of bpc to compare with")
    parser.add_argument("--only", choices=("steps", "sigmoid"))
    args = parser.parse_args()
    if args.only != "sigmoid":
        bench_steps(args.rounds, args.before)
    if args.only != "steps":
        bench_sigmoid(args.rounds)


if __name__ == "__main__":
    main()
