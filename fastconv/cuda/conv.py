"""Tiled direct convolution on the GPU: conv1d/2d/3d, grouped, depthwise and transposed.

One kernel serves every convolution. A block computes a tile of ``rows x cols`` output pixels
of one ``(batch, output depth)`` slice for ``block_channels`` output channels of one group:

1. for each kernel depth offset and each stage of ``stage_channels`` input channels, the block
   copies the input patch its outputs read (the tile plus its halo) and the matching weights
   into shared memory, with consecutive threads reading consecutive addresses;
2. each thread then accumulates a register tile of ``pixels x channels`` outputs from shared
   memory (an outer product per kernel offset and input channel);
3. the store adds the bias and applies the activation.

Padding is never materialised: the tile loader reads zero outside the input. Transposed convs
(``conv2d_transpose``) run as a stride-1 conv of the input spread by the strides, with the
kernel flipped and its in/out channels swapped (the CPU's trick), except that the spreading and
the flip happen in the loaders' index arithmetic: the zeros are never stored anywhere.

The window, strides, dilations, layout, activation and tile shape are compile-time constants
of each kernel (so the inner loops unroll and the accumulators stay in registers); kernels are
memoised on them, on the dtype and on the device.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from numba import cuda, uint32, uint64

from .. import config
from ..shapes import transposed_pads_before
from . import kernels
from .activation import activation_function
from .launch import numba_float

#: Static shared memory per block on every CUDA GPU since Kepler.
SHARED_MEMORY_BYTES = 48 * 1024
#: What a tile may use of it: the float64 default tile (8 staged channels) took 48,384 of
#: the 49,152 bytes, one config change away from failing to launch; tiles are fitted to this
#: budget instead (the float64 tile stages 4 channels; float32 tiles are unchanged).
SHARED_MEMORY_BUDGET = 40 * 1024
MAX_THREADS_PER_BLOCK = 1024


@dataclass(frozen=True)
class ConvTile:
    """The work of one thread block and one thread (see the module docstring)."""

    rows: int  # output rows per block
    cols: int  # output columns per block
    pixels: int  # output pixels per thread (register tile)
    channels: int  # output channels per thread (register tile)
    block_channels: int  # output channels per block, a multiple of ``channels``
    stage_channels: int  # input channels staged in shared memory at a time

    @property
    def pixel_threads(self):
        return -(-self.rows * self.cols // self.pixels)

    @property
    def threads(self):
        return self.pixel_threads * (self.block_channels // self.channels)

    def patch_shape(self, window, strides, dilations, itemsize):
        """Rows, columns and row pitch (in elements) of the shared input patch.

        The pitch is the smallest one, at most 31 elements beyond the columns, at which the
        threads of a warp reading their first pixels hit the fewest shared-memory banks more
        than once (e.g. a 3x3 conv's 16-pixel-wide tile reads 18 columns, two rows per warp:
        pitch 18 would put both rows' first two cells in the same banks; pitch 48 does not).
        """
        return _patch_shape(self, tuple(window), tuple(strides), tuple(dilations), itemsize)

    def shared_bytes(self, window, strides, dilations, itemsize):
        """Bytes of shared memory for the input patch and the weights of one stage."""
        rows, _, pitch = self.patch_shape(window, strides, dilations, itemsize)
        weights = window[1] * window[2] * self.stage_channels * self.block_channels
        return (self.stage_channels * rows * pitch + weights) * itemsize


@functools.lru_cache(maxsize=None)
def _patch_shape(tile, window, strides, dilations, itemsize):
    _, k_h, k_w = window
    rows = (tile.rows - 1) * strides[1] + (k_h - 1) * dilations[1] + 1
    cols = (tile.cols - 1) * strides[2] + (k_w - 1) * dilations[2] + 1
    banks = max(1, 128 // itemsize)  # 32 banks of 4 bytes; a float64 takes two
    best_pitch, best_conflicts = cols, None
    for pitch in range(cols, cols + 32):
        conflicts = 0
        for warp_first in range(0, tile.threads, 32):
            addresses_per_bank = {}
            for thread in range(warp_first, min(warp_first + 32, tile.threads)):
                pixel = thread % tile.pixel_threads
                if pixel < tile.rows * tile.cols:
                    address = ((pixel // tile.cols) * strides[1] * pitch
                               + (pixel % tile.cols) * strides[2])
                    addresses_per_bank.setdefault(address % banks, set()).add(address)
            conflicts = max([conflicts] + [len(a) for a in addresses_per_bank.values()])
        if best_conflicts is None or conflicts < best_conflicts:
            best_pitch, best_conflicts = pitch, conflicts
    return rows, cols, best_pitch


def choose_tile(out_rows, out_cols, group_in, group_out, window, strides, dilations, itemsize):
    """Fit the configured tile to a problem: no threads for rows or channels that do not exist,
    and shrink until the shared-memory patch fits.

    A conv1d (one output row) spends the configured ``TILE_H x TILE_W`` pixels on one row.
    """
    configured = (config.CUDA_CONV_TILE_H, config.CUDA_CONV_TILE_W, config.CUDA_CONV_TILE_K,
                  config.CUDA_CONV_TILE_C, config.CUDA_CONV_THREAD_PIXELS,
                  config.CUDA_CONV_THREAD_K, SHARED_MEMORY_BUDGET)
    return _fit_tile(configured, out_rows, out_cols, group_in, group_out, tuple(window),
                     tuple(strides), tuple(dilations), itemsize)


@functools.lru_cache(maxsize=4096)
def _fit_tile(configured, out_rows, out_cols, group_in, group_out, window, strides, dilations,
              itemsize):
    tile_h, tile_w, tile_k, tile_c, thread_pixels, thread_k, shared_limit = configured
    rows = max(1, min(tile_h, out_rows))
    cols = max(1, min(max(1, tile_h * tile_w) // rows, out_cols))
    channels = max(1, min(thread_k, group_out))
    block_channels = channels * max(1, min(tile_k // channels, -(-group_out // channels)))
    stage = max(1, min(tile_c, group_in))
    pixels = max(1, min(thread_pixels, rows * cols))
    tile = ConvTile(rows, cols, pixels, channels, block_channels, stage)
    # Shrink, in this order, the staged channels, the channel block, the pixel tile and the
    # register tile until the patch and the weights fit in shared memory.
    while tile.shared_bytes(window, strides, dilations, itemsize) > shared_limit:
        if tile.stage_channels > 1:
            tile = _replace(tile, stage_channels=tile.stage_channels // 2)
        elif tile.block_channels > tile.channels:
            tile = _replace(tile, block_channels=max(tile.channels, tile.block_channels // 2
                                                     // tile.channels * tile.channels))
        elif tile.rows > 1 or tile.cols > 1:
            rows, cols = ((tile.rows // 2, tile.cols) if tile.rows >= tile.cols
                          else (tile.rows, tile.cols // 2))
            tile = _replace(tile, rows=max(rows, 1), cols=max(cols, 1),
                            pixels=min(tile.pixels, max(rows, 1) * max(cols, 1)))
        elif tile.channels > 1:
            tile = _replace(tile, channels=tile.channels // 2,
                            block_channels=tile.channels // 2)
        else:
            raise ValueError(f"the conv window {window} with dilations {dilations} needs more "
                             f"than {shared_limit} bytes of shared memory per block")
    if tile.threads > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"conv tile {tile} needs {tile.threads} threads per block (at most "
                         f"{MAX_THREADS_PER_BLOCK}); lower fastconv.config.CUDA_CONV_TILE_*")
    return tile


def _replace(tile, **changes):
    values = dict(tile.__dict__)
    values.update(changes)
    return ConvTile(**values)


@kernels.factory
def conv_kernel(dtype, window, strides, dilations, input_steps, flipped, channels_first,
                activation, has_bias, tile, device):
    """Build (once per static configuration) the tiled conv kernel.

    Parameters
    ----------
    dtype : str
        ``"float32"`` or ``"float64"``.
    window, strides, dilations : tuple of 3 ints
        Kernel size, strides and dilations per spatial dim (depth, height, width).
    input_steps : tuple of 3 ints
        Spacing of the input samples in the virtual input the window slides over: 1 for an
        ordinary conv, the strides for a transposed conv (its input spread by the strides).
    flipped : bool
        Read the filters as a transposed conv takes them, ``(T, R, S, out // groups, in)``,
        flipped in every spatial dim; otherwise TF's ``(T, R, S, in // groups, out)``.
    channels_first : bool
        Arrays are ``(N, C, D, H, W)``; otherwise ``(N, D, H, W, C)``.
    activation : int
        Activation code applied after the bias.
    has_bias : bool
    tile : ConvTile
    device : hashable
        The GPU the kernel is compiled for (part of the memo key only).

    Returns
    -------
    Kernel
        ``kernel[(tiles, channel_blocks), tile.threads](x, w, bias, out, pad_d, pad_h, pad_w,
        groups)``; ``pad_*`` are the virtual input's padding before each spatial dim.
    """
    k_d, k_h, k_w = window
    s_d, s_h, s_w = strides
    d_d, d_h, d_w = dilations
    e_d, e_h, e_w = input_steps
    rows, cols, pixels, channels = tile.rows, tile.cols, tile.pixels, tile.channels
    block_channels, stage = tile.block_channels, tile.stage_channels
    pixel_threads, threads = tile.pixel_threads, tile.threads
    tile_pixels = rows * cols
    patch_rows, patch_cols, pitch = tile.patch_shape(window, strides, dilations,
                                                     8 if dtype == "float64" else 4)
    patch_cells = stage * patch_rows * patch_cols  # loaded
    patch_size = stage * patch_rows * pitch  # allocated
    weights_size = k_h * k_w * stage * block_channels
    accumulators = pixels * channels
    ftype = numba_float(dtype)
    act = activation_function(activation)

    @cuda.jit(device=True)
    def virtual_to_input(position, step, size):
        """Input index of a virtual-input position, or -1 for padding / spread zeros."""
        if step == 1:
            return position if 0 <= position < size else -1
        if position < 0 or position % step != 0:
            return -1
        index = position // step
        return index if index < size else -1

    # 25% occupancy (two 256-thread blocks: at most 128 registers) where the kernel fits it
    # without spilling; measured with ptxas (python -m fastconv.cuda.resources), tiles that
    # stage one input channel (few-channel and depthwise layers: 148-200 registers) and
    # float64 tiles (154-212) would spill 4-190 bytes per thread under that bound, so they ask
    # for none and run at 9-19% (which of the two trades is faster needs a GPU to say).
    bounded = dtype == "float32" and stage > 1
    @kernels.jit(threads, kernels.COMPUTE_BOUND_THREADS if bounded else kernels.UNBOUNDED)
    def conv(x, w, bias, out, pad_d, pad_h, pad_w, groups):
        # Flat shared tiles indexed with unsigned offsets: a signed index costs a
        # negative-index fix-up per access and hides the linear addresses from the compiler.
        patch = cuda.shared.array(patch_size, ftype)  # [stage][patch_rows][pitch]
        weights = cuda.shared.array(weights_size, ftype)  # [k_h][k_w][stage][block_channels]
        acc = cuda.local.array(accumulators, ftype)
        weight_values = cuda.local.array(channels, ftype)
        pixel_offset = cuda.local.array(pixels, uint32)

        if channels_first:
            in_channels, in_d, in_h, in_w = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
            out_channels, out_d, out_h, out_w = out.shape[1], out.shape[2], out.shape[3], \
                out.shape[4]
        else:
            in_d, in_h, in_w, in_channels = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
            out_d, out_h, out_w, out_channels = out.shape[1], out.shape[2], out.shape[3], \
                out.shape[4]
        group_in = in_channels // groups
        group_out = out_channels // groups

        # Which tile: blockIdx.x runs over (n, od, tile row, tile col), blockIdx.y over
        # (group, block of output channels in the group).
        tiles_w = (out_w + cols - 1) // cols
        tiles_h = (out_h + rows - 1) // rows
        block = cuda.blockIdx.x
        tile_col = block % tiles_w
        block //= tiles_w
        tile_row = block % tiles_h
        block //= tiles_h
        od = block % out_d
        n = uint64(block // out_d)
        channel_blocks = (group_out + block_channels - 1) // block_channels
        group = cuda.blockIdx.y // channel_blocks
        k_first = (cuda.blockIdx.y % channel_blocks) * block_channels  # within the group
        oh_first = tile_row * rows
        ow_first = tile_col * cols

        thread = cuda.threadIdx.x
        pixel_thread = thread % pixel_threads  # consecutive threads: consecutive pixels
        channel_thread = thread // pixel_threads
        for i in range(pixels):
            pixel = pixel_thread + i * pixel_threads
            if pixel >= tile_pixels:
                pixel = 0  # a spare slot: computed, never stored
            pixel_offset[i] = uint32((pixel // cols) * s_h * pitch + (pixel % cols) * s_w)
        weight_offset = uint32(channel_thread * channels)
        for i in range(accumulators):
            acc[i] = 0

        h_origin = oh_first * s_h - pad_h
        w_origin = ow_first * s_w - pad_w
        for t in range(k_d):
            d_index = virtual_to_input(od * s_d + t * d_d - pad_d, e_d, in_d)
            if d_index < 0:
                continue  # the same for the whole block, so no thread skips a barrier alone
            for c_first in range(0, group_in, stage):
                for i in range(thread, patch_cells, threads):
                    if channels_first:  # consecutive threads: consecutive columns
                        col = i % patch_cols
                        row = (i // patch_cols) % patch_rows
                        cc = i // (patch_cols * patch_rows)
                    else:  # consecutive threads: consecutive channels
                        cc = i % stage
                        col = (i // stage) % patch_cols
                        row = i // (stage * patch_cols)
                    value = ftype(0)
                    h_index = virtual_to_input(h_origin + row, e_h, in_h)
                    w_index = virtual_to_input(w_origin + col, e_w, in_w)
                    if c_first + cc < group_in and h_index >= 0 and w_index >= 0:
                        c = uint64(group * group_in + c_first + cc)
                        if channels_first:
                            value = x[n, c, uint64(d_index), uint64(h_index), uint64(w_index)]
                        else:
                            value = x[n, uint64(d_index), uint64(h_index), uint64(w_index), c]
                    patch[uint32((cc * patch_rows + row) * pitch + col)] = value
                for i in range(thread, weights_size, threads):
                    kk = i % block_channels  # consecutive threads: consecutive out channels
                    cc = (i // block_channels) % stage
                    s = (i // (block_channels * stage)) % k_w
                    r = i // (block_channels * stage * k_w)
                    value = ftype(0)
                    if k_first + kk < group_out and c_first + cc < group_in:
                        if flipped:  # transposed-conv filters: (T, R, S, out // groups, in)
                            value = w[uint64(k_d - 1 - t), uint64(k_h - 1 - r),
                                      uint64(k_w - 1 - s), uint64(k_first + kk),
                                      uint64(group * group_in + c_first + cc)]
                        else:
                            value = w[uint64(t), uint64(r), uint64(s), uint64(c_first + cc),
                                      uint64(group * group_out + k_first + kk)]
                    weights[uint32(i)] = value  # the loop order is the tile's layout
                cuda.syncthreads()
                for cc in range(stage):
                    for r in range(k_h):
                        patch_row = uint32((cc * patch_rows + r * d_h) * pitch)
                        for s in range(k_w):
                            tap = uint32(weight_offset + ((r * k_w + s) * stage + cc)
                                                         * block_channels)
                            for j in range(channels):
                                weight_values[j] = weights[uint32(tap + j)]
                            for i in range(pixels):
                                xv = patch[uint32(pixel_offset[i] + patch_row + s * d_w)]
                                for j in range(channels):
                                    acc[i * channels + j] += xv * weight_values[j]
                cuda.syncthreads()

        for i in range(pixels):
            pixel = pixel_thread + i * pixel_threads
            oh = oh_first + pixel // cols
            ow = ow_first + pixel % cols
            if pixel < tile_pixels and oh < out_h and ow < out_w:
                for j in range(channels):
                    k = k_first + channel_thread * channels + j
                    if k < group_out:
                        k_out = uint64(group * group_out + k)
                        value = acc[i * channels + j]
                        if has_bias:
                            value += bias[k_out]
                        if channels_first:
                            out[n, k_out, uint64(od), uint64(oh), uint64(ow)] = act(value)
                        else:
                            out[n, uint64(od), uint64(oh), uint64(ow), k_out] = act(value)

    return conv


def launch_conv(x, w, bias, out, geometry, groups, activation, channels_first, transposed,
                device):
    """Run the conv kernel on device arrays; ``out`` is written in place.

    ``geometry`` is the problem's (forward-conv) :class:`fastconv.shapes.Geometry`. For a
    transposed conv its ``out_sizes`` are the input's sizes and ``in_sizes`` the output's.
    """
    if transposed:
        # Stride-1 conv over the input spread by the strides, padded so that the flipped
        # window lines up: (k - 1) * d - pad_before cells before (negative crops).
        window, dilations = geometry.kernel, geometry.dilations
        strides, input_steps = (1, 1, 1), geometry.strides
        pads = transposed_pads_before(geometry)
        group_in, group_out = w.shape[4] // groups, w.shape[3]
    else:
        window, strides, dilations = geometry.kernel, geometry.strides, geometry.dilations
        input_steps = (1, 1, 1)
        pads = tuple(before for before, _ in geometry.pads)
        group_in, group_out = w.shape[3], w.shape[4] // groups
    out_shape = out.shape
    n = out_shape[0]
    out_d, out_h, out_w = out_shape[2:] if channels_first else out_shape[1:4]
    dtype = str(out.dtype)
    tile = choose_tile(out_h, out_w, group_in, group_out, window, strides, dilations,
                       out.dtype.itemsize)
    kernel = conv_kernel(dtype, tuple(window), tuple(strides), tuple(dilations),
                         tuple(input_steps), bool(transposed), bool(channels_first),
                         int(activation), bias is not None, tile, device)
    tiles = n * out_d * (-(-out_h // tile.rows)) * (-(-out_w // tile.cols))
    channel_blocks = groups * (-(-group_out // tile.block_channels))
    if channel_blocks > 65535:
        raise ValueError(f"{channel_blocks} blocks of output channels exceed CUDA's grid "
                         f"limit (65535); raise fastconv.config.CUDA_CONV_TILE_K")
    if bias is None:
        bias = _no_bias(dtype, device)  # never read: has_bias is a compile-time False
    kernel[(tiles, channel_blocks), tile.threads](x, w, bias, out, *pads, groups)
    return out


@functools.lru_cache(maxsize=None)
def _no_bias(dtype, device):
    return cuda.device_array(1, dtype=dtype)
