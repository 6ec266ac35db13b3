"""conv2d_transpose as ordinary convolutions.

The transposed conv of ``x`` (forward geometry: size ``H`` -> ``OH`` with stride ``s``, dilation
``d``, padding before ``pb``) is ``y[h] = sum_r z[h + pb - r*d] w[r]`` where ``z`` is ``x`` with
``s - 1`` zeros between samples. Two ways to compute it here:

* :func:`upsample_and_pad` + :func:`flipped_filters`: a stride-1 correlation of ``z`` with the
  flipped kernel (the ``direct`` algorithm; simple, but it multiplies the inserted zeros);
* :func:`transpose_phases`: one small stride-1 conv per output phase on ``x`` itself (the
  ``blocked`` algorithm), with no wasted multiplications.
"""

import functools
import itertools

import numpy as np

from ..shapes import transposed_pads_before


def upsample_and_pad(x, geometry):
    """Return ``x`` (channels-last, 5-D) spread by the strides and padded for the flipped conv."""
    n, *in_sizes, channels = x.shape
    shape, target, source = [n], [slice(None)], [slice(None)]
    for size_in, size_out, k, s, d, left in zip(in_sizes, geometry.in_sizes, geometry.kernel,
                                                 geometry.strides, geometry.dilations,
                                                 transposed_pads_before(geometry)):
        length = size_out + (k - 1) * d  # exactly what the stride-1 conv reads
        first = -(-max(0, -left) // s)  # first sample whose position is >= 0
        start = left + first * s
        count = max(0, min(size_in - first, -(-(length - start) // s)))
        shape.append(length)
        target.append(slice(start, start + (count - 1) * s + 1 if count else start, s))
        source.append(slice(first, first + count))
    padded = np.zeros(tuple(shape) + (channels,), dtype=x.dtype)
    padded[tuple(target)] = x[tuple(source)]
    return padded


def as_conv_filters(w, groups=1):
    """(T, R, S, out // groups, in) transposed-conv filters -> the (T, R, S, in // groups, out)
    filters of the grouped conv that scatters the same taps (group ``g``'s output channels
    ``g * out/groups + o`` read its input channels ``g * in/groups + i``)."""
    t, r, s, out_g, in_total = w.shape
    in_g = in_total // groups
    return w.reshape(t, r, s, out_g, groups, in_g).transpose(0, 1, 2, 5, 4, 3).reshape(
        t, r, s, in_g, groups * out_g)


def flipped_filters(w, groups=1):
    """(T, R, S, out // groups, in) transpose-conv filters -> (T, R, S, in // groups, out)
    flipped conv filters."""
    return np.ascontiguousarray(as_conv_filters(w[::-1, ::-1, ::-1], groups))


def _phase_taps(phase, k, s, d, before):
    """Kernel taps of one output phase along one dim, and their input offsets.

    Output ``i = phase + s * q`` receives ``x[q + c_r] * w[r]`` for every tap ``r`` with
    ``(phase + before - r * d) % s == 0``, where ``c_r = (phase + before - r * d) // s``.
    Returns the taps ordered by increasing offset, the first offset, and the offset step.
    """
    taps = [r for r in range(k) if (phase + before - r * d) % s == 0]
    taps.reverse()  # larger r, smaller offset
    if not taps:
        return [], 0, 1
    first = (phase + before - taps[0] * d) // s
    step = (taps[0] - taps[1]) * d // s if len(taps) > 1 else 1
    return taps, first, step


def _as_slice(taps):
    """The kernel indices ``taps`` (evenly spaced, in offset order) as a slice."""
    if len(taps) < 2:
        return slice(taps[0], taps[0] + 1) if taps else slice(0, 0)
    step = taps[1] - taps[0]
    stop = taps[-1] + step
    return slice(taps[0], stop if stop >= 0 else None, step)


@functools.lru_cache(maxsize=256)
def transpose_phases(x_sizes, geometry):
    """Split a transposed conv into stride-1 convs, one per output phase (sub-pixel form).

    A transposed conv with stride ``s`` reads, for outputs ``phase, phase + s, ...``, only the
    kernel taps congruent to that phase: ``prod(s)`` small ordinary convolutions with no
    multiplications by inserted zeros (the upsampling form does ``prod(s)`` times the work).

    Returns ``(pads, phases)``: the (before, after) zero padding of ``x`` shared by all phases,
    and per phase a dict with ``start`` (output index of the phase's first element per dim),
    ``count`` (outputs per dim), ``taps`` (kernel indices per dim, in offset order), ``offset``
    (input offset of the first tap per dim, into the padded ``x``) and ``dilation`` per dim.
    Cached per geometry (callers must not modify the result).
    """
    per_dim = []
    for size_in, size_out, k, s, d, (before, _) in zip(x_sizes, geometry.in_sizes,
                                                        geometry.kernel, geometry.strides,
                                                        geometry.dilations, geometry.pads):
        options = []
        for phase in range(min(s, size_out)):
            taps, first, step = _phase_taps(phase, k, s, d, before)
            count = -(-(size_out - phase) // s)
            options.append(dict(start=phase, count=count, taps=taps, first=first, step=step))
        per_dim.append(options)
    pads = []
    for options, size_in in zip(per_dim, x_sizes):
        low = min((o["first"] for o in options if o["taps"]), default=0)
        high = max((o["count"] - 1 + o["first"] + (len(o["taps"]) - 1) * o["step"]
                    for o in options if o["taps"]), default=0)
        pads.append((max(0, -low), max(0, high - (size_in - 1))))
    phases = []
    for combo in itertools.product(*per_dim):
        phases.append(dict(start=tuple(o["start"] for o in combo),
                           count=tuple(o["count"] for o in combo),
                           taps=tuple(o["taps"] for o in combo),
                           tap_slices=tuple(_as_slice(o["taps"]) for o in combo),
                           offset=tuple(o["first"] + before for o, (before, _) in zip(combo, pads)),
                           dilation=tuple(o["step"] for o in combo)))
    return tuple(pads), phases
