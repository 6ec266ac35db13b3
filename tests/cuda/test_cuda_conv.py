"""The CUDA conv kernel against the CPU kernels (every case) and TensorFlow (a subset).

Shapes are tiny but, with the tiny tiles of ``conftest.TINY`` (2x3 output pixels x 4 output
channels per block, 2 input channels per stage), every case spans several blocks, cuts tiles
at the right and bottom edges, leaves a partial block of output channels and a partial stage
of input channels.
"""

import numpy as np
import pytest

import fastconv
import fastconv.config

F32, F64 = np.float32, np.float64
CONVS = {1: fastconv.conv1d, 2: fastconv.conv2d, 3: fastconv.conv3d}
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
SIZES = {1: (11,), 2: (6, 7), 3: (3, 5, 4)}
BATCH = {1: 2, 2: 2, 3: 1}  # the simulator runs every GPU thread in Python: keep 3-D small
KERNELS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
EXPLICIT = {1: ((2, 1),), 2: ((1, 2), (0, 1)), 3: ((1, 0), (0, 2), (1, 1))}
GROUP_IN, GROUP_OUT = 3, 5  # a partial stage (3 = 2 + 1) and a partial channel block (5 = 4 + 1)


def _shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def _conv_case(n, case, rand):
    channels_first = case.layout == "first"
    groups = case.groups
    x = rand(_shape(BATCH[n], GROUP_IN * groups, SIZES[n], channels_first), case.dtype)
    w = rand(KERNELS[n] + (GROUP_IN, GROUP_OUT * groups), case.dtype)
    bias = rand((GROUP_OUT * groups,), case.dtype) if case.bias else None
    padding = EXPLICIT[n] if case.padding == "explicit" else case.padding
    kwargs = dict(strides=case.stride, padding=padding,
                  data_format=LAYOUTS[n][channels_first], dilations=case.dilation, bias=bias,
                  activation=case.activation)
    return x, w, kwargs


def _run(n, x, w, kwargs, device):
    kwargs = dict(kwargs)
    strides = kwargs.pop("strides")
    return CONVS[n](x, w, strides, device=device, **kwargs)


@pytest.mark.grid(n=[1, 2, 3], layout=["last", "first"], dtype=[F32, F64],
                  padding=["SAME", "VALID", "explicit"], stride=[1, 2], dilation=[1, 2],
                  groups=[1, 2], bias=[False, True],
                  activation=[None, "relu", "relu6", "sigmoid", "tanh"], random=4, seed=4)
def test_conv_matches_cpu(case, rand, assert_close):
    x, w, kwargs = _conv_case(case.n, case, rand)
    got = _run(case.n, x, w, kwargs, "cuda")
    expected = _run(case.n, x, w, kwargs, "cpu")
    assert isinstance(got, np.ndarray)  # NumPy in, NumPy out
    assert_close(got, expected, case.dtype)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_arange_exact(n):
    """Small integers: every product and sum is exact, so GPU and CPU agree bit for bit."""
    x = np.arange(2 * 4 * np.prod(SIZES[n]), dtype=F64).reshape(_shape(2, 4, SIZES[n], False))
    w = (np.arange(np.prod(KERNELS[n]) * 4 * 6) % 7 - 3.0).reshape(KERNELS[n] + (4, 6))
    got = CONVS[n](x, w, 1, "SAME", device="cuda")
    np.testing.assert_array_equal(got, CONVS[n](x, w, 1, "SAME", device="cpu"))


def test_conv_wide_stride_dilation_mix(rand, assert_close):
    """Different stride and dilation per dim, with a kernel wider than the tile."""
    x = rand((1, 9, 13, 3), F32)
    w = rand((2, 5, 3, 7), F32)
    args = (w, (2, 3), [[0, 0], [3, 1], [0, 4], [0, 0]], "NHWC", (3, 1))
    assert_close(fastconv.conv2d(x, *args, device="cuda"),
                 fastconv.conv2d(x, *args, device="cpu"), F32)


@pytest.mark.grid(layout=["last", "first"], dtype=[F32, F64], padding=["SAME", "VALID"],
                  stride=[1, 2], dilation=[1, 2], multiplier=[1, 3])
def test_depthwise_matches_cpu(case, rand, assert_close):
    channels_first = case.layout == "first"
    x = rand(_shape(2, 3, (6, 7), channels_first), case.dtype)
    w = rand((3, 2, 3, case.multiplier), case.dtype)
    args = (w, case.stride, case.padding, "NCHW" if channels_first else "NHWC", case.dilation)
    got = fastconv.depthwise_conv2d(x, *args, device="cuda")
    assert_close(got, fastconv.depthwise_conv2d(x, *args, device="cpu"), case.dtype)


def _transpose_out_size(size, k, stride, dilation, padding):
    """Largest spatial size whose forward conv maps back to ``size`` (TF's usual choice)."""
    span = (k - 1) * dilation + 1
    if padding == "SAME":
        return size * stride
    if padding == "VALID":
        return (size - 1) * stride + span
    before, after = padding
    return (size - 1) * stride + span - before - after


@pytest.mark.grid(layout=["last", "first"], dtype=[F32, F64],
                  padding=["SAME", "VALID", "explicit", "crop"], stride=[1, 2, 3],
                  dilation=[1, 2])
def test_conv2d_transpose_matches_cpu(case, rand, assert_close):
    channels_first = case.layout == "first"
    kernel = (3, 2)
    # "crop": padding beyond (k - 1) * d, so the flipped conv's virtual padding is negative.
    crop = tuple(((k - 1) * case.dilation + 1, 0) for k in kernel)
    pads = {"explicit": ((1, 0), (0, 1)), "crop": crop}.get(case.padding, case.padding)
    sizes = (4, 3)
    out_spatial = tuple(
        _transpose_out_size(size, k, case.stride, case.dilation,
                            pads if isinstance(pads, str) else pads[axis])
        for axis, (size, k) in enumerate(zip(sizes, kernel)))
    x = rand(_shape(1, 3, sizes, channels_first), case.dtype)
    w = rand(kernel + (5, 3), case.dtype)
    output_shape = _shape(1, 5, out_spatial, channels_first)
    padding = pads if isinstance(pads, str) else [list(p) for p in pads]
    args = (w, output_shape, case.stride, padding, "NCHW" if channels_first else "NHWC",
            case.dilation)
    got = fastconv.conv2d_transpose(x, *args, device="cuda")
    assert_close(got, fastconv.conv2d_transpose(x, *args, device="cpu"), case.dtype)


# ----------------------------------------------------------------------------- TensorFlow

@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_conv2d_matches_tensorflow(layout, rand, oracle, assert_close):
    channels_first = layout == "NCHW"
    x = rand(_shape(2, 4, (7, 6), channels_first), F32)
    w = rand((3, 3, 2, 6), F32)  # two groups
    bias = rand((6,), F32)
    got = fastconv.conv2d(x, w, (2, 1), "SAME", layout, bias=bias, activation="relu",
                          device="cuda")
    expected = oracle.conv(x, w, (2, 1), "SAME", (1, 1), channels_first, bias, "relu")
    assert_close(got, expected, F32)


def test_depthwise_and_transpose_match_tensorflow(rand, oracle, assert_close):
    x = rand((1, 5, 6, 3), F32)
    w = rand((3, 3, 3, 2), F32)
    assert_close(fastconv.depthwise_conv2d(x, w, 2, "SAME", device="cuda"),
                 oracle.depthwise(x, w, (2, 2), "SAME"), F32)
    wt = rand((3, 3, 4, 3), F32)
    assert_close(fastconv.conv2d_transpose(x, wt, (1, 10, 12, 4), 2, "SAME", device="cuda"),
                 oracle.conv_transpose(x, wt, (10, 12), (2, 2), "SAME"), F32)


def test_conv3d_matches_tensorflow(rand, oracle, assert_close):
    x = rand((1, 4, 5, 5, 2), F32)
    w = rand((2, 3, 3, 2, 3), F32)
    assert_close(fastconv.conv3d(x, w, (1, 2, 1), "SAME", device="cuda"),
                 oracle.conv(x, w, (1, 2, 1), "SAME"), F32)


# ----------------------------------------------------------------------------- tile shapes

def test_default_tiles(rand, assert_close, monkeypatch):
    """The shipped tile shapes (256 threads, 4x4 register tiles), two blocks each way."""
    import importlib.util

    # A fresh copy of the config module: the shipped values (or FASTCONV_* from the env).
    spec = importlib.util.spec_from_file_location("shipped_config", fastconv.config.__file__)
    defaults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defaults)
    for name in ("CUDA_CONV_TILE_H", "CUDA_CONV_TILE_W", "CUDA_CONV_TILE_K", "CUDA_CONV_TILE_C",
                 "CUDA_CONV_THREAD_PIXELS", "CUDA_CONV_THREAD_K"):
        monkeypatch.setattr(fastconv.config, name, getattr(defaults, name))
    x = rand((1, 9, 17, 9), F32)
    w = rand((3, 3, 9, 33), F32)
    b = rand((33,), F32)
    got = fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu6", device="cuda")
    assert_close(got, fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu6"), F32)


def test_tile_shrinks_to_fit_shared_memory(rand, assert_close, monkeypatch):
    """A small shared-memory budget forces fewer staged channels, channel blocks and pixels."""
    from fastconv.cuda import conv as cuda_conv

    monkeypatch.setattr(cuda_conv, "SHARED_MEMORY_BUDGET", 200)
    tile = cuda_conv.choose_tile(6, 7, 3, 5, (1, 3, 3), (1, 1, 1), (1, 2, 1), 8)
    assert tile.shared_bytes((1, 3, 3), (1, 1, 1), (1, 2, 1), 8) <= 200
    assert tile.stage_channels == 1 and tile.rows * tile.cols < 6
    x, w = rand((1, 6, 7, 3), F64), rand((3, 3, 3, 5), F64)
    got = fastconv.conv2d(x, w, 1, "SAME", dilations=(2, 1), device="cuda")
    assert_close(got, fastconv.conv2d(x, w, 1, "SAME", dilations=(2, 1)), F64)


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "leaky_relu", "elu",
                                        "hard_swish", "hard_sigmoid"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_every_new_activation_fused_on_cuda_matches_cpu(activation, dtype, rand, assert_close):
    x = (rand((1, 4, 5, 3), dtype) * 4).astype(dtype)
    w, b = rand((3, 2, 3, 5), dtype), rand((5,), dtype)
    args = (x, w, 1, "SAME")
    assert_close(fastconv.conv2d(*args, bias=b, activation=activation, device="cuda"),
                 fastconv.conv2d(*args, bias=b, activation=activation, device="cpu"), dtype)
    xt, wt = rand((1, 3, 2, 4), dtype), rand((2, 2, 3, 4), dtype)  # grouped: 2 groups
    targs = (xt, wt, (1, 6, 4, 6), 2, "SAME")
    assert_close(fastconv.conv2d_transpose(*targs, bias=b[:1].repeat(6), activation=activation,
                                           device="cuda"),
                 fastconv.conv2d_transpose(*targs, bias=b[:1].repeat(6), activation=activation,
                                           device="cpu"), dtype)


def test_unfused_activations_keep_device_arrays_on_the_device(rand, assert_close):
    from numba import cuda

    x, w = rand((1, 4, 4, 2), F32), rand((2, 2, 2, 3), F32)
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    for kwargs in (dict(activation="leaky_relu", alpha=0.05), dict(activation=np.sin)):
        got = fastconv.conv2d(dx, dw, 1, "VALID", **kwargs)
        assert not isinstance(got, np.ndarray)  # a device array in, a device array out
        assert_close(got.copy_to_host(), fastconv.conv2d(x, w, 1, "VALID", **kwargs), F32)
