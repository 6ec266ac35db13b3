"""The GPU equality grid: every op of the op table on device-resident data, against fastconv's
CPU result and, where PyTorch runs on the GPU and has the op, against PyTorch/cuDNN (TF32 off).

On a GPU machine, before timing anything with ``benchmarks/gpu_check.py``::

    NUMBA_ENABLE_CUDASIM=0 python -m pytest tests/cuda -m gpu

Three tiers, each case its own test id (``tier-case-layout-dtype``):

* ``smoke``: one or two cases per op on a few pixels, with conftest's tiny tiles (so they span
  several blocks). They also run under ``NUMBA_ENABLE_CUDASIM=1`` (in ``make test``), so the
  grid's own code cannot rot without a GPU.
* ``full``: every op over layouts, dtypes, strides, dilations, paddings, groups and
  activations, with the configured (real) launch shapes. Needs a real GPU.
* ``large``: layers of real networks (many blocks of full tiles). Needs a real GPU.

Every case checks the result kind too: numba device arrays in, a numba device array out. The
comparisons use the suite's one rule (:mod:`fastconv.testing`): exact for the ops that only
select or copy values, the dtype's tolerance otherwise. ``test_interop_round_trip`` checks the
array kinds on the real libraries (numba, NumPy with ``device="cuda"``, CuPy, torch).
"""

import importlib.util
from dataclasses import dataclass

import numba
import numpy as np
import pytest

from fastconv import config, ops
from fastconv.testing import EXACT_OPS, assert_close, assert_exact, tolerance

pytestmark = pytest.mark.gpu

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
F32, F64 = np.float32, np.float64
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
ACTIVATIONS = (None, "relu", "relu6", "sigmoid", "tanh")
#: The forward convolutions (filters in TF's layout; torch's F.conv1d/2d/3d).
CONVS = ("conv1d", "conv2d", "conv3d", "convolution", "depthwise_conv2d")
#: tf.nn's atrous convs take ``value`` and no data_format: channels-last only.
CHANNELS_LAST_ONLY = ("atrous_conv2d", "atrous_conv2d_transpose")
#: The launch shapes of this process (environment or defaults), read at import, before
#: conftest's ``tiny_launch`` shrinks them for each test.
CONFIGURED = {name: getattr(config, name) for name in dir(config) if name.startswith("CUDA_")}
NEEDS_GPU = {
    "full": "the full grid needs a real GPU (the simulator runs every GPU thread in Python; "
            "the smoke grid stands in for it)",
    "large": "large shapes need a real GPU (millions of GPU threads, each run in Python by "
             "the simulator)",
}
#: The comparison with cuDNN allows 10x the suite's tolerance (as gpu_check's grid did): cuDNN
#: picks its own algorithm per layer (FFT, Winograd, implicit GEMM) even with TF32 off, and
#: its float32 rounding is not held to fastconv's rule, which bounds fastconv's own algorithms
#: (``test_matches_cpu``). The exact ops stay exact.
CUDNN_TOLERANCE_FACTOR = 10


@dataclass(frozen=True)
class Case:
    """One call of ``op``: ``arrays`` maps parameter names to channels-last shapes (``input``
    is moved to channels-first for the NC.. layouts), ``options`` holds the other keyword
    arguments (``data_format`` and ``device`` are added per test)."""

    tier: str
    name: str
    op: str
    arrays: dict
    options: dict

    @property
    def rank(self):
        return len(self.arrays["input"]) - 2


def _conv_cases(tier):
    sizes = {1: (13,), 2: (9, 11), 3: (5, 6, 7)} if tier == "full" else \
        {1: (7,), 2: (5, 6), 3: (3, 4, 4)}
    kernels = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
    group_in, group_out = (5, 12) if tier == "full" else (3, 5)
    full = [(padding, stride, dilation, groups) for padding in ("SAME", "VALID", "explicit")
            for stride, dilation in ((1, 1), (2, 1), (1, 2)) for groups in (1, 2)]
    # (padding, stride, dilation, groups): dilation on the cheapest rank to simulate, one
    # case for the slowest.
    smoke = {1: [("SAME", 1, 2, 1), ("explicit", 2, 2, 2)],
             2: [("SAME", 1, 1, 1), ("explicit", 2, 1, 2)], 3: [("explicit", 2, 1, 2)]}
    cases = []
    for n in (1, 2, 3):
        for i, (padding, stride, dilation, groups) in enumerate(
                full if tier == "full" else smoke[n]):
            pad = tuple((1, 2) for _ in range(n)) if padding == "explicit" else padding
            batch = 1 if tier == "smoke" and n == 3 else 2
            arrays = {"input": (batch, *sizes[n], group_in * groups),
                      "filters": kernels[n] + (group_in, group_out * groups)}
            if tier == "full":  # every activation, with and without bias
                activation, bias = ACTIVATIONS[(i + n) % len(ACTIVATIONS)], i % 3 != 2
            else:
                activation, bias = ("relu", "sigmoid", "tanh")[n - 1], True
            if bias:
                arrays["bias"] = (group_out * groups,)
            cases.append(Case(
                tier, f"conv{n}d-{padding}-s{stride}-d{dilation}-g{groups}-{activation or 'none'}"
                      f"{'-bias' if bias else ''}", f"conv{n}d", arrays,
                {"stride" if n == 1 else "strides": stride, "padding": pad,
                 "dilations": dilation, "activation": activation}))
    # The rank-generic conv (tf.nn.convolution): the input's rank picks the 1-D/2-D/3-D conv.
    for n in (1, 2, 3) if tier == "full" else (1,):
        cases.append(Case(
            tier, f"convolution-rank{n + 2}", "convolution",
            {"input": (2, *sizes[n], group_in * 2), "filters": kernels[n] + (group_in, 6),
             "bias": (6,)},
            {"strides": 2, "padding": "SAME", "dilations": 1, "activation": "relu6"}))
    return cases


def _other_cases(tier):
    full = tier == "full"
    cases = []
    for multiplier, stride, dilation in ((1, 2, 1), (2, 2, 1), (2, 1, 2)) if full else \
            ((2, 2, 1),):
        shape = (2, 9, 10, 4) if full else (2, 5, 6, 3)
        fused = multiplier == 2 and stride == 2  # bias and activation fused on one case
        arrays = {"input": shape, "filter": (3, 3, shape[-1], multiplier)}
        if fused:
            arrays["bias"] = (shape[-1] * multiplier,)
        cases.append(Case(tier, f"depthwise-m{multiplier}-s{stride}-d{dilation}"
                                f"{'-bias-relu' if fused else ''}", "depthwise_conv2d", arrays,
                          {"strides": stride, "padding": "SAME", "dilations": dilation,
                           "activation": "relu" if fused else None}))
    for stride, padding in ((1, "SAME"), (1, "VALID"), (2, "SAME"), (2, "VALID")) if full else \
            ((2, "SAME"),):
        shape, out_channels = ((2, 5, 6, 4), 6) if full else ((2, 3, 4, 4), 3)
        out = [size * stride if padding == "SAME" else (size - 1) * stride + 3
               for size in shape[1:3]]
        cases.append(Case(tier, f"conv2d_transpose-s{stride}-{padding}", "conv2d_transpose",
                          {"input": shape, "filters": (3, 3, out_channels, shape[-1])},
                          {"output_shape": (shape[0], *out, out_channels), "strides": stride,
                           "padding": padding}))
    # The other transposed convs (1-D, 3-D, rank-generic) and the atrous convs.
    for op, shape, w, out, stride, padding in (
            ("conv1d_transpose", (2, 6, 4) if full else (1, 3, 3), (3, 3, 4 if full else 3),
             (2, 12, 3) if full else (1, 6, 3), 2, "SAME"),
            ("conv3d_transpose", (1, 3, 4, 3, 4) if full else (1, 2, 2, 2, 2),
             (2, 3, 2, 3, 4 if full else 2), (1, 6, 8, 6, 3) if full else (1, 4, 4, 4, 3), 2,
             "SAME"),
            ("conv_transpose", (2, 4, 3), (3, 2, 3), (2, 9, 2), 2, ((1, 0),))):
        shown = padding if isinstance(padding, str) else "explicit"
        cases.append(Case(tier, f"{op}-s{stride}-{shown}", op, {"input": shape, "filters": w},
                          {"output_shape": out, "strides": stride, "padding": padding}))
    channels = 3 if full else 2
    cases.append(Case(tier, "separable_conv2d-s2-bias-relu", "separable_conv2d",
                      {"input": (1, 5, 6, channels), "depthwise_filter": (3, 3, channels, 2),
                       "pointwise_filter": (1, 1, 2 * channels, 3), "bias": (3,)},
                      {"strides": 2, "padding": "SAME", "activation": "relu"}))
    cases.append(Case(tier, "atrous_conv2d-r2", "atrous_conv2d",
                      {"input": (1, 7, 6, channels), "filters": (3, 3, channels, 4)},
                      {"rate": 2, "padding": "SAME"}))
    cases.append(Case(tier, "atrous_conv2d_transpose-r2", "atrous_conv2d_transpose",
                      {"input": (1, 5, 4, 3), "filters": (3, 3, 2, 3)},
                      {"output_shape": (1, 5, 4, 2), "rate": 2, "padding": "SAME"}))
    sizes = {1: (13,), 2: (9, 11), 3: (5, 6, 7)} if full else {1: (7,), 2: (5, 6), 3: (3, 4, 4)}
    for n in (1, 2, 3):
        for kind in ("max", "avg"):
            for padding in ("SAME", "VALID") if full else ("SAME" if kind == "max" else "VALID",):
                cases.append(Case(tier, f"{kind}_pool{n}d-{padding}", f"{kind}_pool{n}d",
                                  {"input": (2, *sizes[n], 5 if full else 3)},
                                  {"ksize": 2 if n == 3 else 3, "strides": 2,
                                   "padding": padding}))
    for kind, n, padding in (("max", 2, "VALID"), ("avg", 3, "SAME")) if full else \
            (("max", 1, "SAME"), ("avg", 2, "VALID")):  # the rank-generic pools
        cases.append(Case(tier, f"{kind}_pool-rank{n + 2}-{padding}", f"{kind}_pool",
                          {"input": (2, *sizes[n], 5 if full else 3)},
                          {"ksize": 2, "strides": 2, "padding": padding}))
    for kind in ("max", "avg"):
        for keepdims in (False, True) if full else (kind == "avg",):
            cases.append(Case(tier, f"global_{kind}_pool2d{'-keepdims' if keepdims else ''}",
                              f"global_{kind}_pool2d",
                              {"input": (2, 9, 11, 37) if full else (2, 4, 5, 6)},
                              {"keepdims": keepdims}))
    cases.append(Case(tier, "zero_pad2d", "zero_pad2d",
                      {"input": (2, 9, 11, 3) if full else (1, 4, 5, 3)},
                      {"padding": ((1, 2), (3, 0))}))
    # The window maxima (values and indices exact) and tf.nn.pool (dilated: phases).
    image = (2, 9, 11, 5) if full else (1, 5, 6, 3)
    for include_batch, index_dtype in ((False, np.int64), (True, np.int32)) if full else \
            ((True, np.int64),):
        cases.append(Case(tier, f"max_pool_with_argmax-{np.dtype(index_dtype).name}"
                                f"{'-batch' if include_batch else ''}", "max_pool_with_argmax",
                          {"input": image}, {"ksize": 3, "strides": 2, "padding": "SAME",
                                             "output_dtype": index_dtype,
                                             "include_batch_in_index": include_batch}))
    for op in ("dilation2d", "erosion2d"):
        for strides, padding, dilations in ((1, "SAME", 2), (2, "VALID", 1)) if full else \
                (((1, "SAME", 2),) if op == "dilation2d" else ((2, "VALID", 1),)):
            cases.append(Case(tier, f"{op}-s{strides}-{padding}-r{dilations}", op,
                              {"input": image, "filters": (3, 2, image[-1])},
                              {"strides": strides, "padding": padding,
                               "dilations": dilations}))
    for kind, dilations in (("MAX", [2, 1]), ("AVG", None)):
        cases.append(Case(tier, f"pool-{kind}-{'dilated' if dilations else 'plain'}", "pool",
                          {"input": image}, {"window_shape": [2, 3], "pooling_type": kind,
                                             "dilations": dilations}))
    return cases


def _large_cases():
    same_relu = {"strides": 1, "padding": "SAME", "activation": "relu"}
    return [
        Case("large", "conv2d-resnet-3x3-64-64", "conv2d",
             {"input": (8, 56, 56, 64), "filters": (3, 3, 64, 64), "bias": (64,)}, same_relu),
        Case("large", "conv2d-photo-3-32", "conv2d",
             {"input": (1, 427, 640, 3), "filters": (3, 3, 3, 32), "bias": (32,)}, same_relu),
        Case("large", "conv2d-stem-7x7-s2", "conv2d",
             {"input": (4, 224, 224, 3), "filters": (7, 7, 3, 64)},
             {"strides": 2, "padding": "SAME"}),
        Case("large", "conv3d", "conv3d",
             {"input": (2, 16, 32, 32, 16), "filters": (3, 3, 3, 16, 32)},
             {"strides": 1, "padding": "SAME"}),
        Case("large", "depthwise-3x3", "depthwise_conv2d",
             {"input": (8, 112, 112, 32), "filter": (3, 3, 32, 1)},
             {"strides": 1, "padding": "SAME"}),
        Case("large", "conv2d_transpose-s2", "conv2d_transpose",
             {"input": (4, 28, 28, 64), "filters": (3, 3, 32, 64)},
             {"output_shape": (4, 56, 56, 32), "strides": 2, "padding": "SAME"}),
        Case("large", "max_pool2d", "max_pool2d", {"input": (32, 112, 112, 64)},
             {"ksize": 3, "strides": 2, "padding": "SAME"}),
        Case("large", "avg_pool2d", "avg_pool2d", {"input": (32, 112, 112, 64)},
             {"ksize": 2, "strides": 2, "padding": "VALID"}),
        Case("large", "global_avg_pool2d", "global_avg_pool2d", {"input": (32, 56, 56, 256)},
             {}),
    ]


CASES = [case for tier in ("smoke", "full") for case in _conv_cases(tier) + _other_cases(tier)]
CASES += _large_cases()


def _layout_shape(shape, channels_first):
    return (shape[0], shape[-1], *shape[1:-1]) if channels_first else tuple(shape)


def _params(cases):
    """``(case, channels_first, dtype)`` for both layouts and both dtypes; the full and large
    tiers skip under the simulator."""
    params = []
    for case in cases:
        marks = [pytest.mark.skip(reason=NEEDS_GPU[case.tier])] if (
            SIMULATOR and case.tier in NEEDS_GPU) else []
        for channels_first in (False,) if case.op in CHANNELS_LAST_ONLY else (False, True):
            for dtype in (F32, F64):
                fmt = LAYOUTS[case.rank][channels_first]
                params.append(pytest.param(case, channels_first, dtype, marks=marks,
                                           id=f"{case.tier}-{case.name}-{fmt}-"
                                              f"{np.dtype(dtype).name}"))
    return params


@pytest.fixture(autouse=True)
def tiny_launch(tiny_launch, request, monkeypatch):
    """Overrides conftest's: the smoke tier keeps its tiny tiles; the full and large tiers run
    with the configured launch shapes, the ones users get."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if "case" in params and params["case"].tier != "smoke":
        for name in tiny_launch:
            monkeypatch.setattr(config, name, CONFIGURED[name])
    return tiny_launch


def _arrays(case, channels_first, dtype, rand):
    """Host arrays of the case, ``input`` in the chosen layout."""
    arrays = {name: rand(shape, dtype) for name, shape in case.arrays.items()}
    if channels_first:
        arrays["input"] = np.ascontiguousarray(np.moveaxis(arrays["input"], -1, 1))
    return arrays


def _call(case, arrays, options, **extra):
    """The op on ``arrays`` (the atrous convs take ``value`` and no data_format)."""
    arrays, options = dict(arrays), dict(options, **extra)
    if case.op in CHANNELS_LAST_ONLY:
        arrays["value"] = arrays.pop("input")
        options.pop("data_format")
    if case.op == "erosion2d":  # tf.nn.erosion2d's argument is ``value``
        arrays["value"] = arrays.pop("input")
    return ops.get(case.op).function(**arrays, **options)


def _options(case, channels_first):
    options = dict(case.options, data_format=LAYOUTS[case.rank][channels_first])
    if "output_shape" in options:
        options["output_shape"] = _layout_shape(options["output_shape"], channels_first)
    return options


def _is_numba_device_array(value):
    return not isinstance(value, np.ndarray) and type(value).__module__.startswith("numba")


def _run_on_device(case, arrays, options):
    """The op on device-resident copies of ``arrays``; the result must stay on the device."""
    from numba import cuda

    got = _call(case, {name: cuda.to_device(a) for name, a in arrays.items()}, options)
    results = got if isinstance(got, tuple) else (got,)  # (output, argmax)
    for result in results:
        assert _is_numba_device_array(result), (
            f"numba device arrays in gave a {type(result).__module__}."
            f"{type(result).__name__} out")
    hosted = tuple(result.copy_to_host() for result in results)
    return hosted if isinstance(got, tuple) else hosted[0]


@pytest.mark.parametrize("case, channels_first, dtype", _params(CASES))
def test_matches_cpu(case, channels_first, dtype, rand):
    arrays = _arrays(case, channels_first, dtype, rand)
    options = _options(case, channels_first)
    got = _run_on_device(case, arrays, options)
    expected = _call(case, arrays, options, device="cpu")
    (assert_exact if case.op in EXACT_OPS else assert_close)(got, expected, dtype)


def test_every_op_in_every_tier():
    """The smoke and full grids cover every op of the op table."""
    for tier in ("smoke", "full"):
        covered = {case.op for case in CASES if case.tier == tier}
        assert not set(ops.NAMES) - covered, (
            f"no {tier} case for {sorted(set(ops.NAMES) - covered)}: add them to the grid here")
        assert covered <= set(ops.NAMES), f"{sorted(covered - set(ops.NAMES))} are not ops"


# ----------------------------------------------------------------------------- PyTorch/cuDNN

def _torch_supported(case):
    """Whether :func:`_torch_result` computes ``case`` (PyTorch has the op and the padding):
    decided from the case alone, so the cuDNN test ids are the same with or without torch."""
    op, padding = case.op, case.options.get("padding")
    if op in CONVS:
        strides = case.options.get("strides", case.options.get("stride"))
        dilation = case.options.get("dilations") or 1
        kernel = case.arrays.get("filters", case.arrays.get("filter"))[:case.rank]
        if padding == "SAME":  # symmetric only: stride 1 and an even (k - 1) * d everywhere
            return strides == 1 and all((k - 1) * dilation % 2 == 0 for k in kernel)
        return padding == "VALID" or all(a == b for a, b in padding)
    if op == "conv2d_transpose":  # SAME crops the VALID result: needs kernel >= stride
        return all(k >= case.options["strides"] for k in case.arrays["filters"][:2])
    if op in ("global_max_pool2d", "global_avg_pool2d", "zero_pad2d"):
        return True
    if op in ("conv1d_transpose", "conv3d_transpose", "conv_transpose", "separable_conv2d",
              "max_pool_with_argmax", "dilation2d", "erosion2d", "pool") + CHANNELS_LAST_ONLY:
        return False  # no cuDNN rule written yet: compared with the CPU only
    if case.op.startswith("max_pool"):
        return True  # SAME: -inf padding never wins a window
    if case.op.startswith("avg_pool"):
        return padding == "VALID"  # TF's SAME divides by the real cells only
    raise AssertionError(f"no PyTorch rule for {op}")


def _torch_result(torch, case, arrays, options, channels_first):
    """PyTorch computing ``case`` on the GPU, in the case's layout, as a NumPy array."""
    F = torch.nn.functional
    x = arrays["input"]
    n = case.rank
    t = torch.from_numpy(x if channels_first else np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    t = t.cuda()
    op = case.op

    def weight(w, order):
        return torch.from_numpy(np.ascontiguousarray(w.transpose(order))).cuda()

    if op in CONVS:
        w = arrays.get("filters")
        channels = x.shape[1 if channels_first else -1]
        if op == "depthwise_conv2d":
            w = arrays["filter"].reshape(*arrays["filter"].shape[:2], 1, -1)
        groups = channels // w.shape[-2]
        dilation = options.get("dilations") or 1
        strides = options.get("strides", options.get("stride"))
        if options["padding"] == "SAME":
            pad = tuple((k - 1) * dilation // 2 for k in w.shape[:n])
        elif options["padding"] == "VALID":
            pad = 0
        else:  # symmetric explicit pairs
            pad = tuple(before for before, _ in options["padding"])
        bias = arrays.get("bias")
        y = getattr(F, f"conv{n}d")(
            t, weight(w, (n + 1, n, *range(n))),
            None if bias is None else torch.from_numpy(bias).cuda(), strides, pad, dilation,
            groups)
        activation = options.get("activation")
        if activation is not None:
            y = {"relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid,
                 "tanh": torch.tanh}[activation](y)
    elif op == "conv2d_transpose":
        # The VALID transposed conv, cropped to TF's padding of the forward conv.
        stride = options["strides"]
        w = arrays["filters"]
        y = F.conv_transpose2d(t, weight(w, (3, 2, 0, 1)), None, stride)
        out = options["output_shape"]
        out = out if channels_first else (out[0], out[-1], *out[1:-1])  # NC.. order
        if options["padding"] == "SAME":
            for dim, (size, k) in enumerate(zip(out[2:], w.shape[:2])):
                in_size = t.shape[2 + dim]
                before = max((in_size - 1) * stride + k - size, 0) // 2
                y = y.narrow(2 + dim, before, size)
    elif op.startswith(("max_pool", "avg_pool")):
        kind = "max" if op.startswith("max") else "avg"
        ksize, strides = options["ksize"], options["strides"]
        if options["padding"] == "SAME":  # max only: -inf padding never wins a window
            pads = []
            for size in reversed(t.shape[2:]):  # F.pad lists the last dim first
                out = -(-size // strides)
                total = max((out - 1) * strides + ksize - size, 0)
                pads += [total // 2, total - total // 2]
            t = F.pad(t, pads, value=-np.inf)
        y = getattr(F, f"{kind}_pool{n}d")(t, ksize, strides)
    elif op.startswith("global_"):
        dims = tuple(range(2, t.dim()))
        keepdims = options.get("keepdims", False)
        y = t.amax(dim=dims, keepdim=keepdims) if "max" in op else t.mean(dim=dims,
                                                                             keepdim=keepdims)
    else:  # zero_pad2d
        (top, bottom), (left, right) = options["padding"]
        y = F.pad(t, (left, right, top, bottom))
    y = y.cpu().numpy()
    if not channels_first and y.ndim > 2:
        y = np.moveaxis(y, 1, -1)
    return y


@pytest.fixture(scope="module")
def torch():
    """PyTorch on the GPU with TF32 off (restored afterwards)."""
    torch = pytest.importorskip("torch", reason="the cuDNN comparison needs PyTorch")
    if not torch.cuda.is_available():
        pytest.skip("the cuDNN comparison needs PyTorch with CUDA: torch.cuda.is_available() "
                    "is False")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _cudnn_params():
    params = _params([case for case in CASES if _torch_supported(case)])
    if SIMULATOR:  # the simulator's device arrays are not torch's
        skip = pytest.mark.skip(reason="the cuDNN comparison needs PyTorch on a real GPU")
        params = [pytest.param(*p.values, marks=[skip], id=p.id) for p in params]
    return params


@pytest.mark.parametrize("case, channels_first, dtype", _cudnn_params())
def test_matches_cudnn(case, channels_first, dtype, rand, torch):
    arrays = _arrays(case, channels_first, dtype, rand)
    options = _options(case, channels_first)
    got = _run_on_device(case, arrays, options)
    theirs = _torch_result(torch, case, arrays, options, channels_first)
    if case.op in EXACT_OPS:
        assert_exact(got, theirs, dtype)
        return
    assert got.shape == theirs.shape, f"shape {got.shape}, cuDNN's {theirs.shape}"
    worst = float(np.max(np.abs(got.astype(F64) - theirs.astype(F64)), initial=0.0))
    bound = CUDNN_TOLERANCE_FACTOR * tolerance(dtype, theirs)
    assert worst <= bound, f"max abs error vs cuDNN {worst:.3e} > {bound:.3e}"


# ----------------------------------------------------------------------------- interop

def _cupy():
    if SIMULATOR:
        pytest.skip("CuPy needs a real GPU (tests/cuda/test_cuda_interop.py checks the "
                    "handling with a stand-in)")
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    import cupy

    return (cupy.asarray, lambda y: isinstance(y, cupy.ndarray), cupy.asnumpy)


def _torch_kind(torch):
    return (lambda x: torch.from_numpy(x).cuda(),
            lambda y: isinstance(y, torch.Tensor) and y.is_cuda, lambda y: y.cpu().numpy())


@pytest.mark.parametrize("kind", ["numba", "numpy", "cupy", "torch"])
def test_interop_round_trip(kind, rand, request):
    """conv2d with host filters: numba in -> numba out, NumPy with ``device="cuda"`` -> NumPy,
    CuPy in -> CuPy out, torch CUDA tensor in -> torch CUDA tensor out."""
    from numba import cuda

    conv2d = ops.get("conv2d").function
    x, w = rand((2, 5, 6, 3), F32), rand((3, 3, 3, 5), F32)
    if kind == "numba":
        make, is_kind, to_host = cuda.to_device, _is_numba_device_array, lambda y: y.copy_to_host()
    elif kind == "numpy":
        make, is_kind, to_host = (lambda a: a), (lambda y: isinstance(y, np.ndarray)), np.asarray
    elif kind == "cupy":
        make, is_kind, to_host = _cupy()
    else:
        if SIMULATOR:
            pytest.skip("torch CUDA tensors need a real GPU (tests/cuda/test_cuda_interop.py "
                        "checks the handling with a stand-in)")
        make, is_kind, to_host = _torch_kind(request.getfixturevalue("torch"))
    y = conv2d(input=make(x), filters=w, strides=1, padding="SAME", device="cuda")
    assert is_kind(y), f"{kind} in gave a {type(y).__module__}.{type(y).__name__} out"
    assert_close(to_host(y), conv2d(input=x, filters=w, strides=1, padding="SAME",
                                    device="cpu"), F32)
