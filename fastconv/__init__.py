"""fastconv: JIT-compiled convolution and pooling kernels, a drop-in for ``tf.nn``.

Replace ``tf.nn.`` with ``fastconv.`` and get the same results from Numba CPU kernels (and
numba.cuda kernels for GPU arrays). Importing fastconv imports neither Numba nor CUDA nor
TensorFlow; kernels compile on first use and are cached on disk.

Examples
--------
>>> import numpy as np, fastconv
>>> x = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
>>> w = np.ones((3, 3, 1, 32), np.float32)
>>> y = fastconv.conv2d(x, w, strides=1, padding="SAME", activation="relu")
>>> fastconv.max_pool2d(y, 2, 2, "VALID").shape
(1, 14, 14, 32)
"""

import importlib
import logging

from . import config
from .api import *  # noqa: F403  (every op of the op table, fastconv.ops)
from .backward import vjp
from .gradients import *  # noqa: F403  (TF's named backprop kernels)
from .gradients import NAMED_KERNELS as _GRADIENT_NAMES
from .ops import NAMES as _OP_NAMES
from .plans import Conv2DPlan, prepare_conv2d
from .shapes import conv_output_size, same_padding

__version__ = "0.1.0"

__all__ = [*_OP_NAMES, *_GRADIENT_NAMES, "vjp", "prepare_conv2d", "Conv2DPlan", "conv_output_size", "same_padding", "set_num_threads",
           "get_num_threads", "cpu", "cuda", "reference", "dispatch", "ops"]

_LAZY_MODULES = {"cpu", "cuda", "reference", "tf_reference", "dispatch", "cli", "ops", "testing",
                 "functional"}

# What compiles, when and for how long is logged here (INFO); silent unless configured.
logging.getLogger(__name__).addHandler(logging.NullHandler())
if config.LOG_LEVEL:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("fastconv: %(message)s"))
    logging.getLogger(__name__).addHandler(_handler)
    logging.getLogger(__name__).setLevel(config.LOG_LEVEL.upper())


def set_num_threads(n):
    """Set the number of CPU threads fastconv uses (Numba's pool, in this thread).

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_num_threads(1)
    >>> fastconv.get_num_threads()
    1
    """
    from .cpu.threads import set_num_threads as _set

    _set(n)


def get_num_threads():
    """Return the number of CPU threads fastconv uses in this thread.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.get_num_threads() >= 1
    True
    """
    from .cpu.threads import get_num_threads as _get

    return _get()


def __getattr__(name):
    # Submodules that import Numba (cpu) or CUDA (cuda) load on first access only.
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
