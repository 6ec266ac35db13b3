"""Numba's threading layer and thread count for the CPU kernels.

Numba's default ``workqueue`` layer aborts the process when two Python threads enter parallel
code at once; ``tbb`` and ``omp`` are safe. We prefer TBB (installed from PyPI with fastconv):
its work-stealing lets the calling thread finish a region alone when the other workers are
descheduled, whereas an OpenMP region waits for every worker. On a busy machine (or beside
TensorFlow's spinning threads) that wait is a whole scheduler tick, which measured as 10-100x
slowdowns of millisecond ops here (benchmarks/RESULTS.md). OpenMP is the fallback, and when
only ``workqueue`` exists calls are serialised with a lock. ``NUMBA_THREADING_LAYER`` or
``FASTCONV_THREADING_LAYER`` override the choice.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading

import numba

from .. import config

_lock = threading.Lock()


def _load_pip_tbb():
    """Make the ``tbb`` wheel's library visible to Numba's TBB layer.

    pip installs ``libtbb.so.12`` into ``<prefix>/lib``, which is not on the loader's search
    path; loading it globally first lets ``numba.np.ufunc.tbbpool`` resolve it.
    """
    for path in sorted(glob.glob(os.path.join(sys.prefix, "lib", "libtbb.so.12*"))):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue


def _layer_available(name):
    try:
        if name == "tbb":
            _load_pip_tbb()
            from numba.np.ufunc import tbbpool  # noqa: F401
        elif name == "omp":
            from numba.np.ufunc import omppool  # noqa: F401
        return True
    except ImportError:
        return False


def _configure_layer():
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return  # the user's explicit choice wins
    choice = config.THREADING_LAYER
    candidates = ("tbb", "omp") if choice in ("auto", "threadsafe", "safe") else (choice,)
    for name in candidates:
        if _layer_available(name):
            numba.config.THREADING_LAYER = name
            return
    # workqueue only: parallel_region serialises calls


_configure_layer()


def _start_thread_pool():
    """Start Numba's thread pool now.

    Our entry points are plain ``@njit`` functions that call ``parallel=True`` kernels. When
    such an entry point is loaded from the disk cache before any parallel kernel ran in the
    process, nothing has started the threading layer, and its first parallel region jumps
    through a null pointer (a segfault seen here). Compiling instead of loading starts it, so
    only warm caches showed the crash.
    """
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()


_start_thread_pool()


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
    """Return the number of threads the CPU kernels use in this thread (Numba's count).

    Examples
    --------
    >>> from fastconv.cpu import threads
    >>> 1 <= threads.get_num_threads() <= numba.config.NUMBA_NUM_THREADS
    True
    """
    return numba.get_num_threads()
