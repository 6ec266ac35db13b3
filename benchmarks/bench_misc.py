"""asv: the seed MNIST CNN as one latency case, and zero padding."""

from .common import BandwidthSuite, ComputeSuite, suite_params


class MnistCNN(ComputeSuite):
    """Seed 001's conv-pool-conv-pool at batch 1 (the latency a single prediction sees)."""

    params = suite_params("network")


class ZeroPad2D(BandwidthSuite):
    params = suite_params("zero_pad2d")
