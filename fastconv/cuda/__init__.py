"""numba.cuda kernels for every fastconv op, behind the same dispatch as the CPU kernels.

You rarely import this package yourself: pass a GPU array (a numba device array, a CuPy array, a
PyTorch CUDA tensor: anything exposing ``__cuda_array_interface__``) to any ``fastconv`` op, or
``device="cuda"``, and :mod:`fastconv.dispatch` loads :mod:`fastconv.cuda.backend` on first use.

Modules, one job each:

* :mod:`.launch`: is a GPU usable, array interop (zero-copy views, result kinds), grid sizes.
* :mod:`.conv`: the tiled convolution kernel (conv1d/2d/3d, grouped, depthwise, transposed).
* :mod:`.pool`: max/avg pooling, global pooling, zero padding.
* :mod:`.activation`: activations fused into the conv's store step.
* :mod:`.kernels`: kernel factories, launch bounds, the disk cache and the kernel inventory.
* :mod:`.resources`: the kernels compiled by NVVM and ptxas without a GPU (registers,
  shared memory, occupancy; ``python -m fastconv.cuda.resources`` prints the table).
* :mod:`.backend`: registers the implementations with :mod:`fastconv.dispatch`.

Importing this package imports nothing from CUDA; :func:`is_available` asks numba.cuda lazily.

Examples
--------
>>> import fastconv.cuda
>>> isinstance(fastconv.cuda.is_available(), bool)
True
"""

__all__ = ["is_available"]


def is_available():
    """Return True when the CUDA kernels can run here (a GPU and driver, or the simulator).

    Never raises: a missing ``numba-cuda`` package or driver gives False. Under
    ``NUMBA_ENABLE_CUDASIM=1`` the (slow, pure Python) simulator counts as available.

    Examples
    --------
    >>> import fastconv.cuda
    >>> fastconv.cuda.is_available() in (True, False)
    True
    """
    from .launch import cuda_unavailable_reason

    return cuda_unavailable_reason() is None
