"""asv: import time and first-call (JIT compile) time, each in a fresh Python process.

``timeraw_*`` benchmarks return code that asv times in a new subprocess per sample, so nothing
is already imported or compiled. The first call is timed with a cold Numba disk cache (an empty
cache directory: full compilation) and with a warm one (kernels loaded from disk), which are
issue 3's "<= 3 s" and "<= 0.5 s" targets.
"""

# One small seed case per op: the first-call time is compilation, not arithmetic.
FIRST_CALL_CASES = {
    "conv2d": "mnist_conv1_same_b1",
    "depthwise_conv2d": "depthwise3x3_128_56_b8",
    "conv2d_transpose": "conv2d_transpose_s2_64_32_28_b8",
    "max_pool2d": "mnist_pool1_b1",
    "avg_pool2d": "seed004_avg2d_5x5",
    "mnist_cnn": "mnist_cnn_b1",
}

# Runs in the timed child before the statement: point Numba (and fastconv) at a fresh cache
# directory, filled first by another process when the cache should be warm.
_PREPARE = ("from fastconv import workloads; "
            "call, _ = workloads.prepare(workloads.get({name!r}), 'fastconv')")
_SETUP = """
import os, subprocess, sys, tempfile
cache = tempfile.mkdtemp(prefix="fastconv-asv-cache-")
os.environ["NUMBA_CACHE_DIR"] = os.environ["FASTCONV_CACHE_DIR"] = cache
os.environ["FASTCONV_COMPILE"] = {mode!r}
if {warm}:
    subprocess.run([sys.executable, "-c", {prepare!r} + "; call()"], check=True,
                   env=dict(os.environ, FASTCONV_COMPILE="sync"))
{prepare}
"""


def timeraw_import_fastconv():
    """``import fastconv`` (imports neither Numba nor TensorFlow)."""
    return "import fastconv"


def timeraw_import_fastconv_cpu():
    """``import fastconv.cpu``: Numba and the kernel modules, no compilation yet."""
    return "import fastconv.cpu"


class FirstCall:
    """The first call of an op in a fresh process, with an empty or a filled disk cache.

    ``cold``: empty cache, the default policy (NumPy answers while a background process
    compiles); ``cold-sync``: empty cache, ``FASTCONV_COMPILE=sync`` (the compile time itself);
    ``warm``: the kernels load from the disk cache.
    """

    params = [list(FIRST_CALL_CASES), ["cold", "cold-sync", "warm"]]
    param_names = ["op", "disk_cache"]
    repeat = 3
    number = 1
    timeout = 600

    def timeraw_first_call(self, op, disk_cache):
        prepare = _PREPARE.format(name=FIRST_CALL_CASES[op])
        mode = "sync" if disk_cache == "cold-sync" else "background"
        return "call()", _SETUP.format(prepare=prepare, warm=disk_cache == "warm", mode=mode)
