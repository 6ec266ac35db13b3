"""``fastconv compare --functional``: every ``fastconv.functional`` op beside the same work
through fastconv's ``tf.nn`` API and through ``torch.nn.functional``.

Each case is a PyTorch call (torch tensors in, PyTorch's arguments) on a seed or standard
layer. The row checks ``F`` against torch (bit for bit for max pooling, unpooling and padding,
the suite's tolerance otherwise) and times, alternately in one process with medians: ``F``,
the equivalent ``tf.nn``-style call on the same data (channels-first, TF-layout filters
prepared once; none where tf.nn has no such op) and torch. torch's OpenMP threads spin for
~15 ms after a call, so each torch sample is followed by an idle wait before the next sample
(not timed), fastconv's two calls take turns going first, and every sample follows an
untimed call. ``F / API`` is the cost of PyTorch's front end (the issue's goal: within 1.10);
``torch / F`` > 1 means fastconv is faster than PyTorch.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from . import timing
from .testing import tolerance

#: Seconds of idle after each torch sample: its OpenMP pool spins ~15 ms after a call.
TORCH_IDLE_SECONDS = 0.03


@dataclass
class TorchCase:
    name: str
    op: str  # the fastconv.functional / torch.nn.functional function
    shapes: dict  # array name -> shape (float32 data; "indices" is made by a max pool)
    options: dict  # keyword arguments of the call, as PyTorch takes them
    api: object = None  # api(fastconv, arrays) -> the same work through the tf.nn API
    exact: bool = False
    channels_last: bool = False


def _tf_filters(w):
    return np.ascontiguousarray(np.transpose(w, tuple(range(2, w.ndim)) + (1, 0)))


def _pads(p, n):
    return [[0, 0], [0, 0]] + [[p, p]] * n


CASES = (
    TorchCase("seed003_conv1", "conv2d", {"x": (64, 1, 28, 28), "w": (32, 1, 3, 3), "b": (32,)},
              {"padding": 1},
              lambda fc, a: fc.conv2d(a["x"], _tf_filters(a["w"]), 1, _pads(1, 2), "NCHW",
                                      bias=a["b"])),
    TorchCase("seed003_conv2", "conv2d", {"x": (64, 32, 14, 14), "w": (64, 32, 3, 3),
                                          "b": (64,)}, {"padding": 1},
              lambda fc, a: fc.conv2d(a["x"], _tf_filters(a["w"]), 1, _pads(1, 2), "NCHW",
                                      bias=a["b"])),
    TorchCase("seed003_conv2_channels_last", "conv2d", {"x": (64, 32, 14, 14),
                                                        "w": (64, 32, 3, 3)}, {"padding": 1},
              lambda fc, a: fc.conv2d(a["x_nhwc"], _tf_filters(a["w"]), 1, "SAME", "NHWC"),
              channels_last=True),
    TorchCase("seed003_pool", "max_pool2d", {"x": (64, 32, 28, 28)}, {"kernel_size": 2},
              lambda fc, a: fc.max_pool2d(a["x"], 2, 2, "VALID", "NCHW"), exact=True),
    TorchCase("seed003_pool_indices", "max_pool2d", {"x": (64, 32, 28, 28)},
              {"kernel_size": 2, "return_indices": True}, None, exact=True),
    TorchCase("seed004_pool1d", "max_pool1d", {"x": (1, 1, 10)},
              {"kernel_size": 2, "stride": 1},
              lambda fc, a: fc.max_pool1d(a["x"], 2, 1, "VALID", "NCW"), exact=True),
    TorchCase("seed004_avg1d", "avg_pool1d", {"x": (1, 1, 10)},
              {"kernel_size": 2, "stride": 1},
              lambda fc, a: fc.avg_pool1d(a["x"], 2, 1, "VALID", "NCW")),
    TorchCase("resnet_stem_pool", "max_pool2d", {"x": (8, 64, 112, 112)},
              {"kernel_size": 3, "stride": 2, "padding": 1},
              lambda fc, a: fc.max_pool2d(a["x"], 3, 2, _pads(1, 2), "NCHW"), exact=True),
    TorchCase("avg_pool_3x3s2", "avg_pool2d", {"x": (8, 64, 56, 56)},
              {"kernel_size": 3, "stride": 2, "padding": 1},
              lambda fc, a: fc.avg_pool2d(a["x"], 3, 2, "SAME", "NCHW")),
    TorchCase("max_pool3d", "max_pool3d", {"x": (2, 16, 16, 32, 32)}, {"kernel_size": 2},
              lambda fc, a: fc.max_pool3d(a["x"], 2, 2, "VALID", "NCDHW"), exact=True),
    TorchCase("resnet_stride2", "conv2d", {"x": (8, 64, 56, 56), "w": (128, 64, 3, 3)},
              {"stride": 2, "padding": 1},
              lambda fc, a: fc.conv2d(a["x"], _tf_filters(a["w"]), 2, _pads(1, 2), "NCHW")),
    TorchCase("conv1d_k5", "conv1d", {"x": (8, 64, 256), "w": (64, 64, 5)}, {"padding": 2},
              lambda fc, a: fc.conv1d(a["x"], _tf_filters(a["w"]), 1, "SAME", "NCW")),
    TorchCase("conv3d_k3", "conv3d", {"x": (2, 8, 16, 32, 32), "w": (16, 8, 3, 3, 3)},
              {"padding": 1},
              lambda fc, a: fc.conv3d(a["x"], _tf_filters(a["w"]), 1, "SAME", "NCDHW")),
    TorchCase("dcgan_transpose", "conv_transpose2d", {"x": (8, 64, 28, 28),
                                                      "w": (64, 32, 4, 4)},
              {"stride": 2, "padding": 1},
              lambda fc, a: fc.conv2d_transpose(a["x"], _tf_filters(a["w"]), (8, 32, 56, 56), 2,
                                                _pads(1, 2), "NCHW")),
    TorchCase("global_avg", "adaptive_avg_pool2d", {"x": (8, 512, 7, 7)}, {"output_size": 1},
              lambda fc, a: fc.global_avg_pool2d(a["x"], "NCHW", keepdims=True)),
    TorchCase("adaptive_max_even", "adaptive_max_pool2d", {"x": (8, 64, 28, 28)},
              {"output_size": 7}, lambda fc, a: fc.max_pool2d(a["x"], 4, 4, "VALID", "NCHW"),
              exact=True),
    TorchCase("adaptive_avg_uneven", "adaptive_avg_pool2d", {"x": (8, 64, 30, 30)},
              {"output_size": 7}),
    TorchCase("lp_pool", "lp_pool2d", {"x": (8, 64, 56, 56)},
              {"norm_type": 2, "kernel_size": 2}),
    TorchCase("max_unpool", "max_unpool2d", {"x": (64, 32, 28, 28)}, {"kernel_size": 2},
              exact=True),
    TorchCase("transpose1d", "conv_transpose1d", {"x": (8, 64, 128), "w": (64, 32, 4)},
              {"stride": 2, "padding": 1}),
    TorchCase("transpose3d", "conv_transpose3d", {"x": (2, 16, 8, 16, 16),
                                                  "w": (16, 8, 4, 4, 4)},
              {"stride": 2, "padding": 1}),
    TorchCase("avg_pool3d", "avg_pool3d", {"x": (2, 16, 16, 32, 32)}, {"kernel_size": 2},
              lambda fc, a: fc.avg_pool3d(a["x"], 2, 2, "VALID", "NCDHW")),
    TorchCase("adaptive_avg_1d", "adaptive_avg_pool1d", {"x": (8, 64, 256)},
              {"output_size": 32},
              lambda fc, a: fc.avg_pool1d(a["x"], 8, 8, "VALID", "NCW")),
    TorchCase("adaptive_max_1d", "adaptive_max_pool1d", {"x": (8, 64, 250)},
              {"output_size": 32}, exact=True),
    TorchCase("adaptive_avg_3d", "adaptive_avg_pool3d", {"x": (2, 16, 16, 32, 32)},
              {"output_size": 1},
              lambda fc, a: fc.avg_pool3d(a["x"], (16, 32, 32), 1, "VALID", "NCDHW")),
    TorchCase("adaptive_max_3d", "adaptive_max_pool3d", {"x": (2, 16, 16, 32, 32)},
              {"output_size": (8, 16, 16)},
              lambda fc, a: fc.max_pool3d(a["x"], 2, 2, "VALID", "NCDHW"), exact=True),
    TorchCase("lp_pool1d", "lp_pool1d", {"x": (8, 64, 256)},
              {"norm_type": 2, "kernel_size": 3, "stride": 2}),
    TorchCase("lp_pool3d", "lp_pool3d", {"x": (2, 16, 16, 32, 32)},
              {"norm_type": 2, "kernel_size": 2}),
    TorchCase("max_unpool1d", "max_unpool1d", {"x": (8, 64, 256)}, {"kernel_size": 2},
              exact=True),
    TorchCase("max_unpool3d", "max_unpool3d", {"x": (2, 16, 16, 32, 32)}, {"kernel_size": 2},
              exact=True),
    TorchCase("pad_reflect", "pad", {"x": (8, 64, 56, 56)},
              {"pad": (1, 1, 1, 1), "mode": "reflect"}, exact=True),
    TorchCase("pad_constant", "pad", {"x": (8, 64, 56, 56)}, {"pad": (1, 1, 1, 1)},
              lambda fc, a: fc.zero_pad2d(a["x"], 1, "NCHW"), exact=True),
)


@dataclass
class TorchResult:
    case: str
    op: str
    shape: str
    equal: bool = False
    max_abs_error: float = math.nan
    functional_ms: float = math.nan
    api_ms: float = math.nan
    torch_ms: float = math.nan
    error: str = ""

    @property
    def front_end_cost(self):
        """F time / tf.nn API time (the goal: at most 1.10)."""
        return self.functional_ms / self.api_ms

    @property
    def speedup(self):
        """torch time / F time (> 1: fastconv is faster)."""
        return self.torch_ms / self.functional_ms


def _arrays(case, rng):
    arrays = {name: rng.standard_normal(shape).astype(np.float32)
              for name, shape in case.shapes.items()}
    arrays["x_nhwc"] = np.ascontiguousarray(np.moveaxis(arrays["x"], 1, -1))
    return arrays


def _calls(case, arrays):
    """(F call, API call or None, torch call) on torch tensors / NumPy arrays."""
    import torch
    import torch.nn.functional as TF

    import fastconv
    import fastconv.functional as F

    x = torch.from_numpy(arrays["x"])
    if case.channels_last:
        x = torch.from_numpy(arrays["x_nhwc"]).permute(0, 3, 1, 2)
    params = [torch.from_numpy(arrays[name]) for name in ("w", "b") if name in arrays]
    options = dict(case.options)
    if case.op.startswith("max_unpool"):
        pool = getattr(TF, case.op.replace("max_unpool", "max_pool"))
        pooled, indices = pool(x, case.options["kernel_size"], return_indices=True)
        x, params = pooled, [indices]
    if case.op == "pad":
        pad = options.pop("pad")
        params = [pad]
    mine = getattr(F, case.op)
    theirs = getattr(TF, case.op)
    api = None if case.api is None else (lambda: case.api(fastconv, arrays))
    return (lambda: mine(x, *params, **options), api, lambda: theirs(x, *params, **options))


def _numpy(value):
    if isinstance(value, tuple):
        return np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in value])
    return np.asarray(value.contiguous() if hasattr(value, "contiguous") else value,
                      np.float64)


def _torch_then_idle(call):
    def run():
        call()
        time.sleep(TORCH_IDLE_SECONDS)
    return run


def run_case(case, repeat=7, target=timing.SAMPLE_SECONDS, seed=0):
    """Check ``F`` against torch and time F, the API call and torch; never raises."""
    result = TorchResult(case.name, case.op, " ".join(
        f"{name}{list(shape)}" for name, shape in case.shapes.items()))
    try:
        functional, api, peer = _calls(case, _arrays(case, np.random.default_rng(seed)))
        got, want = _numpy(functional()), _numpy(peer())
        if got.shape == want.shape:
            with np.errstate(invalid="ignore"):
                diff = np.where(got == want, 0.0, np.abs(got - want))
            result.max_abs_error = float(np.nanmax(diff)) if diff.size else 0.0
        else:
            result.max_abs_error = math.inf
        allowed = 0.0 if case.exact else tolerance(np.float32, want)
        result.equal = result.max_abs_error <= allowed
        calls = [functional] + ([api] if api else [])
        medians = time_alternating(calls, repeat, target, untimed_after=peer)
        result.functional_ms = medians[0] * 1e3
        if api:
            result.api_ms = medians[1] * 1e3
        result.torch_ms = medians[-1] * 1e3
    except Exception as error:  # noqa: BLE001  (a failing case is a row)
        result.error = f"{type(error).__name__}: {error}"
    return result


def time_alternating(calls, repeat, target, untimed_after):
    """Medians of ``calls`` and of ``untimed_after`` (torch), sampled alternately; each torch
    sample is followed by an idle wait that is not timed."""
    everything = list(calls) + [untimed_after]
    for call in everything:
        call()
    time.sleep(TORCH_IDLE_SECONDS)
    numbers = [timing._calls_per_sample(call, target) for call in everything]
    samples = [[] for _ in everything]
    for round_ in range(max(1, repeat)):
        # fastconv's calls in turns (first, then second, ...), each after an untimed call:
        # the first sample after torch's idle would otherwise pay the threads' wake-up.
        order = list(range(len(calls)))
        order = order[round_ % len(order):] + order[:round_ % len(order)]
        for index in order + [len(calls)]:
            everything[index]()
            samples[index].append(timing._sample(everything[index], numbers[index]))
        time.sleep(TORCH_IDLE_SECONDS)  # torch ran last: its pool's spin must not be charged
    return [statistics.median(s) for s in samples]


def run(cases=CASES, repeat=7, progress=None):
    import torch

    torch.set_num_threads(_threads())
    results = []
    for case in cases:
        if progress:
            progress(case.name)
        results.append(run_case(case, repeat))
    return results


def _threads():
    from .cpu.threads import get_num_threads

    return get_num_threads()


def format_table(results):
    header = ("case", "op", "equal", "F ms", "tf.nn API ms", "F / API", "torch ms",
              "torch / F")
    rows = []
    for r in results:
        fmt = (lambda v, spec: "-" if not math.isfinite(v) else format(v, spec))
        rows.append((r.case, r.op, "ERROR" if r.error else ("yes" if r.equal else "NO"),
                     fmt(r.functional_ms, ".3f"), fmt(r.api_ms, ".3f"),
                     fmt(r.front_end_cost, ".2f"), fmt(r.torch_ms, ".3f"),
                     fmt(r.speedup, ".2f")))
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in
                       enumerate(zip(row, widths))).rstrip()
             for row in [header, tuple("-" * w for w in widths)] + rows]
    lines += [f"ERROR in {r.case}: {r.error}" for r in results if r.error]
    return "\n".join(lines)


def summary(results):
    from .compare import geometric_mean

    ok = [r for r in results if not r.error]
    with_api = [r for r in ok if math.isfinite(r.api_ms)]
    worst = max(with_api, key=lambda r: r.front_end_cost, default=None)
    return (f"{sum(r.equal for r in results)}/{len(results)} cases equal to torch; F / tf.nn "
            f"API geometric mean {geometric_mean(r.front_end_cost for r in with_api):.2f}"
            + (f", worst {worst.front_end_cost:.2f} ({worst.case})" if worst else "")
            + f"; torch / F geometric mean {geometric_mean(r.speedup for r in ok):.2f}")
