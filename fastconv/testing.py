"""The one tolerance rule for "equal to TensorFlow", shared by the tests and the benchmarks.

``max|actual - expected| <= TOLERANCE[dtype] * max(1, max|expected|)``, NaN exactly where the
expected result has NaN and equal infinities counted equal; ops that only select or copy
values (:data:`EXACT_OPS`) must match bit for bit. The suite (``tests/conftest.py``),
``fastconv compare`` and the GPU equality grid (``tests/cuda -m gpu``) all read this module, so
the rule is written once.

Examples
--------
>>> import numpy as np
>>> from fastconv.testing import assert_close
>>> assert_close(np.float32([1.0, 2.0]), np.float32([1.0, 2.000001]), np.float32)
"""

from __future__ import annotations

import numpy as np

from .ops import OPS

#: Allowed max abs error relative to the output's scale (max |expected|, at least 1). Half
#: precision: 4 units in the last place at that scale (float16's eps is 9.8e-4, bfloat16's
#: 7.8e-3): fastconv rounds a float32 result once, TF's CPU kernels sometimes once more.
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12,
             np.dtype(np.float16): 4e-3}
try:  # bfloat16 is ml_dtypes' (TF's and JAX's); without it no array can have that dtype
    import ml_dtypes as _ml_dtypes

    TOLERANCE[np.dtype(_ml_dtypes.bfloat16)] = 3e-2
except ImportError:  # pragma: no cover
    pass
#: Ops whose results must match exactly (they only select or copy values): the op table's.
EXACT_OPS = frozenset(op.name for op in OPS if op.exact)


def tolerance(dtype, expected):
    """The allowed max abs error for results of ``dtype`` whose expected values are
    ``expected``.

    Examples
    --------
    >>> import numpy as np
    >>> tolerance(np.float32, np.array([0.5, -40.0]))
    0.0004
    """
    expected = np.asarray(expected, dtype=np.float64)
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, float(np.max(np.abs(finite), initial=0.0)))
    return TOLERANCE[np.dtype(dtype)] * scale


def _prepare(actual, expected, dtype):
    dtype = np.dtype(dtype)
    assert isinstance(actual, np.ndarray), f"expected a NumPy array, got {type(actual).__name__}"
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    return dtype, expected


def _each(check, actual, expected, dtype):
    """For ops returning ``(values, indices)`` (``max_pool_with_argmax``): ``check`` the values,
    the indices bit for bit in their own integer dtype. True when it handled a tuple."""
    if not isinstance(actual, tuple):
        return False
    assert isinstance(expected, tuple) and len(actual) == len(expected), \
        f"{len(actual)} results, expected {len(expected)}"
    check(actual[0], expected[0], dtype)
    for got, want in zip(actual[1:], expected[1:]):
        want = np.asarray(want)
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype, \
            f"indices dtype {getattr(got, 'dtype', None)}, expected {want.dtype}"
        np.testing.assert_array_equal(got, want)
    return True


def assert_close(actual, expected, dtype):
    """Assert dtype, shape, NaN positions and ``max|actual - expected| <= tolerance``.

    A tuple (values, indices) checks the values so and the indices exactly.

    Examples
    --------
    >>> import numpy as np
    >>> assert_close(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]), np.float64)
    """
    if _each(assert_close, actual, expected, dtype):
        return
    dtype, expected = _prepare(actual, expected, dtype)
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="NaN positions differ")
    finite = ~np.isnan(e)
    if not finite.any():
        return
    a, e = a[finite], e[finite]
    with np.errstate(invalid="ignore"):
        diff = np.where(a == e, 0.0, np.abs(a - e))  # equal infinities count as equal
    worst = float(np.max(diff))
    tol = tolerance(dtype, e)
    assert worst <= tol, (f"max abs error {worst:.3e} > {tol:.3e} (tol {TOLERANCE[dtype]:g} x "
                          f"scale {tol / TOLERANCE[dtype]:.3g}) at flat index "
                          f"{int(np.argmax(diff))}")


def assert_exact(actual, expected, dtype):
    """Assert dtype, shape and bitwise-equal values (max pooling, padding, copies).

    Examples
    --------
    >>> import numpy as np
    >>> assert_exact(np.float32([1, 2]), [1, 2], np.float32)
    """
    if _each(assert_exact, actual, expected, dtype):
        return
    _, expected = _prepare(actual, expected, dtype)
    np.testing.assert_array_equal(actual, expected.astype(actual.dtype))
