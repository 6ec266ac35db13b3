"""fastconv.functional against torch.nn.functional: grids over every function and option, both
input kinds (NumPy arrays and torch tensors), channels_last tensors, every pooling algorithm,
errors in PyTorch's kinds, hypothesis draws, and seed 003's CNN.

PyTorch is the oracle here (the suite's NumPy oracle speaks TF's rules); max pooling, its
indices, unpooling and padding must match bit for bit, the rest to the suite's tolerance.
"""

import math

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import dispatch
from fastconv.functional import FunctionalError
from fastconv.testing import assert_close, assert_exact

torch = pytest.importorskip("torch")
TF = torch.nn.functional
DTYPES = (np.float32, np.float64)


def _data(rng, shape, dtype, specials=False):
    x = rng.standard_normal(shape).astype(dtype)
    if specials and x.size > 8:  # NaN, infinities and ties: PyTorch's max rules
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, size=max(4, flat.size // 25), replace=False)
        flat[picks[0::4]] = np.nan
        flat[picks[1::4]] = -np.inf
        flat[picks[2::4]] = np.inf
        flat[picks[3::4]] = 0.0
    return x


def _call(name, kind, x, *args, **kwargs):
    """F.name with ``x`` as ``kind`` ("numpy" or "torch") against torch's; returns both as
    NumPy (tuples elementwise), having checked the result's kind."""
    xt = torch.from_numpy(x)
    given = xt if kind == "torch" else x
    converted = tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args)
    mine = getattr(F, name)(given, *(converted if kind == "torch" else args), **kwargs)
    theirs = getattr(TF, name)(xt, *converted, **kwargs)
    return _as_numpy(mine, kind), _as_numpy(theirs, "torch")


def _as_numpy(value, kind):
    if isinstance(value, tuple):
        return tuple(_as_numpy(v, kind) for v in value)
    if kind == "torch":
        assert isinstance(value, torch.Tensor), type(value)
        return value.numpy()
    assert isinstance(value, np.ndarray), type(value)
    return value


def _batch(x, batched):
    return x if batched else x[0]


# ----------------------------------------------------------------------------- convolutions

@pytest.mark.grid(n=[1, 2, 3], stride=[1, 2], padding=[0, 1, "same", "valid", "pair"],
                  dilation=[1, 2], groups=[1, 2], bias=[False, True], dtype=DTYPES,
                  kind=["numpy", "torch"], batched=[True, False], random=6)
def test_conv(case, rng):
    n = case.n
    stride = 1 if case.padding == "same" else case.stride
    padding = (1, 0, 2)[:n] if case.padding == "pair" else case.padding
    x = _batch(_data(rng, (2, 4) + (7, 6, 5)[:n], case.dtype), case.batched)
    w = _data(rng, (6, 4 // case.groups) + (3, 2, 3)[:n], case.dtype)
    b = _data(rng, (6,), case.dtype) if case.bias else None
    mine, theirs = _call(f"conv{n}d", case.kind, x, w, b, stride=stride, padding=padding,
                         dilation=case.dilation, groups=case.groups)
    assert_close(mine, theirs, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], stride=[1, 2, 3], padding=[0, 1, 2], output_padding=[0, 1],
                  dilation=[1, 2], groups=[1, 2], bias=[False, True], dtype=DTYPES,
                  kind=["numpy", "torch"], random=6)
def test_conv_transpose(case, rng):
    n = case.n
    if case.output_padding >= max(case.stride, case.dilation):
        pytest.skip("PyTorch refuses it (tested in test_errors_as_torch)")
    x = _data(rng, (2, 4) + (4, 5, 3)[:n], case.dtype)
    w = _data(rng, (4, 3) + (3, 2, 3)[:n], case.dtype)
    b = _data(rng, (3 * case.groups,), case.dtype) if case.bias else None
    mine, theirs = _call(f"conv_transpose{n}d", case.kind, x, w, b, stride=case.stride,
                         padding=case.padding, output_padding=case.output_padding,
                         groups=case.groups, dilation=case.dilation)
    assert_close(mine, theirs, case.dtype)


def test_conv_transpose_output_padding_beyond_the_stride(rng):
    """output_padding >= stride (allowed below the dilation): zero rows after the input."""
    x = _data(rng, (1, 2, 4, 5), np.float64)
    w = _data(rng, (2, 3, 3, 2), np.float64)
    b = _data(rng, (3,), np.float64)
    mine, theirs = _call("conv_transpose2d", "numpy", x, w, b, stride=1, padding=0,
                         output_padding=(2, 1), dilation=3)
    assert_close(mine, theirs, np.float64)


# ----------------------------------------------------------------------------- pooling

#: (kernel, stride) per rank. Channels-first 1-D/2-D windows up to 4 get a kernel compiled for
#: their shape (~3 s each), so those here are the suite's palette (conftest's
#: PLANAR_POOL_WINDOWS, compiled by the TF-rule tests too) or larger than 4 (no compile).
WINDOWS = {1: [(3, 2), (5, 1), (5, 3), (5, 2)], 2: [(2, 2), (3, 2), (5, 1), (5, 3)],
           3: [(2, 2), (3, 2), (2, 1), (3, 3)]}

@pytest.mark.grid(n=[1, 2, 3], window=[0, 1, 2, 3], default_stride=[False, True],
                  padding=[0, 1], dilation=[1, 2], ceil_mode=[False, True],
                  return_indices=[False, True], dtype=DTYPES, kind=["numpy", "torch"],
                  batched=[True, False], random=8)
def test_max_pool(case, rng):
    n = case.n
    kernel, stride = WINDOWS[n][case.window]
    stride = None if case.default_stride else stride
    x = _batch(_data(rng, (2, 3) + (11, 9, 8)[:n], case.dtype, specials=True), case.batched)
    mine, theirs = _call(f"max_pool{n}d", case.kind, x, kernel, stride,
                         min(case.padding, kernel // 2), case.dilation, case.ceil_mode,
                         case.return_indices)
    if case.return_indices:
        assert_exact(mine[0], theirs[0], case.dtype)
        assert_exact(mine[1], theirs[1], np.int64)
    else:
        assert_exact(mine, theirs, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], window=[0, 1, 2, 3], default_stride=[False, True],
                  padding=[0, 1], ceil_mode=[False, True], count_include_pad=[True, False],
                  divisor_override=[None, 3], dtype=DTYPES, kind=["numpy", "torch"], random=6)
def test_avg_pool(case, rng):
    n = case.n
    kernel, stride = WINDOWS[n][case.window]
    stride = None if case.default_stride else stride
    x = _data(rng, (2, 3) + (11, 9, 8)[:n], case.dtype)
    options = {} if n == 1 else {"divisor_override": case.divisor_override}
    mine, theirs = _call(f"avg_pool{n}d", case.kind, x, kernel, stride,
                         min(case.padding, kernel // 2), case.ceil_mode,
                         case.count_include_pad, **options)
    assert_close(mine, theirs, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], norm_type=[1, 2, 3.5, math.inf, -math.inf],
                  window=[0, 1, 2, 3], default_stride=[False, True], ceil_mode=[False, True],
                  dtype=DTYPES, kind=["numpy", "torch"])
def test_lp_pool(case, rng):
    n = case.n
    kernel, stride = WINDOWS[n][case.window]
    x = np.abs(_data(rng, (2, 3) + (11, 9, 8)[:n], case.dtype))  # real powers of x >= 0
    mine, theirs = _call(f"lp_pool{n}d", case.kind, x, case.norm_type, kernel,
                         None if case.default_stride else stride, case.ceil_mode)
    assert_close(mine, theirs, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], kind_of_pool=["avg", "max"],
                  output_size=["one", "divides", "uneven", "none", "larger"],
                  return_indices=[False, True], dtype=DTYPES, kind=["numpy", "torch"],
                  batched=[True, False])
def test_adaptive_pool(case, rng):
    n = case.n
    spatial = {1: (10,), 2: (8, 6), 3: (6, 4, 5)}[n]  # "divides": windows 5, 2x2 (palette)
    x = _batch(_data(rng, (2, 3) + spatial, case.dtype, specials=case.kind_of_pool == "max"),
               case.batched)
    size = {"one": 1, "divides": {1: (2,), 2: (4, 3), 3: (3, 2, 5)}[n],
            "uneven": (4, 3, 2)[:n], "none": (None, 3, 2)[:n], "larger": (11, 9, 8)[:n]}
    if n == 1 and case.output_size == "none":
        pytest.skip("PyTorch's 1-D adaptive pools take no None")
    output_size = size[case.output_size]
    name = f"adaptive_{case.kind_of_pool}_pool{n}d"
    if case.kind_of_pool == "max":
        mine, theirs = _call(name, case.kind, x, output_size, case.return_indices)
        if case.return_indices:
            assert_exact(mine[0], theirs[0], case.dtype)
            assert_exact(mine[1], theirs[1], np.int64)
        else:
            assert_exact(mine, theirs, case.dtype)
    else:
        mine, theirs = _call(name, case.kind, x, output_size)
        assert_close(mine, theirs, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], kernel=[2, 3], stride=[None, 1, 2], padding=[0, 1],
                  output_size=[False, True], dtype=DTYPES, kind=["numpy", "torch"])
def test_max_unpool(case, rng):
    n = case.n
    x = torch.from_numpy(_data(rng, (2, 3) + (9, 8, 7)[:n], case.dtype))
    padding = min(case.padding, case.kernel // 2)
    pooled, indices = getattr(TF, f"max_pool{n}d")(x, case.kernel, case.stride, padding,
                                                    return_indices=True)  # torch's pooling
    output_size = tuple(x.shape[2:]) if case.output_size else None
    args = (pooled, indices) if case.kind == "torch" else (pooled.numpy(), indices.numpy())
    unpool = getattr(F, f"max_unpool{n}d")
    try:
        theirs = getattr(TF, f"max_unpool{n}d")(pooled, indices, case.kernel, case.stride,
                                                padding, output_size)
    except RuntimeError:  # the default output size is too small for the indices
        with pytest.raises(RuntimeError, match="invalid max index"):
            unpool(*args, case.kernel, case.stride, padding, output_size)
        return
    mine = unpool(*args, case.kernel, case.stride, padding, output_size)
    assert_exact(_as_numpy(mine, case.kind), theirs.numpy(), case.dtype)


@pytest.mark.grid(mode=["constant", "reflect", "replicate", "circular"],
                  pad=[(1, 2), (0, 3, 2, 1), (-1, 2, 1, -2), (1, 1, 2, 0, 0, 1), (2, -1)],
                  rank=[2, 3, 4, 5], dtype=DTYPES, kind=["numpy", "torch"])
def test_pad(case, rng):
    dims = len(case.pad) // 2
    if case.mode != "constant" and case.rank not in (dims + 1, dims + 2):
        pytest.skip("PyTorch refuses it (tested in test_errors_as_torch)")
    if case.rank < dims:
        pytest.skip("more pads than dims")
    x = _data(rng, (2, 3, 4, 5, 6)[-case.rank:], case.dtype)
    value = {"value": 1.5} if case.mode == "constant" else {}
    mine, theirs = _call("pad", case.kind, x, case.pad, case.mode, **value)
    assert_exact(mine, theirs, case.dtype)


# ----------------------------------------------------------------------------- layouts, algorithms

@pytest.mark.parametrize("name,args", [
    ("conv2d", lambda rng: (torch.from_numpy(_data(rng, (6, 2, 3, 3), np.float32)), None, 1, 1,
                            1, 2)),
    ("max_pool2d", lambda rng: (3, 2, 1)),
    ("avg_pool2d", lambda rng: (3, 2, 1)),
    ("adaptive_avg_pool2d", lambda rng: ((3, 4),)),
])
def test_channels_last_tensors_run_in_place_and_stay_channels_last(name, args, rng):
    x = torch.from_numpy(_data(rng, (2, 4, 9, 8), np.float32)).contiguous(
        memory_format=torch.channels_last)
    arguments = args(rng)
    mine = getattr(F, name)(x, *arguments)
    theirs = getattr(TF, name)(x, *arguments)
    assert mine.is_contiguous(memory_format=torch.channels_last)
    assert_close(mine.contiguous().numpy(), theirs.contiguous().numpy(), np.float32)


@pytest.mark.parametrize("algorithm", ["planar", "direct", "numpy"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_pooling_algorithm_follows_torch(algorithm, layout, dtype, rng):
    """PyTorch's max (NaN wins) and count_include_pad averages in each TF-rule algorithm,
    and the window-table kernels (forced to their NumPy tier too)."""
    if algorithm == "planar" and layout == "channels_last":
        pytest.skip("the planar kernels read channels-first data")
    x = torch.from_numpy(_data(rng, (2, 3, 9, 8), dtype, specials=True))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    clean = torch.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)
    with dispatch.use_algorithm(algorithm):
        for k, s, p in [(2, 2, 0), (3, 2, 1), (5, 3, 2)]:
            assert_exact(F.max_pool2d(x, k, s, p).contiguous().numpy(),
                         TF.max_pool2d(x, k, s, p).contiguous().numpy(), dtype)
            assert_close(F.avg_pool2d(clean, k, s, p, ceil_mode=True).contiguous().numpy(),
                         TF.avg_pool2d(clean, k, s, p, ceil_mode=True).contiguous().numpy(), dtype)
    table = "tables" if algorithm != "numpy" else "numpy"
    with dispatch.use_algorithm(table):
        y, i = F.max_pool2d(x, 3, 2, 1, dilation=2, return_indices=True)
        ty, ti = TF.max_pool2d(x, 3, 2, 1, dilation=2, return_indices=True)
        assert_exact(y.contiguous().numpy(), ty.contiguous().numpy(), dtype)
        assert_exact(i.contiguous().numpy(), ti.contiguous().numpy(), np.int64)
        assert_close(F.avg_pool2d(clean, 3, 2, 1, divisor_override=4).contiguous().numpy(),
                     TF.avg_pool2d(clean, 3, 2, 1, divisor_override=4).contiguous().numpy(),
                     dtype)
        assert_close(F.lp_pool2d(clean.abs(), 2.5, 3, 2).contiguous().numpy(),
                     TF.lp_pool2d(clean.abs(), 2.5, 3, 2).contiguous().numpy(), dtype)
        assert_exact(F.adaptive_max_pool2d(x, (4, 3)).contiguous().numpy(),
                     TF.adaptive_max_pool2d(x, (4, 3)).contiguous().numpy(), dtype)


def test_inputs_are_left_unchanged_and_results_are_new(rng):
    x = _data(rng, (2, 3, 8, 8), np.float32, specials=True)
    w = _data(rng, (4, 3, 3, 3), np.float32)
    before = x.copy(), w.copy()
    outs = [F.conv2d(x, w, padding=1), F.max_pool2d(x, 2), F.avg_pool2d(x, 3, 1, 1),
            F.pad(x, (1, 1)), F.adaptive_avg_pool2d(x, 3)]
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    assert not any(np.shares_memory(out, x) for out in outs)


def test_tensors_that_require_grad_are_read_detached(rng):
    w = torch.nn.Parameter(torch.from_numpy(_data(rng, (4, 3, 3, 3), np.float32)))
    x = torch.from_numpy(_data(rng, (1, 3, 6, 6), np.float32)).requires_grad_()
    out = F.conv2d(x, w)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    assert_close(out.numpy(), TF.conv2d(x, w).detach().numpy(), np.float32)


# ----------------------------------------------------------------------------- errors

def _bad_calls():
    x4 = np.zeros((1, 2, 5, 5), np.float32)
    w = np.zeros((4, 2, 3, 3), np.float32)
    return {
        "same-strided": lambda f, t: f.conv2d(t(x4), t(w), stride=2, padding="same"),
        "padding-string": lambda f, t: f.conv2d(t(x4), t(w), padding="full"),
        "weight-rank": lambda f, t: f.conv2d(t(x4), t(w[0])),
        "channels": lambda f, t: f.conv2d(t(x4), t(np.zeros((4, 3, 3, 3), np.float32))),
        "groups-divide": lambda f, t: f.conv2d(t(x4), t(np.zeros((3, 1, 3, 3), np.float32)),
                                               groups=2),
        "bias-size": lambda f, t: f.conv2d(t(x4), t(w), t(np.zeros(3, np.float32))),
        "kernel-too-big": lambda f, t: f.conv2d(t(x4), t(np.zeros((4, 2, 7, 7), np.float32))),
        "negative-padding": lambda f, t: f.conv2d(t(x4), t(w), padding=-1),
        "zero-stride": lambda f, t: f.conv2d(t(x4), t(w), stride=0),
        "input-rank": lambda f, t: f.conv2d(t(np.zeros((5, 5), np.float32)), t(w)),
        "dtype-mix": lambda f, t: f.conv2d(t(x4), t(w.astype(np.float64))),
        "output-padding": lambda f, t: f.conv_transpose2d(
            t(x4), t(np.zeros((2, 3, 3, 3), np.float32)), stride=2, output_padding=2),
        "pool-pad-half": lambda f, t: f.max_pool2d(t(x4), 2, 1, 2),
        "pool-too-small": lambda f, t: f.max_pool2d(t(x4), 6),
        "avg-divisor-zero": lambda f, t: f.avg_pool2d(t(x4), 2, divisor_override=0),
        "unpool-index": lambda f, t: f.max_unpool2d(t(x4), t(np.full((1, 2, 5, 5), 100)), 2),
        "unpool-output-size": lambda f, t: f.max_unpool2d(t(x4), t(np.zeros((1, 2, 5, 5),
                                                                              np.int64)), 2,
                                                          output_size=(20, 20)),
        "pad-odd": lambda f, t: f.pad(t(x4), (1, 2, 3)),
        "pad-reflect-size": lambda f, t: f.pad(t(x4), (5, 0), mode="reflect"),
        "pad-mode-dims": lambda f, t: f.pad(t(x4), (1, 1), mode="replicate"),
        "pad-circular-twice": lambda f, t: f.pad(t(x4[0]), (6, 0), mode="circular"),
        "adaptive-negative": lambda f, t: f.adaptive_avg_pool2d(t(x4), (-1, 2)),
    }


@pytest.mark.parametrize("label", sorted(_bad_calls()))
def test_errors_as_torch(label):
    """Every bad call raises before any kernel runs, as both ValueError (or TypeError) and
    RuntimeError, where PyTorch raises too (RuntimeError, ValueError or their subclasses)."""
    call = _bad_calls()[label]
    with pytest.raises((RuntimeError, ValueError)):
        call(TF, torch.from_numpy)
    for to_input in (np.asarray, torch.from_numpy):
        with pytest.raises(RuntimeError) as raised:
            call(F, to_input)
        assert isinstance(raised.value, (ValueError, TypeError)), type(raised.value)
        assert len(str(raised.value)) > 10


def test_zero_channels_are_refused():
    """Where PyTorch computes zeros from nothing (a conv over zero input channels), fastconv
    says so instead, as its tf.nn ops do."""
    with pytest.raises(FunctionalError, match="zero channels"):
        F.conv2d(np.zeros((1, 0, 5, 5), np.float32), np.zeros((4, 0, 3, 3), np.float32))


def test_type_errors_name_the_argument():
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(TypeError, match="input must be"):
        F.conv2d([[1.0]], np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.max_pool2d(x.astype(np.int32), 2)
    with pytest.raises(TypeError, match="weight"):
        F.conv2d(x, "weights")
    assert issubclass(FunctionalError, RuntimeError) and issubclass(FunctionalError, ValueError)


# ----------------------------------------------------------------------------- properties

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@given(size=st.tuples(st.integers(3, 12), st.integers(3, 12)), kernel=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       ceil_mode=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_matches_torch_property(size, kernel, stride, padding, dilation, ceil_mode,
                                         seed):
    padding = min(padding, kernel // 2)
    x = torch.from_numpy(_data(np.random.default_rng(seed), (1, 2) + size, np.float32,
                               specials=True))
    try:
        expected = TF.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
        return
    got = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
    assert_exact(got[0].numpy(), expected[0].numpy(), np.float32)
    assert_exact(got[1].numpy(), expected[1].numpy(), np.int64)


@given(size=st.tuples(st.integers(2, 10), st.integers(2, 10)),
       window=st.sampled_from(WINDOWS[2]), padding=st.integers(0, 2), ceil_mode=st.booleans(),
       count_include_pad=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool_matches_torch_property(size, window, padding, ceil_mode, count_include_pad,
                                         seed):
    kernel, stride = window  # the compiled-window palette (see WINDOWS)
    padding = min(padding, kernel // 2)
    x = torch.from_numpy(_data(np.random.default_rng(seed), (2, 3) + size, np.float64))
    try:
        expected = TF.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
        return
    got = F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    assert_close(got.numpy(), expected.numpy(), np.float64)


@given(size=st.integers(1, 12), out=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_adaptive_windows_match_torch_property(size, out, seed):
    x = torch.from_numpy(_data(np.random.default_rng(seed), (1, 2, size), np.float64,
                               specials=True))
    got = F.adaptive_max_pool1d(x, out, return_indices=True)
    expected = TF.adaptive_max_pool1d(x, out, return_indices=True)
    assert_exact(got[1].numpy(), expected[1].numpy(), np.int64)
    clean = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    assert_close(F.adaptive_avg_pool1d(clean, out).numpy(),
                 TF.adaptive_avg_pool1d(clean, out).numpy(), np.float64)


@given(size=st.tuples(st.integers(1, 8), st.integers(1, 8)), kernel=st.integers(1, 3),
       stride=st.integers(1, 3), padding=st.integers(0, 3), output_padding=st.integers(0, 2),
       dilation=st.integers(1, 3), groups=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_conv_transpose_matches_torch_property(size, kernel, stride, padding, output_padding,
                                               dilation, groups, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(_data(rng, (1, 2) + size, np.float64))
    w = torch.from_numpy(_data(rng, (2, 2, kernel, kernel), np.float64))
    try:
        expected = TF.conv_transpose2d(x, w, None, stride, padding, output_padding, groups,
                                       dilation)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            F.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
        return
    got = F.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    assert_close(got.numpy(), expected.numpy(), np.float64)


# ----------------------------------------------------------------------------- seed 003

class Seed003CNN(torch.nn.Module):
    """Seed 003's PyTorch MNIST CNN: two 3x3 convs (padding 1) with ReLU and 2x2 max pooling,
    then Linear(7 * 7 * 64, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(7 * 7 * 64, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def test_seed_003_cnn_runs_through_functional_equal_to_torch():
    torch.manual_seed(3)
    model = Seed003CNN().eval()
    images = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        expected = model(images)
        y = F.max_pool2d(torch.relu(F.conv2d(images, model.conv1.weight, model.conv1.bias,
                                             padding=1)), 2)
        y = F.max_pool2d(torch.relu(F.conv2d(y, model.conv2.weight, model.conv2.bias,
                                             padding=1)), 2)
        got = model.fc(y.flatten(1))
    assert tuple(y.shape) == (16, 64, 7, 7)
    assert_close(got.numpy(), expected.numpy(), np.float32)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_compare_peers_torch_checks_and_times_its_cases():
    """`fastconv compare --functional`'s rows: equal to torch, three timings (two where tf.nn
    has no such op)."""
    from fastconv import compare_torch

    cases = [c for c in compare_torch.CASES if c.name in ("seed004_pool1d", "max_unpool1d")]
    results = compare_torch.run(cases, repeat=1)
    assert [r.error for r in results] == ["", ""] and all(r.equal for r in results)
    assert all(r.functional_ms > 0 and r.torch_ms > 0 for r in results)
    assert results[0].api_ms > 0 and math.isnan(results[1].api_ms)
    assert "cases equal to torch" in compare_torch.summary(results)


def test_docstring_examples_run():
    """Every public function's numpydoc example (the modules' doctests) runs as written."""
    import doctest
    import importlib

    for name in ("fastconv.functional", "fastconv.functional.conv",
                 "fastconv.functional.pooling", "fastconv.functional.padding",
                 "fastconv.functional.arguments"):
        failures, tried = doctest.testmod(importlib.import_module(name),
                                          optionflags=doctest.NORMALIZE_WHITESPACE)
        assert tried > 0 and failures == 0, name
