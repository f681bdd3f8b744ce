"""Data: files, built-ins, shape checks naming the input and dimension, labels, batching."""

import builtins
import urllib.request

import numpy as np
import pytest

from conftest import REPO, run_bpc
from bpc.runtime import data
from bpc.runtime.errors import UserError
from bpc.runtime.loader import load_model


@pytest.fixture(scope="module")
def two_layer():
    return load_model(REPO / "generated" / "two_layer.py")


@pytest.fixture(scope="module")
def spiral():
    return load_model(REPO / "generated" / "spiral.py")


def test_npz_with_test_prefix(tmp_path, two_layer):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 784)), t=np.eye(10)[:5], test_x=np.zeros((2, 784)),
             test_t=np.eye(10)[:2])
    ds = data.load_file(path, two_layer)
    assert ds.size(two_layer) == 5 and ds.size(two_layer, "test") == 2
    data.conform(ds.train, two_layer)


def test_csv_columns(tmp_path):
    m = load_model(REPO / "generated" / "xor.py")
    path = tmp_path / "xor.csv"
    path.write_text("x0,x1,t\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    ds = data.load_file(path, m)
    arrays = data.conform(ds.train, m)
    assert arrays["x"].shape == (4, 2) and arrays["t"].shape == (4, 1)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="no column for 'x'"):
        data.load_file(path, m)


def test_csv_with_a_byte_order_mark(tmp_path):
    """A spreadsheet program's "CSV UTF-8" starts with a byte-order mark: the first column
    is still 'x0', not '\ufeffx0'; a bad cell is still located."""
    m = load_model(REPO / "generated" / "xor.py")
    path = tmp_path / "xor.csv"
    path.write_bytes(b"\xef\xbb\xbfx0,x1,t\r\n0,0,0\r\n0,1,1\r\n1,0,1\r\n1,1,0\r\n")
    arrays = data.conform(data.load_file(path, m).train, m)
    assert arrays["x"].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    path.write_bytes(b"\xef\xbb\xbfx0,x1,t\n0,0,0\n0,oops,1\n")
    with pytest.raises(UserError, match=r"xor.csv:3"):
        data.load_file(path, m)


@pytest.mark.parametrize("name,kwargs,shape", [("xor", {}, (4, 2)), ("spiral", {"n": 10}, None),
                                               ("sine", {"n": 50}, (40, 1))])
def test_builtins(name, kwargs, shape):
    m = load_model(REPO / "generated" / f"{'spiral' if name == 'spiral' else name}.py")
    ds = data.builtin(name, m, seed=0, **kwargs)
    arrays = data.conform(ds.train, m)
    if shape:
        assert arrays["x"].shape == shape
    again = data.builtin(name, m, seed=0, **kwargs)
    np.testing.assert_array_equal(ds.train["x"], again.train["x"])  # seeded


def test_spiral_has_three_balanced_classes(spiral):
    ds = data.builtin("spiral", spiral, seed=0, n=100, classes=3)
    t = np.concatenate([ds.train["t"], ds.test["t"]])
    assert np.bincount(t).tolist() == [100, 100, 100]


def test_shape_mismatch_names_input_and_dimension(two_layer):
    with pytest.raises(UserError) as info:
        data.conform({"x": np.zeros((5, 783)), "t": np.eye(10)[:5]}, two_layer, "training data")
    assert "'x' has 783 at axis 1" in info.value.message and "784" in info.value.message
    with pytest.raises(UserError) as info:
        data.conform({"x": np.zeros((5, 784)), "t": np.eye(10)[:4]}, two_layer, "training data")
    msg = info.value.message
    assert "dimension N of 't' (axis 0) is 4" in msg and "'x' (axis 0) has 5" in msg
    with pytest.raises(UserError, match="no array for 't'"):
        data.conform({"x": np.zeros((5, 784))}, two_layer)


def test_labels_and_one_hot_convert(two_layer, spiral):
    labels = np.array([3, 1, 4])
    arrays = data.conform({"x": np.zeros((3, 784)), "t": labels}, two_layer)
    np.testing.assert_array_equal(arrays["t"], np.eye(10)[labels])
    arrays = data.conform({"x": np.zeros((3, 2)), "t": np.eye(3)[[2, 0, 1]]}, spiral)
    np.testing.assert_array_equal(arrays["t"], [2, 0, 1])
    with pytest.raises(UserError, match="0..9"):
        data.conform({"x": np.zeros((2, 784)), "t": np.array([3, 12])}, two_layer)


def test_softmax_targets_must_be_distributions(two_layer):
    with pytest.raises(UserError, match="summing to 1"):
        data.conform({"x": np.zeros((2, 784)), "t": np.ones((2, 10))}, two_layer)


def test_batches_cover_everything_once_in_a_seeded_order():
    arrays = {"x": np.arange(10), "t": np.arange(10) * 2}
    got = list(data.batches(arrays, 4, np.random.default_rng(0)))
    assert [len(b["x"]) for b in got] == [4, 4, 2]
    xs = np.concatenate([b["x"] for b in got])
    assert sorted(xs.tolist()) == list(range(10)) and xs.tolist() != list(range(10))
    assert all(np.array_equal(b["t"], b["x"] * 2) for b in got)
    again = np.concatenate([b["x"] for b in data.batches(arrays, 4, np.random.default_rng(0))])
    np.testing.assert_array_equal(xs, again)


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch, two_layer):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UserError) as info:
        data.digits(np.random.default_rng(0))
    assert "scikit-learn" in info.value.message and "backprop-compiler[digits]" in info.value.hint


def test_digits_loads_when_installed():
    pytest.importorskip("sklearn")
    m = load_model(REPO / "generated" / "digits.py")
    ds = data.builtin("digits", m, seed=0)
    arrays = data.conform(ds.train, m)
    assert arrays["x"].shape[1] == 64 and 0.0 <= arrays["x"].min() and arrays["x"].max() <= 1.0
    assert ds.size(m) + ds.size(m, "test") == 1797


def test_mnist_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("BPC_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as info:
        data.mnist(np.random.default_rng(0))
    assert "could not download mnist.npz" in info.value.message
    assert str(tmp_path) in info.value.hint


def test_download_checksum_and_cache(monkeypatch, tmp_path):
    import hashlib
    import io

    monkeypatch.setenv("BPC_CACHE", str(tmp_path))
    payload = b"hello data"
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    good = hashlib.sha256(payload).hexdigest()
    path = data.fetch("http://example.invalid/f", "f.bin", good)
    assert path.read_bytes() == payload
    data.fetch("http://example.invalid/f", "f.bin", good)
    assert len(calls) == 1  # cached, verified, not fetched again
    with pytest.raises(UserError, match="corrupt"):
        data.fetch("http://example.invalid/g", "g.bin", "0" * 64)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def test_data_flag_parsing():
    assert data.parse_data_flag("spiral:n=50,classes=4,noise=0.1") == {
        "name": "spiral", "n": 50, "classes": 4, "noise": 0.1}
    assert data.parse_data_flag("runs/train.npz") == {"path": "runs/train.npz"}


def test_a_download_never_follows_a_planted_link_or_reads_a_fifo(monkeypatch, tmp_path):
    import hashlib
    import io
    import os

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("BPC_CACHE", str(cache))
    payload = b"hello data"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    good = hashlib.sha256(payload).hexdigest()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (cache / "f.bin").symlink_to(victim)
    (cache / "f.bin.part").symlink_to(victim)  # the old temporary's name
    os.mkfifo(cache / "g.bin")  # read, it would block for ever
    stale = cache / ".f.bin.abcd1234.part"  # a killed download's temporary
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    assert data.fetch("http://example.invalid/f", "f.bin", good).read_bytes() == payload
    assert data.fetch("http://example.invalid/g", "g.bin", good).read_bytes() == payload
    assert victim.read_bytes() == b"keep me" and not (cache / "f.bin").is_symlink()
    assert not stale.exists()


def test_a_count_written_as_a_whole_float_is_that_count(tmp_path):
    """'spiral(n=1e2)' in a spec and '--data spiral:n=1e2,classes=3.0' are n=100 and 3
    classes, as 'epochs = 2e1' is 20 epochs (no internal TypeError)."""
    spec = (REPO / "specs" / "spiral.bp").read_text()
    path = tmp_path / "spiral.bp"
    path.write_text(spec.replace("data spiral(n=100, classes=3)", "data spiral(n=1e2)"))
    r = run_bpc("train", path, "--epochs", "1", "--quiet", "--out", tmp_path / "run")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    m = load_model(REPO / "generated" / "spiral.py")
    floats = data.load(data.parse_data_flag("spiral:n=1e2,classes=3.0"), m, seed=0)
    ints = data.load(data.parse_data_flag("spiral:n=100,classes=3"), m, seed=0)
    for name, value in ints.train.items():
        assert np.array_equal(floats.train[name], value)
