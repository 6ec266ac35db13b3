"""Dask arrays on the GPU: ``device="cuda"`` runs every block on the CUDA kernels
(fastconv.chunked), and the result equals the in-memory CPU call.

CuPy chunks take the same path (the dispatcher follows each block's array type); CuPy does not
run under the simulator, so here the chunks are NumPy and ``device`` sends them to the GPU.
"""

import numpy as np
import pytest

import fastconv

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

CALLS = {
    "conv2d": lambda x, w, **kw: fastconv.conv2d(x, w, 2, "SAME", bias=np.ones(4, x.dtype),
                                                 activation="relu", **kw),
    "depthwise_conv2d": lambda x, w, **kw: fastconv.depthwise_conv2d(x, w[..., :1], 1, "SAME",
                                                                     **kw),
    "conv2d_transpose": lambda x, w, **kw: fastconv.conv2d_transpose(
        x, w[..., :2, :], (2, 14, 12, 2), 2, "SAME", **kw),
    "max_pool2d": lambda x, w, **kw: fastconv.max_pool2d(x, 3, 2, "SAME", **kw),
    "avg_pool2d": lambda x, w, **kw: fastconv.avg_pool2d(x, 2, 1, "VALID", **kw),
    "global_max_pool2d": lambda x, w, **kw: fastconv.global_max_pool2d(x, **kw),
    "global_avg_pool2d": lambda x, w, **kw: fastconv.global_avg_pool2d(x, "NHWC", True, **kw),
    "zero_pad2d": lambda x, w, **kw: fastconv.zero_pad2d(x, ((1, 0), (2, 1)), **kw),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_dask_blocks_run_on_the_gpu(name, assert_close):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    call = CALLS[name]
    expected = call(x, w, device="cpu")
    lazy = call(da.from_array(x, chunks=(1, 3, 4, 4)), w, device="cuda")
    assert isinstance(lazy, da.Array)
    with dask.config.set(scheduler="synchronous"):
        got = lazy.compute()
    assert isinstance(got, np.ndarray)
    assert_close(got, expected, np.float32)
