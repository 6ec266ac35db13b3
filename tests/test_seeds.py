"""Every example of the seed notes (/work/shared/SEEDS.md, seeds/*.txt) run through fastconv.

Shapes and parameter counts from the Keras ``model.summary()`` printouts, the photo workload, the
PyTorch NCHW net, seed 004's pooling printouts (the exact numbers TF printed) and hand-written
NumPy loops like the notes', and the "Negative dimension size" error.
"""

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64


def conv_layer(x, filters, kernel, rng, padding="VALID", strides=1, activation="relu",
               data_format="NHWC", dtype=F32):
    """A Keras Conv2D layer (TF filter layout + bias) in one fastconv call; returns (y, params)."""
    channels = x.shape[1] if data_format == "NCHW" else x.shape[-1]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = (rng.standard_normal((kh, kw, channels, filters)) / np.sqrt(kh * kw * channels))
    b = rng.standard_normal(filters) * 0.1
    y = fastconv.conv2d(x, w.astype(dtype), strides, padding, data_format,
                        bias=b.astype(dtype), activation=activation)
    return y, w.size + b.size


def max_pool(x, size=2, data_format="NHWC"):
    """Keras MaxPooling2D(size) / PyTorch MaxPool2d(size): window = stride = size, VALID."""
    return fastconv.max_pool2d(x, size, size, "VALID", data_format)


def _rand(rng, shape, dtype=F32):
    return rng.random(shape).astype(dtype)  # image-like values in [0, 1)


# ----------------------------------------------------------------------------- seed 001

def test_seed001_keras_mnist_cnn_shapes_and_params(rng):
    y = _rand(rng, (2, 28, 28, 1))
    shapes, params = [], []
    for filters, pool_after in ((32, True), (64, True), (64, False)):
        y, p = conv_layer(y, filters, 3, rng)
        shapes.append(y.shape)
        params.append(p)
        if pool_after:
            y = max_pool(y)
            shapes.append(y.shape)
    assert shapes == [(2, 26, 26, 32), (2, 13, 13, 32), (2, 11, 11, 64), (2, 5, 5, 64),
                      (2, 3, 3, 64)]
    assert params == [320, 18496, 36928]
    assert sum(params) == 55_744
    assert y.reshape(2, -1).shape[1] == 576  # Flatten -> Dense(64): 576 x 64 + 64 params
    assert 576 * 64 + 64 == 36_928 and 64 * 10 + 10 == 650
    assert y.dtype == F32 and (y >= 0).all()  # relu


def test_seed001_mnist_cnn_without_pooling(rng):
    y = _rand(rng, (1, 28, 28, 1))
    shapes, params = [], []
    for filters in (32, 64, 64):
        y, p = conv_layer(y, filters, 3, rng)
        shapes.append(y.shape[1:])
        params.append(p)
    assert shapes == [(26, 26, 32), (24, 24, 64), (22, 22, 64)]
    assert params == [320, 18496, 36928] and sum(params) == 55_744
    assert y.size == 22 * 22 * 64 == 30_976


def test_seed001_mnist_cnn_matches_tf_end_to_end(rng, oracle, assert_close):
    """The whole feature extractor, fastconv vs tf.nn, layer by layer (float32, batch 2)."""
    x = _rand(rng, (2, 28, 28, 1))
    ours = theirs = x
    for filters, pool_after in ((32, True), (64, True), (64, False)):
        channels = ours.shape[-1]
        w = (rng.standard_normal((3, 3, channels, filters)) / np.sqrt(9 * channels)).astype(F32)
        b = (rng.standard_normal(filters) * 0.1).astype(F32)
        ours = fastconv.conv2d(ours, w, 1, "VALID", bias=b, activation="relu")
        theirs = oracle.conv(theirs, w, (1, 1), "VALID", bias=b, activation="relu")
        assert_close(ours, theirs, F32)
        if pool_after:
            ours = max_pool(ours)
            theirs = oracle.pool("max", theirs, (2, 2), (2, 2), "VALID")
            assert_close(ours, theirs, F32)
    assert ours.shape == (2, 3, 3, 64)


# ----------------------------------------------------------------------------- seed 000

def test_seed000_same_conv_keeps_size(rng):
    y, p = conv_layer(_rand(rng, (1, 28, 28, 1)), 4, 3, rng, padding="SAME")
    assert y.shape == (1, 28, 28, 4) and p == 3 * 3 * 1 * 4 + 4


def test_seed000_even_kernel_same_conv_then_pool(rng):
    y, p = conv_layer(_rand(rng, (1, 27, 27, 1)), 6, (2, 2), rng, padding="SAME")
    assert y.shape == (1, 27, 27, 6) and p == 30
    assert max_pool(y).shape == (1, 13, 13, 6)


def test_seed000_summary_480_params(rng):
    x = _rand(rng, (1, 7, 7, 5))
    y1, p1 = conv_layer(x, 4, 3, rng, padding="SAME", activation=None)
    y2, p2 = conv_layer(y1, 8, 3, rng, padding="VALID", activation=None)
    y3 = max_pool(y2)
    assert [y1.shape, y2.shape, y3.shape] == [(1, 7, 7, 4), (1, 5, 5, 8), (1, 2, 2, 8)]
    assert (p1, p2, p1 + p2) == (184, 296, 480)


def test_seed000_image_classifier_shapes_and_params(rng):
    x = _rand(rng, (1, 28, 28, 1))
    y1, p1 = conv_layer(x, 32, 3, rng, padding="SAME")
    y2, p2 = conv_layer(y1, 64, 3, rng)
    y3 = max_pool(y2)
    assert [y1.shape, y2.shape, y3.shape] == [(1, 28, 28, 32), (1, 26, 26, 64), (1, 13, 13, 64)]
    flat = y3.reshape(1, -1).shape[1]
    assert flat == 10_816
    dense1, dense2 = flat * 100 + 100, 100 * 10 + 10
    assert (p1, p2, dense1, dense2) == (320, 18_496, 1_081_700, 1_010)
    assert p1 + p2 + dense1 + dense2 == 1_101_526


def test_seed000_negative_dimension_error(rng):
    x = _rand(rng, (1, 13, 13, 5))
    y1, _ = conv_layer(x, 8, 5, rng, strides=2)
    y2, _ = conv_layer(y1, 16, 5, rng, strides=2)
    assert y1.shape == (1, 5, 5, 8)      # (13 - 5) // 2 + 1 = 5
    assert y2.shape == (1, 1, 1, 16)     # (5 - 5) // 2 + 1 = 1
    with pytest.raises(ValueError, match=r"Negative dimension size.*size 2.*of size 1") as info:
        max_pool(y2)
    assert "(1, 1)" in str(info.value)  # names the input's spatial shape too
    with pytest.raises(ValueError, match=r"Negative dimension size"):
        fastconv.conv_output_size(1, 2, 2, "VALID")


# ----------------------------------------------------------------------------- seed 002

def test_seed002_output_size_formula():
    # (n + 2p - f) / s + 1
    for n, p, f, s in [(5, 1, 3, 1), (5, 0, 3, 1), (28, 0, 3, 2), (427, 0, 2, 2), (640, 0, 2, 2),
                       (7, 1, 3, 2), (32, 2, 5, 1)]:
        assert fastconv.conv_output_size(n, f, s, p) == (n + 2 * p - f) // s + 1


def test_seed002_photo_conv_relu_pool_matches_tf(rng, oracle, assert_close, assert_exact):
    """The flower photo (427x640x3, batch 1) -> Conv2D(32, 3, same, relu) -> MaxPool2D(2)."""
    photo = _rand(rng, (1, 427, 640, 3))
    w = (rng.standard_normal((3, 3, 3, 32)) / np.sqrt(27)).astype(F32)
    b = (rng.standard_normal(32) * 0.1).astype(F32)
    y = fastconv.conv2d(photo, w, 1, "SAME", bias=b, activation="relu")
    assert y.shape == (1, 427, 640, 32)
    expected = oracle.conv(photo, w, (1, 1), "SAME", bias=b, activation="relu")
    assert_close(y, expected, F32)
    pooled = max_pool(y)
    assert pooled.shape == (1, 213, 320, 32)
    assert_exact(pooled, oracle.pool("max", y, (2, 2), (2, 2), "VALID"), F32)


def test_seed002_float64_photo_keeps_float64(rng):
    # load_sample_image(...) / 255 is float64; fastconv keeps it (Keras would make float32).
    photo = _rand(rng, (2, 427, 64, 3), F64)  # a strip of the 2-image batch, to stay quick
    y, _ = conv_layer(photo, 16, 3, rng, padding="SAME", dtype=F64)
    assert y.shape == (2, 427, 64, 16) and y.dtype == F64
    assert max_pool(y).dtype == F64


# ----------------------------------------------------------------------------- seed 003

def test_seed003_pytorch_nchw_net_shapes_and_params(rng):
    x = _rand(rng, (1, 1, 28, 28))
    pad1 = [[0, 0], [0, 0], [1, 1], [1, 1]]  # nn.Conv2d(..., padding=1), NCHW
    y1, p1 = conv_layer(x, 32, 3, rng, padding=pad1, data_format="NCHW")
    y2 = max_pool(y1, data_format="NCHW")
    y3, p2 = conv_layer(y2, 64, 3, rng, padding=pad1, data_format="NCHW")
    y4 = max_pool(y3, data_format="NCHW")
    assert [y1.shape, y2.shape, y3.shape, y4.shape] == [
        (1, 32, 28, 28), (1, 32, 14, 14), (1, 64, 14, 14), (1, 64, 7, 7)]
    flat = y4.reshape(y4.shape[0], -1)
    assert flat.shape == (1, 3136)
    # Ki x Ko x Ci x Co weights (+ Co biases); Linear(3136, 10).
    assert (p1, p2) == (3 * 3 * 1 * 32 + 32, 3 * 3 * 32 * 64 + 64) == (320, 18496)
    assert 3136 * 10 + 10 == 31_370
    # O = floor((I - K + 2P) / S) + 1
    assert fastconv.conv_output_size(28, 3, 1, 1) == (28 - 3 + 2) // 1 + 1 == 28


def test_seed003_nchw_explicit_padding_equals_nhwc_same(rng, assert_close):
    x = _rand(rng, (2, 1, 28, 28))
    w = rng.standard_normal((3, 3, 1, 32)).astype(F32)
    b = rng.standard_normal(32).astype(F32)
    nchw = fastconv.conv2d(x, w, 1, [[0, 0], [0, 0], [1, 1], [1, 1]], "NCHW", bias=b,
                           activation="relu")
    nhwc = fastconv.conv2d(x.transpose(0, 2, 3, 1), w, 1, "SAME", bias=b, activation="relu")
    assert_close(nchw, nhwc.transpose(0, 3, 1, 2), F32)


def test_seed003_pooling_keeps_channel_count(rng):
    x = _rand(rng, (1, 32, 28, 28))
    assert fastconv.max_pool2d(x, 2, 2, "VALID", "NCHW").shape == (1, 32, 14, 14)
    assert fastconv.avg_pool2d(x, 2, 2, "VALID", "NCHW").shape == (1, 32, 14, 14)


# ----------------------------------------------------------------------------- seed 004

def _f32(text):
    return np.array(text.split(), dtype=F32)


# The numbers TensorFlow printed in seed 004 (float32 reprs, so they parse back exactly).
MAX1D_X = _f32("0.74785167 0.21461636 2.6922438 2.215315 1.1941749 -0.68907845 -1.1156827 "
               "-0.09096188 0.19192913 -0.75345397")
MAX1D_TF = _f32("0.74785167 2.6922438 2.6922438 2.215315 1.1941749 -0.68907845 -0.09096188 "
                "0.19192913 0.19192913")
AVG1D_X = _f32("-0.9663772 -1.9476278 0.38253033 -0.9386613 -0.223463 1.7386291 -1.3975677 "
               "-1.4622998 -0.09377569 -0.6607355")
AVG1D_TF = _f32("-1.4570025 -0.7825487 -0.27806547 -0.58106214 0.757583 0.17053068 -1.4299338 "
                "-0.7780378 -0.3772556")
MAX2D_X = _f32("""0.7827516 -0.30897748 -2.018037 1.1552018 0.7307982
                  0.05400821 0.6710787 1.1512607 1.0191326 1.141896
                  -0.56917226 -0.974233 -0.17592804 0.5750942 0.8271091
                  0.32191488 0.00621981 -1.4048536 0.05103262 -0.10535239
                  0.95224744 -0.37198898 -0.7996818 1.1455618 -1.4212846""").reshape(5, 5)
MAX2D_TF = _f32("""0.7827516 1.1512607 1.1552018 1.1552018
                   0.6710787 1.1512607 1.1512607 1.141896
                   0.32191488 0.00621981 0.5750942 0.8271091
                   0.95224744 0.00621981 1.1455618 1.1455618""").reshape(4, 4)
AVG2D_X = _f32("""0.26113737 -0.56307817 0.21443902 -0.19741607 0.9482374
                  0.03316693 -0.3110888 0.19893058 0.98124266 -1.5929346
                  -1.0411483 0.127162 -1.1271299 1.1738646 0.6369786
                  -2.1159682 -0.7146053 0.11509072 -1.377871 0.7687496
                  -0.2223623 1.1632506 -1.2287353 -1.425734 -0.01867203""").reshape(5, 5)
AVG2D_TF = _f32("""-0.14496566 -0.11519934 0.29929906 0.03478235
                   -0.29797703 -0.27803153 0.306727 0.29978782
                   -0.93613994 -0.3998706 -0.3040114 0.30043045
                   -0.47242132 -0.16624983 -0.9793124 -0.51338184""").reshape(4, 4)
# Printed channel by channel (np.transpose(x, (2, 0, 1))).
MULTI_X = _f32("""-0.04165245 -0.69489294 0.2628172 -1.4416945 0.32234243
                  -0.79485124 -1.2013087 -1.2264383 0.8739131 -0.7393973
                  -0.8175927 -0.32816795 -0.712461 -1.6772014 -0.36527568
                  -1.825489 1.2413286 0.14806442 -2.4312792 -0.9400049
                  -0.5953234 -0.6701633 1.246382 0.0760054 -0.66434175
                  0.69569916 -0.4265282 1.0689193 -2.368038 -2.049476
                  0.3202273 -0.09945048 0.10267391 1.9018568 -0.40930164
                  -0.332641 0.9687359 -0.5321431 1.397498 -2.3049204
                  -0.8621706 -0.30300015 -0.02255699 -0.5857848 0.8662503
                  0.01320763 -1.2768902 1.6485813 0.7326172 -0.6582798
                  -0.44493952 0.9499523 -0.9830161 0.78371817 -0.88013387
                  0.5741747 -0.5608523 0.11236259 0.20844218 -1.5184106
                  0.05717982 -0.05508999 0.00551856 0.48005813 -0.87953824
                  -1.1947052 0.86224306 0.17340192 -0.6662103 2.0635462
                  -1.9396527 0.80733216 -0.391985 -0.8547198 -2.0354655""").reshape(3, 5, 5)
MULTI_TF = _f32("""-0.04165245 0.8739131 1.2413286 0.14806442
                   0.69569916 1.9018568 0.9687359 1.397498
                   0.9499523 0.78371817 0.86224306 0.48005813""").reshape(3, 2, 2)


def test_seed004_printed_1d_pooling():
    x = MAX1D_X.reshape(1, 10, 1)
    got = fastconv.max_pool1d(x, 2, 1, "VALID")
    assert got.shape == (1, 9, 1)
    np.testing.assert_array_equal(got.ravel(), MAX1D_TF)
    avg = fastconv.avg_pool1d(AVG1D_X.reshape(1, 10, 1), 2, 1, "VALID")
    assert avg.shape == (1, 9, 1) and avg.dtype == F32
    np.testing.assert_allclose(avg.ravel(), AVG1D_TF, rtol=0, atol=1e-6)


def test_seed004_printed_2d_pooling():
    got = fastconv.max_pool2d(MAX2D_X.reshape(1, 5, 5, 1), 2, 1, "VALID")
    assert got.shape == (1, 4, 4, 1)
    np.testing.assert_array_equal(got[0, :, :, 0], MAX2D_TF)
    avg = fastconv.avg_pool2d(AVG2D_X.reshape(1, 5, 5, 1), 2, 1, "VALID")
    assert avg.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(avg[0, :, :, 0], AVG2D_TF, rtol=0, atol=1e-6)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_seed004_printed_multichannel_pooling(data_format):
    x = MULTI_X.transpose(1, 2, 0)[None] if data_format == "NHWC" else MULTI_X[None]
    got = fastconv.max_pool2d(x, 2, 2, "VALID", data_format)
    if data_format == "NHWC":
        assert got.shape == (1, 2, 2, 3)
        got = got[0].transpose(2, 0, 1)
    else:
        assert got.shape == (1, 3, 2, 2)
        got = got[0]
    np.testing.assert_array_equal(got, MULTI_TF)


def _loop_pool_1d(x, f, s, reduce):
    """The notes' loop: ``window = x[i:i+f]`` for i in 0, s, 2s, ..."""
    return np.array([reduce(x[i:i + f]) for i in range(0, len(x) - f + 1, s)])


def _loop_pool_2d_multichannel(x, f, s, reduce):
    """The notes' channel-wise loop with separate output counters h_, w_."""
    n_h, n_w, n_c = x.shape
    out = np.zeros((int(np.floor((n_h - f) / s + 1)), int(np.floor((n_w - f) / s + 1)), n_c))
    for c in range(n_c):
        c_image = x[:, :, c]
        h_ = 0
        for h in range(0, n_h - f + 1, s):
            w_ = 0
            for w in range(0, n_w - f + 1, s):
                out[h_, w_, c] = reduce(c_image[h:h + f, w:w + f])
                w_ += 1
            h_ += 1
    return out


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("length, f, s", [(10, 2, 1), (11, 3, 2), (12, 4, 4)])
def test_seed004_1d_pooling_equals_loop(kind, length, f, s, rng, assert_close):
    x = rng.standard_normal(length)
    reduce = np.max if kind == "max" else np.mean
    pool = fastconv.max_pool1d if kind == "max" else fastconv.avg_pool1d
    got = pool(x.reshape(1, length, 1), f, s, "VALID")
    assert_close(got, _loop_pool_1d(x, f, s, reduce).reshape(1, -1, 1), F64)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape, f, s", [((5, 5, 1), 2, 1), ((5, 5, 3), 2, 2), ((28, 28, 3), 3, 2),
                                         ((7, 6, 2), 3, 3)])
def test_seed004_2d_pooling_equals_loop(kind, shape, f, s, rng, assert_close):
    x = rng.standard_normal(shape)
    reduce = np.max if kind == "max" else np.mean
    pool = fastconv.max_pool2d if kind == "max" else fastconv.avg_pool2d
    got = pool(x[None], f, s, "VALID")
    expected = _loop_pool_2d_multichannel(x, f, s, reduce)
    assert_close(got, expected[None], F64)
    if shape == (5, 5, 3):
        assert got.shape == (1, 2, 2, 3)
    if shape == (28, 28, 3):
        assert got.shape == (1, 13, 13, 3)


def test_seed004_zero_padding_and_strides_shapes(rng):
    images = rng.standard_normal((1, 28, 28, 3)).astype(F32)
    assert fastconv.zero_pad2d(images, 1).shape == (1, 30, 30, 3)
    same, _ = conv_layer(images, 1, 3, rng, padding="SAME", activation=None)
    assert same.shape == (1, 28, 28, 1)
    strided, _ = conv_layer(images, 1, 3, rng, padding="VALID", strides=2, activation=None)
    assert strided.shape == (1, 13, 13, 1)
    assert fastconv.max_pool2d(images, 3, 2, "VALID").shape == (1, 13, 13, 3)
    # Padding (f - 1) / 2 keeps the size: n + 2p - f + 1 = n.
    padded = fastconv.zero_pad2d(images, 1)
    valid_after_pad, _ = conv_layer(padded, 1, 3, rng, padding="VALID", activation=None)
    assert valid_after_pad.shape == (1, 28, 28, 1)


def test_seed004_zero_pad_then_valid_equals_same(rng, assert_close):
    images = rng.standard_normal((1, 28, 28, 3)).astype(F32)
    w = rng.standard_normal((3, 3, 3, 1)).astype(F32)
    assert_close(fastconv.conv2d(fastconv.zero_pad2d(images, 1), w, 1, "VALID"),
                 fastconv.conv2d(images, w, 1, "SAME"), F32)


# ----------------------------------------------------------------------------- workloads

@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("size, in_ch, out_ch, padding", [
    (28, 1, 32, "SAME"), (28, 1, 32, "VALID"), (14, 32, 64, "SAME"), (26, 32, 64, "VALID"),
])
def test_mnist_workload_layers_match_tf(size, in_ch, out_ch, padding, data_format, rng, oracle,
                                        assert_close):
    channels_first = data_format == "NCHW"
    shape = (2, in_ch, size, size) if channels_first else (2, size, size, in_ch)
    x = _rand(rng, shape)
    w = (rng.standard_normal((3, 3, in_ch, out_ch)) / np.sqrt(9 * in_ch)).astype(F32)
    b = (rng.standard_normal(out_ch) * 0.1).astype(F32)
    got = fastconv.conv2d(x, w, 1, padding, data_format, bias=b, activation="relu")
    assert_close(got, oracle.conv(x, w, (1, 1), padding, None, channels_first, b, "relu"), F32)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("size, channels", [(28, 32), (26, 64)])
def test_mnist_workload_pooling_matches_tf(size, channels, data_format, rng, oracle, assert_exact):
    channels_first = data_format == "NCHW"
    shape = (2, channels, size, size) if channels_first else (2, size, size, channels)
    x = rng.standard_normal(shape).astype(F32)
    got = max_pool(x, 2, data_format)
    assert_exact(got, oracle.pool("max", x, (2, 2), (2, 2), "VALID", channels_first), F32)
