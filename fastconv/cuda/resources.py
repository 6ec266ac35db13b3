"""Compile the CUDA kernels for real, without a GPU: PTX from NVVM, resources from ptxas.

The simulator never types, lowers or compiles a kernel. This module does, with NVIDIA's pip
wheels (``nvidia-cuda-nvcc-cu12``: libNVVM, libdevice and ptxas; ``nvidia-cuda-nvrtc-cu12``,
which numba-cuda asks for the supported architectures), and no driver:

1. :func:`compile_ptx` builds a recorded kernel (a :class:`.kernels.KernelSpec`) from its
   factory and has numba-cuda type, lower and compile it to PTX for each compute capability;
2. :func:`ptxas_resources` assembles the PTX with ``ptxas -v`` and reads the registers, static
   shared memory, stack frame and spills of the kernel;
3. :func:`occupancy` turns them into the fraction of an SM's warps that can be resident (the
   CUDA occupancy calculator's rules for compute capability 8.0 and 9.0), and :func:`problems`
   lists what would fail or spill at launch.

``python -m fastconv.cuda.resources`` prints the table for the kernels the workloads build
(:func:`workload_specs`) and any inventory files given (see ``--help``).

One stub is needed: numba-cuda asks the current device for its compute capability while it
types a call to a ``@cuda.jit(device=True)`` function (the value only matters before sm_60),
so :func:`compile_ptx` answers that question with the capability being compiled for.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

#: What the checks and the table compile for: A100 (sm_80) and H100/H200 (sm_90).
CAPABILITIES = ((8, 0), (9, 0))

#: Per-SM limits of the occupancy calculator, per compute capability.
_LIMITS = {
    (8, 0): {"warps": 64, "blocks": 32, "registers": 65536, "shared": 167936},
    (9, 0): {"warps": 64, "blocks": 32, "registers": 65536, "shared": 233472},
}
REGISTER_UNIT = 256  # registers are allocated per warp in units of 256
SHARED_UNIT = 128  # and shared memory per block in units of 128 bytes
SHARED_RESERVED = 1024  # bytes the runtime keeps per block (sm_80 and later)
STATIC_SHARED_LIMIT = 48 * 1024
MAX_THREADS = 1024


@dataclass(frozen=True)
class Resources:
    """What ptxas reports for one kernel on one architecture."""

    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int


def toolchain_unavailable_reason():
    """None when NVVM and ptxas can compile here, else a sentence saying what is missing.

    Examples
    --------
    >>> from fastconv.cuda import resources
    >>> reason = resources.toolchain_unavailable_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as exc:  # noqa: BLE001 - no numba-cuda, or no libNVVM
        return (f"libNVVM cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())})"
                f"; install nvidia-cuda-nvcc-cu12 and nvidia-cuda-nvrtc-cu12")
    if ptxas_path() is None:
        return "ptxas was not found (install nvidia-cuda-nvcc-cu12, or put ptxas on PATH)"
    return None


def ptxas_path():
    """ptxas from the nvidia-cuda-nvcc wheel beside numba, else from PATH, else None.

    Examples
    --------
    >>> from fastconv.cuda import resources
    >>> path = resources.ptxas_path()
    >>> path is None or path.endswith("ptxas")
    True
    """
    for root in sys.path:
        found = glob.glob(os.path.join(root, "nvidia", "cuda_nvcc", "bin", "ptxas"))
        if found and os.access(found[0], os.X_OK):
            return found[0]
    return shutil.which("ptxas")


@contextlib.contextmanager
def _capability_answered(cc):
    """Answer numba-cuda's ``get_current_device().compute_capability`` with ``cc``."""
    import types

    from numba.cuda import dispatcher

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc, id=0)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def compile_ptx(spec, capabilities=CAPABILITIES):
    """Return ``{cc: ptx}``: the kernel ``spec`` names, compiled by NVVM for each capability.

    The kernel is typed and lowered once (for the lowest capability: the kernels use nothing
    newer) and its LLVM IR compiled by NVVM for each, with the kernel's launch bounds.

    Examples
    --------
    Needs the toolchain (see :func:`toolchain_unavailable_reason`), no GPU:

    >>> from fastconv.cuda import resources
    >>> spec = resources.workload_specs()[0]                       # doctest: +SKIP
    >>> ptx = resources.compile_ptx(spec)                          # doctest: +SKIP
    >>> sorted(ptx), ".maxntid" in ptx[(9, 0)]                     # doctest: +SKIP
    ([(8, 0), (9, 0)], True)
    """
    from numba.cuda import compiler

    kernel = spec.build()
    dispatcher = kernel.dispatcher
    launch_bounds = dispatcher.targetoptions.get("launch_bounds")
    first = min(capabilities)
    with _capability_answered(first):
        library, _ = compiler._compile_pyfunc_with_fixup(
            dispatcher.py_func, spec.argtypes, device=False, abi="numba", cc=first,
            launch_bounds=launch_bounds)
        return {cc: "\n".join(library.get_asm_strs(cc=cc)) for cc in capabilities}


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def ptxas_resources(ptx, cc):
    """Assemble ``ptx`` for ``sm_XY`` with ``ptxas -v`` and return the kernel's
    :class:`Resources` (raises RuntimeError with ptxas's output if it fails).

    Examples
    --------
    >>> from fastconv.cuda import resources
    >>> ptx = resources.compile_ptx(resources.workload_specs()[0])  # doctest: +SKIP
    >>> resources.ptxas_resources(ptx[(9, 0)], (9, 0))              # doctest: +SKIP
    Resources(registers=148, shared_bytes=3072, stack_bytes=0, spill_stores=0, spill_loads=0)
    """
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        done = subprocess.run([ptxas_path(), "-v", f"-arch=sm_{cc[0]}{cc[1]}", source, "-o",
                               os.path.join(folder, "kernel.cubin")],
                              capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed for sm_{cc[0]}{cc[1]}: {done.stderr.strip()}")
    return parse_ptxas(done.stderr)


def parse_ptxas(report):
    """The entry function's :class:`Resources` from ``ptxas -v``'s report.

    Examples
    --------
    >>> from fastconv.cuda import resources
    >>> resources.parse_ptxas(
    ...     "ptxas info    : Compiling entry function 'k' for 'sm_90'\\n"
    ...     "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\\n"
    ...     "ptxas info    : Used 58 registers, used 0 barriers, 2048 bytes smem\\n")
    Resources(registers=58, shared_bytes=2048, stack_bytes=0, spill_stores=0, spill_loads=0)
    """
    start = _ENTRY.search(report)
    if start is None:
        raise RuntimeError(f"no entry function in ptxas's report: {report!r}")
    # The entry's own block runs to the next "Compiling entry function" (device functions
    # that were not inlined report their own stack frames inside it).
    following = _ENTRY.search(report, start.end())
    block = report[start.end():following.start() if following else len(report)]
    stack = _STACK.search(block)
    used = _USED.search(block)
    smem = _SMEM.search(block)
    return Resources(registers=int(used.group(1)) if used else 0,
                     shared_bytes=int(smem.group(1)) if smem else 0,
                     stack_bytes=int(stack.group(1)) if stack else 0,
                     spill_stores=int(stack.group(2)) if stack else 0,
                     spill_loads=int(stack.group(3)) if stack else 0)


def _round_up(value, unit):
    return -(-value // unit) * unit


def resident_blocks(resources, threads, cc):
    """Blocks of ``threads`` threads one SM holds at once (0: the kernel cannot launch).

    Examples
    --------
    >>> from fastconv.cuda.resources import Resources, resident_blocks
    >>> resident_blocks(Resources(128, 0, 0, 0, 0), 256, (9, 0))  # 2 x 8 warps x 4096 regs
    2
    >>> resident_blocks(Resources(129, 0, 0, 0, 0), 256, (9, 0))  # over the cliff
    1
    """
    return max(0, min(_block_limits(resources, threads, cc).values()))


def _block_limits(resources, threads, cc):
    """Blocks per SM each resource allows: {"blocks", "warps", "registers", "shared"}."""
    limits = _LIMITS[cc]
    warps = -(-threads // 32)
    per_warp = _round_up(max(resources.registers, 1) * 32, REGISTER_UNIT)
    shared = _round_up(resources.shared_bytes + SHARED_RESERVED, SHARED_UNIT)
    return {"blocks": limits["blocks"], "warps": limits["warps"] // warps,
            "registers": (limits["registers"] // per_warp) // warps,
            "shared": limits["shared"] // shared}


def occupancy(resources, threads, cc):
    """The theoretical occupancy: resident warps over the SM's maximum (0 to 1).

    Examples
    --------
    >>> from fastconv.cuda.resources import Resources, occupancy
    >>> occupancy(Resources(64, 0, 0, 0, 0), 256, (9, 0))
    0.5
    """
    warps = -(-threads // 32)
    return resident_blocks(resources, threads, cc) * warps / _LIMITS[cc]["warps"]


def limiter(resources, threads, cc):
    """Which resource sets :func:`resident_blocks`: "registers", "shared", "warps", "blocks".

    Examples
    --------
    >>> from fastconv.cuda.resources import Resources, limiter
    >>> limiter(Resources(128, 0, 0, 0, 0), 256, (9, 0))
    'registers'
    >>> limiter(Resources(32, 0, 0, 0, 0), 256, (9, 0))  # 8 blocks of 8 warps either way
    'warps'
    """
    bounds = _block_limits(resources, threads, cc)
    order = ("warps", "blocks", "shared", "registers")  # ties: the one no kernel change lifts
    return min(order, key=lambda name: (bounds[name], order.index(name)))


def problems(resources, threads, cc):
    """What would fail or slow the kernel at launch: a list of sentences (empty when none).

    Examples
    --------
    >>> from fastconv.cuda.resources import Resources, problems
    >>> problems(Resources(64, 0, 0, 0, 0), 256, (9, 0))
    []
    >>> problems(Resources(64, 50000, 16, 8, 8), 256, (9, 0))
    ['spills (8 B stored, 8 B loaded)', '50000 B of static shared memory (at most 49152)']
    """
    found = []
    if resources.spill_stores or resources.spill_loads:
        found.append(f"spills ({resources.spill_stores} B stored, {resources.spill_loads} B "
                     f"loaded)")
    if threads > MAX_THREADS:
        found.append(f"{threads} threads per block (at most {MAX_THREADS})")
    if resources.shared_bytes > STATIC_SHARED_LIMIT:
        found.append(f"{resources.shared_bytes} B of static shared memory (at most "
                     f"{STATIC_SHARED_LIMIT})")
    if resident_blocks(resources, threads, cc) == 0:
        found.append(f"a block of {threads} threads x {resources.registers} registers does "
                     f"not fit on an SM")
    return found


# ----------------------------------------------------------------------------- the budget

#: Blocks this small come from tests/cuda's tiny launch shapes: no occupancy goal for them.
BUDGET_MIN_THREADS = 32
#: Theoretical occupancy memory-bound kernels reach on every architecture compiled for, and
#: the median the float32 conv kernels of the workloads reach.
MEMORY_BOUND_OCCUPANCY = 0.5
CONV_FLOAT32_MEDIAN_OCCUPANCY = 0.25


def budget_misses(row):
    """Where a kernel misses issue 16's register and occupancy budget: a list of sentences.

    Memory-bound kernels (all but the conv kernel, Lp pooling and the pooling gradients)
    reach 50% occupancy. A
    compute-bound kernel whose launch bound asks for several blocks per SM gets them (no
    kernel falls to fewer blocks for a few registers over a cliff), and every conv kernel
    leaves shared-memory headroom (:data:`fastconv.cuda.conv.SHARED_MEMORY_BUDGET`).
    Test-sized blocks are held to the launch limits and spills only. (The float32 conv
    kernels' median is :func:`median_occupancy`.)
    """
    from .conv import SHARED_MEMORY_BUDGET

    spec = row.spec
    conv = spec.factory.endswith(":conv_kernel")
    lp = (spec.factory.endswith(":window_pool_kernel") and spec.args[2] == 2  # pow per cell
          or spec.factory.endswith(":pool_grad_kernel"))  # windows rescanned per cell
    misses = []
    if conv and row.resources.shared_bytes > SHARED_MEMORY_BUDGET:
        misses.append(f"{row.resources.shared_bytes} B of shared memory, over the budget of "
                      f"{SHARED_MEMORY_BUDGET}")
    if spec.threads < BUDGET_MIN_THREADS:
        return misses
    if not (conv or lp) and row.occupancy < MEMORY_BOUND_OCCUPANCY:
        misses.append(f"occupancy {row.occupancy:.1%} is below the budget of "
                      f"{MEMORY_BOUND_OCCUPANCY:.0%} (limited by {row.limiter})")
    blocks = resident_blocks(row.resources, spec.threads, row.cc)
    if (conv or lp) and blocks < row.min_blocks:
        misses.append(f"{blocks} resident blocks where the launch bound asked for "
                      f"{row.min_blocks} (limited by {row.limiter})")
    return misses


def median_occupancy(rows):
    """The median occupancy of ``rows``' float32 conv kernels with full-size blocks."""
    import statistics

    chosen = [row.occupancy for row in rows if row.spec.factory.endswith(":conv_kernel")
              and row.spec.args[0] == "float32" and row.spec.threads >= BUDGET_MIN_THREADS]
    return statistics.median(chosen) if chosen else None


# ----------------------------------------------------------------------------- inventories

def workload_specs(dtypes=("float32", "float64")):
    """The kernels :mod:`fastconv.workloads` builds on the GPU, with the configured launch
    shapes: every case, layout and dtype, listed under the simulator without running any.

    Runs in a child process (the simulator must be chosen before numba.cuda is imported);
    returns a list of :class:`.kernels.KernelSpec`.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "specs.pickle")
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        code = ("import sys; from fastconv.cuda.resources import _list_workload_kernels; "
                "_list_workload_kernels(sys.argv[1], sys.argv[2:])")
        subprocess.run([sys.executable, "-c", code, path, *dtypes], env=env, check=True,
                       timeout=600)
        with open(path, "rb") as handle:
            return pickle.load(handle)


def _list_workload_kernels(path, dtypes):
    from .. import workloads
    from . import kernels

    with kernels.dry_run() as specs:
        for case in workloads.CASES:
            for dtype in dtypes:
                for layout in case.layouts:
                    call, _ = workloads.prepare(case, "fastconv", dtype, layout, "cuda")
                    call()
        for dtype in dtypes:
            _functional_calls(dtype)
            _gradient_calls(dtype)
            _window_max_calls(dtype)
    save_specs(path, specs)


def _window_max_calls(dtype):
    """max_pool_with_argmax, dilation2d and erosion2d on an MNIST-sized batch, both layouts."""
    import numpy as np

    import fastconv

    for fmt, shape in (("NHWC", (64, 26, 26, 32)), ("NCHW", (64, 32, 26, 26))):
        x = np.zeros(shape, dtype)
        fastconv.max_pool_with_argmax(x, 2, 2, "VALID", fmt, device="cuda")
        f = np.zeros((3, 3, 32), dtype)
        fastconv.dilation2d(x, f, 1, "SAME", fmt, 1, device="cuda")
        fastconv.erosion2d(x, f, 1, "SAME", fmt, 1, device="cuda")


def _gradient_calls(dtype):
    """The kernels only the gradients launch (pooling gradients, filter gradient), on the
    MNIST CNN's layers in both layouts and a 3-D pooling."""
    import numpy as np

    import fastconv

    for channels_first in (False, True):
        fmt = "NCHW" if channels_first else "NHWC"
        x = np.zeros((64, 32, 26, 26) if channels_first else (64, 26, 26, 32), dtype)
        y = np.zeros((64, 32, 13, 13) if channels_first else (64, 13, 13, 32), dtype)
        fastconv.max_pool2d_grad(x, y, y, 2, 2, "VALID", fmt, device="cuda")
        fastconv.avg_pool2d_grad(x.shape, y, 2, 2, "VALID", fmt, device="cuda")
        fastconv.conv2d_backprop_filter(x[:, :, :15, :15] if channels_first else x[:, :15, :15],
                                        (3, 3, 32, 64),
                                        np.zeros((64, 64, 13, 13) if channels_first
                                                 else (64, 13, 13, 64), dtype),
                                        1, "VALID", fmt, device="cuda")
    x3 = np.zeros((2, 8, 8, 8, 16), dtype)
    y3 = np.zeros((2, 4, 4, 4, 16), dtype)
    fastconv.max_pool3d_grad(x3, y3, y3, 2, 2, "VALID", device="cuda")


def _functional_calls(dtype):
    """The kernels only ``fastconv.functional`` launches (window tables, unpooling, padding
    modes), on a ResNet-sized NCHW batch."""
    import numpy as np
    from numba import cuda

    from .. import functional as F

    x = cuda.to_device(np.zeros((8, 64, 56, 56), dtype))
    F.max_pool2d(x, 3, 2, 1, dilation=2, return_indices=True)
    F.lp_pool2d(x, 3, 2, 2)
    pooled = cuda.to_device(np.zeros((8, 64, 28, 28), dtype))
    indices = cuda.to_device(np.zeros((8, 64, 28, 28), np.int64))
    F.max_unpool2d(pooled, indices, 2)
    F.pad(x, (1, 1, 1, 1), mode="reflect")


def save_specs(path, specs):
    """Write kernel specs to ``path`` (pickle; read back with :func:`load_specs`)."""
    with open(path, "wb") as handle:
        pickle.dump(list(specs), handle)


def load_specs(paths):
    """The distinct specs of every inventory file in ``paths``, in a stable order."""
    seen = {}
    for path in paths:
        with open(path, "rb") as handle:
            for spec in pickle.load(handle):
                seen.setdefault(spec, None)
    return sorted(seen, key=lambda spec: (spec.factory, repr(spec)))


def representatives(specs):
    """Every full-size kernel of ``specs``, and one test-sized kernel per code path.

    tests/cuda's tiny blocks build a kernel per window, stride and tile it tries; those differ
    only in constants the kernel unrolls, and they have no occupancy goal. One per code path
    (factory, flags, dtype, argument types: every argument that is not a tuple or a tile) is
    enough to prove each path compiles without spilling; ``python -m fastconv.cuda.resources``
    compiles them all.

    Examples
    --------
    >>> from fastconv.cuda.kernels import KernelSpec
    >>> from fastconv.cuda.resources import representatives
    >>> tiny = [KernelSpec("m:pool_kernel", ("max", "float32", (1, k, k), True, 4), (), (), 4)
    ...         for k in (2, 3)]
    >>> big = KernelSpec("m:pool_kernel", ("max", "float32", (1, 3, 3), True, 256), (), (), 256)
    >>> len(representatives(tiny + [big]))
    2
    """
    chosen, paths = [], set()
    for spec in specs:
        if spec.threads >= BUDGET_MIN_THREADS:
            chosen.append(spec)
            continue
        path = (spec.factory, tuple(a for a in spec.args if isinstance(a, (bool, int, str))),
                spec.kwargs, spec.argtypes)
        if path not in paths:
            paths.add(path)
            chosen.append(spec)
    return chosen


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Row:
    """One kernel's resources and occupancy on one architecture."""

    spec: object
    cc: tuple
    resources: Resources
    occupancy: float
    limiter: str
    problems: tuple
    min_blocks: int  # what the kernel's launch bound asked ptxas for (1: nothing)


def measure(spec, capabilities=CAPABILITIES):
    """Compile ``spec`` and return one :class:`Row` per capability."""
    bounds = spec.build().dispatcher.targetoptions.get("launch_bounds") or ()
    min_blocks = bounds[1] if len(bounds) > 1 else 1
    rows = []
    for cc, ptx in compile_ptx(spec, capabilities).items():
        found = ptxas_resources(ptx, cc)
        rows.append(Row(spec, cc, found, occupancy(found, spec.threads, cc),
                        limiter(found, spec.threads, cc),
                        tuple(problems(found, spec.threads, cc)), min_blocks))
    return rows


def format_table(rows):
    """The resource table as text, one line per kernel and architecture."""
    lines = [f"{'kernel':<70} {'sm':>3} {'thr':>4} {'regs':>4} {'smem':>6} {'stack':>5} "
             f"{'occ':>5} {'limit':<9} problems"]
    for row in rows:
        found = row.resources
        lines.append(f"{row.spec.describe()[:70]:<70} {row.cc[0]}{row.cc[1]:>2} "
                     f"{row.spec.threads:>4} {found.registers:>4} {found.shared_bytes:>6} "
                     f"{found.stack_bytes:>5} {row.occupancy:>5.1%} {row.limiter:<9} "
                     f"{'; '.join(row.problems)}")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fastconv.cuda.resources",
        description="Compile fastconv's CUDA kernels to PTX (NVVM) and SASS (ptxas) without a "
                    "GPU; print registers, shared memory, stack and occupancy per kernel.")
    parser.add_argument("inventories", nargs="*",
                        help="inventory files recorded by the CUDA tests "
                             "(FASTCONV_CUDA_INVENTORY); the workloads' kernels are always "
                             "included")
    parser.add_argument("--no-workloads", action="store_true",
                        help="only the kernels of the inventory files")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="compile in this many processes (default: one per core)")
    args = parser.parse_args(argv)
    reason = toolchain_unavailable_reason()
    if reason is not None:
        parser.exit(2, f"cannot compile: {reason}\n")
    specs = set(load_specs(args.inventories))
    if not args.no_workloads:
        specs.update(workload_specs())
    specs = sorted(specs, key=lambda spec: (spec.factory, repr(spec)))
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [row for found in pool.map(measure, specs, chunksize=4) for row in found]
    else:
        rows = [row for spec in specs for row in measure(spec)]
    print(format_table(rows))
    print(summary(rows))
    return 1 if any(row.problems for row in rows) else 0


def summary(rows):
    """A few lines: kernels, problems, and the occupancy median per kind and architecture."""
    import statistics

    lines = [f"{len({row.spec for row in rows})} kernels, "
             f"{sum(bool(row.problems) for row in rows)} (kernel, arch) pairs with problems"]
    groups = {}
    for row in rows:
        kind = row.spec.factory.split(":")[1]
        if kind == "conv_kernel":
            kind = f"conv_kernel {row.spec.args[0]}"
        if row.spec.threads < BUDGET_MIN_THREADS:
            kind += " (test blocks)"  # tests/cuda's tiny launch shapes: no occupancy goal
        groups.setdefault((kind, row.cc), []).append(row)
    for (kind, cc), group in sorted(groups.items()):
        occupancies = [row.occupancy for row in group]
        registers = [row.resources.registers for row in group]
        lines.append(f"  sm_{cc[0]}{cc[1]} {kind:<42} {len(group):>4} kernels  registers "
                     f"{min(registers)}-{max(registers)}  occupancy median "
                     f"{statistics.median(occupancies):.1%} min {min(occupancies):.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
