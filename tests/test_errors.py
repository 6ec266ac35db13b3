"""Bad input raises ValueError/TypeError naming the problem; odd-but-valid input works.

Every case checks the exception type and a fragment of the message. Also: batch size 0, inputs
never modified (read-only arrays, non-contiguous views), nested lists and TF tensors as input.
"""

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64

X1 = np.zeros((1, 6, 3), F32)
X2 = np.zeros((1, 5, 5, 3), F32)
X2_NCHW = np.zeros((1, 3, 5, 5), F32)
X3 = np.zeros((1, 4, 4, 4, 3), F32)
W1 = np.zeros((3, 3, 4), F32)
W2 = np.zeros((3, 3, 3, 4), F32)
W3 = np.zeros((2, 2, 2, 3, 4), F32)
DW = np.zeros((3, 3, 3, 2), F32)
TW = np.zeros((3, 3, 2, 3), F32)  # conv2d_transpose: (H, W, out_channels=2, in_channels=3)
EXPLICIT_OK = [[0, 0], [1, 1], [1, 1], [0, 0]]


def _case(id_, call, error, match):
    return pytest.param(call, error, match, id=id_)


def _error_cases():
    c = _case
    conv2d, conv1d, conv3d = fastconv.conv2d, fastconv.conv1d, fastconv.conv3d
    dw, tr = fastconv.depthwise_conv2d, fastconv.conv2d_transpose
    mp1, mp2, mp3 = fastconv.max_pool1d, fastconv.max_pool2d, fastconv.max_pool3d
    ap1, ap2, ap3 = fastconv.avg_pool1d, fastconv.avg_pool2d, fastconv.avg_pool3d
    gmp, gap, zp = fastconv.global_max_pool2d, fastconv.global_avg_pool2d, fastconv.zero_pad2d
    return [
        # wrong rank
        c("rank-conv2d-input", lambda: conv2d(X1, W2, 1, "SAME"), ValueError, r"input must be 4-D"),
        c("rank-conv2d-filters", lambda: conv2d(X2, W1, 1, "SAME"), ValueError,
          r"filters must be 4-D"),
        c("rank-conv1d", lambda: conv1d(X2, W1, 1, "SAME"), ValueError, r"input must be 3-D"),
        c("rank-conv3d", lambda: conv3d(X2, W3, 1, "SAME"), ValueError, r"input must be 5-D"),
        c("rank-conv3d-filters", lambda: conv3d(X3, W2, 1, "SAME"), ValueError,
          r"filters must be 5-D"),
        c("rank-depthwise", lambda: dw(X1, DW, 1, "SAME"), ValueError, r"input must be 4-D"),
        c("rank-depthwise-filter", lambda: dw(X2, W3, 1, "SAME"), ValueError,
          r"filter must be 4-D"),
        c("rank-transpose", lambda: tr(X3, TW, (1, 5, 5, 2), 1), ValueError, r"input must be 4-D"),
        c("rank-max_pool1d", lambda: mp1(X2, 2, 1, "VALID"), ValueError, r"input must be 3-D"),
        c("rank-max_pool2d", lambda: mp2(X1, 2, 1, "VALID"), ValueError, r"input must be 4-D"),
        c("rank-avg_pool3d", lambda: ap3(X2, 2, 1, "VALID"), ValueError, r"input must be 5-D"),
        c("rank-global", lambda: gmp(X1), ValueError, r"input must be 4-D"),
        c("rank-zero_pad", lambda: zp(X3, 1), ValueError, r"input must be 4-D"),
        # channel mismatch
        c("channels-conv2d", lambda: conv2d(X2, np.zeros((3, 3, 2, 4), F32), 1, "SAME"),
          ValueError, r"3 channels, which is not a multiple of the filters' in_channels \(2\)"),
        c("channels-conv2d-nchw", lambda: conv2d(X2_NCHW, np.zeros((3, 3, 5, 4), F32), 1, "SAME",
                                                 "NCHW"), ValueError, r"3 channels"),
        c("channels-conv1d", lambda: conv1d(X1, np.zeros((3, 2, 4), F32), 1, "SAME"), ValueError,
          r"not a multiple"),
        c("channels-conv3d", lambda: conv3d(X3, np.zeros((2, 2, 2, 4, 4), F32), 1, "SAME"),
          ValueError, r"not a multiple"),
        c("channels-depthwise", lambda: dw(X2, np.zeros((3, 3, 2, 2), F32), 1, "SAME"),
          ValueError, r"filter has 2 in_channels but input has 3 channels"),
        c("channels-transpose", lambda: tr(X2, np.zeros((3, 3, 2, 4), F32), (1, 5, 5, 2), 1),
          ValueError, r"in_channels .*must equal the input's 3 channels"),
        # groups that do not divide the output channels
        c("groups-out-channels", lambda: conv2d(np.zeros((1, 5, 5, 4), F32),
                                                np.zeros((3, 3, 2, 3), F32), 1, "SAME"),
          ValueError, r"out_channels \(3\) must be a multiple of the number of groups \(2"),
        c("empty-filters", lambda: conv2d(X2, np.zeros((3, 3, 3, 0), F32), 1, "SAME"), ValueError,
          r"non-zero sizes"),
        # strides / ksize / dilations <= 0
        c("stride0-conv2d", lambda: conv2d(X2, W2, 0, "SAME"), ValueError,
          r"strides must be positive"),
        c("stride-neg-conv2d", lambda: conv2d(X2, W2, [1, -1], "SAME"), ValueError,
          r"strides must be positive"),
        c("stride0-conv1d", lambda: conv1d(X1, W1, 0, "SAME"), ValueError,
          r"stride must be positive"),
        c("dilation0-conv3d", lambda: conv3d(X3, W3, 1, "SAME", dilations=0), ValueError,
          r"dilations must be positive"),
        c("dilation-neg-conv2d", lambda: conv2d(X2, W2, 1, "SAME", dilations=[1, -2]), ValueError,
          r"dilations must be positive"),
        c("stride0-depthwise", lambda: dw(X2, DW, [0, 1], "SAME"), ValueError,
          r"strides must be positive"),
        c("stride0-transpose", lambda: tr(X2, TW, (1, 5, 5, 2), 0), ValueError,
          r"strides must be positive"),
        c("dilation0-transpose", lambda: tr(X2, TW, (1, 5, 5, 2), 1, dilations=0), ValueError,
          r"dilations must be positive"),
        c("ksize0-max_pool2d", lambda: mp2(X2, 0, 1, "VALID"), ValueError,
          r"ksize must be positive"),
        c("ksize-neg-avg_pool1d", lambda: ap1(X1, [-2], 1, "VALID"), ValueError,
          r"ksize must be positive"),
        c("stride0-max_pool3d", lambda: mp3(X3, 2, 0, "VALID"), ValueError,
          r"strides must be positive"),
        c("stride-neg-avg_pool2d", lambda: ap2(X2, 2, -1, "VALID"), ValueError,
          r"strides must be positive"),
        c("ksize-float", lambda: mp2(X2, 2.0, 1, "VALID"), TypeError,
          r"ksize must contain integers"),
        c("strides-wrong-length", lambda: conv2d(X2, W2, [1, 2, 3], "SAME"), ValueError,
          r"strides must be an int or have length 1, 2 or 4"),
        c("strides-none", lambda: conv2d(X2, W2, None, "SAME"), TypeError, r"strides is required"),
        # unknown padding / data_format / activation / device
        c("padding-conv2d", lambda: conv2d(X2, W2, 1, "FULL"), ValueError,
          r"padding must be 'SAME', 'VALID' or a list"),
        c("padding-max_pool2d", lambda: mp2(X2, 2, 1, "full"), ValueError,
          r"padding must be 'SAME', 'VALID'"),
        c("padding-int", lambda: conv2d(X2, W2, 1, 1), TypeError,
          r"padding must be a string or a list"),
        c("padding-pair-count", lambda: conv2d(X2, W2, 1, [[1, 1]]), ValueError,
          r"padding must have 4 \(or 2\) \(before, after\) pairs"),
        c("padding-triples", lambda: conv2d(X2, W2, 1, [[0, 0], [1, 1, 1], [1, 1], [0, 0]]),
          ValueError, r"padding must be a list of \(before, after\) pairs"),
        c("data_format-conv2d", lambda: conv2d(X2, W2, 1, "SAME", "NCWH"), ValueError,
          r"data_format must be 'NHWC' or 'NCHW'"),
        c("data_format-conv1d", lambda: conv1d(X1, W1, 1, "SAME", "NHWC"), ValueError,
          r"data_format must be 'NWC' or 'NCW'"),
        c("data_format-conv3d", lambda: conv3d(X3, W3, 1, "SAME", "NHWC"), ValueError,
          r"data_format must be 'NDHWC' or 'NCDHW'"),
        c("data_format-pool", lambda: mp2(X2, 2, 1, "VALID", "NDHWC"), ValueError,
          r"data_format must be 'NHWC' or 'NCHW'"),
        c("data_format-global", lambda: gap(X2, "XYZ"), ValueError, r"data_format must be"),
        c("data_format-zero_pad", lambda: zp(X2, 1, "NCDHW"), ValueError, r"data_format must be"),
        c("data_format-type", lambda: conv2d(X2, W2, 1, "SAME", 1), TypeError,
          r"data_format must be a string"),
        c("activation-unknown", lambda: conv2d(X2, W2, 1, "SAME", activation="mish"), ValueError,
          r"activation must be one of .*'relu'.*'gelu'.*got 'mish'"),
        c("activation-type", lambda: conv1d(X1, W1, 1, "SAME", activation=3), TypeError,
          r"activation must be None, a string or a callable"),
        c("device-unknown", lambda: conv2d(X2, W2, 1, "SAME", device="tpu"), ValueError,
          r"device must be None, 'cpu' or 'cuda'"),
        c("keepdims-type", lambda: gmp(X2, keepdims="yes"), TypeError, r"keepdims must be a bool"),
        # explicit padding: negative, on batch/channels, avg pooling, too large for max pooling
        c("padding-negative-conv2d", lambda: conv2d(X2, W2, 1, [[0, 0], [-1, 1], [1, 1], [0, 0]]),
          ValueError, r"padding must be non-negative"),
        c("padding-negative-max_pool", lambda: mp2(X2, 2, 1, [[0, 0], [1, 1], [0, -1], [0, 0]]),
          ValueError, r"padding must be non-negative"),
        c("padding-negative-transpose", lambda: tr(X2, TW, (1, 5, 5, 2), 1, [[0, 0], [-1, 1]]),
          ValueError, r"padding must be non-negative"),
        c("padding-negative-zero_pad", lambda: zp(X2, -1), ValueError,
          r"padding must be non-negative"),
        c("padding-zero_pad-form", lambda: zp(X2, (1, 2, 3)), ValueError,
          r"padding must be an int, 2 ints or 2 \(before, after\) pairs"),
        c("padding-batch-pair", lambda: conv2d(X2, W2, 1, [[1, 0], [1, 1], [1, 1], [0, 0]]),
          ValueError, r"padding must be \(0, 0\) on the batch and channel dimensions"),
        c("padding-channel-pair-nhwc", lambda: conv2d(X2, W2, 1, [[0, 0], [1, 1], [1, 1], [0, 1]]),
          ValueError, r"\(0, 0\) on the batch and channel"),
        c("padding-channel-pair-nchw", lambda: conv2d(X2_NCHW, W2, 1, EXPLICIT_OK, "NCHW"),
          ValueError, r"\(0, 0\) on the batch and channel"),
        c("padding-channel-pair-max_pool", lambda: mp1(X1, 2, 1, [[0, 0], [1, 1], [1, 0]]),
          ValueError, r"\(0, 0\) on the batch and channel"),
        c("padding-explicit-avg_pool2d", lambda: ap2(X2, 2, 1, EXPLICIT_OK), ValueError,
          r"padding must be 'SAME' or 'VALID' for this op"),
        c("padding-explicit-avg_pool1d", lambda: ap1(X1, 2, 1, [[1, 1]]), ValueError,
          r"'SAME' or 'VALID' for this op"),
        c("padding-explicit-avg_pool3d", lambda: ap3(X3, 2, 1, [[1, 1]] * 3), ValueError,
          r"'SAME' or 'VALID' for this op"),
        c("padding-max_pool-not-smaller-than-ksize",
          lambda: mp2(X2, 2, 1, [[0, 0], [2, 0], [0, 0], [0, 0]]), ValueError,
          r"must be smaller than ksize"),
        # dtypes: mixed, unsupported
        c("mixed-filters", lambda: conv2d(X2, W2.astype(F64), 1, "SAME"), TypeError,
          r"filters has dtype float64 but input has dtype float32"),
        c("mixed-input-f64", lambda: conv2d(X2.astype(F64), W2, 1, "SAME"), TypeError,
          r"filters has dtype float32 but input has dtype float64"),
        c("mixed-bias", lambda: conv2d(X2, W2, 1, "SAME", bias=np.zeros(4, F64)), TypeError,
          r"bias has dtype float64 but input has dtype float32"),
        c("mixed-depthwise", lambda: dw(X2, DW.astype(F64), 1, "SAME"), TypeError,
          r"filter has dtype float64"),
        c("mixed-transpose", lambda: tr(X2, TW.astype(F64), (1, 5, 5, 2), 1), TypeError,
          r"filters has dtype float64"),
        c("mixed-conv3d", lambda: conv3d(X3.astype(F64), W3, 1, "SAME"), TypeError,
          r"filters has dtype float32 but input has dtype float64"),
        *[c(f"dtype-input-{np.dtype(dt).name}", (lambda dt=dt: conv2d(X2.astype(dt), W2, 1, "SAME")),
            TypeError, rf"input must have dtype float32 or float64, got {np.dtype(dt).name}")
          for dt in (np.complex64, np.complex128, np.int32, np.int64, np.uint16, np.bool_,
                     np.uint8)],
        *[c(f"dtype-pool-{np.dtype(dt).name}", (lambda dt=dt: mp2(X2.astype(dt), 2, 1, "VALID")),
            TypeError, r"input must have dtype float32 or float64")
          for dt in (np.complex64, np.int16, np.uint32, np.bool_)],
        c("dtype-filters-int", lambda: conv2d(X2, W2.astype(np.int32), 1, "SAME"), TypeError,
          r"filters must have dtype float32 or float64, got int32"),
        c("dtype-filters-complex", lambda: conv1d(X1, W1.astype(np.complex64), 1, "SAME"),
          TypeError, r"filters must have dtype float32 or float64, got complex64"),
        c("dtype-bias-int", lambda: conv2d(X2, W2, 1, "SAME", bias=np.zeros(4, np.int64)),
          TypeError, r"bias must have dtype float32 or float64"),
        c("dtype-string-array", lambda: conv2d(np.full((1, 5, 5, 3), "a"), W2, 1, "SAME"),
          TypeError, r"input must have dtype float32 or float64, got <U1"),
        c("dtype-string-list", lambda: mp1([[["a"], ["b"]]], 1, 1, "VALID"), TypeError,
          r"input must contain numbers"),
        c("dtype-object", lambda: gap(np.empty((1, 2, 2, 1), object)), TypeError,
          r"input must have dtype float32 or float64, got object"),
        c("dtype-int16-global", lambda: gmp(X2.astype(np.int16)), TypeError,
          r"float32 or float64, got int16"),
        c("dtype-complex-zero_pad", lambda: zp(X2.astype(np.complex128), 1), TypeError,
          r"float32 or float64, got complex128"),
        c("dtype-int-depthwise", lambda: dw(X2.astype(np.int8), DW, 1, "SAME"), TypeError,
          r"input must have dtype float32 or float64, got int8"),
        c("ragged-list", lambda: conv1d([[[1.0], [2.0, 3.0]]], W1, 1, "SAME"), TypeError,
          r"input must be array-like"),
        c("input-none", lambda: conv2d(None, W2, 1, "SAME"), TypeError, r"input must be an array"),
        # bias of the wrong length / shape
        c("bias-length", lambda: conv2d(X2, W2, 1, "SAME", bias=np.zeros(3, F32)), ValueError,
          r"bias must have shape \(4,\) .*got \(3,\)"),
        c("bias-2d", lambda: conv3d(X3, W3, 1, "SAME", bias=np.zeros((1, 4), F32)), ValueError,
          r"bias must have shape \(4,\)"),
        # strides / ksize / dilations != 1 on the batch or channel axis
        c("strides-batch", lambda: conv2d(X2, W2, [2, 1, 1, 1], "SAME"), ValueError,
          r"strides must be 1 on the batch and channel dimensions"),
        c("strides-channel-nhwc", lambda: conv2d(X2, W2, [1, 1, 1, 2], "SAME"), ValueError,
          r"strides must be 1 on the batch and channel"),
        c("strides-channel-nchw", lambda: conv2d(X2_NCHW, W2, [1, 2, 1, 1], "SAME", "NCHW"),
          ValueError, r"strides must be 1 on the batch and channel"),
        c("stride-channel-conv1d", lambda: conv1d(X1, W1, [1, 1, 2], "SAME"), ValueError,
          r"stride must be 1 on the batch and channel"),
        c("ksize-channel", lambda: mp2(X2, [1, 2, 2, 2], 1, "VALID"), ValueError,
          r"ksize must be 1 on the batch and channel"),
        c("strides-batch-pool3d", lambda: ap3(X3, 2, [2, 1, 1, 1, 1], "VALID"), ValueError,
          r"strides must be 1 on the batch and channel"),
        c("dilations-channel", lambda: conv2d(X2, W2, 1, "SAME", dilations=[1, 1, 1, 2]),
          ValueError, r"dilations must be 1 on the batch and channel"),
        c("dilations-batch-depthwise", lambda: dw(X2, DW, 1, "SAME", dilations=[2, 1, 1, 1]),
          ValueError, r"dilations must be 1 on the batch and channel"),
        # conv2d_transpose output_shape
        c("output_shape-inconsistent", lambda: tr(np.zeros((1, 4, 4, 3), F32), TW, (1, 10, 10, 2),
                                                  2, "SAME"),
          ValueError, r"output_shape \(1, 10, 10, 2\) is inconsistent with the input.*\(5, 5\).*"
                      r"\(4, 4\)"),
        c("output_shape-inconsistent-valid", lambda: tr(np.zeros((1, 4, 4, 3), F32), TW, (1, 4, 4, 2),
                                                        1, "VALID"),
          ValueError, r"inconsistent with the input"),
        c("output_shape-batch", lambda: tr(X2, TW, (2, 5, 5, 2), 1), ValueError,
          r"output_shape batch \(2\) must equal the input's batch \(1\)"),
        c("output_shape-channels", lambda: tr(X2, TW, (1, 5, 5, 3), 1), ValueError,
          r"output_shape channels \(3\) must equal the filters' out_channels \(2\)"),
        c("output_shape-length", lambda: tr(X2, TW, (5, 5, 2), 1), ValueError,
          r"output_shape must have 4 entries"),
        c("output_shape-type", lambda: tr(X2, TW, 5, 1), TypeError,
          r"output_shape must be a sequence"),
        c("output_shape-nonpositive", lambda: tr(X2, TW, (1, 0, 5, 2), 1), ValueError,
          r"output_shape spatial sizes must be positive"),
        # VALID windows larger than the input
        c("valid-too-small-conv2d", lambda: conv2d(np.zeros((1, 2, 5, 3), F32), W2, 1, "VALID"),
          ValueError, r"Negative dimension size.*size 3.*size 2"),
        c("valid-too-small-dilated-conv1d", lambda: conv1d(X1, W1, 1, "VALID", dilations=3),
          ValueError, r"Negative dimension size.*effective 7.*size 6"),
        c("valid-too-small-conv3d", lambda: conv3d(np.zeros((1, 1, 4, 4, 3), F32), W3, 1, "VALID"),
          ValueError, r"Negative dimension size"),
        c("valid-too-small-depthwise", lambda: dw(np.zeros((1, 5, 2, 3), F32), DW, 1, "VALID"),
          ValueError, r"Negative dimension size.*size 3.*size 2"),
        c("explicit-too-small-conv2d",
          lambda: conv2d(np.zeros((1, 1, 1, 3), F32), W2, 1, [[0, 0], [1, 0], [1, 0], [0, 0]]),
          ValueError, r"Negative dimension size.*size 3.*size 1 padded by \(1, 0\)"),
        c("valid-too-small-max_pool2d", lambda: mp2(np.zeros((1, 1, 1, 16), F32), 2, 2, "VALID"),
          ValueError, r"Negative dimension size.*size 2.*size 1"),
        c("valid-too-small-avg_pool1d", lambda: ap1(X1, 7, 1, "VALID"), ValueError,
          r"Negative dimension size.*size 7.*size 6"),
        c("valid-too-small-max_pool3d", lambda: mp3(X3, [5, 1, 1], 1, "VALID"), ValueError,
          r"Negative dimension size.*size 5.*size 4"),
        # sizes beyond TF's int32 limit (TF's testRawAvgPoolLargeKsizeRaiseError and friends)
        c("huge-ksize-avg_pool2d", lambda: ap2(X2, [1, 2**63 - 1, 1, 1], 1, "SAME"), ValueError,
          r"ksize must be at most 2147483647 \(TF's int32 limit\), got 9223372036854775807"),
        c("huge-ksize-max_pool2d", lambda: mp2(X2, [1, 2**63 - 1, 1, 1], 1, "SAME"), ValueError,
          r"ksize must be at most 2147483647"),
        c("int32+1-ksize-max_pool3d", lambda: mp3(X3, 2**31, 1, "SAME"), ValueError,
          r"ksize must be at most 2147483647.*got 2147483648"),
        c("huge-strides-conv2d", lambda: conv2d(X2, W2, 2**31, "SAME"), ValueError,
          r"strides must be at most 2147483647"),
        c("huge-strides-avg_pool1d", lambda: ap1(X1, 2, 2**40, "SAME"), ValueError,
          r"strides must be at most 2147483647"),
        c("huge-dilations-conv1d", lambda: conv1d(X1, W1, 1, "SAME", dilations=2**31), ValueError,
          r"dilations must be at most 2147483647"),
        c("huge-explicit-padding-conv2d",
          lambda: conv2d(X2, W2, 1, [[0, 0], [2**31, 0], [0, 0], [0, 0]]), ValueError,
          r"padding must be at most 2147483647"),
        c("huge-output_shape", lambda: tr(X2, TW, (1, 2**31, 5, 2), 1, "SAME"), ValueError,
          r"output_shape must be at most 2147483647"),
        c("huge-zero_pad2d", lambda: zp(X2, 2**31), ValueError,
          r"padding must be at most 2147483647"),
    ]


@pytest.mark.parametrize("call, error, match", _error_cases())
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_int32_max_window_answers_without_window_sized_tables(pool, data_format, rng):
    """TF accepts ksize up to 2**31 - 1 and answers at once: the clipped window is the whole
    column. Tables sized by the window (16 GiB here) would exhaust memory instead."""
    x = rng.standard_normal((2, 5, 4, 3)).astype(F32)
    xin = x.transpose(0, 3, 1, 2) if data_format == "NCHW" else x
    ksize = [1, 1, 2**31 - 1, 1] if data_format == "NCHW" else [1, 2**31 - 1, 1, 1]
    y = getattr(fastconv, pool)(xin, ksize, 1, "SAME", data_format)
    y = y.transpose(0, 2, 3, 1) if data_format == "NCHW" else y
    column = x.max(axis=1) if pool == "max_pool2d" else x.mean(axis=1)
    np.testing.assert_allclose(y, np.broadcast_to(column[:, None], x.shape), rtol=1e-6)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_huge_dilation_same_padding_allocates_no_padded_copy(data_format, rng):
    """SAME padding of a 3x3 filter dilated 2**30 is 2**30 cells a side: only the centre tap
    ever reads the input. No padded copy is made (it would need ~10**18 elements); a NaN in a
    corner tap meets the padding everywhere, so every output of that channel is NaN, as TF's
    zero-padded sum gives."""
    x = rng.standard_normal((1, 6, 5, 2)).astype(F32)
    w = rng.standard_normal((3, 3, 2, 3)).astype(F32)
    w[0, 2, 1, 2] = np.nan
    xin = x.transpose(0, 3, 1, 2) if data_format == "NCHW" else x
    y = fastconv.conv2d(xin, w, 1, "SAME", data_format, dilations=2**30)
    y = y.transpose(0, 2, 3, 1) if data_format == "NCHW" else y
    expected = x @ w[1, 1]
    expected[..., 2] = np.nan
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_validation_runs_before_any_kernel(monkeypatch):
    """A bad argument must fail in the API layer: the dispatcher is never reached."""
    from fastconv import dispatch

    def fail(*args, **kwargs):
        raise AssertionError("dispatch.run called for invalid input")

    monkeypatch.setattr(dispatch, "run", fail)
    with pytest.raises(ValueError, match="activation"):
        fastconv.conv2d(X2, W2, 1, "SAME", activation="mish")
    with pytest.raises(TypeError, match="dtype"):
        fastconv.max_pool2d(X2.astype(np.int32), 2, 2, "VALID")


# ----------------------------------------------------------------------------- batch size 0

def _empty_cases():
    z = lambda *shape: np.zeros(shape, F32)  # noqa: E731
    return [
        pytest.param(lambda: fastconv.conv2d(z(0, 5, 5, 3), W2, 1, "SAME"), (0, 5, 5, 4),
                     id="conv2d"),
        pytest.param(lambda: fastconv.conv2d(z(0, 3, 7, 5), W2, 2, "VALID", "NCHW",
                                             bias=np.ones(4, F32), activation="relu"),
                     (0, 4, 3, 2), id="conv2d-nchw"),
        pytest.param(lambda: fastconv.conv1d(z(0, 6, 3), W1, 2, "SAME"), (0, 3, 4), id="conv1d"),
        pytest.param(lambda: fastconv.conv3d(z(0, 3, 4, 4, 4), W3, 1, "VALID", "NCDHW"),
                     (0, 4, 3, 3, 3), id="conv3d"),
        pytest.param(lambda: fastconv.depthwise_conv2d(z(0, 5, 5, 3), DW, 1, "SAME"),
                     (0, 5, 5, 6), id="depthwise"),
        pytest.param(lambda: fastconv.conv2d_transpose(z(0, 3, 3, 3), TW, (0, 6, 6, 2), 2),
                     (0, 6, 6, 2), id="transpose"),
        pytest.param(lambda: fastconv.max_pool1d(z(0, 6, 2), 2, 2, "VALID"), (0, 3, 2),
                     id="max_pool1d"),
        pytest.param(lambda: fastconv.max_pool2d(z(0, 2, 5, 5), 2, 2, "SAME", "NCHW"),
                     (0, 2, 3, 3), id="max_pool2d"),
        pytest.param(lambda: fastconv.avg_pool3d(z(0, 4, 4, 4, 2), 2, 2, "VALID"),
                     (0, 2, 2, 2, 2), id="avg_pool3d"),
        pytest.param(lambda: fastconv.global_max_pool2d(z(0, 4, 4, 2)), (0, 2), id="global_max"),
        pytest.param(lambda: fastconv.global_avg_pool2d(z(0, 2, 4, 4), "NCHW", keepdims=True),
                     (0, 2, 1, 1), id="global_avg"),
        pytest.param(lambda: fastconv.zero_pad2d(z(0, 4, 4, 2), 1), (0, 6, 6, 2), id="zero_pad"),
    ]


@pytest.mark.parametrize("call, shape", _empty_cases())
def test_batch_size_zero_returns_empty_array(call, shape):
    out = call()
    assert isinstance(out, np.ndarray)
    assert out.shape == shape
    assert out.dtype == F32


# ----------------------------------------------------------------------------- inputs

def _ops_on(rng):
    """(name, op(x, w, bias), x, w or None, bias or None) for ops of every kind and layout."""
    r = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    return [
        ("conv2d", lambda x, w, b: fastconv.conv2d(x, w, 2, "SAME", bias=b, activation="tanh"),
         r(2, 7, 6, 3), r(3, 2, 3, 4), r(4)),
        ("conv2d-nchw", lambda x, w, b: fastconv.conv2d(x, w, 1, "VALID", "NCHW", bias=b),
         r(2, 3, 7, 6), r(3, 3, 3, 4), r(4)),
        ("conv1d", lambda x, w, b: fastconv.conv1d(x, w, 1, "SAME", bias=b), r(2, 9, 3), r(3, 3, 4),
         r(4)),
        ("conv3d", lambda x, w, b: fastconv.conv3d(x, w, 1, "SAME", "NCDHW", bias=b),
         r(1, 2, 4, 5, 3), r(2, 2, 2, 2, 3), r(3)),
        ("depthwise", lambda x, w, b: fastconv.depthwise_conv2d(x, w, 1, "SAME"), r(2, 6, 5, 3),
         r(3, 3, 3, 2), None),
        ("transpose", lambda x, w, b: fastconv.conv2d_transpose(x, w, (2, 8, 10, 2), 2, "SAME"),
         r(2, 4, 5, 3), r(3, 3, 2, 3), None),
        ("max_pool2d", lambda x, w, b: fastconv.max_pool2d(x, 3, 2, "SAME"), r(2, 7, 6, 3), None,
         None),
        ("avg_pool2d-nchw", lambda x, w, b: fastconv.avg_pool2d(x, 2, 1, "VALID", "NCHW"),
         r(2, 3, 7, 6), None, None),
        ("max_pool3d", lambda x, w, b: fastconv.max_pool3d(x, 2, 1, "SAME"), r(1, 4, 5, 3, 2),
         None, None),
        ("avg_pool1d", lambda x, w, b: fastconv.avg_pool1d(x, 3, 2, "SAME", "NCW"), r(2, 3, 9),
         None, None),
        ("global_max", lambda x, w, b: fastconv.global_max_pool2d(x), r(2, 4, 5, 3), None, None),
        ("global_avg", lambda x, w, b: fastconv.global_avg_pool2d(x, "NCHW"), r(2, 3, 4, 5), None,
         None),
        ("zero_pad", lambda x, w, b: fastconv.zero_pad2d(x, ((1, 2), (0, 1))), r(2, 4, 5, 3), None,
         None),
    ]


_OP_NAMES = [op[0] for op in _ops_on(np.random.default_rng(0))]


def _strided_view(a):
    """A non-contiguous view with the same values as ``a``: every other element of a bigger
    array, with the last axis reversed twice over (negative strides)."""
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a[..., ::-1]
    view = big[tuple(slice(None, None, 2) for _ in a.shape)][..., ::-1]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(view, a)
    return view


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", _OP_NAMES)
def test_inputs_read_only_and_strided_are_accepted_and_never_modified(name, dtype, rng,
                                                                      assert_close):
    _, op, x, w, b = next(op for op in _ops_on(rng) if op[0] == name)
    x, w, b = (None if a is None else a.astype(dtype) for a in (x, w, b))
    expected = op(x.copy(), None if w is None else w.copy(), None if b is None else b.copy())

    readonly = [None if a is None else a.copy() for a in (x, w, b)]
    for a in readonly:
        if a is not None:
            a.setflags(write=False)
    assert_close(op(*readonly), expected, dtype)

    strided = [None if a is None else _strided_view(a) for a in (x, w, b)]
    before = [None if a is None else a.copy() for a in strided]
    assert_close(op(*strided), expected, dtype)
    for a, saved in zip(strided, before):
        if a is not None:
            np.testing.assert_array_equal(a, saved)

    # The result is a fresh array, not a view of the input.
    out = op(x, w, b)
    assert not np.shares_memory(out, x)


def test_channels_first_view_of_channels_last_data(rng, assert_close):
    x = rng.standard_normal((2, 6, 7, 3))
    w = rng.standard_normal((3, 3, 3, 5))
    expected = fastconv.conv2d(x, w, 1, "SAME")
    view = x.transpose(0, 3, 1, 2)  # NCHW view of the NHWC buffer, not contiguous
    got = fastconv.conv2d(view, w, 1, "SAME", "NCHW")
    assert_close(got, expected.transpose(0, 3, 1, 2), F64)
    pooled = fastconv.max_pool2d(view, 2, 2, "VALID", "NCHW")
    np.testing.assert_array_equal(pooled, fastconv.max_pool2d(x, 2, 2, "VALID").transpose(0, 3, 1, 2))


def test_nested_lists_are_accepted(rng, assert_close):
    x = rng.standard_normal((1, 5, 4, 2)).astype(F32)
    w = rng.standard_normal((2, 2, 2, 3)).astype(F32)
    expected = fastconv.conv2d(x, w, 1, "VALID")
    # Lists become float32, as tf.convert_to_tensor makes Python floats.
    assert_close(fastconv.conv2d(x.tolist(), w.tolist(), 1, "VALID"), expected, F32)
    # A list argument takes the dtype of the array input.
    assert_close(fastconv.conv2d(x.astype(F64), w.tolist(), 1, "VALID"),
                 fastconv.conv2d(x.astype(F64), w.astype(F64), 1, "VALID"), F64)
    pooled = fastconv.max_pool1d([[[1.0], [3.0], [2.0]]], 2, 1, "VALID")
    np.testing.assert_array_equal(pooled, np.array([[[3.0], [3.0]]], F32))
    assert pooled.dtype == F32
    assert fastconv.zero_pad2d([[[[1]]]], 1).dtype == F32  # integer lists too


def test_tf_tensors_are_accepted(tf, rng, assert_close, assert_exact):
    x = rng.standard_normal((2, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    tx, tw = tf.constant(x), tf.constant(w)
    assert_close(fastconv.conv2d(tx, tw, [1, 2, 2, 1], "SAME",
                                 bias=tf.constant(np.ones(4))),
                 fastconv.conv2d(x, w, [2, 2], "SAME", bias=np.ones(4)), F64)
    assert_exact(fastconv.max_pool2d(tf.constant(x.astype(F32)), 2, 2, "VALID"),
                 fastconv.max_pool2d(x.astype(F32), 2, 2, "VALID"), F32)
    tw_t = tf.constant(rng.standard_normal((3, 3, 2, 3)))
    got = fastconv.conv2d_transpose(tx, tw_t, tf.constant([2, 12, 12, 2]), 2, "SAME")
    assert got.shape == (2, 12, 12, 2) and got.dtype == F64
    assert_close(fastconv.global_avg_pool2d(tx), x.mean(axis=(1, 2)), F64)


def test_numpy_integer_scalars_and_arrays_as_window_arguments(rng, assert_exact):
    x = rng.standard_normal((1, 6, 6, 2))
    expected = fastconv.max_pool2d(x, [2, 3], [2, 3], "VALID")
    got = fastconv.max_pool2d(x, np.array([2, 3]), (np.int64(2), np.int32(3)), "VALID")
    assert_exact(got, expected, F64)


# ----------------------------------------------------------------------------- PyTorch habits

class _TorchDtype:
    def __str__(self):
        return "torch.float32"


class _FakeTorchTensor:
    """Behaves like a CPU ``torch.Tensor`` for fastconv: NumPy conversion is refused while it
    requires grad (torch's RuntimeError), allowed after ``.detach()``."""

    __module__ = "torch"

    def __init__(self, array, requires_grad=True):
        self._array, self.requires_grad = array, requires_grad
        self.shape, self.dtype = array.shape, _TorchDtype()

    def detach(self):
        return _FakeTorchTensor(self._array, requires_grad=False)

    def __array__(self, dtype=None, copy=None):
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return self._array if dtype is None else self._array.astype(dtype)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_tensors_that_require_grad_are_read_through_detach(data_format, rng, assert_close):
    x = rng.standard_normal((2, 6, 6, 3)).astype(F32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(F32)
    b = rng.standard_normal(4).astype(F32)
    if data_format == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    expected = fastconv.conv2d(x, w, 1, "SAME", data_format, bias=b, activation="relu")
    got = fastconv.conv2d(_FakeTorchTensor(x), _FakeTorchTensor(w), 1, "SAME", data_format,
                          bias=_FakeTorchTensor(b), activation="relu")
    assert_close(got, expected, F32)
    assert_close(fastconv.max_pool2d(_FakeTorchTensor(x), 2, 2, "VALID", data_format),
                 fastconv.max_pool2d(x, 2, 2, "VALID", data_format), F32)


def test_real_torch_parameter_is_accepted(rng, assert_close):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((3, 3, 1, 4)).astype(F32)
    x = rng.standard_normal((1, 1, 8, 8)).astype(F32)
    parameter = torch.nn.Parameter(torch.from_numpy(w))
    assert_close(fastconv.conv2d(torch.from_numpy(x), parameter, 1, "SAME", "NCHW"),
                 fastconv.conv2d(x, w, 1, "SAME", "NCHW"), F32)


def test_pytorch_layout_filters_that_only_fit_that_way_name_the_layout():
    """The seed notebook's nn.Conv2d(1, 32, 3) weight is (32, 1, 3, 3)."""
    x = np.zeros((2, 1, 28, 28), F32)
    with pytest.raises(ValueError, match=r"look like PyTorch's \(out_channels, in_channels, "
                                         r"\*kernel\) layout: fastconv takes TF's \(H, W, "
                                         r"in_channels, out_channels\) in every data_format "
                                         r"\(convert with w\.transpose\(2, 3, 1, 0\)\)"):
        fastconv.conv2d(x, np.zeros((32, 1, 3, 3), F32), 1, "SAME", "NCHW")
    with pytest.raises(ValueError, match=r"w\.transpose\(2, 1, 0\)"):
        fastconv.conv1d(np.zeros((2, 4, 9), F32), np.zeros((8, 2, 3), F32), 1, "SAME", "NCW")


def test_filters_that_fit_both_layouts_warn_with_channels_first():
    x = np.zeros((2, 3, 16, 16), F32)
    message = (r"read as TF's \(H, W, in_channels, out_channels\) \(a 8x3 kernel\).*"
               r"w\.transpose\(2, 3, 1, 0\)")
    with pytest.warns(UserWarning, match=message) as caught:
        y = fastconv.conv2d(x, np.zeros((8, 3, 3, 3), F32), 1, "SAME", "NCHW")
    assert y.shape == (2, 3, 16, 16)  # TF's reading: 3 output channels
    assert caught[0].filename == __file__  # the warning points at the caller's line
