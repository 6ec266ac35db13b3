"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1, undilated, ungrouped layers.

Each 2x2 block of outputs comes from a 4x4 input tile ``d`` as ``A^T [(G g G^T) * (B^T d B)] A``:
16 multiplications per tile and channel pair instead of 36, i.e. 2.25x fewer than a direct
convolution, which is the only way past the direct kernel's FMA ceiling. The work splits into
three passes:

1. input transform (Numba): ``V[xi, tile, c] = (B^T d B)[xi]`` for every tile and channel;
2. 16 independent matrix products ``M[xi] = V[xi] @ U[xi]``, with the filters transformed
   once to ``U[xi] = (G g G^T)[xi]`` of shape (C, K). Laid out tile-major (``V[tile, xi, c]``)
   they are one grouped 1x1 convolution with 16 groups, which the register-blocked kernel runs
   in the same thread pool (NumPy's batched matmul did not use BLAS here, and BLAS's own thread
   pool fought Numba's for the two cores);
3. output transform (Numba): ``A^T M A`` per tile, plus bias and activation, stored once.

Tiles are processed in chunks so V and M stay in cache. F(2x2, 3x3) is the numerically mild
Winograd variant: its error stays within the float32 tolerance the tests use against TF.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation
from .conv_blocked import conv_blocked_strided

#: Tiles per chunk: V and M for a chunk (16 x TILES x channels floats each) fit in L2/L3.
TILES_PER_CHUNK = 2048

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def transform_filters(w, dtype):
    """(3, 3, C, K) filters -> U (16, C, K) with ``U[4 i + j] = (G g G^T)[i, j]``."""
    u = np.einsum("ir,rsck,js->ijck", _G, np.asarray(w, dtype=np.float64), _G)
    return np.ascontiguousarray(u.reshape(16, *w.shape[2:]), dtype=dtype)


@njit(inline="always", cache=True)
def _tile_origin(tile, tiles_w, tiles_per_image):
    """Image and top-left output pixel of a 2x2 output tile, numbered image-major."""
    rest = tile % tiles_per_image
    return tile // tiles_per_image, 2 * (rest // tiles_w), 2 * (rest % tiles_w)


@njit(parallel=True, cache=True, nogil=True)
def input_transform(xp, v, first_tile, tiles_w, tiles_per_image):
    """V[t, :, :] = B^T d B for tiles ``first_tile .. first_tile + v.shape[1]`` of padded ``xp``.

    ``xp`` is (N, Hp, Wp, C), padded so every 4x4 tile is inside it.
    """
    channels = xp.shape[3]
    for local in prange(v.shape[0]):
        n, h0, w0 = _tile_origin(first_tile + local, tiles_w, tiles_per_image)
        for c in range(channels):
            d00 = xp[n, h0, w0, c]
            d01 = xp[n, h0, w0 + 1, c]
            d02 = xp[n, h0, w0 + 2, c]
            d03 = xp[n, h0, w0 + 3, c]
            d10 = xp[n, h0 + 1, w0, c]
            d11 = xp[n, h0 + 1, w0 + 1, c]
            d12 = xp[n, h0 + 1, w0 + 2, c]
            d13 = xp[n, h0 + 1, w0 + 3, c]
            d20 = xp[n, h0 + 2, w0, c]
            d21 = xp[n, h0 + 2, w0 + 1, c]
            d22 = xp[n, h0 + 2, w0 + 2, c]
            d23 = xp[n, h0 + 2, w0 + 3, c]
            d30 = xp[n, h0 + 3, w0, c]
            d31 = xp[n, h0 + 3, w0 + 1, c]
            d32 = xp[n, h0 + 3, w0 + 2, c]
            d33 = xp[n, h0 + 3, w0 + 3, c]
            # Rows: B^T d (B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]).
            r00, r01, r02, r03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
            r10, r11, r12, r13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            r20, r21, r22, r23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            r30, r31, r32, r33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            # Columns: (B^T d) B.
            v[local, 0, c] = r00 - r02
            v[local, 1, c] = r01 + r02
            v[local, 2, c] = r02 - r01
            v[local, 3, c] = r01 - r03
            v[local, 4, c] = r10 - r12
            v[local, 5, c] = r11 + r12
            v[local, 6, c] = r12 - r11
            v[local, 7, c] = r11 - r13
            v[local, 8, c] = r20 - r22
            v[local, 9, c] = r21 + r22
            v[local, 10, c] = r22 - r21
            v[local, 11, c] = r21 - r23
            v[local, 12, c] = r30 - r32
            v[local, 13, c] = r31 + r32
            v[local, 14, c] = r32 - r31
            v[local, 15, c] = r31 - r33


@njit(parallel=True, cache=True, nogil=True)
def output_transform(m, out, bias, act, first_tile, tiles_w, tiles_per_image):
    """out[2x2 block of each tile] = A^T M A (+ bias, activation), clipped to ``out``'s size."""
    _, oh_, ow_, k_ = out.shape
    has_bias = bias.shape[0] > 0
    for local in prange(m.shape[0]):
        n, h0, w0 = _tile_origin(first_tile + local, tiles_w, tiles_per_image)
        for k in range(k_):
            # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] on rows, then on columns.
            s0 = m[local, 0, k] + m[local, 4, k] + m[local, 8, k]
            s1 = m[local, 1, k] + m[local, 5, k] + m[local, 9, k]
            s2 = m[local, 2, k] + m[local, 6, k] + m[local, 10, k]
            s3 = m[local, 3, k] + m[local, 7, k] + m[local, 11, k]
            t0 = m[local, 4, k] - m[local, 8, k] - m[local, 12, k]
            t1 = m[local, 5, k] - m[local, 9, k] - m[local, 13, k]
            t2 = m[local, 6, k] - m[local, 10, k] - m[local, 14, k]
            t3 = m[local, 7, k] - m[local, 11, k] - m[local, 15, k]
            y00 = s0 + s1 + s2
            y01 = s1 - s2 - s3
            y10 = t0 + t1 + t2
            y11 = t1 - t2 - t3
            if has_bias:
                y00 += bias[k]
                y01 += bias[k]
                y10 += bias[k]
                y11 += bias[k]
            out[n, h0, w0, k] = apply_activation(y00, act)
            if w0 + 1 < ow_:
                out[n, h0, w0 + 1, k] = apply_activation(y01, act)
            if h0 + 1 < oh_:
                out[n, h0 + 1, w0, k] = apply_activation(y10, act)
                if w0 + 1 < ow_:
                    out[n, h0 + 1, w0 + 1, k] = apply_activation(y11, act)


def conv3x3_winograd(x, w, bias, out, pads, act):
    """Winograd F(2x2, 3x3) of channels-last ``x`` (N, H, W, C) into ``out`` (N, OH, OW, K).

    ``pads`` is ((top, bottom), (left, right)) of the stride-1 conv; ``bias`` is (K,) or empty.
    """
    n, h, w_, channels = x.shape
    _, oh, ow, k = out.shape
    tiles_h, tiles_w = -(-oh // 2), -(-ow // 2)
    # Pad so that every tile's 4x4 window is inside the input (extra rows/cols are zeros).
    (top, _), (left, _) = pads
    xp = np.zeros((n, 2 * tiles_h + 2, 2 * tiles_w + 2, channels), dtype=x.dtype)
    rows = min(h, xp.shape[1] - top)
    cols = min(w_, xp.shape[2] - left)
    xp[:, top:top + rows, left:left + cols] = x[:, :rows, :cols]
    # U as grouped 1x1 filters: group xi maps V[tile, xi, :] (C) to M[tile, xi, :] (K).
    u = transform_filters(w, x.dtype)
    u_grouped = np.ascontiguousarray(u.transpose(1, 0, 2)).reshape(1, 1, 1, channels, 16 * k)
    tiles_per_image = tiles_h * tiles_w
    total = n * tiles_per_image
    chunk = min(TILES_PER_CHUNK, total)
    v = np.empty((chunk, 16, channels), dtype=x.dtype)
    m = np.empty((chunk, 16, k), dtype=x.dtype)
    no_bias = np.empty(0, dtype=x.dtype)
    ones = np.ones(3, dtype=np.int64)
    v_strides = np.array([chunk * 16 * channels, 1, 0, 0, 16 * channels], dtype=np.int64)
    m_strides = np.array([chunk * 16 * k, 1, 0, 0, 16 * k], dtype=np.int64)
    for first in range(0, total, chunk):
        count = min(chunk, total - first)
        input_transform(xp, v[:count], first, tiles_w, tiles_per_image)
        conv_blocked_strided(v.reshape(-1), v_strides, u_grouped, 16, no_bias, m.reshape(-1),
                             m_strides, np.array([1, 16 * k, 1, 1, count], dtype=np.int64),
                             ones, ones, 0)
        output_transform(m[:count], out, bias, act, first, tiles_w, tiles_per_image)
    return out
