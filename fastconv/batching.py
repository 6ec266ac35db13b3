"""Running an op over a large batch a few images at a time (intermediates stay in cache).

Convolutions and pooling treat images independently, so a call can be cut along the batch:
each chunk's float32 intermediate (a half-precision input widened to float32) is small enough
to stay in the cache between the pass that writes it and the kernel that reads it, instead of
going to memory and back. Each chunk's result is written into one output array for the whole
batch. (Chunks cost a call each: a separable conv's depthwise result kept in cache this way
measured slower than two whole-batch passes, so only half precision uses it.)

Imports nothing but NumPy.
"""

from __future__ import annotations

import numpy as np


def images_per_chunk(batch, bytes_per_image, budget):
    """Images per chunk so that a chunk's intermediate holds about ``budget`` bytes; 0 when
    the whole batch fits (nothing to gain from chunking).

    Examples
    --------
    >>> images_per_chunk(16, 1 << 20, 4 << 20), images_per_chunk(2, 1 << 20, 4 << 20)
    (4, 0)
    """
    if batch < 2 or bytes_per_image <= 0 or batch * bytes_per_image <= budget:
        return 0
    return max(1, budget // bytes_per_image)


def run_in_chunks(batch, images, run, store):
    """``run(start, stop)`` for consecutive batch chunks of ``images`` images; each result
    (an array, or a tuple or namedtuple of arrays with the batch first) is passed to
    ``store(part, output_slice)`` with the matching slice of outputs allocated for the whole
    batch on the first chunk (``store`` returns the dtype an output gets when called with
    ``output_slice=None``). Returns the outputs in the result's structure.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> def store(part, out):
    ...     if out is None:
    ...         return part.dtype
    ...     out[...] = part
    >>> run_in_chunks(6, 4, lambda a, b: 2 * x[a:b], store)[:, 0]
    array([ 0.,  4.,  8., 12., 16., 20.])
    """
    outputs = result = None
    for start in range(0, batch, images):
        stop = min(start + images, batch)
        result = run(start, stop)
        parts = result if isinstance(result, tuple) else (result,)
        if outputs is None:
            outputs = [np.empty((batch, *part.shape[1:]), store(part, None)) for part in parts]
        for output, part in zip(outputs, parts):
            store(part, output[start:stop])
    if not isinstance(result, tuple):
        return outputs[0]
    return type(result)(*outputs) if hasattr(result, "_fields") else tuple(outputs)
