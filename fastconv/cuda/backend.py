"""Registers the CUDA implementations with :mod:`fastconv.dispatch`.

:mod:`fastconv.dispatch` imports this module the first time a problem runs on ``"cuda"``.
Importing it needs no GPU; running a problem where no GPU can run raises the RuntimeError of
:func:`.launch.require_cuda`, which says why.

Each ``run_*`` views its arguments as numba device arrays (zero-copy for GPU arrays, one copy
in for host arrays, so mixed host/device arguments work), allocates the output on the device,
launches one kernel on the default stream, and returns the output as the kind of array the
input was (see :func:`.launch.output`): NumPy in -> NumPy out (synchronous), CuPy in -> CuPy,
torch in -> torch, any other GPU array -> a numba device array (asynchronous, like any kernel
launch).
"""

import functools

import numpy as np

from ..dispatch import Implementation, register
from ..problems import prepared
from . import launch

#: Why the kernel modules failed to import (None when they did): numba-cuda missing
#: (ImportError) or a CUDA library it loads missing (a RuntimeError such as
#: ``DynamicLibNotFoundError``). Every run then raises require_cuda's explanation instead.
IMPORT_ERROR = None
try:
    from .conv import launch_conv
    from .grad import launch_filter_grad, launch_pool_grad
    from .pool import (launch_global_pool, launch_max_unpool, launch_mode_pad, launch_pool,
                       launch_window_pool, launch_zero_pad)
    from .window_max import launch_window_max
except Exception as _error:  # noqa: BLE001 - any failure here means "no CUDA kernels"
    IMPORT_ERROR = _error
    launch_conv = launch_global_pool = launch_pool = launch_zero_pad = None
    launch_window_pool = launch_max_unpool = launch_mode_pad = None
    launch_filter_grad = launch_pool_grad = launch_window_max = None


def prepare_array(value):
    """A GPU array the API layer can reshape: strided numba device arrays are copied to a
    contiguous one on the device (see :func:`fastconv.dispatch.prepare_array`)."""
    return launch.device_contiguous(value)


def host_to_device_like(host, like):
    """``host`` (NumPy) on the GPU, as the caller's kind of array ``like`` is."""
    host = np.ascontiguousarray(host)
    out, finish = launch.output(host.shape, host.dtype, like)
    out.copy_to_device(host)
    return finish()


def _on_gpu(run):
    """Check that a GPU (or the simulator) is there; answer empty problems without a launch."""
    @functools.wraps(run)
    def checked(problem):
        launch.require_cuda()
        if 0 in problem.out_shape or 0 in problem.x.shape:
            zeros = np.zeros(problem.out_shape, problem.dtype)
            result = launch.result_like(launch.to_device(zeros), problem.x)
            if getattr(problem, "return_indices", False):
                indices = launch.to_device(np.zeros(problem.out_shape, np.int64))
                return result, launch.result_like(indices, problem.x)
            return result
        return run(problem)
    return checked


@_on_gpu
def run_conv(problem):
    """Tiled direct convolution."""
    x = launch.to_device(problem.x)
    w = prepared(problem, ("cuda", launch.device_key()),
                 lambda: launch.to_device(problem.w, problem.dtype))
    bias = None if problem.bias is None else launch.to_device(problem.bias, problem.dtype)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_conv(x, w, bias, out, problem.geometry, problem.groups, problem.activation,
                problem.channels_first, False, launch.device_key())
    return finish()


@_on_gpu
def run_conv_transpose(problem):
    """conv2d_transpose as the tiled conv of the flipped filters over the spread input."""
    x = launch.to_device(problem.x)
    w = launch.to_device(problem.w, problem.dtype)
    bias = None if problem.bias is None else launch.to_device(problem.bias, problem.dtype)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_conv(x, w, bias, out, problem.geometry, problem.groups, problem.activation,
                problem.channels_first, True, launch.device_key())
    return finish()


@_on_gpu
def run_pool(problem):
    """Max or average pooling, one thread per output element."""
    x = launch.to_device(problem.x)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_pool(x, out, problem.geometry, problem.kind, problem.channels_first,
                launch.device_key(), problem.nan_wins, problem.count_padding)
    return finish()


@_on_gpu
def run_window_pool(problem):
    """PyTorch-rule pooling over window tables, one thread per output element."""
    x = launch.to_device(problem.x)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    if problem.return_indices:
        idx, finish_idx = launch.output(problem.out_shape, np.int64, problem.x)
    else:
        idx, finish_idx = launch.empty((0,) * 5, np.int64), None
    launch_window_pool(x, out, idx, launch.to_device(problem.tables()), problem,
                       launch.device_key())
    return (finish(), finish_idx()) if problem.return_indices else finish()


def run_max_unpool(problem):
    """Max unpooling: zero the output, then one thread per input value stores it."""
    launch.require_cuda()
    x = launch.device_contiguous(launch.to_device(problem.x))
    indices = launch.device_contiguous(launch.to_device(problem.indices))
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_max_unpool(x, indices, out, problem.channels_first, launch.device_key())
    return finish()


def run_mode_pad(problem):
    """PyTorch's padding modes: one thread per output element reads the cell it maps to."""
    launch.require_cuda()
    x = launch.device_contiguous(launch.to_device(problem.x))
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_mode_pad(x, out, problem.pads, problem.mode, problem.value, launch.device_key())
    return finish()


@_on_gpu
def run_global_pool(problem):
    """Global max / mean: a block per (batch item, channel block), reduced in shared memory."""
    n, channels = problem.out_shape
    x = launch.device_contiguous(launch.to_device(problem.x))
    positions = int(np.prod(x.shape)) // (n * channels)
    x3 = x.reshape((n, channels, positions) if problem.channels_first
                   else (n, positions, channels))
    out, finish = launch.output((n, channels), problem.dtype, problem.x)
    launch_global_pool(x3, out, problem.kind, problem.channels_first, launch.device_key())
    return finish()


@_on_gpu
def run_zero_pad(problem):
    """Zero padding: every output element written once (input value or zero)."""
    x = launch.to_device(problem.x)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_zero_pad(x, out, problem.pads, problem.channels_first, launch.device_key())
    return finish()


def run_pool_grad(problem):
    """Pooling's input gradient: one thread per input cell gathers from its windows."""
    launch.require_cuda()
    grad = launch.to_device(problem.grad)
    if 0 in problem.out_shape or 0 in grad.shape:
        return launch.result_like(launch.to_device(np.zeros(problem.out_shape, problem.dtype)),
                                  problem.grad)
    x = grad if problem.x is None else launch.to_device(problem.x)
    y = x if problem.y is None else launch.to_device(problem.y)
    dx, finish = launch.output(problem.out_shape, problem.dtype, problem.grad)
    launch_pool_grad(x, y, grad, dx, problem.geometry, problem.kind, problem.ties,
                     problem.channels_first, launch.device_key())
    return finish()


@_on_gpu
def run_filter_grad(problem):
    """A conv's filter gradient: one block per filter element sums over the positions."""
    x = launch.to_device(problem.x)
    grad = launch.to_device(problem.grad)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    launch_filter_grad(x, grad, out, problem.geometry, problem.channels_first,
                       launch.device_key())
    return finish()


@_on_gpu
def run_window_max(problem):
    """max_pool_with_argmax, dilation2d, erosion2d: one thread per output element."""
    x = launch.device_contiguous(launch.to_device(problem.x))
    f = None if problem.w is None else launch.to_device(problem.w, problem.dtype)
    out, finish = launch.output(problem.out_shape, problem.dtype, problem.x)
    if problem.with_indices:  # int32 or int64: the kernel stores into either
        idx, finish_idx = launch.output(problem.out_shape, problem.index_dtype, problem.x)
    else:
        idx, finish_idx = None, None
    launch_window_max(x, f, out, idx, problem, launch.device_key())
    return (finish(), finish_idx()) if problem.with_indices else finish()


register(Implementation("window_max", "cuda", "direct", run_window_max))
register(Implementation("conv", "cuda", "tiled", run_conv))
register(Implementation("conv_transpose", "cuda", "tiled", run_conv_transpose))
register(Implementation("max_pool", "cuda", "direct", run_pool))
register(Implementation("avg_pool", "cuda", "direct", run_pool))
register(Implementation("global_pool", "cuda", "direct", run_global_pool))
register(Implementation("window_pool", "cuda", "tables", run_window_pool))
register(Implementation("max_unpool", "cuda", "scatter", run_max_unpool))
register(Implementation("pad", "cuda", "gather", run_mode_pad))
register(Implementation("zero_pad", "cuda", "direct", run_zero_pad))
register(Implementation("max_pool_grad", "cuda", "gather", run_pool_grad))
register(Implementation("avg_pool_grad", "cuda", "gather", run_pool_grad))
register(Implementation("conv_filter_grad", "cuda", "reduce", run_filter_grad))
