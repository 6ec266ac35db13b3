"""asv: convolutions on the seed workloads and issue 3's standard layers."""

from .common import ComputeSuite, suite_params


class Conv2D(ComputeSuite):
    """``conv2d``: the MNIST layers (with fused bias + relu), the photo, 3x3/1x1/strided/stem."""

    params = suite_params("conv2d")


class DepthwiseConv2D(ComputeSuite):
    params = suite_params("depthwise_conv2d")


class Conv2DTranspose(ComputeSuite):
    params = suite_params("conv2d_transpose")


class Conv1D(ComputeSuite):
    params = suite_params("conv1d")


class Conv3D(ComputeSuite):
    params = suite_params("conv3d")
