"""``bpc stats``: each layer's activations and gradients at a random batch; a batch norm
row says what it did per feature (training mode: the batch's own statistics), and DLFS
ch. 6.3's experiment shows batch norm keeping activations spread."""

import json
import re

import numpy as np
import pytest

from batchnorm_specs import specs, trace_values  # noqa: F401 - a fixture
from bpc.compiler.compilation import Compilation
from bpc.compiler.pipeline import program_from_file
from bpc.reports.graph import build, dot
from bpc.reports.stats import format_table, layer_stats, layer_values
from bpc.reports.trace import BATCH_ROWS, point, trace
from conftest import run_bpc


def test_stats_show_batch_norm_keeping_activations_spread(specs):
    """DLFS ch. 6.3: weights from normal(std=0.01) through five ReLU layers. Without
    batch norm the activations shrink by about 0.07 per layer; with it every layer's
    keep their spread."""
    plain = layer_stats(program_from_file(specs["deep"]), batch=100, seed=0)
    normed = layer_stats(program_from_file(specs["deep_bn"]), batch=100, seed=0)
    relu = [r["act_std"] for r in plain if r["layer"].startswith("z")]
    relu_bn = [r["act_std"] for r in normed if r["layer"].startswith("z")]
    assert len(relu) == len(relu_bn) == 5
    assert relu[-1] < 1e-4 * relu[0] and all(b < a for a, b in zip(relu, relu[1:]))
    assert all(0.3 < s < 1 for s in relu_bn)
    assert max(relu_bn) / min(relu_bn) < 1.2
    # the steps are not layers; every batch norm row says what it did per feature
    layers = [r["layer"] for r in normed]
    assert not any(re.match(r"bn\d_(mu|xc|var|std|xn)$", n) for n in layers)
    norms = [r for r in normed if "batch_norm" in r]
    assert [r["layer"] for r in norms] == [f"bn{j}" for j in range(1, 6)]
    for r in norms:
        bn = r["batch_norm"]
        assert bn["mode"] == "training" and bn["input"] == "a" + r["layer"][2:]
        assert bn["out"]["mean_absmax"] < 1e-10
        assert 0.999 < bn["out"]["std_min"] <= bn["out"]["std_max"] < 1.0
        assert bn["in"]["std_max"] < 0.2  # what came in was small


def test_stats_values_are_batch_norm_in_training_mode(specs):
    """The values stats shows are the batch's own normalization (not the running
    statistics, which would leave the small activations small)."""
    comp = Compilation.from_file(specs["deep_bn"])
    prog = comp.program
    values = {name: act for name, act, _ in layer_values(prog, batch=50, seed=2)}
    a1 = values["a1"]
    want = (a1 - a1.mean(axis=0)) / np.sqrt(a1.var(axis=0) + 1e-6)  # gamma 1, beta 0
    assert np.allclose(values["bn1"], want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(values["bn1"], a1 / np.sqrt(1 + 1e-6))  # inference's


def test_stats_cli_says_training_mode(specs):
    r = run_bpc("stats", specs["deep_bn"], "--batch", "64")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == ("batch_norm in training mode: each feature normalized with this "
                        "batch's own mean and variance")
    assert re.search(r"^bn3 \*\s", r.stdout, re.M) and "bn3_mu" not in r.stdout
    table = r.stdout.split("out: std")[1].strip().splitlines()
    assert [ln.split()[:2] for ln in table] == [[f"bn{j}", f"a{j}"] for j in range(1, 6)]
    r = run_bpc("stats", specs["deep_bn"], "--json", "--batch", "32")
    rows = json.loads(r.stdout)
    assert sum("batch_norm" in row for row in rows) == 5
    # a spec without batch norm prints the table alone, as before
    plain = layer_stats(program_from_file(specs["deep"]), batch=10)
    assert format_table(plain).startswith("layer ") and "*" not in format_table(plain)


def test_views_of_batch_norm_over_images(tmp_path):
    """[N, C, H, W]: each channel normalized over the batch and its pixels."""
    spec = tmp_path / "conv_bn.bp"
    spec.write_text("model conv_bn\ninput x : [N, 1, 8, 8]\ntarget t : [N, 10]\n"
                    "layers x -> y {\n  conv 4 size=3 pad=1; batchnorm; relu; maxpool 2; "
                    "flatten; dense 10\n}\nloss L = softmax_cross_entropy(y, t)\n")
    comp = Compilation.from_file(spec)
    prog = comp.program
    values = {name: act for name, act, _ in layer_values(prog, batch=20, seed=1)}
    a1, bn1 = values["a1"], values["bn1"]
    mean, var = a1.mean(axis=(0, 2, 3)), a1.var(axis=(0, 2, 3))
    want = (a1 - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-6)
    assert np.allclose(bn1, want, rtol=1e-10, atol=1e-12)
    row = next(r for r in layer_stats(prog, batch=20, seed=1) if r["layer"] == "bn1")
    std_in = a1.std(axis=(0, 2, 3))
    assert row["batch_norm"]["in"]["std_min"] == pytest.approx(std_in.min())
    assert row["batch_norm"]["in"]["std_max"] == pytest.approx(std_in.max())
    assert row["batch_norm"]["out"]["std_min"] > 0.999
    feeds, params, where = point(comp)
    assert feeds["x"].shape == (BATCH_ROWS, 1, 8, 8) and where.startswith("a batch of 4")
    v = trace_values(trace(comp, feeds, params))
    assert v["bn1_mu"].shape == (4,) and np.allclose(
        v["bn1_running_var+"], 0.9 + 0.1 * v["a1"].var(axis=(0, 2, 3)))
    text = dot(build(Compilation.from_file(spec), feeds, params))
    assert re.findall(r'\[label="([^"]*)", shape=circle\]', text).count("batchnorm") == 1


def test_stats_finds_what_a_batch_norm_normalizes_when_the_spec_takes_its_step_names():
    """The spec defines bn1_mu itself, so the layer's mean step is bn1_mu_2: the batch
    norm still normalizes a1 (not what the spec's bn1_mu reads)."""
    from bpc.compiler.pipeline import program_from_text
    from bpc.reports.stats import batch_norms

    prog = program_from_text(
        "input x : [N, 4]\ntarget t : [N, 2]\nlayers x -> h {\n  dense 4; batchnorm; relu\n}\n"
        "bn1_mu = h * 2\nparam W : [4, 2] = normal\ny = bn1_mu @ W\n"
        "loss L = softmax_cross_entropy(y, t)\n", "coll.bp")
    assert "bn1_mu_2" in [bd.name for bd in prog.forward]
    assert batch_norms(prog) == {"bn1": "a1"}
