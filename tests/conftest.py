"""Shared fixtures for the correctness suite: tolerances, seeded data, TensorFlow oracles, grids.

* ``assert_close(actual, expected, dtype)`` / ``assert_exact(...)``: the suite's one tolerance rule
  (``max|a - b| <= tol * max(1, max|expected|)``, tol 1e-5 for float32 and 1e-12 for float64)
  and the exact rule for max pooling and copies; both check the dtype and the shape first.
* ``oracle``: the expected values, from the independent NumPy oracle (``fastconv.reference``)
  by default, from TensorFlow with ``FASTCONV_TEST_ORACLE=tf``; same interface either way.
* ``tf``: TensorFlow, imported with ``TF_CPP_MIN_LOG_LEVEL=3``; tests that use it (or
  ``tf_oracle``) are marked ``tf`` automatically and skip cleanly when TensorFlow is not installed.
* ``tf_oracle``: TensorFlow computing every fastconv op, the same interface: the op table's
  ``tf_function`` (``fastconv.tf_reference``, where the gaps of TF's CPU kernels are filled by
  exact rewrites: channels-first via transposes, conv3d dilation via zero-inserted filters,
  float64 3-D pooling via ``tf.extract_volume_patches``, ...).
* ``@pytest.mark.grid(dim=[values], ..., random=N, seed=S)``: parametrises a test's ``case``
  argument with a pairwise covering array over the dims (every pair of values of every two dims
  meets in some case) plus ``N`` extra cases drawn with a fixed seed, instead of a full product.
"""

import importlib.util
import os
import random
import zlib
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything can import TensorFlow
# The suite checks the compiled kernels: their first calls compile here, not in a background
# process with NumPy standing in (tests/test_compiling.py checks that policy itself).
os.environ.setdefault("FASTCONV_COMPILE", "sync")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Hypothesis profiles (tests/test_properties.py): "ci" is the fixed, derandomised profile that
# `make test` runs; HYPOTHESIS_PROFILE=nightly draws many more, fresh examples each run.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; the property tests skip without it
    pass
else:
    _LENIENT = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                              database=None, print_blob=True, suppress_health_check=_LENIENT)
    settings.register_profile("nightly", max_examples=2000, deadline=None, print_blob=True,
                              suppress_health_check=_LENIENT)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: tests/cuda runs in its own process with the CUDA simulator (see its conftest and the Makefile).
collect_ignore = ["cuda"]

from fastconv import ops  # noqa: E402
from fastconv.testing import TOLERANCE, assert_close, assert_exact  # noqa: E402,F401  (one rule)
DTYPES = (np.float32, np.float64)
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
#: ((k_h, s_h), (k_w, s_w)) windows the channels-first pooling strategies draw from: the planar
#: kernel compiles per window (~3.5 s each), so the property tests share a palette of four (the
#: common ones and odd shapes) instead of compiling one per draw.
PLANAR_POOL_WINDOWS = [((2, 2), (2, 2)), ((3, 2), (3, 2)), ((1, 1), (3, 2)), ((4, 3), (2, 1))]
_TF_FIXTURES = {"tf", "tf_oracle"}


# ----------------------------------------------------------------------------- pytest hooks

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "grid(**dims, random=0, seed=0): parametrise the `case` argument with a "
        "pairwise covering array over dims plus `random` seeded random combinations")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _TF_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tf)


def _tensorflow_installed():
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def pytest_runtest_setup(item):
    if item.get_closest_marker("tf") and not _tensorflow_installed():
        pytest.skip("TensorFlow is not installed")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("grid")
    if marker is None or "case" not in metafunc.fixturenames:
        return
    dims = dict(marker.kwargs)
    n_random = dims.pop("random", 0)
    seed = dims.pop("seed", 0)
    cases = pairwise_cases(dims, seed=seed, n_random=n_random)
    metafunc.parametrize("case", [SimpleNamespace(**c) for c in cases],
                         ids=[case_id(c) for c in cases])


# ----------------------------------------------------------------------------- grids

def pairwise_cases(dims, seed=0, n_random=0):
    """Return a list of dicts covering every pair of values of every two dims at least once.

    Greedy construction (AETG-style): each new row starts from an uncovered pair and fills the
    other dims with the value that covers the most still-uncovered pairs; ties break with a
    ``random.Random(seed)``, so the grid is the same on every run. ``n_random`` rows drawn
    uniformly with the same generator follow.
    """
    names = list(dims)
    sizes = [len(dims[name]) for name in names]
    rng = random.Random(seed)
    uncovered = {(i, a, j, b) for i in range(len(names)) for j in range(i + 1, len(names))
                 for a in range(sizes[i]) for b in range(sizes[j])}

    def new_pairs(row, k, value):
        return sum(1 for other, chosen in enumerate(row) if chosen is not None and other != k and
                   ((min(k, other), value if k < other else chosen,
                     max(k, other), chosen if k < other else value) in uncovered))

    rows = []
    while uncovered:
        best, best_gain = None, -1
        pool = sorted(uncovered)
        for _ in range(20):
            i, a, j, b = rng.choice(pool)
            row = [None] * len(names)
            row[i], row[j] = a, b
            order = [k for k in range(len(names)) if row[k] is None]
            rng.shuffle(order)
            for k in order:
                gains = [new_pairs(row, k, v) for v in range(sizes[k])]
                top = max(gains)
                row[k] = rng.choice([v for v, g in enumerate(gains) if g == top])
            gain = sum(1 for i2 in range(len(names)) for j2 in range(i2 + 1, len(names))
                       if (i2, row[i2], j2, row[j2]) in uncovered)
            if gain > best_gain:
                best, best_gain = row, gain
        rows.append(best)
        uncovered -= {(i2, best[i2], j2, best[j2]) for i2 in range(len(names))
                      for j2 in range(i2 + 1, len(names))}
    rows += [[rng.randrange(size) for size in sizes] for _ in range(n_random)]
    return [{name: dims[name][row[k]] for k, name in enumerate(names)} for row in rows]


def case_id(case):
    parts = []
    for name, value in case.items():
        if isinstance(value, type):
            value = np.dtype(value).name
        text = str(value).replace(" ", "")
        parts.append(f"{name}={text}")
    return "-".join(parts)


# ----------------------------------------------------------------------------- comparisons

@pytest.fixture(name="assert_close")
def assert_close_fixture():
    return assert_close


@pytest.fixture(name="assert_exact")
def assert_exact_fixture():
    return assert_exact


# ----------------------------------------------------------------------------- data

@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: the same data on every run, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rand(rng):
    """``rand(shape, dtype)``: standard-normal values (all distinct) of the given dtype."""
    def make(shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)
    return make


# ----------------------------------------------------------------------------- argument forms

def to_last(x, channels_first):
    """Channels-first data -> channels-last (no-op for channels-last)."""
    return np.moveaxis(x, 1, -1) if channels_first else x


def to_first(y, channels_first):
    """Channels-last result -> the caller's layout."""
    return np.moveaxis(y, -1, 1) if channels_first else y


def window_arg(values, form, channels_first):
    """A spatial tuple as fastconv accepts it: ``"int"``, ``"spatial"`` list or TF's ``"full"``."""
    values = list(values)
    if form == "int" and len(set(values)) == 1:
        return values[0]
    if form == "full":
        return [1, 1] + values if channels_first else [1] + values + [1]
    return values


def padding_arg(padding, form, channels_first):
    """``"SAME"``/``"VALID"`` (lower case for form ``"int"``) or explicit pairs, spatial or full."""
    if isinstance(padding, str):
        return padding.lower() if form == "int" else padding
    pairs = [list(pair) for pair in padding]
    if form == "spatial":
        return pairs
    return [[0, 0], [0, 0]] + pairs if channels_first else [[0, 0]] + pairs + [[0, 0]]


def tf_same_pads(n, k, stride, dilation=1):
    """TensorFlow's documented SAME rule, written out independently of fastconv.shapes."""
    out = -(-n // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def fit_size(base, span, stride, padding, divides):
    """Smallest size >= ``base`` whose windows divide evenly (or not) with this padding.

    ``span`` is the effective window ``(k - 1) * d + 1``; ``padding`` is ``"SAME"``, ``"VALID"`` or
    a ``(before, after)`` pair. With stride 1 everything divides, so ``base`` (or the smallest
    size that fits) is returned.
    """
    for n in range(max(base, 1), base + 4 * stride + span + 4):
        if padding == "SAME":
            rest = n
        else:
            pad = 0 if padding == "VALID" else sum(padding)
            rest = n + pad - span
            if rest < 0:
                continue
        if stride == 1 or (rest % stride == 0) == divides:
            return n
    raise AssertionError("no size found")


def out_size(n, span, stride, padding):
    """Expected output length along one dim (independent of fastconv)."""
    if padding == "SAME":
        return -(-n // stride)
    pad = 0 if padding == "VALID" else sum(padding)
    return (n + pad - span) // stride + 1


@pytest.fixture
def tools():
    """Argument-form and size helpers for building fastconv calls from grid cases."""
    return SimpleNamespace(to_last=to_last, to_first=to_first, window=window_arg,
                           padding=padding_arg, fit_size=fit_size, out_size=out_size,
                           same_pads=tf_same_pads, layouts=LAYOUTS)


# ----------------------------------------------------------------------------- TensorFlow

@pytest.fixture(scope="session")
def tf():
    # exc_type=ImportError: a broken TensorFlow install skips too, not only a missing one.
    return pytest.importorskip("tensorflow", exc_type=ImportError)


@pytest.fixture(scope="session")
def tf_oracle(tf):
    """TensorFlow computing every op (tests that need TF itself: its float32 sums, its quirks)."""
    return TFOracle(tf)


@pytest.fixture(scope="session")
def oracle(request):
    """The expected values of the suite: the independent NumPy oracle (``fastconv.reference``,
    which imports nothing from fastconv and is itself checked against TF and the golden corpus
    by tests/test_reference.py and tests/test_golden.py), so the suite means something without
    TensorFlow. ``FASTCONV_TEST_ORACLE=tf`` checks everything against TF directly instead."""
    if os.environ.get("FASTCONV_TEST_ORACLE") == "tf":
        return request.getfixturevalue("tf_oracle")
    return NumpyOracle()


class NumpyOracle:
    """:class:`TFOracle`'s interface over :mod:`fastconv.reference`'s core (caller's layout in
    and out; normalised ``strides``/``ksize``/``dilations`` tuples and padding)."""

    @staticmethod
    def _pads(xl, kernel, strides, dilations, padding):
        from fastconv import reference

        if isinstance(padding, str):
            return reference._pads(padding, xl.shape[1:-1], kernel, strides, dilations, False)
        return [tuple(p) for p in padding]

    def conv(self, x, w, strides, padding, dilations=None, channels_first=False, bias=None,
             activation=None):
        from fastconv import reference

        n = x.ndim - 2
        xl = to_last(x, channels_first)
        strides, dilations = tuple(strides), tuple(dilations or (1,) * n)
        pads = self._pads(xl, w.shape[:n], strides, dilations, padding)
        y = reference.conv(xl, w, strides, pads, dilations, bias, activation)
        return to_first(y, channels_first)

    def depthwise(self, x, w, strides, padding, dilations=(1, 1), channels_first=False):
        grouped = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2] * w.shape[3])
        return self.conv(x, grouped, strides, padding, dilations, channels_first)

    def conv_transpose(self, x, w, out_spatial, strides, padding, dilations=(1, 1),
                       channels_first=False):
        from fastconv import reference

        strides, dilations = tuple(strides), tuple(dilations)
        n = x.ndim - 2
        if isinstance(padding, str):
            pads = reference._pads(padding, tuple(out_spatial), w.shape[:n], strides, dilations,
                                   False)
        else:
            pads = [tuple(p) for p in padding]
        y = reference.transposed_conv(to_last(x, channels_first), w, tuple(out_spatial), strides,
                                     pads, dilations)
        return to_first(y, channels_first)

    def pool(self, kind, x, ksize, strides, padding, channels_first=False):
        from fastconv import reference

        xl = to_last(x, channels_first)
        ksize, strides = tuple(ksize), tuple(strides)
        pads = self._pads(xl, ksize, strides, (1,) * len(ksize), padding)
        return to_first(reference.pool_windows(kind, xl, ksize, strides, pads), channels_first)

    def global_pool(self, kind, x, channels_first=False, keepdims=False):
        from fastconv import reference

        fmt = "NCHW" if channels_first else "NHWC"
        function = reference.global_max_pool2d if kind == "max" else reference.global_avg_pool2d
        return function(x, fmt, keepdims)

    def zero_pad(self, x, padding, channels_first=False):
        from fastconv import reference

        return reference.zero_pad2d(x, padding, "NCHW" if channels_first else "NHWC")


class TFOracle:
    """:class:`NumpyOracle`'s interface over TensorFlow: each op's ``tf_function`` in the op
    table (:mod:`fastconv.tf_reference`, where TF's CPU gaps are filled by exact rewrites).

    Arguments are normalised: ``strides``/``dilations``/``ksize`` are spatial tuples, ``padding``
    is ``"SAME"``, ``"VALID"`` or a tuple of spatial ``(before, after)`` pairs. Results are NumPy
    arrays in the caller's layout.
    """

    def __init__(self, tf):
        self.tf = tf

    @staticmethod
    def _op(name):
        return ops.get(name).tf_function

    @staticmethod
    def _padding(padding):
        return padding if isinstance(padding, str) else [list(pair) for pair in padding]

    def conv(self, x, w, strides, padding, dilations=None, channels_first=False, bias=None,
             activation=None):
        n = x.ndim - 2
        return self._op(f"conv{n}d")(x, w, list(strides), self._padding(padding),
                                     LAYOUTS[n][channels_first], list(dilations or (1,) * n),
                                     bias=bias, activation=activation)

    def depthwise(self, x, w, strides, padding, dilations=(1, 1), channels_first=False):
        return self._op("depthwise_conv2d")(x, w, list(strides), self._padding(padding),
                                            LAYOUTS[2][channels_first], list(dilations))

    def conv_transpose(self, x, w, out_spatial, strides, padding, dilations=(1, 1),
                       channels_first=False):
        n = x.ndim - 2
        return self._op(f"conv{n}d_transpose")(x, w, tuple(out_spatial), list(strides),
                                               self._padding(padding),
                                               LAYOUTS[n][channels_first], list(dilations))

    def pool(self, kind, x, ksize, strides, padding, channels_first=False):
        n = x.ndim - 2
        return self._op(f"{kind}_pool{n}d")(x, list(ksize), list(strides),
                                            self._padding(padding), LAYOUTS[n][channels_first])

    def _pool3d_rewrite(self, kind, xl, ksize, strides, padding):
        """tf_reference's 3-D pooling rewrite (float64, explicit padding) on channels-last data,
        for checking it against TF's own kernel where that exists."""
        from fastconv import tf_reference

        return tf_reference._pool3d_rewrite(kind, self.tf.constant(xl), tuple(ksize),
                                            tuple(strides), padding).numpy()

    def global_pool(self, kind, x, channels_first=False, keepdims=False):
        return self._op(f"global_{kind}_pool2d")(x, LAYOUTS[2][channels_first], keepdims)

    def zero_pad(self, x, padding, channels_first=False):
        return self._op("zero_pad2d")(x, padding, LAYOUTS[2][channels_first])
