"""Gradients on the GPU: pooling's input gradient and a conv's filter gradient.

Pooling gradients gather instead of scattering, so no two threads write one cell and no
atomics are needed: one thread per input cell visits the windows that hold it (at most
``ceil(k / s)`` per dim) and adds the gradient of each window that sends it there (TF's rule,
see :class:`fastconv.problems.PoolGradProblem`; for the first-max rule each window's winner
is found again by scanning it, ``k`` cells per dim). Threads are laid out as the forward
pooling kernels' (:func:`.pool._element_indexing`, coalesced on the fastest dim).

The filter gradient is a reduction over the batch and the output positions: one block per
filter element, its threads striding over (batch, output position) and summing in shared
memory. A padded tap multiplies zero by the output gradient, so an infinite gradient meeting
the padding gives NaN, as the zero-padded products of TF's kernels do.
"""

from __future__ import annotations

from numba import cuda, int64, uint64

from . import kernels
from .launch import numba_float
from .pool import _element_indexing, _grid, wide_indexing

#: Threads of a filter-gradient block (a power of two: the shared-memory tree reduction).
FILTER_GRAD_THREADS = 256


@cuda.jit(device=True)
def _first_window(i, pad, k, s):
    """The first window (output index) holding input index ``i``."""
    reach = i + pad - k + 1
    return 0 if reach <= 0 else (reach + s - 1) // s


@kernels.factory
def pool_grad_kernel(kind, ties_all, dtype, window, strides, channels_first, threads, device,
                     wide=False):
    """Build (once per static configuration) a pooling-gradient kernel.

    Returns ``kernel(x, y, grad, dx, pad_d, pad_h, pad_w)`` over 5-D arrays in the data layout
    (``x`` the forward input, ``y`` its output: read by the max rules only), launched on
    :func:`.pool._grid` over ``dx`` as the forward kernels are over their output.
    """
    k_d, k_h, k_w = window
    s_d, s_h, s_w = strides
    is_max = kind == "max"
    ftype = numba_float(dtype)
    sizes, position = _element_indexing(channels_first, wide)

    @cuda.jit(device=True)
    def load(a, n, c, d, h, w):
        if channels_first:
            return a[uint64(n), uint64(c), uint64(d), uint64(h), uint64(w)]
        return a[uint64(n), uint64(d), uint64(h), uint64(w), uint64(c)]

    # Each cell visits up to ceil(k / s) windows per dim and the first-max rule rescans each
    # (k cells per dim): at the memory-bound kernels' 64 registers these spilled 40-300 B
    # (ptxas), so they ask for the compute-bound kernels' 128 (25% occupancy).
    @kernels.jit(threads, kernels.COMPUTE_BOUND_THREADS)
    def pool_grad(x, y, grad, dx, pad_d, pad_h, pad_w):
        (channels, out_d, out_h, out_w, in_d, in_h, in_w, inner_size,
         outer_size) = sizes(grad, dx)
        inner = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if inner >= inner_size:
            return
        for outer in range(cuda.blockIdx.y, outer_size, cuda.gridDim.y):
            n, c, t, r, s = position(inner, outer, channels, in_d, in_h, in_w)
            total = ftype(0)
            for od in range(_first_window(t, pad_d, k_d, s_d), min(out_d, (t + pad_d) // s_d + 1)):
                d0 = max(od * s_d - pad_d, 0)
                d1 = min(od * s_d - pad_d + k_d, in_d)
                for oh in range(_first_window(r, pad_h, k_h, s_h),
                                min(out_h, (r + pad_h) // s_h + 1)):
                    h0 = max(oh * s_h - pad_h, 0)
                    h1 = min(oh * s_h - pad_h + k_h, in_h)
                    for ow in range(_first_window(s, pad_w, k_w, s_w),
                                    min(out_w, (s + pad_w) // s_w + 1)):
                        w0 = max(ow * s_w - pad_w, 0)
                        w1 = min(ow * s_w - pad_w + k_w, in_w)
                        g = load(grad, n, c, od, oh, ow)
                        if not is_max:
                            total += g / ftype((d1 - d0) * (h1 - h0) * (w1 - w0))
                        elif ties_all:
                            if load(x, n, c, t, r, s) == load(y, n, c, od, oh, ow):
                                total += g
                        else:
                            # The window's winner: its first cell unless a later one is
                            # strictly greater (a NaN never takes it).
                            best = load(x, n, c, d0, h0, w0)
                            bd, bh, bw = d0, h0, w0
                            for d in range(d0, d1):
                                for h in range(h0, h1):
                                    for w in range(w0, w1):
                                        value = load(x, n, c, d, h, w)
                                        if best < value:
                                            best = value
                                            bd, bh, bw = d, h, w
                            if bd == t and bh == r and bw == s:
                                total += g
            if channels_first:
                dx[uint64(n), uint64(c), uint64(t), uint64(r), uint64(s)] = total
            else:
                dx[uint64(n), uint64(t), uint64(r), uint64(s), uint64(c)] = total

    return pool_grad


def launch_pool_grad(x, y, grad, dx, geometry, kind, ties, channels_first, device):
    """Run a pooling gradient into ``dx`` (device arrays, 5-D, data layout; ``x``/``y`` may
    be any array of the data's dtype where the rule does not read them)."""
    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    kernel = pool_grad_kernel(kind, ties == "all", str(dx.dtype), tuple(geometry.kernel),
                              tuple(geometry.strides), bool(channels_first), threads, device,
                              wide=wide_indexing(x, grad, dx))
    if channels_first:
        n, c, in_d, in_h, in_w = dx.shape
        inner, outer = in_h * in_w, n * c * in_d
    else:
        n, in_d, in_h, in_w, c = dx.shape
        inner, outer = in_w * c, n * in_d * in_h
    pads = tuple(int(before) for before, _ in geometry.pads)
    kernel[_grid(inner, outer, threads), threads](x, y, grad, dx, *pads)
    return dx


@kernels.factory
def filter_grad_kernel(dtype, window, strides, dilations, channels_first, threads, device):
    """Build (once per static configuration) the filter-gradient kernel.

    Returns ``kernel(x, grad, out, pad_d, pad_h, pad_w)``: ``out`` is (T, R, S, C // groups,
    K), launched with one block of ``threads`` per element of ``out``.
    """
    k_d, k_h, k_w = window
    s_d, s_h, s_w = strides
    d_d, d_h, d_w = dilations
    ftype = numba_float(dtype)

    @kernels.jit(threads)
    def filter_grad(x, grad, out, pad_d, pad_h, pad_w):
        partial = cuda.shared.array(threads, ftype)
        group_in, k_total = out.shape[3], out.shape[4]
        if channels_first:
            channels, in_d, in_h, in_w = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
            out_d, out_h, out_w = grad.shape[2], grad.shape[3], grad.shape[4]
        else:
            in_d, in_h, in_w, channels = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
            out_d, out_h, out_w = grad.shape[1], grad.shape[2], grad.shape[3]
        group_out = k_total // (channels // group_in)
        element = int64(cuda.blockIdx.x)
        k = element % k_total
        c = (element // k_total) % group_in
        tap = element // (k_total * group_in)
        s = tap % k_w
        r = (tap // k_w) % k_h
        t = tap // (k_w * k_h)
        channel = (k // group_out) * group_in + c
        positions = int64(grad.shape[0]) * out_d * out_h * out_w
        total = ftype(0)
        for m in range(cuda.threadIdx.x, positions, threads):
            ow = m % out_w
            oh = (m // out_w) % out_h
            od = (m // (out_w * out_h)) % out_d
            n = m // (out_w * out_h * out_d)
            d = od * s_d + t * d_d - pad_d
            h = oh * s_h + r * d_h - pad_h
            w = ow * s_w + s * d_w - pad_w
            if channels_first:
                g = grad[uint64(n), uint64(k), uint64(od), uint64(oh), uint64(ow)]
            else:
                g = grad[uint64(n), uint64(od), uint64(oh), uint64(ow), uint64(k)]
            value = ftype(0)  # a padded cell: 0 * g (NaN for an infinite g, as TF's)
            if 0 <= d < in_d and 0 <= h < in_h and 0 <= w < in_w:
                if channels_first:
                    value = x[uint64(n), uint64(channel), uint64(d), uint64(h), uint64(w)]
                else:
                    value = x[uint64(n), uint64(d), uint64(h), uint64(w), uint64(channel)]
            total += value * g
        partial[cuda.threadIdx.x] = total
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if cuda.threadIdx.x < step:
                partial[cuda.threadIdx.x] += partial[cuda.threadIdx.x + step]
            cuda.syncthreads()
            step //= 2
        if cuda.threadIdx.x == 0:
            out[uint64(t), uint64(r), uint64(s), uint64(c), uint64(k)] = partial[0]

    return filter_grad


def launch_filter_grad(x, grad, out, geometry, channels_first, device, threads=None):
    """Run the filter gradient into ``out`` (T, R, S, C // groups, K) on device arrays."""
    if threads is None:  # a power of two, no more than the positions to sum (small tests)
        positions = grad.size // grad.shape[1 if channels_first else 4]
        threads = min(FILTER_GRAD_THREADS, 1 << max(0, int(positions - 1).bit_length()))
    kernel = filter_grad_kernel(str(out.dtype), tuple(geometry.kernel), tuple(geometry.strides),
                                tuple(geometry.dilations), bool(channels_first), threads, device)
    blocks = int(out.size)
    pads = tuple(int(before) for before, _ in geometry.pads)
    kernel[blocks, threads](x, grad, out, *pads)
    return out
