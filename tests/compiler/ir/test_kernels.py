"""The module helpers (compiler/ir/ops/kernels.py) on their own: PyTorch (CPU, float64) as
the oracle, and the source that codegen copies into generated modules checked to be
exactly the module's, self-contained and importing only NumPy."""

import ast
import builtins
import inspect
from pathlib import Path

import numpy as np
import pytest

from bpc.compiler.ir.ops import HELPERS, kernels

try:
    import torch
except ImportError:  # CI installs no PyTorch: the comparisons with it skip, the rest runs
    torch = None
with_torch = pytest.mark.skipif(torch is None, reason="PyTorch, the oracle, is not installed")
F = torch.nn.functional if torch is not None else None
RNG = np.random.default_rng(7)
FUNCTIONS = {name: fn for name, fn in vars(kernels).items()
             if inspect.isfunction(fn) and fn.__module__ == kernels.__name__}


def t(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def close(got, want):
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the source
def test_kernels_import_only_numpy():
    tree = ast.parse(Path(kernels.__file__).read_text())
    imports = [ast.dump(node) for node in tree.body if isinstance(node, (ast.Import,
                                                                         ast.ImportFrom))]
    assert imports == [ast.dump(ast.parse("import numpy as np").body[0])]


def test_helpers_are_the_kernels_source():
    assert HELPERS.keys() == FUNCTIONS.keys()
    for name, fn in FUNCTIONS.items():
        assert HELPERS[name] == inspect.getsource(fn).rstrip("\n")
        assert HELPERS[name].startswith(f"def {name}(")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_helper_runs_alone(name):
    """A helper's copied source, run with nothing but ``np``, defines the same function
    and names nothing else (a generated module has only numpy and its own helpers)."""
    scope = {"np": np}
    exec(compile(HELPERS[name], f"<{name}>", "exec"), scope)
    function = ast.parse(HELPERS[name]).body[0]
    local = {a.arg for a in function.args.args + function.args.kwonlyargs}
    if function.args.vararg:
        local.add(function.args.vararg.arg)
    local |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name)
              and isinstance(n.ctx, ast.Store)}
    read = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    assert read - local - set(dir(builtins)) <= {"np"}
    x = RNG.normal(size=(2, 3, 4, 4))
    args = {"_index_add": (x, np.s_[:, 1], x[:, 1]), "_leaky_relu": (x, 0.1),
            "_im2col": (x, 2, 2), "_col2im": (RNG.normal(size=(2, 12, 9)), x.shape, 2, 2),
            "_max_pool": (x, 2, 2), "_avg_pool": (x, 2, 2),
            "_max_pool_mask": (x, kernels._max_pool(x, 2, 2), 2, 2),
            "_max_pool_grad": (x[..., :2, :2], kernels._max_pool_mask(
                x, kernels._max_pool(x, 2, 2), 2, 2), 2, 2),
            "_avg_pool_grad": (x[..., :2, :2], x.shape, 2, 2),
            "_embed_grad": IDS_AND_ROWS, "_embed_grad_sorted": IDS_AND_ROWS,
            "_masked_softmax": (x, np.tri(4, dtype=bool)),
            "_sinusoidal": (7, 6, np.float64), "_first_rows": (x, 1),
            "_pad_rows": (x, 4), "_one_hot": (IDS_AND_ROWS[0], 6, np.float32),
            "_stream": (x[:, 0], x, "hs"),
            "_matmul_rows": (x, x[0, 0]),
            "_minus_one_hot": (IDS_AND_ROWS[1], IDS_AND_ROWS[0] % 2)}.get(name, (x,))
    close(scope[name](*args), FUNCTIONS[name](*args))


# ----------------------------------------------------------------------------- embeddings
IDS_AND_ROWS = (RNG.integers(0, 5, size=(3, 4)), RNG.normal(size=(3, 4, 2)), 6)


@with_torch
@pytest.mark.parametrize("name", ["_embed_grad", "_embed_grad_sorted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_gradient_adds_repeated_ids_as_torch_does(name, dtype):
    """Both forms give the gradient torch's nn.Embedding gets (ids repeat, one id of the
    table is never used, a row id 0 and the last), keeping the dtype."""
    ids = np.array([[0, 3, 3], [5, 0, 3]])
    g = RNG.normal(size=(2, 3, 4)).astype(dtype)
    table = torch.zeros(6, 4, dtype=torch.float64, requires_grad=True)
    F.embedding(torch.as_tensor(ids), table).backward(t(g))
    got = getattr(kernels, name)(ids, g, 6)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, table.grad.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- elementwise
@with_torch
def test_sigmoid_and_softplus_against_torch_without_overflow():
    x = np.concatenate([RNG.normal(size=20) * 5, [-1000.0, -40.0, 0.0, 40.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        close(kernels._sigmoid(x), torch.sigmoid(t(x)))
        # torch returns x itself above its threshold 20, where log(1 + e^-x) < 3e-9
        np.testing.assert_allclose(kernels._softplus(x), F.softplus(t(x)), rtol=1e-9)


@with_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_sigmoid_and_softplus_against_torch_without_overflow(dtype):
    """The fast style's forms: 0.5 * tanh(x / 2) + 0.5 within the dtype's epsilon of the
    sigmoid everywhere (relatively, only from x = 0 up: below, 1 + tanh cancels, and the
    relative error grows as the sigmoid shrinks), max(x, 0) + log1p(exp(-|x|))
    relatively close; both keep the dtype, take scalars, write into ``out``, and never
    overflow."""
    eps = np.finfo(dtype).eps
    x = np.concatenate([RNG.normal(size=200) * 8, np.linspace(-1000, 1000, 2001),
                        [-1e30, -40.0, 0.0, 40.0, 1e30]]).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s, sp = kernels._sigmoid_tanh(x), kernels._softplus_log1p(x)
        want = torch.sigmoid(t(x)).numpy()
        assert s.dtype == sp.dtype == dtype
        np.testing.assert_allclose(s, want, rtol=0, atol=eps)
        half = want >= 0.5  # from x = 0 up: relatively exact too
        np.testing.assert_allclose(s[half], want[half], rtol=2 * eps)
        want_sp = np.logaddexp(0, x.astype(np.float64))
        np.testing.assert_allclose(sp, want_sp, rtol=4 * eps, atol=np.finfo(dtype).tiny)
        for fn, ref in ((kernels._sigmoid_tanh, kernels._sigmoid),
                        (kernels._softplus_log1p, kernels._softplus)):
            one = fn(dtype(0.3))
            assert one.dtype == dtype and np.isclose(one, ref(dtype(0.3)), rtol=4 * eps)
            buf = x.copy()
            assert fn(buf, out=buf) is buf
            np.testing.assert_array_equal(buf, fn(x))


@with_torch
def test_leaky_relu_against_torch():
    x = RNG.normal(size=(3, 4))
    close(kernels._leaky_relu(x, 0.2), F.leaky_relu(t(x), 0.2))


@with_torch
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_against_torch(axis):
    x = RNG.normal(size=(3, 4)) * 10
    x[0, 0] = 800.0  # the shift by the maximum keeps exp finite
    close(kernels._softmax(x, axis=axis), torch.softmax(t(x), dim=axis))


@with_torch
def test_masked_softmax_against_torch_and_an_empty_row():
    """Masked positions get weight 0 (torch: -inf before the softmax); a row masked whole
    is all 0 where torch gives NaN. A numeric mask keeps its nonzero positions."""
    x = RNG.normal(size=(2, 3, 4, 4)) * 10
    keep = RNG.random((2, 1, 4, 4)) > 0.4
    keep[0, 0, 1] = False
    with np.errstate(all="raise"):
        got = kernels._masked_softmax(x, keep, axis=-1)
    want = torch.softmax(t(x).masked_fill(~torch.as_tensor(keep), -np.inf), dim=-1)
    rows = keep.any(axis=-1, keepdims=True) & np.ones(x.shape, dtype=bool)
    close(got[rows], want.numpy()[rows])
    assert not got[~rows].any()
    close(kernels._masked_softmax(x, keep * 1.0, axis=2), kernels._masked_softmax(x, keep, 2))


@pytest.mark.parametrize("axis, keepdims", [(None, False), (None, True), (1, False),
                                            ((0, 2), True), (-1, True)])
@with_torch
def test_logsumexp_against_torch(axis, keepdims):
    x = RNG.normal(size=(2, 3, 4)) * 10
    x[1, 1, 1] = 900.0
    dims = tuple(range(3)) if axis is None else axis
    close(kernels._logsumexp(x, axis=axis, keepdims=keepdims),
          torch.logsumexp(t(x), dim=dims, keepdim=keepdims))


@pytest.mark.parametrize("x", [np.float64(0.3), np.float32(-2.0), np.array(7.0),
                               np.array([[1.0, 900.0], [3.0, -4.0]])])
@pytest.mark.parametrize("axis", [None, -1])
def test_logsumexp_shifted_is_logsumexp_for_scalars_too(x, axis):
    """The in-place form takes a NumPy scalar as well (a scalar's difference is a scalar,
    which cannot be an ``out=``: a random spec's logsumexp of a scalar had raised)."""
    if axis is not None and np.ndim(x) == 0:
        return
    close(kernels._logsumexp_shifted(x, axis=axis), kernels._logsumexp(x, axis=axis))
    close(kernels._logsumexp_shifted(x, axis=axis, keepdims=True),
          kernels._logsumexp(x, axis=axis, keepdims=True))


@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_minus_one_hot_is_minus_the_one_hot_table_in_any_buffer(shape):
    p, labels = RNG.normal(size=shape + (6,)), RNG.integers(0, 6, size=shape)
    want = p - kernels._one_hot(labels, 6, p.dtype)
    before = p.copy()
    close(kernels._minus_one_hot(p, labels), want)
    close(p, before)
    out = np.empty_like(p)
    assert kernels._minus_one_hot(p, labels, out=out) is out
    close(out, want)
    assert kernels._minus_one_hot(p, labels, out=p) is p
    close(p, want)


@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_minus_one_hot_subtracts_an_amount_per_label_in_the_dtype(shape):
    """A number, or one per label ([..., 1]: the softmax loss's scale times its kept
    mask); float32 stays float32."""
    p = RNG.normal(size=shape + (6,)).astype(np.float32)
    labels = RNG.integers(0, 6, size=shape)
    table = kernels._one_hot(labels, 6, np.float32)
    amount = RNG.normal(size=shape + (1,)).astype(np.float32)
    for by in (0.25, amount):
        got = kernels._minus_one_hot(p.copy(), labels, by)
        assert got.dtype == np.float32
        close(got, p - by * table)


@with_torch
def test_index_add_adds_into_a_copy():
    x = RNG.normal(size=(3, 4))
    before = x.copy()
    a, b = RNG.normal(size=(2, 4)), RNG.normal(size=(3, 2))
    out = kernels._index_add(x, np.s_[1:], a, np.s_[:, ::2], b)
    want = t(before).index_put((torch.arange(1, 3)[:, None], torch.arange(4)[None, :]),
                               t(a), accumulate=True)
    want[:, ::2] += t(b)
    close(out, want)
    close(x, before)


def test_matmul_rows_is_matmul_into_any_buffer():
    """One product over all rows: the same as matmul, fresh or into a buffer, also one
    whose rows are not a view of it (a transposed array) and a batch that is a view."""
    x, w = RNG.normal(size=(4, 2, 5, 3)), RNG.normal(size=(3, 6))
    want = np.matmul(x, w)
    close(kernels._matmul_rows(x, w), want)
    close(kernels._matmul_rows(np.swapaxes(x, 1, 2), w), np.matmul(np.swapaxes(x, 1, 2), w))
    for out in (np.empty(want.shape), np.empty(want.shape[::-1]).T):
        assert kernels._matmul_rows(x, w, out=out) is out
        close(out, want)


# ----------------------------------------------------------------------------- convolution
# x, kh, kw, stride, pad: per-axis (rows, columns) and windows that leave pixels out too
CONV = [((2, 3, 5, 4), 3, 2, 1, 1), ((1, 2, 7, 7), 3, 3, 2, 1), ((2, 1, 4, 6), 4, 2, 2, 0),
        ((1, 3, 3, 3), 1, 1, 1, 0), ((1, 1, 2, 3), 2, 3, 1, 0),
        ((1, 2, 7, 6), 5, 3, (1, 2), (2, 1)), ((2, 1, 8, 7), 3, 3, 2, 0),
        ((1, 1, 6, 9), 2, 4, (3, 2), (0, 1)), ((1, 1, 5, 5), 1, 1, 1, (1, 0))]


@with_torch
@pytest.mark.parametrize("shape, kh, kw, stride, pad", CONV, ids=str)
def test_im2col_and_col2im_against_torch_unfold_and_fold(shape, kh, kw, stride, pad):
    x = RNG.normal(size=shape)
    col = kernels._im2col(x, kh, kw, stride, pad)
    close(col, F.unfold(t(x), (kh, kw), padding=pad, stride=stride))
    # a view of x only for a 1x1 kernel at stride 1 without padding
    assert np.shares_memory(col, x) == ((kh, kw, stride, pad) == (1, 1, 1, 0))
    g = RNG.normal(size=col.shape)
    close(kernels._col2im(g, shape, kh, kw, stride, pad),
          F.fold(t(g), shape[2:], (kh, kw), padding=pad, stride=stride))


def test_conv_kernels_keep_float32():
    x = RNG.normal(size=(1, 2, 4, 4)).astype(np.float32)
    col = kernels._im2col(x, 3, 3, 1, 1)
    assert col.dtype == np.float32
    assert kernels._col2im(col, x.shape, 3, 3, 1, 1).dtype == np.float32
    for pool in (kernels._max_pool, kernels._avg_pool):
        assert pool(x, 2, 2).dtype == np.float32


# ----------------------------------------------------------------------------- pooling
# x, size, stride, pad: per-axis (rows, columns) and windows that leave pixels out too
POOL = [((2, 2, 4, 4), 2, 2, 0), ((1, 2, 5, 5), 3, 1, 1), ((2, 5, 8), 2, 3, 0),
        ((3, 4), 2, 1, 1), ((1, 1, 7, 7), 3, 2, 1), ((1, 2, 7, 6), (3, 2), (2, 1), (1, 0)),
        ((1, 1, 7, 7), 2, 2, 0), ((2, 7, 10), (2, 3), (3, 2), (1, 0)),
        ((1, 2, 9, 8), (4, 1), (2, 3), 0)]


def _image(shape, size, stride, pad):
    """The image size _max_pool_grad is given when the windows leave rows or columns
    out (None when they reach the padded image's last row and column)."""
    pairs = [(v, v) if isinstance(v, int) else v for v in (size, stride, pad)]
    left = [(n + 2 * p - k) % s for n, k, s, p in zip(shape[-2:], *pairs)]
    return tuple(shape[-2:]) if any(left) else None


def _torch_pool(pool, x, size, stride, pad):
    """torch pools [C, H, W] or [N, C, H, W]: a matrix gets a channel axis, then loses it."""
    if x.dim() == 2:
        return pool(x[None], size, stride, pad)[0]
    return pool(x, size, stride, pad)


@with_torch
@pytest.mark.parametrize("shape, size, stride, pad", POOL, ids=str)
def test_max_pool_its_mask_and_gradient_against_torch(shape, size, stride, pad):
    x = RNG.normal(size=shape)
    xt = t(x).requires_grad_()
    want = _torch_pool(F.max_pool2d, xt, size, stride, pad)
    out = kernels._max_pool(x, size, stride, pad)
    close(out, want.detach())
    g = RNG.normal(size=out.shape)
    want.backward(t(g))
    mask = kernels._max_pool_mask(x, out, size, stride, pad)
    assert mask.shape == (np.prod(np.broadcast_to(size, 2)),) + out.shape
    assert mask.dtype == bool
    image = _image(shape, size, stride, pad)
    close(kernels._max_pool_grad(g, mask, size, stride, pad, image), xt.grad)


def test_max_pool_gradient_splits_ties_evenly():
    x = np.ones((1, 1, 2, 2))
    out = kernels._max_pool(x, 2, 2, 0)
    mask = kernels._max_pool_mask(x, out, 2, 2, 0)
    close(kernels._max_pool_grad(np.full((1, 1, 1, 1), 8.0), mask, 2, 2, 0),
          np.full((1, 1, 2, 2), 2.0))


def test_pixels_no_window_reads_get_a_zero_gradient():
    """7x7 at 2x2, stride 2 (PyTorch's rule): the last row and column are left out, and
    the whole adjoint lands on the 6x6 pixels the windows read."""
    x = RNG.normal(size=(2, 3, 7, 7))
    out = kernels._max_pool(x, 2, 2)
    assert out.shape == (2, 3, 3, 3)
    mask = kernels._max_pool_mask(x, out, 2, 2)
    g = RNG.normal(size=out.shape)
    patches = RNG.normal(size=kernels._im2col(x, 2, 2, 2).shape)
    for dx, total in ((kernels._max_pool_grad(g, mask, 2, 2, image=(7, 7)), g.sum()),
                      (kernels._avg_pool_grad(g, x.shape, 2, 2), g.sum()),
                      (kernels._col2im(patches, x.shape, 2, 2, 2), patches.sum())):
        assert dx.shape == x.shape
        assert not dx[..., 6, :].any() and not dx[..., :, 6].any()
        assert np.isclose(dx.sum(), total)


@with_torch
@pytest.mark.parametrize("shape, size, stride, pad", POOL, ids=str)
def test_avg_pool_and_its_gradient_against_torch(shape, size, stride, pad):
    x = RNG.normal(size=shape)
    xt = t(x).requires_grad_()
    want = _torch_pool(F.avg_pool2d, xt, size, stride, pad)  # padding counts in the mean
    out = kernels._avg_pool(x, size, stride, pad)
    close(out, want.detach())
    g = RNG.normal(size=out.shape)
    want.backward(t(g))
    close(kernels._avg_pool_grad(g, x.shape, size, stride, pad), xt.grad)


# ----------------------------------------------------------------------------- one-hot
@pytest.mark.parametrize("shape", [(), (5,), (3, 4)])
def test_one_hot_is_rows_of_the_identity(shape):
    labels = RNG.integers(0, 7, size=shape)
    got = kernels._one_hot(labels, 7, np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.eye(7, dtype=np.float32)[labels])


# ----------------------------------------------------------------------------- positions
@pytest.mark.parametrize("dim", [6, 5])
def test_sinusoidal_is_vaswanis_table(dim):
    """PE(t, 2i) = sin(t / 10000^(2i / d)), PE(t, 2i + 1) = cos(t / 10000^(2i / d)),
    element by element (an odd width ends with a sine), in the dtype asked for."""
    table = kernels._sinusoidal(9, dim, np.float32)
    assert table.shape == (9, dim) and table.dtype == np.float32
    for t in range(9):
        for j in range(dim):
            angle = t / 10000 ** (2 * (j // 2) / dim)
            want = np.sin(angle) if j % 2 == 0 else np.cos(angle)
            assert abs(table[t, j] - want) < 1e-6
    np.testing.assert_array_equal(table[0, 1::2], 1)  # cos(0) at position 0


def test_first_rows_refuses_a_sequence_longer_than_its_table():
    table = RNG.normal(size=(4, 3))
    assert kernels._first_rows(table, 2).base is table  # a view, not a copy
    with pytest.raises(ValueError, match="5 steps, but the table of positions holds 4"):
        kernels._first_rows(table, 5)
    np.testing.assert_array_equal(kernels._pad_rows(table[:2], 4)[2:], 0)


def test_a_stream_of_another_batch_size_is_refused_not_broadcast():
    state = np.zeros((4, 3))
    assert kernels._stream(state, np.zeros((4, 7, 2)), "hs") is state
    with pytest.raises(ValueError, match="state 'hs' carries 4 streams but this batch has "
                                         "1 rows"):
        kernels._stream(state, np.zeros((1, 7, 2)), "hs")
