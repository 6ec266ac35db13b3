"""What the asv suites share: parameters built from the workload list, and a base class.

Each suite class selects a few ops from :data:`fastconv.workloads.CASES` and runs them over
layouts, dtypes, devices and backends (fastconv, and TensorFlow for the comparison line).
Combinations that cannot run raise ``NotImplementedError`` in ``setup``, which asv records as
skipped: a case not listed in a layout, TensorFlow on channels-first data or on the GPU (its CPU
kernels refuse NCHW; tensorflow-cpu has no GPU), or ``cuda`` on a machine without a GPU.
"""

import abc

from fastconv import config, timing, workloads

# Benchmarks time the compiled kernels: first calls compile in-process (asv times the compile
# itself in bench_import.py), never NumPy standing in while a background process compiles.
config.COMPILE = "sync"

DEVICES = ["cpu", "cuda"]
PARAM_NAMES = ["case", "layout", "dtype", "device", "backend"]

_cuda = None


def cuda_available():
    """True when numba.cuda finds a GPU (checked once; never raises)."""
    global _cuda
    if _cuda is None:
        import fastconv.cuda

        _cuda = fastconv.cuda.is_available()
    return _cuda


def suite_params(*ops):
    """asv ``params`` for the cases of ``ops`` (op names or families) x layouts x dtypes x ..."""
    names = [case.name for case in workloads.select(ops=ops)]
    assert names, f"no workload for {ops}"
    return [names, list(workloads.LAYOUTS), list(workloads.DTYPES), DEVICES,
            list(workloads.BACKENDS)]


class WorkloadSuite(abc.ABC):
    """Base class: ``setup`` prepares one case and warms it; subclasses set ``params``.

    Abstract until ``params`` is set, so asv does not collect the base classes themselves.
    """

    param_names = PARAM_NAMES

    @property
    @abc.abstractmethod
    def params(self):
        """asv parameters, from :func:`suite_params`."""
    timeout = 300  # big layers on 2 cores, in float64

    def setup(self, case, layout, dtype, device, backend):
        self.case = workloads.get(case)
        if layout not in self.case.layouts:
            raise NotImplementedError(f"{case} is not benchmarked in {layout}")
        if backend == "tensorflow":
            if layout == "channels_first":
                raise NotImplementedError("TensorFlow's CPU kernels refuse channels-first data")
            if device == "cuda":
                raise NotImplementedError("tensorflow-cpu has no GPU")
            try:
                workloads.import_tensorflow()
            except ImportError as error:
                raise NotImplementedError(str(error)) from error
        if device == "cuda" and not cuda_available():
            raise NotImplementedError("no CUDA GPU here")
        self.call, _ = workloads.prepare(self.case, backend, dtype, layout, device)
        self.call()  # compile (or load from the disk cache) outside the timings

    def time_op(self, case, layout, dtype, device, backend):
        self.call()

    def peakmem_op(self, case, layout, dtype, device, backend):
        self.call()

    def _rate(self, dtype):
        """Work per second of the prepared call, in 1e9 units (GFLOP/s or GB/s)."""
        return self.case.work(dtype) / timing.time_call(self.call, repeat=5) / 1e9


class ComputeSuite(WorkloadSuite):
    """Convolutions: adds GFLOP/s."""

    def track_gflops(self, case, layout, dtype, device, backend):
        return self._rate(dtype)

    track_gflops.unit = "GFLOP/s"


class BandwidthSuite(WorkloadSuite):
    """Pooling and padding: adds GB/s (bytes read + written)."""

    def track_gbps(self, case, layout, dtype, device, backend):
        return self._rate(dtype)

    track_gbps.unit = "GB/s"
