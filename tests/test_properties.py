"""Property-based equality with TensorFlow and the NumPy oracle, and validation of bad input.

Hypothesis draws any valid combination of op (conv1d/2d/3d with groups, bias and activation,
depthwise_conv2d, conv2d_transpose, max/avg_pool1d/2d/3d, global pools, zero_pad2d), layout
(incl. Keras' ``channels_first``/``channels_last`` names), dtype, shape (sizes from 1 up, primes
included), kernel, stride, dilation, padding (SAME, VALID, explicit where TF allows it), the
argument form (int, spatial list, TF's full list) and the values (normal, ties, all negative, or
sprinkled with NaN/+-inf). Each example is checked four ways:

* the output shape equals the one computed here from TF's rules (never a silently wrong shape);
* fastconv (the dispatcher's choice) equals TF (``oracle``) with the suite's tolerance (max pooling,
  global max pooling and zero padding bit for bit);
* the NumPy oracle (``fastconv.reference.*``) equals TF too;
* every other CPU algorithm registered for the op's family, forced with
  ``dispatch.use_algorithm``, equals TF as well (algorithms that cannot run the problem refuse
  with "cannot run" and are skipped).

Each property test then asserts that every registered algorithm ran and that the dispatcher chose
every algorithm that paid off on some example, so a new algorithm cannot go unchecked. For float32
convs, TF's oneDNN result is cross-checked against TF's own float64 kernel (see ``_tf_expected``).
Known fastconv bugs are kept out of the loop by name and pinned by strict xfail tests at the end.

Invalid combinations are drawn too (one defect applied to a valid call): each must raise
ValueError/TypeError before the dispatcher is reached.

Profiles (registered in conftest.py): ``ci`` (the default, used by ``make test``) is derandomised,
100 examples per unit (about 1100 examples in all, 800 of them compared with TF; ~10 s with
warm kernels);
``HYPOTHESIS_PROFILE=nightly`` draws 2000 fresh examples per unit (about a minute here)::

    HYPOTHESIS_PROFILE=nightly .venv/bin/python -m pytest tests/test_properties.py
"""

import collections
import contextlib
import math
import threading
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
from conftest import (LAYOUTS, PLANAR_POOL_WINDOWS, assert_close, assert_exact,  # noqa: E402
                      padding_arg, window_arg)
from fastconv import dispatch, reference  # noqa: E402

F32, F64 = np.float32, np.float64
# NaN/inf inputs make NumPy (the oracle, np.pad) warn; the values are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CONV = {1: fastconv.conv1d, 2: fastconv.conv2d, 3: fastconv.conv3d}
ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "leaky_relu", "elu",
               "hard_swish"]
VALUE_KINDS = ["normal", "normal", "ties", "negative", "special"]


def _examples(units):
    """Examples for a property test: ``units`` times the profile's max_examples."""
    return settings(max_examples=max(1, int(units * settings.default.max_examples)))


# ----------------------------------------------------------------------------- recording

_auto = threading.local()


class _Seen:
    """Which implementation the dispatcher chose, which ones it could have chosen (automatic,
    applies and pays off) and which ones ran forced."""

    def __init__(self):
        self.auto = collections.defaultdict(collections.Counter)
        self.eligible = collections.defaultdict(set)
        self.ran = collections.defaultdict(collections.Counter)

    @contextlib.contextmanager
    def spying(self):
        real_select = dispatch.select

        def spy(family, device, problem):
            impl = real_select(family, device, problem)
            if getattr(_auto, "on", False):
                self.auto[family][impl.name] += 1
                self.eligible[family].update(
                    other.name for other in dispatch.implementations(family, device)
                    if other.auto and other.applies(problem) and other.pays_off(problem))
            return impl

        with mock.patch.object(dispatch, "select", spy):
            yield

    def assert_covers(self, family):
        """Every algorithm that paid off on some example was chosen by the dispatcher at least
        once, and every registered algorithm ran (forced or as the oracle)."""
        names = {impl.name for impl in dispatch.implementations(family, "cpu")}
        chosen = set(self.auto[family])
        assert self.eligible[family] <= chosen, (
            f"the dispatcher never chose {self.eligible[family] - chosen} for {family} although "
            f"they paid off on some example; chosen: {dict(self.auto[family])}")
        assert names <= set(self.ran[family]), (
            f"{family} algorithms never run: {names - set(self.ran[family])}; "
            f"ran: {dict(self.ran[family])}")


@contextlib.contextmanager
def _automatic():
    _auto.on = True
    try:
        yield
    finally:
        _auto.on = False


def _check_everywhere(seen, family, call, oracle_call, expected, dtype, exact=False):
    """fastconv's choice, the oracle and every forced algorithm against ``expected``."""
    compare = assert_exact if exact else assert_close
    with _automatic():
        compare(call(), expected, dtype)
    compare(oracle_call(), expected, dtype)
    seen.ran[family]["oracle"] += 1
    for impl in dispatch.implementations(family, "cpu"):
        with dispatch.use_algorithm(impl.name):
            try:
                got = call()
            except ValueError as error:
                if "cannot run" not in str(error):
                    raise
                continue
        note(f"forced {impl.name}")
        compare(got, expected, dtype)
        seen.ran[family][impl.name] += 1


# ----------------------------------------------------------------------------- strategies

def _out_size(n, span, stride, padding):
    """TF's output length along one dim, written out here independently of fastconv."""
    if padding == "SAME":
        return -(-n // stride)
    pad = 0 if padding == "VALID" else sum(padding)
    return (n + pad - span) // stride + 1


def _layout_shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


@st.composite
def geometries(draw, n, *, max_kernel=4, dilation=True, explicit="conv", max_extra=6,
               common=0.0, windows=None):
    """Kernel, strides, dilations, padding and input sizes that give a non-empty output.

    ``explicit``: None (SAME/VALID only), ``"conv"`` (pads 0-3) or ``"max_pool"`` (pads below
    the window, as TF requires). ``common``: the share of draws that are the most common layers,
    3x3 (trailing two dims) or 1x1, with stride and dilation 1, which some algorithms specialise
    in (winograd, gemm). ``windows``: draw the trailing two dims' ``(kernel, strides)`` from
    this list of 2-D windows instead (a 1-D geometry takes their second dim).
    """
    modes = ["SAME", "VALID"] + (["explicit"] if explicit else [])
    mode = draw(st.sampled_from(modes))
    is_common = common > 0 and draw(st.integers(0, 99)) < 100 * common
    common_k = draw(st.sampled_from([3, 3, 1])) if is_common else None
    window = draw(st.sampled_from(windows)) if windows else None
    kernel, strides, dilations, pads, sizes = [], [], [], [], []
    for axis in range(n):
        if window is not None and axis >= n - 2:
            (k, s), d = window[axis - n + 2], 1
        elif is_common and (axis >= n - 2 or common_k == 1):
            k, s, d = common_k, 1, 1
        elif is_common:  # 3-D: a (2+1)-D video layer's 1x3x3, or 3x3x3
            k, d = draw(st.sampled_from([1, 1, 3])), 1
            s = 1 if k == 1 else draw(st.integers(1, 2))
        else:
            k = draw(st.integers(1, max_kernel))
            s = draw(st.integers(1, 3))
            d = draw(st.integers(1, 3)) if dilation and draw(st.booleans()) else 1
        if mode == "explicit":
            limit = 3 if explicit == "conv" else k - 1
            pad = (draw(st.integers(0, limit)), draw(st.integers(0, limit)))
        else:
            pad = (0, 0)
        span = (k - 1) * d + 1
        low = 1 if mode == "SAME" else max(1, span - sum(pad))
        sizes.append(draw(st.integers(low, low + max_extra)))
        kernel.append(k), strides.append(s), dilations.append(d), pads.append(pad)
    padding = tuple(pads) if mode == "explicit" else mode
    out = tuple(_out_size(size, (k - 1) * d + 1, s, padding if mode != "explicit" else pad)
                for size, k, s, d, pad in zip(sizes, kernel, strides, dilations, pads))
    assert min(out) >= 1
    return SimpleNamespace(kernel=tuple(kernel), strides=tuple(strides),
                           dilations=tuple(dilations), padding=padding, sizes=tuple(sizes),
                           out=out)


def _fill(seed, shape, dtype, kind):
    """Values of one of the ``VALUE_KINDS`` (distinct normals, ties, negatives, NaN/+-inf)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if kind == "ties":
        x = np.round(x * 2) / 2
    elif kind == "negative":
        x = -np.abs(x) - 1
    elif kind == "special" and x.size:
        mask = rng.random(shape) < 0.15
        x[mask] = rng.choice([np.nan, np.inf, -np.inf], size=int(mask.sum()))
    return x.astype(dtype)


@st.composite
def conv_cases(draw):
    n = draw(st.sampled_from([1, 2, 2, 3]))
    channels_first = draw(st.booleans())
    geometry = draw(geometries(n, max_kernel=3 if n == 3 else 4, max_extra=3 if n == 3 else 6,
                               common=0.3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    group_in = draw(st.sampled_from([1, 1, 2, 3]))
    # 9 per group fills half a float32 block (grouped convs pick the blocked kernel); 17 spans
    # more than one block.
    per_group_out = draw(st.sampled_from([1, 1, 2, 3, 9, 17]))
    with_bias = draw(st.booleans())
    # oracle computes dilated conv3d with zero-inserted filters (TF's CPU Conv3D has no
    # dilation), which turns an infinite input times an inserted zero into NaN: keep NaN/inf out.
    values = VALUE_KINDS[:-1] if n == 3 and max(geometry.dilations) > 1 else VALUE_KINDS
    return SimpleNamespace(
        op=f"conv{n}d", n=n, channels_first=channels_first, dtype=draw(st.sampled_from([F32, F64])),
        batch=draw(st.sampled_from([1, 2, 2, 3])), geometry=geometry, groups=groups,
        group_in=group_in, out_channels=groups * per_group_out, bias=with_bias,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        form=draw(st.sampled_from(["int", "spatial", "full"])),
        values=draw(st.sampled_from(values)), seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def depthwise_cases(draw):
    return SimpleNamespace(
        channels_first=draw(st.booleans()), dtype=draw(st.sampled_from([F32, F64])),
        batch=draw(st.integers(1, 2)), geometry=draw(geometries(2)),
        channels=draw(st.sampled_from([1, 2, 3, 5, 17])), multiplier=draw(st.integers(1, 3)),
        form=draw(st.sampled_from(["int", "spatial", "full"])),
        values=draw(st.sampled_from(VALUE_KINDS)), seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def transpose_cases(draw):
    # The transposed conv's output is a forward conv's input: draw the forward geometry.
    geometry = draw(geometries(2))
    # oracle runs a dilated transpose with zero-inserted filters (TF's CPU kernel refuses
    # dilation), which makes inf * inserted 0 = NaN: NaN/inf inputs only without dilation.
    values = ["normal", "ties"] + (["special"] if max(geometry.dilations) == 1 else [])
    return SimpleNamespace(
        channels_first=draw(st.booleans()), dtype=draw(st.sampled_from([F32, F64])),
        batch=draw(st.integers(1, 2)), geometry=geometry,
        in_channels=draw(st.sampled_from([1, 2, 5])),
        out_channels=draw(st.sampled_from([1, 3, 17])),
        output_shape=draw(st.sampled_from(["full", "spatial"])),
        form=draw(st.sampled_from(["int", "spatial", "full"])),
        values=draw(st.sampled_from(values)),
        seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def pool_cases(draw):
    kind = draw(st.sampled_from(["max", "avg"]))
    n = draw(st.sampled_from([1, 2, 2, 3]))
    channels_first = draw(st.booleans())
    geometry = draw(geometries(n, max_kernel=3 if n == 3 else 4, dilation=False,
                               explicit="max_pool" if kind == "max" else None,
                               max_extra=3 if n == 3 else 7,
                               windows=PLANAR_POOL_WINDOWS if channels_first else None))
    return SimpleNamespace(
        op=f"{kind}_pool{n}d", kind=kind, n=n, channels_first=channels_first,
        dtype=draw(st.sampled_from([F32, F64])), batch=draw(st.sampled_from([1, 2, 2, 3])),
        channels=draw(st.sampled_from([1, 2, 3, 19])), geometry=geometry,
        form=draw(st.sampled_from(["int", "spatial", "full"])),
        values=draw(st.sampled_from(VALUE_KINDS)), seed=draw(st.integers(0, 2**32 - 1)))


ZERO_PADS = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
              st.tuples(st.integers(0, 3), st.integers(0, 3))))


@st.composite
def global_and_pad_cases(draw):
    return SimpleNamespace(
        op=draw(st.sampled_from(["global_max_pool2d", "global_avg_pool2d", "zero_pad2d"])),
        data_format=draw(st.sampled_from(["NHWC", "NCHW", "channels_last", "channels_first"])),
        dtype=draw(st.sampled_from([F32, F64])), batch=draw(st.integers(1, 3)),
        channels=draw(st.sampled_from([1, 2, 3, 19])),
        sizes=(draw(st.integers(1, 7)), draw(st.integers(1, 7))),
        keepdims=draw(st.booleans()), padding=draw(ZERO_PADS),
        values=draw(st.sampled_from(VALUE_KINDS)), seed=draw(st.integers(0, 2**32 - 1)))


# ----------------------------------------------------------------------------- valid input

def _conv_call(case):
    g = case.geometry
    fn = CONV[case.n]
    cf, dtype = case.channels_first, case.dtype
    channels = case.groups * case.group_in
    x = _fill(case.seed, _layout_shape(case.batch, channels, g.sizes, cf), dtype, case.values)
    w = _fill(case.seed + 1, g.kernel + (case.group_in, case.out_channels), dtype, "normal")
    bias = _fill(case.seed + 2, (case.out_channels,), dtype, "normal") if case.bias else None
    dilations = (None if case.form == "int" and max(g.dilations) == 1
                 else window_arg(g.dilations, case.form, cf))
    args = (x, w, window_arg(g.strides, case.form, cf), padding_arg(g.padding, case.form, cf),
            LAYOUTS[case.n][cf], dilations)
    kwargs = dict(bias=bias, activation=case.activation)
    return fn, args, kwargs, x, w, bias


def _check_conv(case, oracle, seen):
    fn, args, kwargs, x, w, bias = _conv_call(case)
    g = case.geometry
    expected = _tf_expected(lambda x, w, bias: oracle.conv(
        x, w, g.strides, g.padding, g.dilations, case.channels_first, bias, case.activation),
        x, w, bias)
    shape = _layout_shape(case.batch, case.out_channels, g.out, case.channels_first)
    assert expected.shape == shape
    oracle_fn = getattr(reference, fn.__name__)
    _check_everywhere(seen, "conv", lambda: fn(*args, **kwargs),
                      lambda: oracle_fn(*args, **kwargs), expected, case.dtype)


TF_SELF_DISAGREEMENTS = collections.Counter()


def _tf_expected(compute, *arrays):
    """TF's result for float32 convs, cross-checked against TF's own float64 kernel.

    TF's default float32 CPU convs go through oneDNN, which gets a few odd shapes wrong (e.g.
    a (2, 2, 1, 1) input, a 1x2 filter, strides (1, 2), SAME: the second row comes out 0);
    TF's float64 (Eigen) kernel and TF with ``TF_ENABLE_ONEDNN_OPTS=0`` agree with fastconv
    there. When TF's two kernels disagree beyond float32's tolerance, the float64 one is the
    reference.
    """
    expected = compute(*arrays)
    if expected.dtype != F32:
        return expected
    wide = compute(*(None if a is None else a.astype(F64) for a in arrays))
    try:
        assert_close(expected, wide, F32)
    except AssertionError as error:
        note(f"TF's float32 kernel disagrees with its float64 kernel ({error}); using float64")
        TF_SELF_DISAGREEMENTS[expected.shape] += 1
        return wide.astype(F32)
    return expected


def _run(strategy, check, units):
    """Run ``check`` over ``strategy`` with ``units`` x the profile's examples; return the count."""
    runs = []

    @_examples(units)
    @given(strategy)
    def prop(case):
        check(case)
        runs.append(1)

    prop()
    wanted = int(units * settings.default.max_examples)
    assert len(runs) >= wanted, f"only {len(runs)} of {wanted} examples ran"
    return len(runs)


def test_conv_matches_tf_and_oracle(oracle):
    seen = _Seen()
    with seen.spying():
        _run(conv_cases(), lambda case: _check_conv(case, oracle, seen), 2.5)
    seen.assert_covers("conv")


def test_depthwise_conv2d_matches_tf_and_oracle(oracle):
    seen = _Seen()

    def check(case):
        g, cf = case.geometry, case.channels_first
        x = _fill(case.seed, _layout_shape(case.batch, case.channels, g.sizes, cf), case.dtype,
                  case.values)
        w = _fill(case.seed + 1, g.kernel + (case.channels, case.multiplier), case.dtype, "normal")
        args = (x, w, window_arg(g.strides, case.form, cf), padding_arg(g.padding, case.form, cf),
                LAYOUTS[2][cf], window_arg(g.dilations, case.form, cf))
        expected = _tf_expected(lambda x, w: oracle.depthwise(x, w, g.strides, g.padding,
                                                           g.dilations, cf), x, w)
        assert expected.shape == _layout_shape(case.batch, case.channels * case.multiplier, g.out,
                                               cf)
        _check_everywhere(seen, "conv", lambda: fastconv.depthwise_conv2d(*args),
                          lambda: reference.depthwise_conv2d(*args), expected, case.dtype)

    with seen.spying():
        _run(depthwise_cases(), check, 1)
    assert seen.auto["conv"]["depthwise"] and seen.ran["conv"]["depthwise"]


def test_conv2d_transpose_matches_tf_and_oracle(oracle):
    seen = _Seen()

    def check(case):
        g, cf = case.geometry, case.channels_first
        x = _fill(case.seed, _layout_shape(case.batch, case.in_channels, g.out, cf), case.dtype,
                  case.values)
        w = _fill(case.seed + 1, g.kernel + (case.out_channels, case.in_channels), case.dtype,
                  "normal")
        full = _layout_shape(case.batch, case.out_channels, g.sizes, cf)
        output_shape = full if case.output_shape == "full" else g.sizes
        args = (x, w, output_shape, window_arg(g.strides, case.form, cf),
                padding_arg(g.padding, case.form, cf), LAYOUTS[2][cf],
                window_arg(g.dilations, case.form, cf))
        expected = _tf_expected(lambda x, w: oracle.conv_transpose(
            x, w, g.sizes, g.strides, g.padding, g.dilations, cf), x, w)
        assert expected.shape == full
        _check_everywhere(seen, "conv_transpose", lambda: fastconv.conv2d_transpose(*args),
                          lambda: reference.conv2d_transpose(*args), expected, case.dtype)

    with seen.spying():
        _run(transpose_cases(), check, 1)
    assert seen.ran["conv_transpose"]["blocked"] and seen.ran["conv_transpose"]["direct"]


def test_pooling_matches_tf_and_oracle(oracle):
    seen = _Seen()

    def check(case):
        g, cf = case.geometry, case.channels_first
        x = _fill(case.seed, _layout_shape(case.batch, case.channels, g.sizes, cf), case.dtype,
                  case.values)
        args = (x, window_arg(g.kernel, case.form, cf), window_arg(g.strides, case.form, cf),
                padding_arg(g.padding, case.form, cf), LAYOUTS[case.n][cf])
        expected = oracle.pool(case.kind, x, g.kernel, g.strides, g.padding, cf)
        assert expected.shape == _layout_shape(case.batch, case.channels, g.out, cf)
        fn, oracle_fn = getattr(fastconv, case.op), getattr(reference, case.op)
        _check_everywhere(seen, f"{case.kind}_pool", lambda: fn(*args), lambda: oracle_fn(*args),
                          expected, case.dtype, exact=case.kind == "max")

    with seen.spying():
        _run(pool_cases(), check, 2.5)
    seen.assert_covers("max_pool")
    seen.assert_covers("avg_pool")


def test_global_pools_and_zero_pad_match_keras_and_oracle(oracle):
    seen = _Seen()

    def check(case):
        cf = case.data_format in ("NCHW", "channels_first")
        x = _fill(case.seed, _layout_shape(case.batch, case.channels, case.sizes, cf), case.dtype,
                  case.values)
        fn, oracle_fn = getattr(fastconv, case.op), getattr(reference, case.op)
        if case.op == "zero_pad2d":
            family, args, exact = "zero_pad", (x, case.padding, case.data_format), True
            expected = oracle.zero_pad(x, case.padding, cf)
            pads = case.padding
            pads = ((pads, pads), (pads, pads)) if isinstance(pads, int) else pads
            pads = tuple((p, p) if isinstance(p, int) else p for p in pads)
            out = tuple(n + sum(p) for n, p in zip(case.sizes, pads))
            assert expected.shape == _layout_shape(case.batch, case.channels, out, cf)
        else:
            kind = case.op.split("_")[1]
            family, args, exact = "global_pool", (x, case.data_format, case.keepdims), kind == "max"
            expected = oracle.global_pool(kind, x, cf, case.keepdims)
            assert expected.shape == (_layout_shape(case.batch, case.channels, (1, 1), cf)
                                      if case.keepdims else (case.batch, case.channels))
        _check_everywhere(seen, family, lambda: fn(*args), lambda: oracle_fn(*args), expected,
                          case.dtype, exact=exact)

    with seen.spying():
        _run(global_and_pad_cases(), check, 1)
    seen.assert_covers("global_pool")
    seen.assert_covers("zero_pad")


# ----------------------------------------------------------------------------- invalid input

class _KernelReached(BaseException):
    """Raised by the patched dispatcher: validation let a bad call through to a kernel."""


def _refuse(*args, **kwargs):
    raise _KernelReached("dispatch.run reached with invalid arguments")


OPS = ["conv1d", "conv2d", "conv3d", "depthwise_conv2d", "conv2d_transpose", "max_pool1d",
       "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "global_max_pool2d",
       "global_avg_pool2d", "zero_pad2d"]
_CONVS = {"conv1d", "conv2d", "conv3d"}
_WEIGHTED = _CONVS | {"depthwise_conv2d", "conv2d_transpose"}
_WINDOWED = _WEIGHTED | {op for op in OPS if op[:4] in ("max_", "avg_")}
_PADDED = _WINDOWED
# defect -> the ops it applies to
DEFECTS = {
    "rank": set(OPS), "dtype": set(OPS), "data_format": set(OPS), "device": set(OPS),
    "window_nonpositive": _WINDOWED, "window_length": _WINDOWED, "window_type": _WINDOWED,
    "window_batch_axis": _WINDOWED,
    "padding_name": _PADDED, "padding_type": _PADDED, "padding_negative": _PADDED - {
        "avg_pool1d", "avg_pool2d", "avg_pool3d"},
    "padding_pairs": _PADDED, "padding_batch_axis": _PADDED, "too_small": _PADDED,
    "explicit_avg_pool": {"avg_pool1d", "avg_pool2d", "avg_pool3d"},
    "explicit_not_below_ksize": {"max_pool1d", "max_pool2d", "max_pool3d"},
    "weight_rank": _WEIGHTED, "weight_channels": _WEIGHTED, "mixed_dtype": _WEIGHTED,
    "weight_dtype": _WEIGHTED,
    "bias_length": _CONVS, "bias_dtype": _CONVS, "activation": _CONVS, "groups": _CONVS,
    "output_shape_inconsistent": {"conv2d_transpose"}, "output_shape_batch": {"conv2d_transpose"},
    "output_shape_length": {"conv2d_transpose"},
    "keepdims": {"global_max_pool2d", "global_avg_pool2d"},
    "zero_pad_negative": {"zero_pad2d"}, "zero_pad_form": {"zero_pad2d"},
}


def _valid_call(draw, ops=OPS):
    """A valid call as (function name, dict of arguments) with tiny float32 arrays."""
    op = draw(st.sampled_from(sorted(ops)))
    channels_first = draw(st.booleans())
    n = 1 if op.endswith("1d") else 3 if op.endswith("3d") else 2
    fmt = LAYOUTS[n][channels_first]
    shape = _layout_shape(1, 4, (5,) * n, channels_first)
    x = np.ones(shape, F32)
    if op.startswith("conv") and op != "conv2d_transpose":
        call = dict(input=x, filters=np.ones((3,) * n + (2, 6), F32), padding="SAME",
                    data_format=fmt, dilations=1, bias=np.ones(6, F32), activation="relu")
        call["stride" if n == 1 else "strides"] = 1  # tf.nn.conv1d calls it stride
    elif op == "depthwise_conv2d":
        call = dict(input=x, filter=np.ones((3, 3, 4, 2), F32), strides=1, padding="SAME",
                    data_format=fmt, dilations=1)
    elif op == "conv2d_transpose":
        call = dict(input=x, filters=np.ones((3, 3, 3, 4), F32),
                    output_shape=_layout_shape(1, 3, (10, 10), channels_first), strides=2,
                    padding="SAME", data_format=fmt, dilations=1)
    elif "_pool" in op and not op.startswith("global"):
        call = dict(input=x, ksize=2, strides=1, padding="VALID", data_format=fmt)
    elif op.startswith("global"):
        call = dict(input=x, data_format=fmt, keepdims=False)
    else:
        call = dict(input=x, padding=1, data_format=fmt)
    return op, n, channels_first, call


def _window_keys(call):
    return [key for key in ("stride", "strides", "ksize", "dilations") if key in call]


@st.composite
def invalid_calls(draw):
    """A valid call with one defect (drawn first, then an op it applies to) that must fail."""
    defect = draw(st.sampled_from(sorted(DEFECTS)))
    op, n, cf, call = _valid_call(draw, DEFECTS[defect])
    x = call["input"]
    weight = "filters" if "filters" in call else "filter" if "filter" in call else None
    key = draw(st.sampled_from(_window_keys(call))) if _window_keys(call) else None
    channel_axis = 1 if cf else x.ndim - 1

    if defect == "rank":
        call["input"] = x[..., None] if draw(st.booleans()) else x[0]
    elif defect == "dtype":
        call["input"] = x.astype(draw(st.sampled_from(
            [np.int32, np.int64, np.int16, np.complex64, np.bool_, np.uint8])))
    elif defect == "data_format":
        call["data_format"] = draw(st.sampled_from(
            [LAYOUTS[1 + n % 3][0], LAYOUTS[1 + n % 3][1], "NHCW", "nchw?", "", "XYZ"]))
    elif defect == "device":
        call["device"] = draw(st.sampled_from(["tpu", "cpu0", "metal", 0]))
    elif defect == "window_nonpositive":
        call[key] = draw(st.sampled_from([0, -1, [0] * n, [1] * (n - 1) + [-2]]))
    elif defect == "window_length":
        call[key] = [1] * draw(st.sampled_from([n + 1, n + 3] if n > 1 else [2, 4]))
    elif defect == "window_type":
        call[key] = draw(st.sampled_from([1.5, "2", [1.0] * n, True]))
    elif defect == "window_batch_axis":
        full = [1] * (n + 2)
        full[draw(st.sampled_from([0, channel_axis]))] = 2
        call[key] = full
    elif defect == "padding_name":
        call["padding"] = draw(st.sampled_from(["FULL", "same ", "CAUSAL", "", "valid!"]))
    elif defect == "padding_type":
        call["padding"] = draw(st.sampled_from([1, 1.0, None, {"SAME": 1}]))
    elif defect == "padding_negative":
        pairs = [[1, 1]] * n
        pairs[draw(st.integers(0, n - 1))] = [0, -1]
        call["padding"] = pairs
    elif defect == "padding_pairs":
        call["padding"] = draw(st.sampled_from([[[1, 1]] * (n + 1), [[1, 1, 1]] * n, [1] * n]))
    elif defect == "padding_batch_axis":
        full = [[0, 0]] * (n + 2)
        full[draw(st.sampled_from([0, channel_axis]))] = [1, 0]
        call["padding"] = full
    elif defect == "too_small":
        if op == "conv2d_transpose":
            call["filters"] = np.ones((12, 12, 3, 4), F32)
            call["padding"] = "VALID"
        elif weight:
            call[weight] = np.ones((6,) * n + call[weight].shape[n:], F32)
            call["padding"] = "VALID"
        else:
            call["ksize"], call["padding"] = 6, "VALID"
    elif defect == "explicit_avg_pool":
        call["padding"] = [[0, 0]] * n
    elif defect == "explicit_not_below_ksize":
        call["padding"] = [[2, 0]] * n  # ksize 2: a window could hold only padding
    elif defect == "weight_rank":
        call[weight] = call[weight][..., None] if draw(st.booleans()) else call[weight][0]
    elif defect == "weight_channels":
        w = call[weight]
        axis = {"conv2d_transpose": 3, "depthwise_conv2d": 2}.get(op, n)
        shape = list(w.shape)
        shape[axis] = 3  # 4 input channels are not a multiple of 3, nor equal to it
        call[weight] = np.ones(shape, F32)
    elif defect == "mixed_dtype":
        call[weight] = call[weight].astype(F64)
    elif defect == "weight_dtype":
        call[weight] = call[weight].astype(draw(st.sampled_from([np.int32, np.float16])))
    elif defect == "bias_length":
        call["bias"] = np.ones(draw(st.sampled_from([(5,), (7,), (1, 6), ()])), F32)
    elif defect == "bias_dtype":
        call["bias"] = call["bias"].astype(draw(st.sampled_from([F64, np.int64])))
    elif defect == "activation":
        call["activation"] = draw(st.sampled_from(["mish", "softmax", "RELU6!", 1, b"relu"]))
    elif defect == "groups":
        call["filters"] = np.ones((3,) * n + (2, 5), F32)  # 2 groups do not divide 5 outputs
        call["bias"] = np.ones(5, F32)
    elif defect == "output_shape_inconsistent":
        call["output_shape"] = _layout_shape(1, 3, (12, 12), cf)  # maps to 6x6, not 5x5
    elif defect == "output_shape_batch":
        call["output_shape"] = _layout_shape(2, 3, (10, 10), cf)
    elif defect == "output_shape_length":
        call["output_shape"] = (1, 10, 10)
    elif defect == "keepdims":
        call["keepdims"] = draw(st.sampled_from(["yes", 1, None]))
    elif defect == "zero_pad_negative":
        call["padding"] = draw(st.sampled_from([-1, (1, -1), ((0, 0), (-2, 1))]))
    elif defect == "zero_pad_form":
        call["padding"] = draw(st.sampled_from([(1, 2, 3), ((1, 2, 3), (1, 1)), 1.5, "1"]))
    return SimpleNamespace(op=op, defect=defect, call=call)


def test_invalid_combinations_raise_before_any_kernel():
    defects = collections.Counter()

    @_examples(3)
    @given(invalid_calls())
    def prop(case):
        function = getattr(fastconv, case.op)
        with mock.patch.object(dispatch, "run", _refuse):
            with pytest.raises((ValueError, TypeError)) as info:
                function(**case.call)
        note(f"{type(info.value).__name__}: {info.value}")
        message = str(info.value)
        assert message  # a message that names the problem, from fastconv's validation, not
        assert "unexpected keyword argument" not in message  # from a mistyped call here
        assert "required positional argument" not in message
        defects[case.defect] += 1

    prop()
    assert set(defects) == set(DEFECTS), f"defects never drawn: {set(DEFECTS) - set(defects)}"


def test_valid_base_calls_of_the_invalid_strategy_do_run():
    """The invalid strategy's starting points are valid: a defect is what makes them fail."""
    @settings(max_examples=30, derandomize=True, database=None, deadline=None)
    @given(st.data())
    def prop(data):
        op, _, _, call = _valid_call(data.draw)
        out = getattr(fastconv, op)(**call)
        assert isinstance(out, np.ndarray) and out.size > 0 and math.isfinite(float(out.sum()))

    prop()


# ----------------------------------------------------------------------------- known bugs, regressions

def _force_winograd():
    if "winograd" not in {impl.name for impl in dispatch.implementations("conv", "cpu")}:
        pytest.skip("no 'winograd' conv algorithm registered")
    return dispatch.use_algorithm("winograd")


def test_winograd_conv3d_with_a_1x3x3_kernel_over_several_depths():
    """Regression (found by the conv property): winograd used to take a 1x3x3 conv3d over
    several depths and compute depth 0 only; it must refuse it or get it right."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 5, 2)).astype(F32)
    w = rng.standard_normal((1, 3, 3, 2, 4)).astype(F32)
    with _force_winograd():
        try:
            got = fastconv.conv3d(x, w, 1, "SAME")
        except ValueError as error:
            assert "cannot run" in str(error)  # refusing the problem is a fix too
            return
    assert_close(got, reference.conv3d(x, w, 1, "SAME"), F32)


def test_winograd_conv3d_with_depth_padding():
    """Found by the nightly conv property: output depth 2 from an input of depth 1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 3, 1, 1)).astype(F32)
    w = rng.standard_normal((1, 3, 3, 1, 1)).astype(F32)
    pads = [[0, 1], [0, 0], [0, 3]]
    expected = reference.conv3d(x, w, 1, pads)
    for _ in range(5):
        junk = np.full(expected.size, 7.0, F32)  # garbage for the next np.empty to reuse
        del junk
        with _force_winograd():
            try:
                got = fastconv.conv3d(x, w, 1, pads)
            except ValueError as error:
                assert "cannot run" in str(error)  # refusing the problem is a fix too
                return
        assert_close(got, expected, F32)


def test_winograd_keeps_nan_and_inf_where_tf_has_them():
    """The transforms mix the cells of a 4x4 tile (inf - inf, 0 * inf), so winograd must notice
    non-finite outputs and recompute them directly (it used to spread them)."""
    x = np.zeros((1, 4, 4, 1), F32)
    x[0, 0, 0, 0] = np.inf  # output (3, 3)'s 3x3 window does not hold it
    w = np.ones((3, 3, 1, 1), F32)
    with _force_winograd():
        got = fastconv.conv2d(x, w, 1, "SAME")
    expected = reference.conv2d(x, w, 1, "SAME")  # inf where the window holds (0, 0), else 0
    assert_close(got, expected, F32)
