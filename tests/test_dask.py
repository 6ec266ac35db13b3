"""Every op on dask arrays (fastconv.chunked) equals the in-memory call, over random chunkings.

The in-memory result of the same fastconv call is the expected value (the rest of the suite
holds that one to TensorFlow and the NumPy oracle): bit for bit for the ops that only select
or copy, the suite's tolerance for the others. Chunkings are drawn per dim with chunks of 1,
chunks smaller than the window's halo, and uneven chunks; geometries with strides larger than
a chunk, dilations, SAME's odd padding, explicit padding wider than the window (blocks of
padding only), groups whose channel chunks hold whole groups or split them.
"""

import os
from types import SimpleNamespace

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
from hypothesis import given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
from fastconv import chunked  # noqa: E402
from conftest import LAYOUTS, PLANAR_POOL_WINDOWS  # noqa: E402
from fastconv.testing import assert_close, assert_exact  # noqa: E402

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _examples(units):
    return settings(max_examples=max(1, int(units * settings.default.max_examples)))


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


# ----------------------------------------------------------------------------- strategies

@st.composite
def chunkings(draw, size):
    """Chunk sizes along a dim of ``size``: one chunk, all ones, or random cuts."""
    mode = draw(st.sampled_from(["one", "ones", "cuts", "cuts", "cuts"]))
    if size <= 1 or mode == "one":
        return (size,)
    if mode == "ones":
        return (1,) * size
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), min_size=1, max_size=min(4, size - 1))))
    bounds = [0, *cuts, size]
    return tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))


def _values(seed, shape, dtype, kind):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if kind == "ties":
        x = np.round(x)
    elif kind == "nan" and x.size:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, max(1, flat.size // 20))] = np.nan
        flat[rng.integers(0, flat.size, max(1, flat.size // 20))] = -np.inf
    return x.astype(dtype)


@st.composite
def window(draw, n, *, max_kernel=4, dilation=True, padding="conv", windows=None):
    """Per-dim kernel, stride, dilation, padding and an input size with a non-empty output."""
    mode = draw(st.sampled_from(["SAME", "VALID", "explicit"] if padding else ["SAME", "VALID"]))
    trailing = draw(st.sampled_from(windows)) if windows else None
    kernel, strides, dilations, pads, sizes = [], [], [], [], []
    for axis in range(n):
        if trailing is not None and axis >= n - 2:
            (k, s), d = trailing[axis - n + 2], 1
        else:
            k, s = draw(st.integers(1, max_kernel)), draw(st.integers(1, 4))
            d = draw(st.integers(1, 3)) if dilation and draw(st.booleans()) else 1
        span = (k - 1) * d + 1
        if mode == "explicit":
            limit = 6 if padding == "conv" else k - 1  # convs: wider than the window too
            pair = (draw(st.integers(0, limit)), draw(st.integers(0, limit)))
        else:
            pair = (0, 0)
        low = 1 if mode == "SAME" else max(1, span - sum(pair))
        sizes.append(draw(st.integers(low, low + 9)))
        kernel.append(k), strides.append(s), dilations.append(d), pads.append(pair)
    return SimpleNamespace(kernel=tuple(kernel), strides=list(strides), dilations=list(dilations),
                           padding=[list(p) for p in pads] if mode == "explicit" else mode,
                           sizes=tuple(sizes))


def _shape(batch, channels, sizes, channels_first):
    return (batch, channels, *sizes) if channels_first else (batch, *sizes, channels)


def _chunks_of(draw, shape):
    return tuple(draw(chunkings(n)) for n in shape)


@st.composite
def conv_cases(draw):
    n = draw(st.sampled_from([1, 2, 2, 3]))
    g = draw(window(n, max_kernel=3 if n == 3 else 4))
    cf = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    group_in, per_group = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([F32, F64]))
    shape = _shape(draw(st.integers(1, 3)), groups * group_in, g.sizes, cf)
    fn = {1: fastconv.conv1d, 2: fastconv.conv2d, 3: fastconv.conv3d}[n]
    seed = draw(st.integers(0, 2**32 - 1))
    w = _values(seed + 1, g.kernel + (group_in, groups * per_group), dtype, "normal")
    with_bias = draw(st.booleans())
    bias = _values(seed + 2, (groups * per_group,), dtype, "normal") if with_bias else None
    activation = draw(st.sampled_from([None, "relu", "tanh"]))

    def call(x):
        return fn(x, w, g.strides, g.padding, LAYOUTS[n][cf], g.dilations, bias=bias,
                  activation=activation)
    return SimpleNamespace(call=call, shape=shape, dtype=dtype, exact=False,
                           chunks=_chunks_of(draw, shape), values="normal", seed=seed,
                           label=f"conv{n}d groups={groups} {g} cf={cf}")


@st.composite
def depthwise_cases(draw):
    g = draw(window(2))
    cf = draw(st.booleans())
    channels, multiplier = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([F32, F64]))
    shape = _shape(draw(st.integers(1, 2)), channels, g.sizes, cf)
    seed = draw(st.integers(0, 2**32 - 1))
    w = _values(seed + 1, g.kernel + (channels, multiplier), dtype, "normal")

    def call(x):
        return fastconv.depthwise_conv2d(x, w, g.strides, g.padding, LAYOUTS[2][cf], g.dilations)
    return SimpleNamespace(call=call, shape=shape, dtype=dtype, exact=False,
                           chunks=_chunks_of(draw, shape), values="normal", seed=seed,
                           label=f"depthwise x{multiplier} {g} cf={cf}")


@st.composite
def transpose_cases(draw):
    g = draw(window(2, padding="conv"))
    cf = draw(st.booleans())
    in_channels, out_channels = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([F32, F64]))
    batch = draw(st.integers(1, 2))
    # The transposed conv's input is what the forward conv maps the output to.
    forward = []
    for axis, (n, k, s, d) in enumerate(zip(g.sizes, g.kernel, g.strides, g.dilations)):
        span = (k - 1) * d + 1
        pad = 0 if isinstance(g.padding, str) else sum(g.padding[axis])
        forward.append(-(-n // s) if g.padding == "SAME" else (n + pad - span) // s + 1)
    shape = _shape(batch, in_channels, forward, cf)
    seed = draw(st.integers(0, 2**32 - 1))
    w = _values(seed + 1, g.kernel + (out_channels, in_channels), dtype, "normal")
    output_shape = _shape(batch, out_channels, g.sizes, cf)

    def call(x):
        return fastconv.conv2d_transpose(x, w, output_shape, g.strides, g.padding,
                                         LAYOUTS[2][cf], g.dilations)
    return SimpleNamespace(call=call, shape=shape, dtype=dtype, exact=False,
                           chunks=_chunks_of(draw, shape), values="normal", seed=seed,
                           label=f"conv2d_transpose {g} -> {output_shape} cf={cf}")


@st.composite
def pool_cases(draw):
    kind = draw(st.sampled_from(["max", "avg"]))
    n = draw(st.sampled_from([1, 2, 2, 3]))
    cf = draw(st.booleans())
    g = draw(window(n, max_kernel=3 if n == 3 else 4, dilation=False,
                    padding="max_pool" if kind == "max" else None,
                    windows=PLANAR_POOL_WINDOWS if cf else None))
    dtype = draw(st.sampled_from([F32, F64]))
    shape = _shape(draw(st.integers(1, 3)), draw(st.integers(1, 4)), g.sizes, cf)
    fn = getattr(fastconv, f"{kind}_pool{n}d")

    def call(x):
        return fn(x, list(g.kernel), g.strides, g.padding, LAYOUTS[n][cf])
    return SimpleNamespace(call=call, shape=shape, dtype=dtype, exact=kind == "max",
                           chunks=_chunks_of(draw, shape),
                           values=draw(st.sampled_from(["normal", "ties", "nan"])),
                           seed=draw(st.integers(0, 2**32 - 1)),
                           label=f"{kind}_pool{n}d {g} cf={cf}")


@st.composite
def global_and_pad_cases(draw):
    op = draw(st.sampled_from(["global_max_pool2d", "global_avg_pool2d", "zero_pad2d"]))
    data_format = draw(st.sampled_from(["NHWC", "NCHW"]))
    cf = data_format == "NCHW"
    dtype = draw(st.sampled_from([F32, F64]))
    shape = _shape(draw(st.integers(1, 3)), draw(st.integers(1, 4)),
                   (draw(st.integers(1, 9)), draw(st.integers(1, 9))), cf)
    if op == "zero_pad2d":
        padding = ((draw(st.integers(0, 4)), draw(st.integers(0, 4))),
                   (draw(st.integers(0, 4)), draw(st.integers(0, 4))))

        def call(x):
            return fastconv.zero_pad2d(x, padding, data_format)
    else:
        keepdims = draw(st.booleans())

        def call(x):
            return getattr(fastconv, op)(x, data_format, keepdims)
    return SimpleNamespace(call=call, shape=shape, dtype=dtype, exact=op != "global_avg_pool2d",
                           chunks=_chunks_of(draw, shape),
                           values=draw(st.sampled_from(["normal", "nan"])),
                           seed=draw(st.integers(0, 2**32 - 1)), label=op)


def _check(case):
    note(f"{case.label}; shape {case.shape}, chunks {case.chunks}")
    x = _values(case.seed, case.shape, case.dtype, case.values)
    expected = case.call(x)
    lazy = case.call(da.from_array(x, chunks=case.chunks))
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    assert all(min(c) > 0 for c in lazy.chunks), lazy.chunks  # no empty output chunks
    got = lazy.compute()
    (assert_exact if case.exact else assert_close)(got, expected, case.dtype)


@pytest.mark.parametrize("strategy, units", [
    (conv_cases, 1.5), (depthwise_cases, 0.5), (transpose_cases, 1.0), (pool_cases, 1.0),
    (global_and_pad_cases, 0.5)], ids=["conv", "depthwise", "conv2d_transpose", "pool",
                                       "global_and_pad"])
def test_dask_equals_in_memory(strategy, units):
    @_examples(units)
    @given(strategy())
    def prop(case):
        _check(case)
    prop()


# ----------------------------------------------------------------------------- block plans

@st.composite
def plans(draw):
    size = draw(st.integers(1, 40))
    chunks = draw(chunkings(size))
    k, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    span = (k - 1) * d + 1
    pads = (draw(st.integers(0, 7)), draw(st.integers(0, 7)))
    if span > size + sum(pads):
        pads = (pads[0], span - size - pads[0] + draw(st.integers(0, 3)))
    return chunks, size, k, s, d, span, pads


@_examples(1)
@given(plans())
def test_window_segments_cover_the_output_and_read_bounded_slices(plan):
    chunks, size, k, s, d, span, pads = plan
    out_size = (size + sum(pads) - span) // s + 1
    segments = chunked.window_segments(chunks, k, s, d, pads, out_size)
    assert sum(seg.out for seg in segments) == out_size and all(seg.out > 0 for seg in segments)
    bounds = np.cumsum((0,) + chunks)
    first = 0
    for seg in segments:
        # The block's op on its slice with its padding gives exactly its outputs...
        assert min(seg.pad_before, seg.pad_after) >= 0
        assert (seg.stop - seg.start + seg.pad_before + seg.pad_after - span) // s + 1 == seg.out
        # ...which are the global outputs first .. first + out - 1, read from the same cells.
        assert seg.start - seg.pad_before == first * s - pads[0]
        # The slice is the anchors' chunks plus a halo of at most the window before and after.
        anchor_block = np.searchsorted(bounds, min(max(first * s, 0), size - 1), side="right") - 1
        last_anchor = (first + seg.out - 1) * s
        end_block = np.searchsorted(bounds, min(last_anchor, size - 1), side="right")
        assert seg.start >= bounds[anchor_block] - pads[0]
        assert seg.stop <= bounds[end_block] + span - 1
        first += seg.out


@_examples(1)
@given(plans())
def test_transposed_segments_cover_the_output(plan):
    chunks_out, out_size, k, s, d, span, pads = plan  # out_size: the transposed conv's output
    size = (out_size + sum(pads) - span) // s + 1  # its input, the forward conv's output
    rng = np.random.default_rng(out_size * 7 + size)
    cuts = sorted(set(rng.integers(1, size, 3).tolist())) if size > 1 else []
    chunks = tuple(np.diff([0, *cuts, size]).tolist())
    segments = chunked.transposed_segments(chunks, k, s, d, pads[0], out_size)
    assert sum(seg.out for seg in segments) == out_size
    first = 0
    for seg in segments:
        assert 0 <= seg.start < seg.stop <= size
        assert min(seg.pad_before, seg.pad_after) >= 0
        # The block's forward conv maps its outputs onto exactly its input slice...
        assert (seg.out + seg.pad_before + seg.pad_after - span) // s + 1 == seg.stop - seg.start
        # ...aligned with the global one: output `first` sits at the same place.
        assert first + pads[0] - seg.start * s == seg.pad_before
        # Every input cell whose taps reach the block's outputs is in the slice.
        for i in range(size):
            reaches = any(first <= i * s - pads[0] + t * d < first + seg.out for t in range(k))
            assert not reaches or seg.start <= i < seg.stop
        first += seg.out


# ----------------------------------------------------------------------------- behaviour

def test_chunks_follow_the_input():
    x = da.zeros((2, 64, 48, 3), dtype=np.float32, chunks=(1, 16, 24, 3))
    w = np.ones((3, 3, 3, 8), np.float32)
    assert fastconv.conv2d(x, w, 1, "SAME").chunks == ((1, 1), (16,) * 4, (24, 24), (8,))
    assert fastconv.conv2d(x, w, 2, "SAME").chunks == ((1, 1), (8,) * 4, (12, 12), (8,))
    assert fastconv.max_pool2d(x, 2, 2, "VALID").chunks == ((1, 1), (8,) * 4, (12, 12), (3,))
    assert fastconv.zero_pad2d(x, 2).chunks == ((1, 1), (18, 16, 16, 18), (26, 26), (3,))
    up = fastconv.conv2d_transpose(x, np.ones((3, 3, 5, 3), np.float32), (2, 128, 96, 5), 2)
    assert up.chunks == ((1, 1), (32,) * 4, (48, 48), (5,))


def test_channel_chunks_kept_where_channels_are_independent_or_whole_groups():
    x = da.zeros((1, 8, 8, 6), dtype=np.float32, chunks=(1, 4, 4, 2))
    assert fastconv.max_pool2d(x, 2, 2, "SAME").chunks[3] == (2, 2, 2)
    assert fastconv.depthwise_conv2d(x, np.ones((3, 3, 6, 2), np.float32), 1,
                                     "SAME").chunks[3] == (4, 4, 4)
    grouped = np.ones((3, 3, 2, 9), np.float32)  # 3 groups of 2 channels, 3 outputs each
    assert fastconv.conv2d(x, grouped, 1, "SAME").chunks[3] == (3, 3, 3)
    split_groups = np.ones((3, 3, 3, 4), np.float32)  # 2 groups of 3: chunks of 2 split them
    assert fastconv.conv2d(x, split_groups, 1, "SAME").chunks[3] == (4,)
    assert fastconv.conv2d(x, np.ones((3, 3, 6, 5), np.float32), 1, "SAME").chunks[3] == (5,)


def test_lazy_until_computed_and_filters_may_be_dask():
    calls = []

    def make(block):
        calls.append(1)
        return block

    x = da.ones((1, 12, 12, 2), dtype=np.float64, chunks=(1, 5, 5, 2)).map_blocks(
        make, meta=np.empty((0, 0, 0, 0)))
    w = da.from_array(np.full((3, 3, 2, 4), 0.5))
    y = fastconv.conv2d(x, w, 1, "SAME", bias=np.ones(4), activation="relu")
    assert calls == [] and isinstance(y, da.Array)
    expected = fastconv.conv2d(np.ones((1, 12, 12, 2)), np.full((3, 3, 2, 4), 0.5), 1, "SAME",
                               bias=np.ones(4), activation="relu")
    assert_close(y.compute(), expected, F64)
    assert calls


def test_input_keyword_and_rank_generic_ops():
    x = np.random.default_rng(1).standard_normal((2, 9, 7, 3)).astype(np.float32)
    lazy = da.from_array(x, chunks=(1, 4, 3, 3))
    assert_exact(fastconv.max_pool(input=lazy, ksize=3, strides=2, padding="SAME").compute(),
                 fastconv.max_pool(x, 3, 2, "SAME"), F32)
    w = np.random.default_rng(2).standard_normal((2, 2, 3, 4)).astype(np.float32)
    assert_close(fastconv.convolution(lazy, w, padding="SAME").compute(),
                 fastconv.convolution(x, w, padding="SAME"), F32)


@pytest.mark.parametrize("name, call, shape", [
    ("conv1d_transpose", lambda f, x, w: f.conv1d_transpose(x, w[0], (2, 18, 2), 2, "SAME"),
     (2, 9, 3)),
    ("conv3d_transpose", lambda f, x, w: f.conv3d_transpose(x, w[None], (1, 8, 6, 10, 2), 2,
                                                            "SAME", "NDHWC", (1, 1, 1)),
     (1, 4, 3, 5, 3)),
    ("conv_transpose", lambda f, x, w: f.conv_transpose(x, w, (2, 2, 19, 15), 2, "VALID",
                                                        "NCHW"), (2, 3, 9, 7)),
    ("atrous_conv2d", lambda f, x, w: f.atrous_conv2d(x, w, 2, "SAME"), (2, 9, 7, 2)),
    ("separable_conv2d", lambda f, x, w: f.separable_conv2d(x, w.transpose(0, 1, 3, 2)[..., :1],
                                                            w.transpose(0, 1, 3, 2)[:1, :1], 1,
                                                            "SAME"), (2, 9, 7, 3)),
    ("atrous_conv2d_transpose", lambda f, x, w: f.atrous_conv2d_transpose(x, w, (2, 9, 7, 2), 2,
                                                                          "SAME"), (2, 9, 7, 3)),
])
def test_the_other_transposed_and_atrous_convs_follow_dask(name, call, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)  # transposed: (H, W, out, in)
    lazy = call(fastconv, da.from_array(x, chunks=tuple(max(1, n // 2) for n in shape)), w)
    assert isinstance(lazy, da.Array), name
    assert_close(lazy.compute(), call(fastconv, x, w), F32)


def test_errors_before_any_graph_is_built():
    x = da.zeros((1, 8, 8, 3), dtype=np.float32, chunks=4)
    with pytest.raises(ValueError, match="not a multiple of the filters' in_channels"):
        fastconv.conv2d(x, np.ones((3, 3, 2, 4), np.float32), 1, "SAME")
    with pytest.raises(TypeError, match="filters has dtype float64"):
        fastconv.conv2d(x, np.ones((3, 3, 3, 4)), 1, "SAME")
    with pytest.raises(TypeError, match="input must have dtype float32 or float64"):
        fastconv.max_pool2d(da.zeros((1, 4, 4, 1), dtype=np.int32), 2, 2, "VALID")
    with pytest.raises(ValueError, match="Negative dimension size"):
        fastconv.max_pool2d(x, 9, 1, "VALID")
    unknown = x[x[:, 0, 0, 0] > 0]  # a boolean index: chunk sizes unknown until computed
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fastconv.max_pool2d(unknown, 2, 2, "VALID")


def test_empty_input():
    y = fastconv.conv2d(da.zeros((0, 5, 5, 2), dtype=np.float32), np.ones((3, 3, 2, 4),
                                                                            np.float32), 1, "SAME")
    assert isinstance(y, da.Array) and y.compute().shape == (0, 5, 5, 4)


def test_memory_per_block_is_bounded_by_the_chunk_not_the_image(monkeypatch):
    """No task reads more than its chunk and the window's halo (a 5x5 SAME conv: 2 cells on
    each side), then its pooling reads the conv's chunk and the pool's halo."""
    seen = []
    compute_block = chunked.compute_block

    def recording(block, *args):
        seen.append(block.shape)
        return compute_block(block, *args)

    monkeypatch.setattr(chunked, "compute_block", recording)
    x = da.zeros((1, 1024, 1024, 3), dtype=np.float32, chunks=(1, 128, 128, 3))
    y = fastconv.max_pool2d(fastconv.conv2d(x, np.ones((5, 5, 3, 8), np.float32), 1, "SAME",
                                            activation="relu"), 3, 2, "SAME")
    assert y.numblocks == (1, 8, 8, 1)
    y.compute()
    conv_reads = [shape for shape in seen if shape[-1] == 3]
    pool_reads = [shape for shape in seen if shape[-1] == 8]
    assert len(conv_reads) == len(pool_reads) == 64
    assert max(conv_reads) <= (1, 128 + 4, 128 + 4, 3)
    assert max(pool_reads) <= (1, 128 + 1, 128 + 1, 8)


def test_threaded_and_process_schedulers():
    x = np.random.default_rng(3).standard_normal((2, 21, 17, 4)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((3, 3, 4, 6)).astype(np.float32)
    lazy = fastconv.avg_pool2d(fastconv.conv2d(da.from_array(x, chunks=(1, 8, 8, 4)), w, 2,
                                               "SAME", activation="relu"), 2, 1, "VALID")
    expected = fastconv.avg_pool2d(fastconv.conv2d(x, w, 2, "SAME", activation="relu"), 2, 1,
                                   "VALID")
    for scheduler in ("threads", "processes"):
        assert_close(lazy.compute(scheduler=scheduler), expected, F32)


@pytest.mark.skipif(os.cpu_count() is None, reason="needs a CPU count")
def test_distributed_local_cluster_on_loopback():
    distributed = pytest.importorskip("distributed")
    x = np.random.default_rng(5).standard_normal((2, 30, 26, 3)).astype(np.float64)
    w = np.random.default_rng(6).standard_normal((3, 3, 3, 5))
    lazy = fastconv.max_pool2d(fastconv.conv2d(da.from_array(x, chunks=(1, 10, 13, 3)), w, 1,
                                               "SAME", bias=np.ones(5)), 2, 2, "SAME")
    expected = fastconv.max_pool2d(fastconv.conv2d(x, w, 1, "SAME", bias=np.ones(5)), 2, 2,
                                   "SAME")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = client.compute(lazy).result()
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2
    assert_close(got, expected, F64)


def test_module_examples():
    import doctest

    failures, tried = doctest.testmod(chunked)
    assert tried >= 3 and failures == 0


def test_blocks_of_padding_only_give_bias_and_activation(monkeypatch):
    """Explicit padding wider than a 1x1 window at stride 3: whole output blocks read only
    padding; they are computed from zeros (relu(bias)), as in memory."""
    zero_blocks = []
    zeros_block = chunked._zeros_block
    monkeypatch.setattr(chunked, "_zeros_block",
                        lambda *args: zero_blocks.append(1) or zeros_block(*args))
    x = np.random.default_rng(7).standard_normal((1, 4, 5, 2))
    w, bias = np.ones((1, 1, 2, 3)), np.array([0.5, -1.0, 2.0])

    def call(x):
        return fastconv.conv2d(x, w, 3, [[0, 0], [7, 5], [6, 7], [0, 0]], bias=bias,
                               activation="relu")
    got = call(da.from_array(x, chunks=(1, 1, 1, 2))).compute()
    assert zero_blocks
    assert_close(got, call(x), F64)
