"""Memory and views: any strides give the same results, inputs are never written, outputs never
alias inputs, and indexing does not overflow past 2**31 elements.

Every op is called on contiguous inputs and then on the same values held as: a Fortran-ordered
array, negative-stride views (every axis reversed), every-other-element views of a bigger
buffer, channels-first views of a channels-last buffer (and the reverse), read-only arrays,
zero-stride broadcast views, and misaligned buffers. Results must be bitwise equal to the
contiguous call; each argument's bytes must be unchanged after the call; the output must share
no memory with any argument, including calls that are identities (1x1 windows, zero padding 0).

The test marked ``slow`` pools a float32 tensor of just over 2**31 elements (8.6 GB of address
space; the untouched zero pages are shared, so it peaks at about 2.3 GB resident and runs in
~30 s on 2 cores) and checks the far end; it is not in the default run::

    .venv/bin/python -m pytest -m slow tests/test_memory.py
"""

import numpy as np
import pytest

import fastconv
from conftest import assert_exact
from fastconv import ops

F32, F64 = np.float32, np.float64


def _ops(rng, dtype):
    """label -> (function of the arrays, dict of arrays): every sample call of the op table
    (fastconv.ops), so an op added there is covered here the day it is added."""
    calls = {}
    for label, (_, sample) in ops.samples().items():
        arrays = {key: rng.standard_normal(shape).astype(dtype)
                  for key, shape in sample.shapes.items()}
        calls[label] = ((lambda call: lambda **a: _values(call(fastconv, **a)))(sample.call),
                        arrays)
    return calls


def _values(result):
    """The values of ``(values, indices)`` results (max_pool_with_argmax; its indices get
    the same checks in tests/test_window_max.py)."""
    return result[0] if isinstance(result, tuple) else result


OP_NAMES = list(_ops(np.random.default_rng(0), F32))


# ----------------------------------------------------------------------------- views

def _fortran(a):
    return np.asfortranarray(a)


def _negative(a):
    """Every axis reversed twice: the same values through negative strides."""
    return np.flip(np.flip(a).copy())


def _every_other(a):
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    big[tuple(slice(1, None, 2) for _ in a.shape)] = a
    return big[tuple(slice(1, None, 2) for _ in a.shape)]


def _moved(a):
    """The same values as a view of a buffer in another axis order (channels last <-> first)."""
    if a.ndim < 3:
        return _every_other(a)
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


def _read_only(a):
    b = a.copy()
    b.setflags(write=False)
    return b


def _broadcast(a):
    """Zero strides: the first entry along axis 0 repeated (the caller compares with a copy)."""
    return np.broadcast_to(a[:1], a.shape)


def _misaligned(a):
    """The same values in a buffer that starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = raw[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


VIEWS = {"fortran": _fortran, "negative": _negative, "every_other": _every_other,
         "moved": _moved, "read_only": _read_only, "broadcast": _broadcast,
         "misaligned": _misaligned}


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", OP_NAMES)
def test_any_strides_give_the_contiguous_result_and_leave_inputs_untouched(name, dtype, view,
                                                                           rng):
    function, arrays = _ops(rng, dtype)[name]
    views = {key: VIEWS[view](a) for key, a in arrays.items()}
    contiguous = {key: np.ascontiguousarray(a) for key, a in views.items()}  # same values
    for key, a in views.items():  # the views are what they claim to be
        if view == "broadcast":
            assert a.shape[0] == 1 or a.strides[0] == 0
        else:
            np.testing.assert_array_equal(a, arrays[key])
        if view in ("fortran", "negative", "every_other") and a.ndim > 1:
            assert not a.flags.c_contiguous, (key, a.strides)
    before = {key: a.copy() for key, a in views.items()}

    got = function(**views)
    expected = function(**contiguous)

    assert_exact(got, expected, dtype)
    for key, a in views.items():
        assert a.tobytes() == before[key].tobytes(), f"{key} was written"
        assert not np.shares_memory(got, a), f"the output aliases {key}"


def test_big_endian_input_is_refused_cleanly():
    x = np.ones((1, 4, 4, 1), ">f4")
    with pytest.raises(TypeError, match=r"input must have dtype float32 or float64, got >f4"):
        fastconv.max_pool2d(x, 2, 2, "VALID")


# ----------------------------------------------------------------------------- aliasing

def _identities(x):
    """Calls whose output equals their input: the tempting places to return a view."""
    c = x.shape[-1]
    eye = np.eye(c, dtype=x.dtype).reshape(1, 1, c, c)
    return {
        "zero_pad2d(0)": lambda: fastconv.zero_pad2d(x, 0),
        "max_pool2d(1)": lambda: fastconv.max_pool2d(x, 1, 1, "VALID"),
        "avg_pool2d(1)": lambda: fastconv.avg_pool2d(x, 1, 1, "SAME"),
        "max_pool1d(1)": lambda: fastconv.max_pool1d(x[0], 1, 1, "VALID"),
        "max_pool3d(1)": lambda: fastconv.max_pool3d(x[None], 1, 1, "VALID"),
        "conv2d(eye)": lambda: fastconv.conv2d(x, eye, 1, "VALID"),
        "depthwise(1)": lambda: fastconv.depthwise_conv2d(x, np.ones((1, 1, c, 1), x.dtype), 1,
                                                          "VALID"),
        "transpose(eye)": lambda: fastconv.conv2d_transpose(x, eye, x.shape, 1, "VALID"),
        "global_max(1x1)": lambda: fastconv.global_max_pool2d(x[:, :1, :1], keepdims=True),
        "global_avg(1x1)": lambda: fastconv.global_avg_pool2d(x[:, :1, :1], keepdims=True),
    }


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", list(_identities(np.zeros((1, 1, 1, 1)))))
def test_identity_calls_return_fresh_arrays(name, dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    saved = x.copy()
    out = _identities(x)[name]()
    assert not np.shares_memory(out, x)
    assert out.flags.writeable
    out[...] = 7  # writing to the result must not reach the input
    np.testing.assert_array_equal(x, saved)


@pytest.mark.parametrize("name", OP_NAMES)
def test_outputs_are_writeable_and_independent_of_each_other(name, rng):
    function, arrays = _ops(rng, F32)[name]
    first, second = function(**arrays), function(**arrays)
    assert not np.shares_memory(first, second)  # no buffer reused between calls
    first[...] = 0
    assert second.any()


# ----------------------------------------------------------------------------- > 2**31 elements

def _available_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.slow
def test_pooling_past_two_to_the_31_elements_reaches_the_far_end():
    """(1, 46341, 46341, 1) float32 is 2**31 + 4_633 elements (8.6 GB): flat indices of the last
    rows do not fit in int32. Values planted at both ends must come out of the last windows."""
    side = 46341
    assert side * side > 2**31
    if _available_bytes() < 4 * 2**30:
        pytest.skip("needs about 4 GB of free memory (2.1 GB output, zero pages of the input)")
    try:
        x = np.zeros((1, side, side, 1), F32)  # zero pages: only read, never copied
    except MemoryError:
        pytest.skip("cannot map 8.6 GB (strict overcommit?)")
    x[0, 0, 0, 0] = 1.0
    x[0, side - 1, side - 1, 0] = 7.0  # flat index 2**31 + 4_632
    x[0, side - 1, 0, 0] = 5.0
    x[0, side // 2, side - 2, 0] = 3.0
    x[0, side - 2, side - 1, 0] = -2.0  # shares the far window with 7
    out = fastconv.max_pool2d(x, 2, 2, "SAME")  # ceil(46341 / 2) = 23171: the last window is 1x1
    half = out.shape[1]
    assert out.shape == (1, half, half, 1) and half == (side + 1) // 2
    assert out[0, -1, -1, 0] == 7.0
    assert out[0, -1, 0, 0] == 5.0
    assert out[0, 0, 0, 0] == 1.0
    assert out[0, (side // 2) // 2, (side - 2) // 2, 0] == 3.0
    assert out[0, (side - 2) // 2, -1, 0] == 0.0  # the -2 lost to the zeros around it
    assert np.count_nonzero(out) == 4
    del out
    assert fastconv.global_max_pool2d(x)[0, 0] == 7.0
    mean = fastconv.global_avg_pool2d(x)[0, 0]
    np.testing.assert_allclose(mean, 14.0 / side**2, rtol=1e-3)
