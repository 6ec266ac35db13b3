"""asv: max and average pooling, 1d/2d/3d, on the seed cases and on tens of MB (bandwidth)."""

from .common import BandwidthSuite, suite_params


class MaxPool(BandwidthSuite):
    """``max_pool1d/2d/3d``."""

    params = suite_params("max_pool1d", "max_pool2d", "max_pool3d")


class AvgPool(BandwidthSuite):
    """``avg_pool1d/2d/3d``."""

    params = suite_params("avg_pool1d", "avg_pool2d", "avg_pool3d")


class GlobalPool(BandwidthSuite):
    """``global_max_pool2d`` and ``global_avg_pool2d``."""

    params = suite_params("global_max_pool2d", "global_avg_pool2d")


class WindowMax(BandwidthSuite):
    """max_pool_with_argmax and grayscale dilation (issue 14): TF's window-max kernels."""

    params = suite_params("max_pool_with_argmax", "dilation2d")
