"""Normalised descriptions of one op call, handed from the API layer to a backend.

Every array is 5-D: one to three spatial dims are padded with leading unit dims so that conv1d,
conv2d and conv3d (and the pools) share one kernel per backend. Arrays stay in the caller's
layout (``channels_first`` says which); each backend decides how to handle it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .shapes import Geometry


def pad_to_3d(geometry: Geometry) -> Geometry:
    """Return ``geometry`` with unit leading spatial dims so it describes three dims."""
    missing = 3 - len(geometry.in_sizes)
    ones = (1,) * missing
    return Geometry(ones + geometry.in_sizes, ones + geometry.kernel, ones + geometry.strides,
                    ones + geometry.dilations, ((0, 0),) * missing + geometry.pads,
                    ones + geometry.out_sizes)


def layout_shape(batch, channels, spatial, channels_first):
    """The shape (N, C, *spatial) or (N, *spatial, C) of data in the given layout."""
    spatial = tuple(spatial)
    return (batch, channels) + spatial if channels_first else (batch,) + spatial + (channels,)


@dataclass
class ConvProblem:
    """A (grouped, strided, dilated) convolution: ``out = act(conv(x, w) + bias)``."""

    x: Any  # (N, C, D, H, W) or (N, D, H, W, C)
    w: Any  # (T, R, S, C // groups, K)
    bias: Any  # (K,) or None
    geometry: Geometry  # three spatial dims
    groups: int
    activation: int
    channels_first: bool
    out_shape: tuple  # 5-D, data layout
    dtype: Any


@dataclass
class ConvTransposeProblem:
    """A transposed convolution (the gradient of a conv with respect to its input).

    ``geometry`` is that of the *forward* conv, which maps the output's spatial sizes to the
    input's: every input pixel scatters ``w`` over the output at ``stride`` steps.
    """

    x: Any  # (N, C, D, H, W) or (N, D, H, W, C)
    w: Any  # (T, R, S, out_channels, in_channels), TF's layout
    geometry: Geometry  # the forward conv's, three spatial dims
    channels_first: bool
    out_shape: tuple  # 5-D, data layout
    dtype: Any


@dataclass
class PoolProblem:
    """A windowed max or average pooling."""

    x: Any
    geometry: Geometry
    channels_first: bool
    out_shape: tuple
    dtype: Any
    kind: str = "max"  # "max" or "avg"


@dataclass
class GlobalPoolProblem:
    """A max or mean over every spatial position."""

    x: Any  # 5-D, data layout
    channels_first: bool
    out_shape: tuple  # (N, C)
    dtype: Any
    kind: str = "max"


@dataclass
class PadProblem:
    """Zero padding of the spatial dims."""

    x: Any  # 5-D, data layout
    pads: tuple  # three (before, after) pairs
    channels_first: bool
    out_shape: tuple
    dtype: Any
