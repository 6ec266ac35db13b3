"""Numba's threading layer and thread count for the CPU kernels.

Numba's default ``workqueue`` layer aborts the process when two Python threads enter parallel
code at once; ``omp`` and ``tbb`` are safe. We ask for a thread-safe layer unless the user chose
one, and serialise calls with a lock when only ``workqueue`` is available.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numba

from .. import config

_lock = threading.Lock()


def _configure_layer():
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return  # the user's explicit choice wins
    try:
        from numba.np.ufunc import omppool  # noqa: F401
        numba.config.THREADING_LAYER = config.THREADING_LAYER
    except ImportError:
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401
            numba.config.THREADING_LAYER = config.THREADING_LAYER
        except ImportError:
            pass  # workqueue only: calls are serialised below


_configure_layer()


def layer_is_threadsafe():
    """True when the active (or configured) threading layer tolerates concurrent callers."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # not started yet
        layer = numba.config.THREADING_LAYER
    return layer in ("omp", "tbb", "threadsafe", "safe")


@contextlib.contextmanager
def parallel_region(serial_microseconds=float("inf")):
    """Run the parallel kernels inside safely, and on one thread when the work is small.

    ``serial_microseconds`` is the caller's estimate of the work on one core. Below
    ``config.PARALLEL_MIN_MICROSECONDS`` the kernel runs on the calling thread alone: waking
    the pool costs more than it saves, and on a busy machine (or beside another library's
    spinning threads) a parallel region can wait a whole scheduler tick for its workers.
    Calls are serialised when the threading layer is not thread-safe.
    """
    small = serial_microseconds < config.PARALLEL_MIN_MICROSECONDS
    previous = numba.get_num_threads() if small else 0
    if small and previous > 1:
        numba.set_num_threads(1)
    try:
        if layer_is_threadsafe():
            yield
        else:
            with _lock:
                yield
    finally:
        if small and previous > 1:
            numba.set_num_threads(previous)


def set_num_threads(n):
    """Set the number of threads used by fastconv's CPU kernels (Numba's thread pool).

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS``.

    Examples
    --------
    >>> from fastconv.cpu import threads
    >>> threads.set_num_threads(1); threads.get_num_threads()
    1
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        raise ValueError(f"n must be an int between 1 and {limit}, got {n!r}")
    numba.set_num_threads(n)


def get_num_threads():
    """Return the number of threads the CPU kernels use in this thread.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.get_num_threads() >= 1
    True
    """
    return numba.get_num_threads()
