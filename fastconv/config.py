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
