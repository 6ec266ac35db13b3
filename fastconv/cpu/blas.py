"""NumPy's BLAS on fastconv's own thread budget, without BLAS's own thread pool.

NumPy's OpenBLAS keeps a pool of threads that spin for ~110 ms after every call, taking a core
from whatever runs next (fastconv's next kernel included), and on a busy machine a call waits
12-16 ms for that pool (0.15 ms with one thread): issue 10. So matrix products here run with
BLAS limited to one thread (threadpoolctl, ~10 us per call) on up to
``fastconv.get_num_threads()`` Python threads of our own, each taking a share of the columns.
NumPy releases the GIL inside BLAS, so the shares run in parallel, and nothing spins after.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .threads import get_num_threads

_lock = threading.Lock()
_state = {"controller": None, "pool": None, "workers": 0}
#: Columns per job below which one thread does the whole product (a job costs ~20 us).
MIN_COLUMNS_PER_JOB = 256


def _controller():
    if _state["controller"] is None:
        with _lock:
            if _state["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _state["controller"] = ThreadpoolController()
    return _state["controller"]


def _pool(workers):
    with _lock:
        if _state["workers"] < workers:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=False)
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="fastconv-blas")
            _state["workers"] = workers
        return _state["pool"]


def batched_matmul(a, b, out, threads=None):
    """``out[n] = a @ b[n]`` for every n, BLAS on one thread per share, shares on our threads.

    Parameters
    ----------
    a : ndarray (M, K)
    b : ndarray (N, K, P), C-contiguous
    out : ndarray (N, M, P), C-contiguous; written
    threads : int, optional
        Defaults to ``fastconv.get_num_threads()``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu.blas import batched_matmul
    >>> a, b = np.ones((2, 3)), np.ones((4, 3, 5))
    >>> out = np.empty((4, 2, 5))
    >>> batched_matmul(a, b, out)
    >>> float(out[3, 1, 4])
    3.0
    """
    batch, _, columns = b.shape
    threads = get_num_threads() if threads is None else threads
    jobs = min(threads, max(1, batch * columns // MIN_COLUMNS_PER_JOB))
    with _controller().limit(limits=1, user_api="blas"):
        if jobs == 1:
            np.matmul(a, b, out=out)
            return
        # Whole images per job when there are enough of them, else column ranges of each.
        if batch >= jobs:
            bounds = [(n * batch // jobs, (n + 1) * batch // jobs) for n in range(jobs)]
            tasks = [(slice(lo, hi), slice(None)) for lo, hi in bounds]
        else:
            per_image = -(-jobs // batch)
            tasks = [(slice(n, n + 1), slice(p * columns // per_image,
                                             (p + 1) * columns // per_image))
                     for n in range(batch) for p in range(per_image)]

        def run(task):
            images, cols = task
            np.matmul(a, b[images, :, cols], out=out[images, :, cols])

        _in_shares(threads, tasks, run)


def _in_shares(threads, tasks, run):
    """``run(task)`` for every task: the first on the calling thread, the others on our pool
    (BLAS releases the GIL, so the shares run in parallel)."""
    pool = _pool(threads)
    futures = [pool.submit(run, task) for task in tasks[1:]]
    run(tasks[0])
    for future in futures:
        future.result()


def rows_matmul(a, b, out, threads=None):
    """``out = a @ b`` with the rows of ``a`` shared among fastconv's threads, BLAS on one
    thread per share (as :func:`batched_matmul`): a channels-last 1x1 conv's pixels times its
    filters.

    Parameters
    ----------
    a : ndarray (M, K), C-contiguous
    b : ndarray (K, P)
    out : ndarray (M, P), C-contiguous; written
    threads : int, optional
        Defaults to ``fastconv.get_num_threads()``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.cpu.blas import rows_matmul
    >>> out = np.empty((4, 2))
    >>> rows_matmul(np.ones((4, 3)), np.ones((3, 2)), out)
    >>> float(out[3, 1])
    3.0
    """
    rows = a.shape[0]
    threads = get_num_threads() if threads is None else threads
    jobs = min(threads, max(1, rows // MIN_COLUMNS_PER_JOB))
    with _controller().limit(limits=1, user_api="blas"):
        if jobs == 1:
            np.matmul(a, b, out=out)
            return
        bounds = [(n * rows // jobs, (n + 1) * rows // jobs) for n in range(jobs)]

        def run(bound):
            lo, hi = bound
            np.matmul(a[lo:hi], b, out=out[lo:hi])

        _in_shares(threads, bounds, run)
