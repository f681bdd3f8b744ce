"""A fuzz of the public API: bpc.compile, bpc.load, bpc.load_checkpoint and a model's
train, predict, evaluate, gradcheck, stats and graph, called with wrong types, shapes,
names and values (None, text, ragged and nested lists, NaN, 0-d and empty arrays, huge
numbers, objects). Every call either succeeds or raises bpc's own errors (UserError,
SpecError), never a raw Python exception. Hypothesis draws the calls; the default run
is small, ``BPC_FUZZ_API_EXAMPLES=3000`` a long one (it prints what each call did, with
``-s``)."""

import collections
import math
import os

import numpy as np
import pytest

from conftest import REPO

hypothesis = pytest.importorskip("hypothesis", reason="the API fuzz needs hypothesis")
from hypothesis import HealthCheck, given, seed, settings, strategies as st  # noqa: E402

import bpc  # noqa: E402
from bpc.compiler.errors import SpecError  # noqa: E402
from bpc.runtime.errors import UserError  # noqa: E402

EXAMPLES = int(os.environ.get("BPC_FUZZ_API_EXAMPLES", "40"))
SEED = int(os.environ.get("BPC_FUZZ_API_SEED", "0"))
COUNTS: collections.Counter = collections.Counter()

SMALL = """model small
input  x : [N, 2]
target t : [N]
layers x -> y { dense 4; relu; dense 3 }
loss L = softmax_cross_entropy(y, t)
train { epochs = 1; batch = 8 }
"""


def arrays(draw_shape=st.lists(st.integers(0, 4), min_size=0, max_size=3)):
    """NumPy arrays of any small shape (0-d and empty included) and several dtypes."""
    dtypes = st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128,
                              np.uint8, "U3"])
    def make(shape, dtype, fill):
        with np.errstate(all="ignore"):
            return np.full(shape, fill).astype(dtype)

    return st.builds(make,
                     draw_shape, dtypes, st.sampled_from([0, 1, 2, -1, 0.5, np.nan, np.inf,
                                                          1e300, -7]))


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.sampled_from([10 ** 100, -(10 ** 30)]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["", "x", "t", "spiral", "spiral:n=-1", "xor", "x.npy", "a.npz", "b.csv",
                     "specs/xor.bp", "generated/xor.py", "raw", "class", "proba", "adam",
                     "sgd", "fast", "textbook", "\0", "runs", "../nowhere", "1e3", "nan",
                     "specs/spiral.bp", SMALL, SMALL.replace("dense 3", "dense 3x"),
                     SMALL.splitlines()[3]]),
    st.binary(max_size=4), st.complex_numbers(max_magnitude=2), st.just(object()),
    st.just(np.int64(3)), st.just(np.float64(0.1)), st.just(np.bool_(True)))
VALUES = st.recursive(
    st.one_of(SCALARS, arrays()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.sampled_from(["x", "t", "y", "W1", "b1"]),
                                            inner, max_size=3)),
    max_leaves=8)


def data_like(n, which=None):
    """Arrays that are almost right: the model's own data (``which``: "x" or "t" mostly
    right for that array), a bit off."""
    rng = np.random.default_rng(n)
    x, t = rng.normal(size=(n, 2)), rng.integers(0, 3, size=n)
    right = {"x": [x, x.tolist(), x.astype(np.float32)],
             "t": [t, t.astype(float), np.eye(3)[t], t.tolist()]}.get(which, [])
    wrong = [x, t, x[:, :1], x.T, x[:0], t + 3, t - 1, t + 0.5, np.eye(4)[t]]
    return st.one_of(st.sampled_from(right), st.sampled_from(wrong)) if right else \
        st.sampled_from(wrong)


ARGUMENT = st.one_of(VALUES, st.integers(1, 12).flatmap(data_like))
SETTING = st.one_of(st.integers(-1, 3), st.sampled_from([0.5, 1e400, "2", None, 2.0, 1e3]))
TRAIN_KEYS = ["data", "epochs", "iters", "batch", "lr", "optimizer", "seed", "eval_every",
              "out", "resume", "quiet", "checkpoint_every", "validation", "x", "t", "y"]


def call_args(keys, value=ARGUMENT):
    named = st.dictionaries(st.sampled_from(keys), value, max_size=4) if keys else st.just({})
    return st.tuples(st.lists(value, max_size=3), named)


NEARLY = st.integers(1, 12).flatmap(data_like)  # close to right: deeper into bpc


def plausible_train(n):
    return st.fixed_dictionaries(
        {"x": data_like(n, "x"), "t": data_like(n, "t")},
        optional={"epochs": SETTING, "batch": SETTING, "lr": SETTING,
                  "validation": st.one_of(st.tuples(data_like(n, "x"), data_like(n, "t")),
                                          VALUES),
                  "optimizer": st.sampled_from(["adam", "sgd", 1]), "eval_every": SETTING,
                  "seed": SETTING, "quiet": st.sampled_from([True, 1, "no"])})


PLAUSIBLE_TRAIN = st.integers(1, 12).flatmap(plausible_train)
PLAUSIBLE_PREDICT = st.integers(1, 12).flatmap(lambda n: st.fixed_dictionaries(
    {"x": data_like(n, "x")},
    optional={"outputs": st.sampled_from(["raw", "proba", "class", "z", 1]),
              "params": VALUES, "t": data_like(n, "t")}))
SPEC_TEXTS = st.sampled_from([SMALL, SMALL.replace("model small\n", ""), "specs/xor.bp",
                              SMALL.replace("[N]", "[N, 3]"), SMALL.replace("relu", "rleu"),
                              SMALL + "param unused : [2] = 0.0\n", SMALL[:40], "x.bp"])
CALLS = st.one_of(
    st.tuples(st.just("compile"), st.tuples(st.tuples(SPEC_TEXTS), st.dictionaries(
        st.just("style"), st.sampled_from(["fast", "textbook", "slow", None])))),
    st.tuples(st.just("train"), st.tuples(st.just([]), PLAUSIBLE_TRAIN)),
    st.tuples(st.just("predict"), st.tuples(st.just([]), PLAUSIBLE_PREDICT)),
    st.tuples(st.just("evaluate"), st.tuples(st.just([]), PLAUSIBLE_TRAIN.map(
        lambda d: {k: v for k, v in d.items() if k in ("x", "t")}))),
    st.tuples(st.just("compile"), call_args(["style"], st.one_of(ARGUMENT, SCALARS))),
    st.tuples(st.just("load"), call_args([], SCALARS)),
    st.tuples(st.just("load_checkpoint"), call_args(["model"], SCALARS)),
    st.tuples(st.just("train"), st.tuples(st.lists(ARGUMENT, max_size=2),
                                          st.dictionaries(st.sampled_from(TRAIN_KEYS),
                                                          st.one_of(ARGUMENT, SETTING),
                                                          max_size=5))),
    st.tuples(st.just("predict"), call_args(["x", "params", "state", "outputs", "t"])),
    st.tuples(st.just("evaluate"), call_args(["data", "x", "t", "params", "split", "state"])),
    st.tuples(st.just("gradcheck"), call_args(["eps", "tol", "samples", "seed", "batch"],
                                              SETTING)),
    st.tuples(st.just("stats"), call_args(["batch", "seed"], SETTING)),
    st.tuples(st.just("graph"), st.tuples(st.lists(SCALARS, max_size=1), st.just({}))),
)


def call(name, args, kwargs, models):
    """The call, or None when its arguments do not fit the signature (Python's own
    TypeError at the call, before any of bpc runs: not what this fuzz is about)."""
    import inspect

    model = models[(len(args) + len(kwargs)) % len(models)]
    function = getattr(bpc, name) if name in ("compile", "load", "load_checkpoint") \
        else getattr(model, name)
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError:
        return None
    if name in ("compile", "load", "load_checkpoint"):
        return function(*args, **kwargs)
    if name == "train":
        kwargs.setdefault("quiet", True)
        for key in ("epochs", "iters"):  # a valid count stays small: the run must end
            if isinstance(kwargs.get(key), (int, float)) and not isinstance(kwargs[key], bool) \
                    and math.isfinite(kwargs[key]) and kwargs[key] > 3:
                kwargs[key] = 3
    return function(*args, **kwargs)


@pytest.fixture(scope="module")
def models():
    trained = bpc.compile(SMALL)
    rng = np.random.default_rng(0)
    trained.train(x=rng.normal(size=(12, 2)), t=rng.integers(0, 3, size=12), quiet=True)
    return [bpc.compile(SMALL), trained]


def test_the_api_raises_only_its_own_errors(models, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the names above that are files are the repository's
    monkeypatch.setenv("BPC_CACHE", str(tmp_path / "cache"))

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(CALLS)
    def fuzz(drawn):
        name, (args, kwargs) = drawn
        kwargs = dict(kwargs)
        if kwargs.get("out") is not None:
            kwargs["out"] = str(tmp_path / "runs" / str(len(COUNTS)))
        try:
            with np.errstate(all="ignore"):
                if call(name, list(args), kwargs, models) is None:
                    COUNTS[name, "signature"] += 1
                    return
        except UserError:
            COUNTS[name, "UserError"] += 1
        except SpecError:
            COUNTS[name, "SpecError"] += 1
        except Exception as e:  # noqa: BLE001 - the point: none may escape
            raise AssertionError(f"{name}(*{args!r}, **{kwargs!r}) raised "
                                 f"{type(e).__name__}: {e}") from e
        else:
            COUNTS[name, "ok"] += 1

    fuzz()
    assert sum(COUNTS.values()) >= EXAMPLES
    print("\nAPI fuzz:", ", ".join(f"{n} {outcome} {k}" for (n, outcome), k in
                                   sorted(COUNTS.items())))
