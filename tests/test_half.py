"""float16 and bfloat16 (``ml_dtypes.bfloat16``) for every op: the output keeps the input's
dtype, equals TensorFlow's CPU result within the half-precision tolerance table
(``fastconv.testing.TOLERANCE``: 4 units in the last place at the output's scale) and, for the
exact ops, bit for bit; indices are unchanged; mixing dtypes is refused as TF refuses it.
"""

import numpy as np
import pytest

import fastconv
from fastconv import ops
from fastconv.testing import TOLERANCE, assert_close, assert_exact

ml_dtypes = pytest.importorskip("ml_dtypes")
HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
SAMPLES = ops.samples()


def _arrays(sample, dtype, rng):
    return {key: rng.standard_normal(shape).astype(np.float32).astype(dtype)
            for key, shape in sample.shapes.items()}


@pytest.mark.tf
@pytest.mark.parametrize("dtype", HALF, ids=lambda d: d.name)
@pytest.mark.parametrize("label", sorted(SAMPLES))
def test_every_sample_call_in_half_precision_equals_tf(label, dtype, rng, tf):
    from fastconv import tf_reference

    op, sample = SAMPLES[label]
    arrays = _arrays(sample, dtype, rng)
    got = sample.call(fastconv, **arrays)
    values = got[0] if isinstance(got, tuple) else got
    assert values.dtype == dtype
    (assert_exact if op.exact else assert_close)(got, sample.call(tf_reference, **arrays), dtype)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: d.name)
def test_half_precision_is_the_float32_result_rounded_once(dtype, rng):
    x = rng.standard_normal((2, 9, 8, 16)).astype(np.float32).astype(dtype)
    w = rng.standard_normal((3, 3, 16, 24)).astype(np.float32).astype(dtype)
    b = rng.standard_normal(24).astype(np.float32).astype(dtype)
    got = fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu")
    wide = fastconv.conv2d(x.astype(np.float32), w.astype(np.float32), 1, "SAME",
                           bias=b.astype(np.float32), activation="relu")
    np.testing.assert_array_equal(got, wide.astype(dtype))
    # max pooling and padding select values: exact
    np.testing.assert_array_equal(fastconv.max_pool2d(x, 3, 2, "SAME"),
                                  fastconv.max_pool2d(x.astype(np.float32), 3, 2,
                                                      "SAME").astype(dtype))
    assert TOLERANCE[dtype] > TOLERANCE[np.dtype(np.float32)]


def test_half_precision_gradients_and_named_kernels(rng):
    x = rng.standard_normal((1, 6, 6, 2)).astype(np.float16)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float16)
    y, backward = fastconv.vjp(fastconv.conv2d, x, w, 1, "SAME")
    dx, dw = backward(np.ones_like(y))
    assert y.dtype == dx.dtype == dw.dtype == np.float16
    wide = fastconv.conv2d_backprop_input(x.shape, w.astype(np.float32),
                                          np.ones(y.shape, np.float32), 1, "SAME")
    assert_close(dx, wide.astype(np.float16), np.float16)


def test_mixed_half_and_float_arguments_are_refused():
    x = np.ones((1, 4, 4, 1), np.float16)
    with pytest.raises(TypeError, match="filters has dtype float32 but input has dtype float16"):
        fastconv.conv2d(x, np.ones((3, 3, 1, 2), np.float32), 1, "SAME")
    with pytest.raises(TypeError, match="filters has dtype bfloat16 but input has dtype float16"):
        fastconv.conv2d(x, np.ones((3, 3, 1, 2), ml_dtypes.bfloat16), 1, "SAME")


def test_half_precision_follows_dask_lazily(rng):
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float16)
    lazy = fastconv.max_pool2d(da.from_array(x, chunks=(1, 8, 8, 3)), 2, 2, "VALID")
    assert lazy.dtype == np.float16
    np.testing.assert_array_equal(lazy.compute(), fastconv.max_pool2d(x, 2, 2, "VALID"))


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: d.name)
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_large_batches_run_in_chunks_with_the_same_result(dtype, layout, rng, monkeypatch):
    """Beyond config.CHUNK_BYTES a batch runs a few images at a time (each chunk widened into
    one float32 buffer); the result is the float32 result rounded once, as without chunks."""
    x = rng.standard_normal((5, 9, 8, 6)).astype(np.float32).astype(dtype)
    w = rng.standard_normal((3, 3, 6, 4)).astype(np.float32).astype(dtype)
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    wide = x.astype(np.float32)
    monkeypatch.setattr(fastconv.config, "CHUNK_BYTES", 2 * 4 * x[0].size)  # 2 images
    conv = fastconv.conv2d(x, w, 1, "SAME", layout, bias=w[0, 0, 0], activation="gelu")
    assert conv.dtype == dtype and conv.shape == (5, 9, 8, 4)[:1] + conv.shape[1:]
    assert_close(conv, fastconv.conv2d(wide, w.astype(np.float32), 1, "SAME", layout,
                                       bias=w[0, 0, 0].astype(np.float32),
                                       activation="gelu").astype(dtype), dtype)
    np.testing.assert_array_equal(fastconv.avg_pool2d(x, 3, 2, "SAME", layout),
                                  fastconv.avg_pool2d(wide, 3, 2, "SAME", layout).astype(dtype))
    np.testing.assert_array_equal(fastconv.global_max_pool2d(x, layout),
                                  fastconv.global_max_pool2d(wide, layout).astype(dtype))
    if layout == "NHWC":
        for include_batch in (False, True):
            got = fastconv.max_pool_with_argmax(x, 2, 2, "VALID",
                                                include_batch_in_index=include_batch)
            want = fastconv.max_pool_with_argmax(wide, 2, 2, "VALID",
                                                 include_batch_in_index=include_batch)
            assert type(got) is type(want) and got.argmax.dtype == want.argmax.dtype
            np.testing.assert_array_equal(got.output, want.output.astype(dtype))
            np.testing.assert_array_equal(got.argmax, want.argmax)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: d.name)
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("ksize, strides, padding", [  # compiled windows, and a generic one
    (2, 2, "VALID"), ((2, 3), (1, 2), "SAME"), (5, 3, "VALID")])
def test_pooling_reads_half_precision_directly_with_the_float32_result(
        dtype, layout, ksize, strides, padding, rng, monkeypatch):
    """Max and average pooling of half-precision arrays run kernels that widen each value in
    registers (fastconv.cpu.pool_half): the float32 kernels' result rounded once, bit for bit,
    NaN never winning a max, over 19 channels (whole vectors and a tail)."""
    from fastconv.cpu import pool_half

    x = rng.standard_normal((3, 11, 10, 19)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 2, 3, 1], x[2, 4, 4, 2], x[0, 5, 5, 18] = np.nan, np.inf, -np.inf, 7e4
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    half = x.astype(dtype)
    runs = []
    monkeypatch.setattr(pool_half, "run", lambda *a, run=pool_half.run: runs.append(1) or run(*a))
    for op in (fastconv.max_pool2d, fastconv.avg_pool2d):
        got = op(half, ksize, strides, padding, layout)
        want = op(half.astype(np.float32), ksize, strides, padding, layout).astype(dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    for op in (fastconv.global_max_pool2d, fastconv.global_avg_pool2d):  # channels-last ones
        np.testing.assert_array_equal(  # read half precision too; channels-first: float32
            op(half, layout, True).view(np.uint16),
            op(half.astype(np.float32), layout, True).astype(dtype).view(np.uint16))
    assert len(runs) == 2
    volume = rng.standard_normal((2, 5, 6, 7, 3)).astype(np.float32).astype(dtype)
    for op in (fastconv.max_pool3d, fastconv.avg_pool3d):
        np.testing.assert_array_equal(
            op(volume, 2, 2, "SAME").view(np.uint16),
            op(volume.astype(np.float32), 2, 2, "SAME").astype(dtype).view(np.uint16))


def test_the_fast_conversions_equal_numpy_and_ml_dtypes_casts_bit_for_bit():
    from fastconv.cpu import half_convert

    every_half = np.arange(65536, dtype=np.uint16).view(np.float16)
    np.testing.assert_array_equal(half_convert.widen(every_half), every_half.astype(np.float32))
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.standard_normal(20000).astype(np.float32) * scale for scale in (1, 1e-5, 1e-7, 7e4)]
        + [np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 65504, 65520, 6e-8, 2.9802322e-08],
                    np.float32),
           # midpoints between neighbouring halves: ties go to even
           ((every_half[:-1].astype(np.float64) + every_half[1:]) / 2).astype(np.float32)])
    values = values[np.isfinite(values) | np.isnan(values)]
    for dtype in HALF:
        with np.errstate(over="ignore", invalid="ignore"):
            want = values.astype(dtype)
        got = half_convert.narrow(values, dtype)
        nan = np.isnan(want.astype(np.float32))
        assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
        np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
        wide = half_convert.widen(want)
        np.testing.assert_array_equal(wide[~nan], want.astype(np.float32)[~nan])
    # the bit-manipulation float16 kernels (hosts without F16C) give the same bits
    bits = np.empty(65536, np.uint32)
    half_convert.widen_f16(every_half.view(np.uint16), bits, half_convert._f16_table())
    not_nan = ~np.isnan(every_half)
    np.testing.assert_array_equal(bits.view(np.float32)[not_nan],
                                  every_half.astype(np.float32)[not_nan])
    narrowed = np.empty(values.size, np.uint16)
    half_convert.narrow_f16(values.view(np.uint32), narrowed)
    with np.errstate(over="ignore", invalid="ignore"):
        want = values.astype(np.float16)
    nan = np.isnan(values)
    assert np.isnan(narrowed.view(np.float16)[nan]).all()
    np.testing.assert_array_equal(narrowed[~nan], want.view(np.uint16)[~nan])
