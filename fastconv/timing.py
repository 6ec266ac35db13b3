"""Timing helpers shared by ``fastconv compare`` and the benchmark scripts.

:func:`time_pair` times two callables side by side (alternating, medians, both warmed first),
which is how fastconv and TensorFlow are compared: interleaving spreads the noise of a shared
machine evenly over both. :func:`ceilings` measures what this machine can do at best in the same
process: numpy's sgemm (GFLOP/s, the compute ceiling for convolutions) and a parallel copy (GB/s,
the bandwidth ceiling for pooling), each the best of several samples.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

#: Each timed sample repeats the call until it lasts at least this long (seconds).
SAMPLE_SECONDS = 0.02


def _calls_per_sample(call, target):
    """Number of calls that make one sample last about ``target`` seconds (after a warm call)."""
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    return max(1, math.ceil(target / max(elapsed, 1e-7)))


def _sample(call, number):
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def time_pair(call_a, call_b, repeat=7, target=SAMPLE_SECONDS, warmup=1, idle=0.0):
    """Median seconds per call of ``call_a`` and ``call_b``, sampled alternately.

    Both are called ``warmup`` times first (so JIT compilation and TF's first-call set-up are
    not timed), then ``repeat`` rounds each time one sample of ``call_a`` and one of
    ``call_b``; a sample repeats its call until it lasts about ``target`` seconds. ``idle``
    seconds of untimed sleep go before every sample (longer than a library's thread pool
    spins after a call, so that it is not charged to the other).

    Examples
    --------
    >>> a, b = time_pair(lambda: sum(range(100)), lambda: sum(range(1000)), repeat=3)
    >>> 0 < a < b
    True
    """
    for _ in range(warmup):
        call_a()
        call_b()
    numbers = [_calls_per_sample(call_a, target), _calls_per_sample(call_b, target)]
    samples = ([], [])
    for _ in range(max(1, repeat)):
        for call, number, out in zip((call_a, call_b), numbers, samples):
            if idle:
                time.sleep(idle)
            out.append(_sample(call, number))
    return statistics.median(samples[0]), statistics.median(samples[1])


def time_call(call, repeat=7, target=SAMPLE_SECONDS, warmup=1, statistic=statistics.median):
    """Seconds per call of one callable (warmed first): the median (or ``statistic``) sample."""
    for _ in range(warmup):
        call()
    number = _calls_per_sample(call, target)
    return statistic([_sample(call, number) for _ in range(max(1, repeat))])


# ----------------------------------------------------------------------------- ceilings

def sgemm_gflops(n=1536, repeat=5):
    """numpy float32 matrix product throughput (GFLOP/s), all cores (BLAS threads)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    seconds = time_call(lambda: np.matmul(a, b, out=out), repeat, 0.05, statistic=min)
    return 2 * n**3 / seconds / 1e9


_copy_kernel = None


def _parallel_copy():
    """A Numba ``prange`` copy compiled with fastconv's threading layer (cached on disk)."""
    global _copy_kernel
    if _copy_kernel is None:
        import fastconv.cpu.threads  # noqa: F401  (chooses the threading layer first)
        from numba import njit, prange

        @njit(parallel=True, cache=True)
        def copy(src, dst):
            for i in prange(src.size):
                dst[i] = src[i]

        _copy_kernel = copy
    return _copy_kernel


def copy_gbps(megabytes=64, repeat=5):
    """Parallel copy bandwidth (GB/s, bytes read + bytes written) on arrays beyond the caches."""
    src = np.random.default_rng(0).random(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy = _parallel_copy()
    seconds = time_call(lambda: copy(src, dst), repeat, 0.05, statistic=min)
    return 2 * src.nbytes / seconds / 1e9


def ceilings(previous=None):
    """Measure both ceilings now: ``{"sgemm_gflops": ..., "copy_gbps": ...}``.

    A ceiling is the best this machine reaches, so each is the fastest of its samples, and with
    ``previous`` (an earlier measurement in the same run) the higher of the two is kept: on a
    busy machine one measurement can land in a slow moment.
    """
    now = {"sgemm_gflops": sgemm_gflops(), "copy_gbps": copy_gbps()}
    return {key: max(value, (previous or {}).get(key, 0.0)) for key, value in now.items()}
