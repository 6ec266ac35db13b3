"""Tunables, read once from ``FASTCONV_*`` environment variables, in one place.

Tests patch these attributes (e.g. tiny CUDA blocks so small inputs span several blocks).
Compiled kernels never read them as globals: values are passed in or key the compiled kernel.
"""

import os


def _int(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


#: Directory for Numba's on-disk kernel cache; empty means beside the package (Numba falls back
#: to a per-user cache directory when the package directory is read-only).
CACHE_DIR = os.environ.get("FASTCONV_CACHE_DIR", "")

#: What a compiled kernel's first call in a process does when the kernel is not in the disk
#: cache yet: "background" computes with NumPy while a background process compiles it;
#: "sync" compiles it in the calling thread (see fastconv.cpu.compiling).
COMPILE = os.environ.get("FASTCONV_COMPILE", "background")

#: Log level for the ``fastconv`` logger's own stderr handler ("info", "debug", ...); empty
#: adds no handler (the application's logging configuration decides, as usual).
LOG_LEVEL = os.environ.get("FASTCONV_LOG", "")

#: Numba threading layer: "auto" prefers tbb, then omp (both safe under concurrent Python
#: threads); "tbb", "omp" or "workqueue" force one.
THREADING_LAYER = os.environ.get("FASTCONV_THREADING_LAYER", "auto")

#: CPU kernels estimated to take less than this many microseconds on one core run on the
#: calling thread only (see fastconv.cpu.threads.parallel_region).
PARALLEL_MIN_MICROSECONDS = float(os.environ.get("FASTCONV_PARALLEL_MIN_MICROSECONDS", "50"))

#: Register-block shape of the CPU conv micro-kernel: "auto" follows the CPU Numba compiles for
#: (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, else the host); "avx2" or "avx512" force one.
REGISTER_BLOCK = os.environ.get("FASTCONV_REGISTER_BLOCK", "auto")

# --------------------------------------------------------------------- CPU algorithm choice
# Read by the selection rules in fastconv/cpu/backend.py (Python, per call): changing them
# changes which algorithm runs, never the machine code. Measured in benchmarks/RESULTS.md.

#: Winograd pays off from this many input channels (slower than blocked with 8) ...
WINOGRAD_MIN_CHANNELS = _int("FASTCONV_WINOGRAD_MIN_CHANNELS", 16)
#: ... and this much work (MFLOP): below it, transforming the filters costs more than it saves.
WINOGRAD_MIN_MFLOP = float(os.environ.get("FASTCONV_WINOGRAD_MIN_MFLOP", "50"))
#: Channels-first convs with at most this many input channels run vectors along rows (planar).
PLANAR_MAX_CHANNELS = _int("FASTCONV_PLANAR_MAX_CHANNELS", 4)
#: Inputs whose zero-padded copy has at most this many elements are padded by a copy (cheaper
#: than the blocked kernel's edge handling while they are cache-resident).
PAD_COPY_MAX_ELEMENTS = _int("FASTCONV_PAD_COPY_MAX_ELEMENTS", 1 << 18)
#: Algorithms that read a padded copy run only while it holds at most this many times the
#: elements of the input and output together (plus PAD_COPY_MAX_ELEMENTS).
PAD_COPY_MAX_RATIO = float(os.environ.get("FASTCONV_PAD_COPY_MAX_RATIO", "4"))
#: Single-core GFLOP/s assumed per conv algorithm to estimate whether a call is worth the
#: thread pool (see PARALLEL_MIN_MICROSECONDS); conservative, measured orders of magnitude.
SERIAL_GFLOPS = {"direct": 5.0, "blocked": 50.0, "planar": 50.0, "winograd": 50.0,
                 "depthwise": 20.0}
#: Half-precision batches run a few images at a time (fastconv/batching.py), each chunk
#: widened to float32 into a buffer of about this many bytes (L2/L3-resident: the float32 copy
#: never goes to memory; 8 MiB measured best of 1-16 MiB, benchmarks/RESULTS.md).
CHUNK_BYTES = _int("FASTCONV_CHUNK_BYTES", 8 << 20)

# --------------------------------------------------------------------- compiled into the kernels
# Frozen into the CPU kernels' machine code (module globals of njit functions): part of the
# disk cache key (fastconv/disk_cache.py), so changing one recompiles instead of loading stale code.

#: Row chunks handed to the thread pool by the blocked conv and the pooling kernels.
CPU_ROW_CHUNKS = _int("FASTCONV_CPU_ROW_CHUNKS", 64)
#: Winograd jobs: tiles per depth slice transformed and multiplied together, the fewest jobs
#: worth splitting into, and input depth slices per job.
WINOGRAD_TILES_PER_JOB = _int("FASTCONV_WINOGRAD_TILES_PER_JOB", 48)
WINOGRAD_MIN_JOBS = _int("FASTCONV_WINOGRAD_MIN_JOBS", 8)
WINOGRAD_SLICES_PER_JOB = _int("FASTCONV_WINOGRAD_SLICES_PER_JOB", 8)
#: Channels-first pooling windows (and strides) up to this size get a kernel compiled for
#: their shape.
POOL_FIXED_WINDOW_MAX = _int("FASTCONV_POOL_FIXED_WINDOW_MAX", 4)


def compiled_tunables():
    """Every setting compiled into the CPU kernels (the kernel cache key includes them)."""
    return (REGISTER_BLOCK, CPU_ROW_CHUNKS, WINOGRAD_TILES_PER_JOB, WINOGRAD_MIN_JOBS,
            WINOGRAD_SLICES_PER_JOB, POOL_FIXED_WINDOW_MAX)


#: Whether compiled CUDA kernels are kept on disk for the next process (numba-cuda's cache, in the
#: directory of the CPU kernels' cache; see fastconv/cuda/kernels.py).
CUDA_DISK_CACHE = os.environ.get("FASTCONV_CUDA_CACHE", "1") != "0"

#: Threads per block of the CUDA pooling, global pooling and zero-padding kernels.
CUDA_THREADS_PER_BLOCK = _int("FASTCONV_CUDA_THREADS_PER_BLOCK", 256)

#: CUDA conv tiles: a block computes TILE_H x TILE_W output pixels for TILE_K output channels,
#: staging TILE_C input channels at a time in shared memory; each thread keeps a register tile
#: of THREAD_PIXELS pixels x THREAD_K channels. The kernels fit these down to small problems.
CUDA_CONV_TILE_W = _int("FASTCONV_CUDA_CONV_TILE_W", 16)
CUDA_CONV_TILE_H = _int("FASTCONV_CUDA_CONV_TILE_H", 8)
CUDA_CONV_TILE_K = _int("FASTCONV_CUDA_CONV_TILE_K", 64)
CUDA_CONV_TILE_C = _int("FASTCONV_CUDA_CONV_TILE_C", 8)
CUDA_CONV_THREAD_PIXELS = _int("FASTCONV_CUDA_CONV_THREAD_PIXELS", 4)
CUDA_CONV_THREAD_K = _int("FASTCONV_CUDA_CONV_THREAD_K", 8)


#: Transposed convs (conv input gradients) with fewer output channels per group than this run
#: as one BLAS product and a scatter (``col2im``) instead of the blocked kernels: measured on
#: the MNIST first layer's input gradient (1 channel: 16 -> ~2 ms) and the 7x7 RGB stem's
#: (3 channels), benchmarks/RESULTS.md "Gradients".
COL2IM_MAX_OUT_CHANNELS = 8
