"""fastconv.functional on CUDA device arrays (the simulator, or a GPU) against
torch.nn.functional on the CPU: each function once or twice at tiny sizes, so every GPU path
the functional layer adds (window tables, PyTorch's max and divisors, unpooling's scatter,
the padding modes' gather, weights permuted through the host, grouped transposed convs) runs.
"""

import numpy as np
import pytest

import fastconv.functional as F

torch = pytest.importorskip("torch")
cuda = pytest.importorskip("numba.cuda")
TF = torch.nn.functional


def _specials(x):
    flat = x.reshape(-1)
    flat[::7] = np.nan
    flat[3::11] = -np.inf
    flat[5::13] = np.inf
    return x


def _compare(name, x, *args, exact=False, host_args=None, **kwargs):
    """F.name on device copies of ``x`` (and array args) against torch on the CPU."""
    device_args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    mine = getattr(F, name)(cuda.to_device(x), *device_args, **kwargs)
    theirs = getattr(TF, name)(torch.from_numpy(x),
                               *[torch.from_numpy(a) if isinstance(a, np.ndarray) else a
                                 for a in (host_args or args)], **kwargs)
    mine = mine if isinstance(mine, tuple) else (mine,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    for got, expected in zip(mine, theirs):
        got = got.copy_to_host()
        expected = expected.numpy()
        assert got.shape == expected.shape and got.dtype == expected.dtype
        if exact:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolutions(dtype, rand):
    x = rand((1, 4, 5, 6), dtype)
    _compare("conv2d", x, rand((6, 2, 3, 3), dtype), rand((6,), dtype), padding="same",
             groups=2)
    _compare("conv1d", np.ascontiguousarray(x[:, :, 0]), rand((3, 4, 2), dtype), None, 2, 1)
    _compare("conv_transpose2d", x, rand((4, 3, 3, 2), dtype), rand((6,), dtype), stride=2,
             padding=1, output_padding=1, groups=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pools(dtype, rand):
    x = _specials(rand((1, 2, 7, 6), dtype))
    clean = np.nan_to_num(x, nan=0.5, posinf=2.0, neginf=-2.0)
    _compare("max_pool2d", x, 3, 2, 1, exact=True)  # PyTorch's max on TF's CUDA kernel
    _compare("max_pool2d", x, 2, 1, 1, 2, True, True, exact=True)  # window tables, indices
    _compare("avg_pool2d", clean, 3, 2, 1, True)  # count_include_pad
    _compare("avg_pool2d", clean, 3, 2, 1, False, True, 4)  # divisor_override
    _compare("lp_pool2d", np.abs(clean), 2.5, 3, 2)
    _compare("adaptive_max_pool2d", x, (3, 4), True, exact=True)
    _compare("adaptive_avg_pool2d", clean, 1)  # the global pool
    pooled, indices = TF.max_pool2d(torch.from_numpy(clean), 2, return_indices=True)
    mine = F.max_unpool2d(cuda.to_device(pooled.numpy()), cuda.to_device(indices.numpy()), 2,
                          output_size=(7, 6)).copy_to_host()
    np.testing.assert_array_equal(mine, TF.max_unpool2d(pooled, indices, 2,
                                                        output_size=(7, 6)).numpy())


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_modes(mode, rand):
    x = rand((1, 2, 4, 5), np.float32)
    value = {"value": 2.0} if mode == "constant" else {}
    _compare("pad", x, (2, -1, 1, 3), mode, exact=True, **value)


def test_errors_come_before_any_launch(rand):
    x = cuda.to_device(rand((1, 2, 4, 4), np.float32))
    with pytest.raises(RuntimeError, match="invalid max index"):
        F.max_unpool2d(x, cuda.to_device(np.full((1, 2, 4, 4), 99)), 2)
    with pytest.raises(ValueError, match="half"):
        F.max_pool2d(x, 2, 1, 2)
    with pytest.raises(TypeError, match="norm_type=inf"):  # |x| needs the array's own library
        F.lp_pool2d(x, float("inf"), 2)
