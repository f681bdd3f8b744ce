"""Issue 10, training and checking: every setting and flag in range or a clear error,
divergence caught without a NaN, no gradient check that compared nothing, runs that learn
nothing pointed out."""

import argparse
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import check_file
from bpc.compiler.vocab import (DATASET_RANGES, INIT_RANGES, OPTIMIZER_RANGES, RUNTIME_RANGES,
                                TRAIN_SETTINGS, Range)
from conftest import REPO, SPECS, run_bpc
from bpc.runtime import data
from bpc.cli import build_parser, main
from bpc.cli.options import data_flag
from bpc.runtime.errors import UserError
from bpc.runtime.gradcheck import gradcheck
from bpc.runtime.loader import load_model
from bpc.runtime.settings import Settings
from bpc.runtime.evaluate import chance_accuracy
from bpc.runtime.train import DIVERGENCE_GROWTH, Diverged, divergence_limit, progress_notes, train

ALL_RANGES = ([*OPTIMIZER_RANGES.values(), *RUNTIME_RANGES.values()]
              + [s.range for s in TRAIN_SETTINGS.values() if s.range]
              + [r for table in (*INIT_RANGES.values(), *DATASET_RANGES.values())
                 for r in table.values()])


# ----------------------------------------------------------------------------- the range table
@given(st.sampled_from(ALL_RANGES),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30)))
def test_a_range_accepts_exactly_its_values(rng, value):
    problem = rng.problem(value)
    finite = not isinstance(value, float) or math.isfinite(value)
    whole = rng.kind is float or float(value).is_integer() if finite else False
    above = rng.low is None or (value > rng.low if rng.low_open else value >= rng.low)
    below = rng.high is None or (value < rng.high if rng.high_open else value <= rng.high)
    assert (problem is None) == (finite and whole and above and below)
    if problem:
        assert problem.startswith(f"must be {rng.describe()}, not ")


@given(st.sampled_from(ALL_RANGES), st.floats(allow_nan=True, allow_infinity=True))
def test_a_flag_parses_what_the_spec_accepts(rng, value):
    """The CLI's parser for a range and the range itself agree on every number's text."""
    from bpc.cli.options import number

    parse = number(rng)
    if rng.problem(value) is None:
        assert parse(repr(value)) == rng.coerce(value)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(repr(value))


def test_booleans_and_lists_are_not_numbers():
    assert Range().problem(True) == "must be a finite number, not true"
    assert Range().problem([1, 2]) == "must be a finite number, not a list"


# ----------------------------------------------------------------------------- spec settings
SPEC = """input x : [N, 2]
target t : [N]
param W : [2, 3] = {init}
loss L = softmax_cross_entropy(x @ W, t)
optimizer {optimizer}
train {{ {train} }}
data {data}
"""
GOOD = {"init": "xavier", "optimizer": "sgd(lr=0.1)", "train": "epochs = 2",
        "data": "spiral(n=10)"}

BAD_SETTINGS = [  # (section, text, the message after "error: ")
    ("optimizer", "adam(beta1=1.5)", "optimizer setting 'beta1' must be a number in [0, 1), "
                                     "not 1.5"),
    ("optimizer", "adam(beta2=1)", "optimizer setting 'beta2' must be a number in [0, 1)"),
    ("optimizer", "sgd(lr=0)", "optimizer setting 'lr' must be a number > 0, not 0"),
    ("optimizer", "sgd(lr=-1)", "optimizer setting 'lr' must be a number > 0, not -1"),
    ("optimizer", "momentum(momentum=1)", "'momentum' must be a number in [0, 1), not 1"),
    ("optimizer", "nesterov(momentum=-0.1)", "'momentum' must be a number in [0, 1)"),
    ("optimizer", "rmsprop(rho=1.2)", "'rho' must be a number in [0, 1), not 1.2"),
    ("optimizer", "adagrad(eps=0)", "'eps' must be a number > 0, not 0"),
    ("optimizer", "sgd(weight_decay=-1)", "'weight_decay' must be a number >= 0, not -1"),
    ("optimizer", "sgd(clip=-1)", "'clip' must be a number >= 0, not -1"),
    ("optimizer", "sgd(schedule=step, step=0)", "'step' must be a whole number >= 1, not 0"),
    ("optimizer", "sgd(schedule=step, step=2.5)", "'step' must be a whole number >= 1"),
    ("optimizer", "sgd(gamma=0)", "'gamma' must be a number > 0, not 0"),
    ("optimizer", "sgd(min_lr=-0.1)", "'min_lr' must be a number >= 0, not -0.1"),
    ("optimizer", "sgd(lr=true)", "'lr' must be a number > 0, not true"),
    ("init", "uniform(low=5, high=-5)", "'low' of 'uniform' must be less than 'high', but "
                                        "low=5 and high=-5"),
    ("init", "uniform(low=1)", "'low' of 'uniform' must be less than 'high', but low=1 and "
                               "high=1"),
    ("init", "normal(std=-1)", "'std' of 'normal' must be a number >= 0, not -1"),
    ("data", "spiral(n=-5)", "'n' of 'spiral' must be a whole number >= 1, not -5"),
    ("data", "spiral(classes=1)", "'classes' of 'spiral' must be a whole number >= 2, not 1"),
    ("data", "spiral(n=2.5)", "'n' of 'spiral' must be a whole number >= 1, not 2.5"),
    ("data", "sine(noise=-1)", "'noise' of 'sine' must be a number >= 0, not -1"),
    ("data", "copy(delay=-1)", "'delay' of 'copy' must be a whole number in [0, 200], not -1"),
    ("data", "reverse(delay=201)", "'delay' of 'reverse' must be a whole number in [0, 200]"),
    ("train", "epochs = 0", "'epochs' must be a whole number in [1, 1e+15], not 0"),
    ("train", "iters = -3", "'iters' must be a whole number in [1, 1e+15], not -3"),
    ("train", "batch = 0", "'batch' must be a whole number >= 1, not 0"),
    ("train", "seed = -1", "'seed' must be a whole number >= 0, not -1"),
    ("train", "eval_every = 0", "'eval_every' must be a whole number >= 1, not 0"),
    ("train", "iters = 10^16", "'iters' must be a whole number in [1, 1e+15], not 1.000e+16"),
]


def _spec(tmp_path, **parts):
    path = tmp_path / "m.bp"
    path.write_text(SPEC.format(**{**GOOD, **parts}))
    return path


@pytest.mark.parametrize("section, text, message", BAD_SETTINGS,
                         ids=[t for _, t, _ in BAD_SETTINGS])
def test_out_of_range_settings_are_located_errors(tmp_path, section, text, message):
    path = _spec(tmp_path, **{section: text})
    with pytest.raises(SpecError) as info:
        check_file(str(path))
    rendered = info.value.render()
    line = 1 + SPEC.splitlines().index(next(x for x in SPEC.splitlines()
                                             if "{" + section + "}" in x))
    assert f"{path}:{line}:" in rendered and ": error: " in rendered
    assert message in rendered, rendered


@pytest.mark.parametrize("section, text", [
    ("optimizer", "momentum(momentum=0)"), ("optimizer", "sgd(clip=0, weight_decay=0)"),
    ("optimizer", "adam(beta1=0, beta2=0.9999, eps=1e-12)"),
    ("optimizer", "sgd(schedule=step, step=1, gamma=2)"), ("init", "normal(std=0)"),
    ("init", "uniform(low=-0.5, high=0.5)"), ("init", "constant(-3)"),
    ("data", "spiral(n=1, classes=2, noise=0)"), ("data", "sine(n=1, noise=0)"),
    ("train", "seed = 0; batch = 1; epochs = 1; eval_every = 3"), ("train", "epochs = 2.0"),
])
def test_boundary_settings_are_accepted(tmp_path, section, text):
    check_file(str(_spec(tmp_path, **{section: text})))


def test_module_config_is_held_to_the_same_ranges():
    """A hand-edited CONFIG (or a Python caller) cannot slip a bad value past the table."""
    m = load_model(REPO / "generated" / "spiral.py")
    for overrides, what in (({"batch": 0}, "training setting 'batch'"),
                            ({"lr": float("nan")}, "optimizer setting 'lr'"),
                            ({"seed": -1}, "training setting 'seed'")):
        with pytest.raises(UserError) as info:
            Settings.from_module(m, overrides)
        assert info.value.message.startswith(what + " must be ")
    bad = type("M", (), {"CONFIG": {"optimizer": {"name": "adam", "beta1": 1.5}}})
    with pytest.raises(UserError, match="optimizer setting 'beta1' must be a number in"):
        Settings.from_module(bad, {})


def test_hand_edited_module_data_is_held_to_the_ranges(tmp_path):
    text = (REPO / "generated" / "spiral.py").read_text()
    assert '"classes": 3' in text
    module = tmp_path / "spiral_edited.py"
    module.write_text(text.replace('"classes": 3', '"classes": 1'))
    r = run_bpc("train", module, "--epochs", "1", "--out", tmp_path / "run")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "the data set in CONFIG: 'classes' of 'spiral' must be a whole number >= 2, " \
        "not 1" in r.stderr


# ----------------------------------------------------------------------------- CLI flags
def numeric_flags():
    """(command, flag, range) for every option of every subcommand that takes a number."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for command, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.type is not None and action.type is not \
                    data_flag:
                out.append((command, action.option_strings[-1], action.type))
    return out


FLAGS = numeric_flags()


def test_every_numeric_flag_is_range_checked():
    assert {(c, f) for c, f, _ in FLAGS} >= {
        ("train", "--epochs"), ("train", "--iters"), ("train", "--batch"), ("train", "--lr"),
        ("train", "--seed"), ("gradcheck", "--eps"), ("gradcheck", "--tol"),
        ("gradcheck", "--samples"), ("gradcheck", "--batch"), ("gradcheck", "--seed"),
        ("stats", "--batch"), ("stats", "--seed"), ("graph", "--seed")}
    for command, flag, parse in FLAGS:  # no bare int/float: each has its range
        assert isinstance(getattr(parse, "range", None), Range), (command, flag)
    assert FLAGS_RANGE("train", "--lr") is OPTIMIZER_RANGES["lr"]
    for key in ("epochs", "iters", "batch", "seed"):
        assert FLAGS_RANGE("train", f"--{key}") is TRAIN_SETTINGS[key].range


def FLAGS_RANGE(command, flag):
    return next(p.range for c, f, p in FLAGS if (c, f) == (command, flag))


def _bad_values(rng: Range) -> list[str]:
    values = ["nan", "inf", "abc", ""]
    if rng.low is not None:
        values.append(repr(rng.low) if rng.low_open else repr(rng.low - 1))
    if rng.high is not None:
        values.append(repr(rng.high) if rng.high_open else repr(rng.high + 1))
    if rng.kind is int:
        values.append("1.5")
    return values


@pytest.mark.parametrize("command, flag, parse", FLAGS, ids=[f"{c}{f}" for c, f, _ in FLAGS])
def test_bad_numeric_flags_are_usage_errors(capsys, command, flag, parse):
    for value in _bad_values(parse.range):
        with pytest.raises(SystemExit) as info:
            main([command, "specs/toy.bp", flag, value])
        err = capsys.readouterr().err
        assert info.value.code == 2, (flag, value)
        assert f"error: argument {flag}: must be {parse.range.describe()}, not " in err, err


@pytest.mark.parametrize("args, message", [
    (["train", "specs/xor.bp", "--lr", "-1"], "argument --lr: must be a number > 0, not -1"),
    (["train", "specs/xor.bp", "--lr", "nan"], "argument --lr: must be a number > 0, not nan"),
    (["train", "specs/xor.bp", "--seed", "-1"],
     "argument --seed: must be a whole number >= 0, not -1"),
    (["train", "specs/xor.bp", "--batch", "0"],
     "argument --batch: must be a whole number >= 1, not 0"),
    (["train", "specs/xor.bp", "--epochs", "abc"],
     "argument --epochs: must be a whole number in [1, 1e+15], not 'abc'"),
    (["train", "specs/xor.bp", "--epochs", "2", "--iters", "5"],
     "argument --iters: not allowed with argument --epochs"),
    (["train", "specs/spiral.bp", "--data", "spiral:classes=1"],
     "argument --data: 'classes' of 'spiral' must be a whole number >= 2, not 1"),
    (["gradcheck", "specs/toy.bp", "--eps", "0"], "argument --eps: must be a number > 0"),
    (["gradcheck", "specs/toy.bp", "--samples", "0"],
     "argument --samples: must be a whole number >= 1, not 0"),
    (["stats", "specs/toy.bp", "--batch", "-2"], "argument --batch: must be a whole number"),
    (["graph", "specs/toy.bp", "--seed", "1.5"], "argument --seed: must be a whole number"),
])
def test_bad_flags_end_to_end(args, message):
    r = run_bpc(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("flag", ["--epochs", "--iters", "--batch", "--seed", "--lr"])
def test_huge_flag_values_are_errors_not_crashes(tmp_path, flag):
    """A 400-digit number: refused by its range, or (batch, seed) trained with exactly."""
    huge = "1" + "0" * 400
    r = run_bpc("train", "specs/xor.bp", flag, huge, "--out", tmp_path, "--quiet",
                *(["--epochs", "1"] if flag in ("--batch", "--seed") else []))
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    if flag in ("--batch", "--seed"):
        assert r.returncode == 0 and "xor: loss" in r.stdout
    else:
        assert r.returncode == 2 and "not a 401-digit number" in r.stderr


def test_whole_number_flags_take_exponent_notation():
    assert FLAGS_RANGE("train", "--epochs").parse("1e3") == 1000
    args = build_parser().parse_args(["train", "specs/xor.bp", "--epochs", "2.0"])
    assert args.epochs == 2 and isinstance(args.epochs, int)


# ----------------------------------------------------------------------------- gradcheck
KINKY = '''"""A hand-written module whose loss has a kink at every scale of eps."""
import numpy as np

INPUTS, TARGETS, PARAMS, DTYPE = {}, {}, {"w": (%s,)}, "float64"


def init_params(rng):
    return {"w": np.zeros(%s)}


def loss(params):
    return float(np.sum(np.abs(np.sin(1e9 * params["w"]))))


def predict(params):
    return loss(params)


def loss_and_grad(params):
    w = params["w"]
    return loss(params), {"w": 1e9 * np.sign(np.sin(1e9 * w)) * np.cos(1e9 * w)}
'''


def test_gradcheck_that_compared_nothing_fails(tmp_path):
    kinky = tmp_path / "kinky.py"
    kinky.write_text(KINKY % (4, 4))
    r = run_bpc("gradcheck", kinky, "--samples", "3")
    assert r.returncode == 1, r.stdout
    assert "FAILED: w was not checked: no entry compared: all 3 sampled entries sit on kinks" \
        in r.stdout
    assert "hint: try another --seed" in r.stdout and "ok:" not in r.stdout
    empty = tmp_path / "empty.py"
    empty.write_text(KINKY % (0, 0))
    r = run_bpc("gradcheck", empty)
    assert r.returncode == 1 and "no entry compared: it has no entries" in r.stdout


def test_gradcheck_without_gradients_fails(tmp_path):
    spec = tmp_path / "nograd.bp"
    spec.write_text("input x : [N, 2]\ntarget t : [N, 2]\nloss L = mse(x, t)\n")
    r = run_bpc("gradcheck", spec)
    assert r.returncode == 1
    assert "FAILED: nothing to compare" in r.stdout and "ok" not in r.stdout.split("\n", 1)[1]


@pytest.mark.parametrize("body, why", [
    ("param w : [3] = constant(-1)\nloss L = sum(log(w))", "the loss is nan"),
    ("param w : [3] = constant(2)\nloss L = sum(exp(1000 * w))", "the loss is inf"),
])
def test_gradcheck_at_a_non_finite_point_fails(tmp_path, body, why):
    spec = tmp_path / "bad.bp"
    spec.write_text(body + "\n")
    r = run_bpc("gradcheck", spec)
    assert r.returncode == 1 and f"FAILED: w was not checked: {why}" in r.stdout


def test_gradcheck_api_rows_say_why(tmp_path):
    spec = tmp_path / "kink.bp"
    spec.write_text("param w : [3] = zeros\nparam v : [2] = ones\n"
                    "loss L = sum(relu(w)) + sum(v * v)\n")
    m = load_model(spec)
    # At w = 0 every entry sits on relu's kink: nothing of w can be compared.
    rows = {r.name: r for r in gradcheck(m, params={"w": np.zeros(3), "v": np.ones(2)})}
    assert rows["w"].ok is False and rows["w"].checked == 0 and rows["w"].skipped == 3
    assert rows["w"].why == "no entry compared: all 3 sampled entries sit on kinks"
    assert rows["v"].ok is True and rows["v"].checked == 2 and rows["v"].why == ""


@pytest.mark.parametrize("setting", [{"eps": 0.0}, {"tol": float("nan")}, {"samples": 0},
                                     {"batch": 0}, {"seed": -1}])
def test_gradcheck_api_refuses_settings_out_of_range(setting):
    m = load_model(REPO / "specs" / "toy.bp")
    with pytest.raises(UserError, match=f"gradcheck: '{next(iter(setting))}' must be"):
        gradcheck(m, **setting)


# ----------------------------------------------------------------------------- training
TANH = """input x : [N, 2]
target t : [N]
layers x -> y { dense(32); tanh; dense(3) }
loss L = softmax_cross_entropy(y, t)
optimizer sgd(lr=0.1)
train { epochs = 5; batch = 30; seed = 0 }
data spiral(n=40, classes=3)
"""


def test_divergence_without_nan_is_caught(tmp_path):
    """A stable log-softmax keeps the loss finite at lr 1e12; it still diverged."""
    spec = tmp_path / "tanh.bp"
    spec.write_text(TANH)
    r = run_bpc("train", spec, "--lr", "1e12", "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "bpc: error: training diverged at step " in r.stderr
    assert "the loss grew from" in r.stderr and "times its start" in r.stderr
    assert "hint: lower the learning rate" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("lr", [1e4, 1e6, 1e12])
def test_growth_rule_on_a_stable_loss(tmp_path, lr):
    spec = tmp_path / "tanh.bp"
    spec.write_text(TANH)
    m = load_model(spec)
    ds = data.builtin("spiral", m, seed=0, n=40, classes=3)
    with pytest.raises(Diverged) as info:
        train(m, ds, Settings.from_module(m, {"lr": lr, "epochs": 50}), None, quiet=True,
              log=lambda *_: None)
    assert "the loss grew from" in info.value.message


def test_divergence_limit():
    assert divergence_limit(2.0) == 2.0 * DIVERGENCE_GROWTH
    assert divergence_limit(-3.0) == 3.0 * DIVERGENCE_GROWTH
    assert divergence_limit(0.0) == divergence_limit(1e-9) > 0  # a floor for a loss near 0


def test_divergence_reference_survives_resume(tmp_path):
    import json

    spec = tmp_path / "tanh.bp"
    spec.write_text(TANH)
    r = run_bpc("train", spec, "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "run" / "checkpoint.npz") as f:
        meta = json.loads(str(f["meta"]))
    assert meta["start_loss"] > 0 and math.isfinite(meta["running_loss"])
    r = run_bpc("train", spec, "--epochs", "2", "--out", tmp_path / "run", "--resume",
                "--lr", "1e12", "--quiet")
    assert r.returncode == 1 and f"grew from {meta['start_loss']:.4g}" in r.stderr


GALLERY_WITH_DATA = [p for p in SPECS if p.stem in ("xor", "sine", "spiral", "digits")]


@pytest.mark.parametrize("spec", GALLERY_WITH_DATA, ids=[p.stem for p in GALLERY_WITH_DATA])
def test_gallery_trains_without_false_alarm(spec):
    """Each gallery spec, with its own settings: no divergence, nothing to point out."""
    if spec.stem == "digits":
        pytest.importorskip("sklearn")
    m = load_model(spec)
    settings = Settings.from_module(m, {})
    result = train(m, data.load(m.CONFIG.get("data"), m, settings.seed), settings, None,
                   quiet=True, log=lambda *_: None)
    assert result.notes == []


@pytest.mark.parametrize("start, end, acc, chance, expect", [
    (1.0, 1.0, None, None, ["has not moved"]),
    (1.0, 0.9995, None, None, ["has not moved"]),
    (1.0, 0.99, None, None, []),
    (1.0, 910.0, None, None, ["ended higher than it started"]),
    (0.0, 0.0, None, None, []),  # a perfect start is not a stuck run
    (None, 0.5, None, None, []),
    (1.0, 0.5, 0.34, 1 / 3, ["no better than chance"]),
    (1.0, 0.5, 0.50, 0.5, ["no better than chance"]),
    (1.0, 0.5, 0.75, 0.5, []),
    (1.0, 1.0, 0.1, 0.1, ["has not moved", "no better than chance"]),
])
def test_progress_notes(start, end, acc, chance, expect):
    notes = progress_notes(start, end, acc, chance)
    assert len(notes) == len(expect) and all(e in n for e, n in zip(expect, notes))


def test_chance_accuracy_is_the_most_common_class():
    t = np.array([0, 1, 1, 2])
    assert chance_accuracy(("labels", "t"), {"t": t}) == 0.5
    assert chance_accuracy(("onehot", "t"), {"t": np.eye(3)[t]}) == 0.5
    assert chance_accuracy(("binary", "t"), {"t": np.array([[1.0], [0], [0], [0]])}) == 0.75
    assert chance_accuracy(None, {"t": t}) is None


STUCK = """input x : [N, 2]
target t : [N]
layers x -> y { dense(16, init=zeros); relu; dense(3, init=zeros) }
loss L = softmax_cross_entropy(y, t)
optimizer sgd(lr=0.1)
train { epochs = 3; batch = 30; seed = 0 }
data spiral(n=40, classes=3)
"""


def test_a_run_that_learns_nothing_is_pointed_out(tmp_path):
    spec = tmp_path / "stuck.bp"
    spec.write_text(STUCK)
    r = run_bpc("train", spec, "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("stuck: loss")
    assert any(line.startswith("note: train accuracy") and "no better than chance" in line
               for line in lines)
    assert lines[-1].startswith("hint: check the learning rate")
    spec.write_text(TANH)
    r = run_bpc("train", spec, "--lr", "1e-9", "--out", tmp_path / "b", "--quiet")
    assert r.returncode == 0 and "note: the training loss has not moved" in r.stdout
    r = run_bpc("train", spec, "--lr", "100", "--out", tmp_path / "b", "--quiet",
                "--force")
    assert r.returncode == 0 and "note: the training loss ended higher than it started" \
        in r.stdout
    r = run_bpc("train", spec, "--out", tmp_path / "c", "--quiet", "--epochs", "20")
    assert r.returncode == 0 and "note:" not in r.stdout
