"""Numba CPU kernels. Importing this package imports Numba (``import fastconv`` does not).

The raw kernels below are ``@njit`` functions on C-contiguous channels-last arrays; call them
from Python or from your own ``@njit`` code. They write into ``out``, whose shape fixes the
output size, and do no argument checking (use the ``fastconv.*`` functions for that).
"""

import os

from .. import config

if config.CACHE_DIR and not os.environ.get("NUMBA_CACHE_DIR"):
    import numba

    numba.config.CACHE_DIR = config.CACHE_DIR

from .cache import make_cache_fail_soft  # noqa: E402

make_cache_fail_soft()  # a corrupt cache file recompiles instead of failing the call

from . import threads  # noqa: E402  (chooses the threading layer before any kernel runs)
from .kernels import (avg_pool1d_nwc, avg_pool2d_nhwc, avg_pool3d_ndhwc,  # noqa: E402
                      conv1d_nwc, conv2d_nhwc, conv3d_ndhwc, max_pool1d_nwc, max_pool2d_nhwc,
                      max_pool3d_ndhwc)
from .threads import get_num_threads, set_num_threads  # noqa: E402

__all__ = ["conv1d_nwc", "conv2d_nhwc", "conv3d_ndhwc", "max_pool1d_nwc", "max_pool2d_nhwc",
           "max_pool3d_ndhwc", "avg_pool1d_nwc", "avg_pool2d_nhwc", "avg_pool3d_ndhwc",
           "set_num_threads", "get_num_threads", "threads"]
