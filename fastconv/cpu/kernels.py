"""Public raw kernels: thin ``@njit`` wrappers over the 5-D kernels, callable from user code.

Each takes the *unpadded* input and the padding before each spatial dim; the padding after is
implied by ``out``'s shape. Arrays must be C-contiguous and of one dtype (float32 or float64).
"""

import numpy as np
from numba import njit

from ..shapes import padding_after
from .conv import conv_direct_ndhwc, pad_ndhwc
from .conv_blocked import blocked_fills_lanes, conv_blocked_strided
from .pool import avg_pool_ndhwc, max_pool_ndhwc


# The geometry and selection rules of the dispatcher, compiled: the raw kernels choose between
# the direct and blocked algorithms exactly as ``fastconv.conv*d`` does (the Winograd, planar
# and GEMM algorithms transform or repack per call and are reached through dispatch only).
_padding_after = njit(inline="always", cache=True)(padding_after)
# Sizes go to the kernels as plain int64: a literal (a default argument, a constant in a
# caller's code) would make Numba compile the kernel once more for each value.
_i = np.int64
_blocked_fills_lanes = njit(inline="always", cache=True)(blocked_fills_lanes)


@njit(cache=True)
def _conv5(x, w, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, groups, bias, act):
    n_, d_, h_, w_, c_ = x.shape
    t_, r_, s_, _, _ = w.shape
    _, od_, oh_, ow_, _ = out.shape
    direct = not _blocked_fills_lanes(groups, out.shape[4], x.itemsize)
    # The padding after is implied by ``out``'s shape.
    ad = _padding_after(d_, od_, t_, sd, dd, pd)
    ah = _padding_after(h_, oh_, r_, sh, dh, ph)
    aw = _padding_after(w_, ow_, s_, sw, dw, pw)
    padded = pd or ph or pw or ad or ah or aw
    # The blocked kernel skips the taps that fall into the padding (no padded copy), unless a
    # filter is not finite: 0 * inf over the padding is NaN in TF. The direct kernel and a
    # few output channels per group (most block lanes would be empty) read a padded copy.
    if padded and (direct or not np.all(np.isfinite(w))):
        x = pad_ndhwc(x, pd, ad, ph, ah, pw, aw)
        _, d_, h_, w_, _ = x.shape
        pd = ph = pw = 0
    if direct:
        conv_direct_ndhwc(x, w, bias, out, sd, sh, sw, dd, dh, dw, groups, act)
        return out
    x_strides = np.array([d_ * h_ * w_ * c_, 1, h_ * w_ * c_, w_ * c_, c_], dtype=np.int64)
    o_strides = np.array([od_ * oh_ * ow_ * out.shape[4], 1, oh_ * ow_ * out.shape[4],
                          ow_ * out.shape[4], out.shape[4]], dtype=np.int64)
    sizes = np.array([n_, out.shape[4], od_, oh_, ow_], dtype=np.int64)
    conv_blocked_strided(x.reshape(-1), x_strides, np.array([d_, h_, w_], dtype=np.int64),
                         np.array([pd, ph, pw], dtype=np.int64), w, groups, bias,
                         out.reshape(-1), o_strides, sizes, np.array([sd, sh, sw], dtype=np.int64),
                         np.array([dd, dh, dw], dtype=np.int64), act)
    return out


@njit(cache=True)
def conv2d_nhwc(x, w, out, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, pad_top=0,
                pad_left=0, groups=1, bias=None, act=0):
    """2-D convolution of NHWC ``x`` with HWIO ``w`` into NHWC ``out``; returns ``out``.

    Parameters
    ----------
    x : ndarray (N, H, W, C), C-contiguous
    w : ndarray (R, S, C // groups, K), same dtype
    out : ndarray (N, OH, OW, K), same dtype
        Its shape fixes the output size (see ``fastconv.conv_output_size``).
    stride_h, stride_w, dilation_h, dilation_w : int
    pad_top, pad_left : int
        Zero padding before each dim (``fastconv.same_padding(...)[0]`` for SAME).
    groups : int
    bias : ndarray (K,) or None
    act : int
        0 none, 1 relu, 2 relu6, 3 sigmoid, 4 tanh.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import conv2d_nhwc
    >>> x = np.ones((1, 4, 4, 1), np.float32); w = np.ones((3, 3, 1, 1), np.float32)
    >>> out = np.empty((1, 4, 4, 1), np.float32)
    >>> conv2d_nhwc(x, w, out, 1, 1, 1, 1, 1, 1)[0, :, :, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]], dtype=float32)
    """
    n_, h_, w_, c_ = x.shape
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    _conv5(x.reshape((n_, 1, h_, w_, c_)), w.reshape((1,) + w.shape),
           out.reshape((out.shape[0], 1) + out.shape[1:]), _i(1), _i(stride_h), _i(stride_w),
           _i(1), _i(dilation_h), _i(dilation_w), _i(0), _i(pad_top), _i(pad_left), _i(groups), b,
           _i(act))
    return out


@njit(cache=True)
def conv1d_nwc(x, w, out, stride=1, dilation=1, pad_left=0, groups=1, bias=None, act=0):
    """1-D convolution of NWC ``x`` with WIO ``w`` into NWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import conv1d_nwc
    >>> x = np.arange(5.0).reshape(1, 5, 1); w = np.ones((2, 1, 1))
    >>> conv1d_nwc(x, w, np.empty((1, 4, 1)))[0, :, 0]
    array([1., 3., 5., 7.])
    """
    n_, w_, c_ = x.shape
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    _conv5(x.reshape((n_, 1, 1, w_, c_)), w.reshape((1, 1) + w.shape),
           out.reshape((out.shape[0], 1, 1) + out.shape[1:]), _i(1), _i(1), _i(stride), _i(1),
           _i(1), _i(dilation), _i(0), _i(0), _i(pad_left), _i(groups), b, _i(act))
    return out


@njit(cache=True)
def conv3d_ndhwc(x, w, out, stride_d=1, stride_h=1, stride_w=1, dilation_d=1, dilation_h=1,
                 dilation_w=1, pad_front=0, pad_top=0, pad_left=0, groups=1, bias=None, act=0):
    """3-D convolution of NDHWC ``x`` with DHWIO ``w`` into NDHWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import conv3d_ndhwc
    >>> out = conv3d_ndhwc(np.ones((1, 3, 3, 3, 1)), np.ones((3, 3, 3, 1, 1)), np.empty((1, 1, 1, 1, 1)))
    >>> float(out[0, 0, 0, 0, 0])
    27.0
    """
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    _conv5(x, w, out, _i(stride_d), _i(stride_h), _i(stride_w), _i(dilation_d), _i(dilation_h),
           _i(dilation_w), _i(pad_front), _i(pad_top), _i(pad_left), _i(groups), b, _i(act))
    return out


@njit(cache=True)
def _lowest(x):
    return np.finfo(x.dtype).min


@njit(cache=True)
def max_pool2d_nhwc(x, out, k_h, k_w, stride_h, stride_w, pad_top=0, pad_left=0):
    """2-D max pooling of NHWC ``x`` into NHWC ``out`` with TF's CPU semantics; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import max_pool2d_nhwc
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> max_pool2d_nhwc(x, np.empty((1, 2, 2, 1)), 2, 2, 2, 2)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    n_, h_, w_, c_ = x.shape
    max_pool_ndhwc(x.reshape((n_, 1, h_, w_, c_)), out.reshape((out.shape[0], 1) + out.shape[1:]),
                   _i(1), _i(k_h), _i(k_w), _i(1), _i(stride_h), _i(stride_w), _i(0), _i(pad_top),
                   _i(pad_left), _lowest(x))
    return out


@njit(cache=True)
def max_pool1d_nwc(x, out, k, stride, pad_left=0):
    """1-D max pooling of NWC ``x`` into NWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import max_pool1d_nwc
    >>> max_pool1d_nwc(np.arange(10.0).reshape(1, 10, 1), np.empty((1, 9, 1)), 2, 1)[0, :3, 0]
    array([1., 2., 3.])
    """
    n_, w_, c_ = x.shape
    max_pool_ndhwc(x.reshape((n_, 1, 1, w_, c_)),
                   out.reshape((out.shape[0], 1, 1) + out.shape[1:]), _i(1), _i(1), _i(k), _i(1),
                   _i(1), _i(stride), _i(0), _i(0), _i(pad_left), _lowest(x))
    return out


@njit(cache=True)
def max_pool3d_ndhwc(x, out, k_d, k_h, k_w, stride_d, stride_h, stride_w, pad_front=0,
                     pad_top=0, pad_left=0):
    """3-D max pooling of NDHWC ``x`` into NDHWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import max_pool3d_ndhwc
    >>> float(max_pool3d_ndhwc(np.arange(8.0).reshape(1, 2, 2, 2, 1), np.empty((1, 1, 1, 1, 1)),
    ...                        2, 2, 2, 2, 2, 2)[0, 0, 0, 0, 0])
    7.0
    """
    max_pool_ndhwc(x, out, _i(k_d), _i(k_h), _i(k_w), _i(stride_d), _i(stride_h), _i(stride_w),
                   _i(pad_front), _i(pad_top), _i(pad_left), _lowest(x))
    return out


@njit(cache=True)
def avg_pool2d_nhwc(x, out, k_h, k_w, stride_h, stride_w, pad_top=0, pad_left=0):
    """2-D average pooling (padding excluded from the count) of NHWC ``x``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import avg_pool2d_nhwc
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> avg_pool2d_nhwc(x, np.empty((1, 2, 2, 1)), 2, 2, 2, 2)[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    n_, h_, w_, c_ = x.shape
    avg_pool_ndhwc(x.reshape((n_, 1, h_, w_, c_)), out.reshape((out.shape[0], 1) + out.shape[1:]),
                   _i(1), _i(k_h), _i(k_w), _i(1), _i(stride_h), _i(stride_w), _i(0), _i(pad_top),
                   _i(pad_left))
    return out


@njit(cache=True)
def avg_pool1d_nwc(x, out, k, stride, pad_left=0):
    """1-D average pooling of NWC ``x`` into NWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import avg_pool1d_nwc
    >>> avg_pool1d_nwc(np.arange(4.0).reshape(1, 4, 1), np.empty((1, 2, 1)), 2, 2)[0, :, 0]
    array([0.5, 2.5])
    """
    n_, w_, c_ = x.shape
    avg_pool_ndhwc(x.reshape((n_, 1, 1, w_, c_)),
                   out.reshape((out.shape[0], 1, 1) + out.shape[1:]), _i(1), _i(1), _i(k), _i(1),
                   _i(1), _i(stride), _i(0), _i(0), _i(pad_left))
    return out


@njit(cache=True)
def avg_pool3d_ndhwc(x, out, k_d, k_h, k_w, stride_d, stride_h, stride_w, pad_front=0,
                     pad_top=0, pad_left=0):
    """3-D average pooling of NDHWC ``x`` into NDHWC ``out``; returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu import avg_pool3d_ndhwc
    >>> float(avg_pool3d_ndhwc(np.arange(8.0).reshape(1, 2, 2, 2, 1), np.empty((1, 1, 1, 1, 1)),
    ...                        2, 2, 2, 2, 2, 2)[0, 0, 0, 0, 0])
    3.5
    """
    avg_pool_ndhwc(x, out, _i(k_d), _i(k_h), _i(k_w), _i(stride_d), _i(stride_h), _i(stride_w),
                   _i(pad_front), _i(pad_top), _i(pad_left))
    return out
