"""A drop-in for ``torch.nn.functional``'s convolution and pooling, on fastconv's kernels.

``import fastconv.functional as F`` and call ``F.conv2d``, ``F.max_pool2d``, ... with
PyTorch's arguments, defaults and weight layouts; the results equal PyTorch's (the suite
checks them against ``torch.nn.functional``). Inputs may be NumPy arrays or torch tensors
(CPU or CUDA; results come back as the same kind), batched or unbatched, and PyTorch's
``channels_last`` tensors run the channels-last kernels in place. Errors are ValueError or
TypeError subclasses that are also RuntimeErrors, as PyTorch raises, and come before any
kernel runs. Results carry no autograd history (``fastconv.vjp`` is the gradient route).
Importing this module imports neither torch nor CUDA.

Examples
--------
>>> import numpy as np
>>> import fastconv.functional as F
>>> x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
>>> w = np.ones((32, 1, 3, 3), np.float32)          # nn.Conv2d(1, 32, 3).weight's layout
>>> y = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
>>> y.shape
(1, 32, 14, 14)
"""

from .conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from .errors import FunctionalError, FunctionalTypeError
from .padding import pad
from .pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
                      adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d, avg_pool1d,
                      avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d, lp_pool3d, max_pool1d,
                      max_pool2d, max_pool3d, max_unpool1d, max_unpool2d, max_unpool3d)

#: The functions, in torch.nn.functional's names.
NAMES = (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "pad",
)
__all__ = [*NAMES, "FunctionalError", "FunctionalTypeError"]
