"""How the CUDA kernels are built, bounded, cached on disk, recorded and launched.

Every kernel of :mod:`.conv` and :mod:`.pool` comes from a *factory*: a function of the kernel's
static configuration (dtype, window, layout, tile, threads per block, ...) decorated with
:func:`factory`, which memoises it (like ``functools.lru_cache``, whose ``cache_info`` it keeps)
and wraps what it returns in a :class:`Kernel`. The kernel body is decorated with :func:`jit`,
which adds to ``numba.cuda.jit``:

* **launch bounds** ``(threads, min_blocks)``: the most threads a launch uses and how many
  blocks must fit on one SM. ptxas then keeps the kernel within ``65536 / (threads *
  min_blocks)`` registers per thread, which is what sets the occupancy (see
  :mod:`.resources`): memory-bound kernels ask for half of an SM's 2048 threads, the float32
  conv kernel for a quarter (its register tile is its speed; see :mod:`.conv` for the tiles
  that ask for nothing because the bound would make them spill).
* **the disk cache** (numba-cuda's ``cache=True``, made fail soft and keyed on the package's
  sources by :mod:`fastconv.disk_cache`, in the directory the CPU kernels use): a second
  process loads each compiled kernel instead of paying ~1 s of NVVM per conv kernel.
  ``FASTCONV_CUDA_CACHE=0`` switches it off.

The simulator (``NUMBA_ENABLE_CUDASIM=1``) takes neither option, so :func:`jit` drops them.

Launches go through :class:`Kernel` too: ``kernel[grid, threads](*args)`` as with numba, plus
an *inventory* of what ran. Inside :func:`recording` every launch records a
:class:`KernelSpec` (the factory call and the argument types), which is all another process
needs to build the same kernel again and compile it for real (:mod:`.resources`: PTX, ptxas,
occupancy, without a GPU). Inside :func:`dry_run` launches are recorded and skipped, so the
kernels a workload needs can be listed under the simulator at full size in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import numpy as np

from .. import config

#: Threads an SM can hold at once (every GPU since compute capability 5.0 up to 9.0, except
#: 8.6/8.9's 1536, which asks less of a kernel) and blocks it can hold.
SM_THREADS = 2048
SM_BLOCKS = 32

#: Resident threads per SM each kind of kernel is bounded for (see the module docstring):
#: memory-bound kernels need many loads in flight, i.e. occupancy (50%); compute-bound ones
#: (the conv kernel's register tile, Lp pooling's pow per cell) 25%, a quarter of the SM.
MEMORY_BOUND_THREADS = 1024
COMPUTE_BOUND_THREADS = 512
#: No occupancy asked: ptxas takes the registers it wants (up to 255), never spilling for it.
UNBOUNDED = 0


def simulated():
    """Whether numba.cuda is the simulator (read from numba's config, as numba does).

    Examples
    --------
    >>> from fastconv.cuda import kernels
    >>> kernels.simulated() in (True, False)
    True
    """
    from numba import config as numba_config

    return bool(getattr(numba_config, "ENABLE_CUDASIM", 0))


def min_blocks_for(threads, resident_threads):
    """Blocks per SM that keep ``resident_threads`` threads on it, within the SM's limits
    (blocks occupy whole warps; ``resident_threads=0``: one block, no occupancy asked).

    Blocks of fewer than 32 threads (tests/cuda's tiny launch shapes) ask for nothing: most of
    each warp idles anyway, and a bound would only make ptxas spill.

    Examples
    --------
    >>> from fastconv.cuda import kernels
    >>> kernels.min_blocks_for(256, kernels.MEMORY_BOUND_THREADS)  # <= 64 registers
    4
    >>> kernels.min_blocks_for(176, kernels.COMPUTE_BOUND_THREADS)  # 6 warps: 2 blocks
    2
    >>> kernels.min_blocks_for(256, kernels.UNBOUNDED), kernels.min_blocks_for(4, 1024)
    (1, 1)
    """
    if threads < 32:
        return 1
    threads = -(-int(threads) // 32) * 32
    return max(1, min(SM_BLOCKS, SM_THREADS // threads, resident_threads // threads))


def jit(threads, resident_threads=MEMORY_BOUND_THREADS):
    """``numba.cuda.jit`` for a kernel launched with at most ``threads`` threads per block:
    bounded so that ``resident_threads`` threads fit on an SM, and cached on disk. The
    dispatcher keeps the bound as ``fastconv_threads`` (read by :func:`factory`)."""
    from numba import cuda

    if simulated():
        compile_kernel = cuda.jit
    else:
        _enable_disk_cache()
        compile_kernel = cuda.jit(cache=config.CUDA_DISK_CACHE,
                                  launch_bounds=(int(threads),
                                                 min_blocks_for(threads, resident_threads)))

    def decorate(function):
        dispatcher = compile_kernel(function)
        dispatcher.fastconv_threads = int(threads)
        return dispatcher
    return decorate


@functools.lru_cache(maxsize=1)
def _enable_disk_cache():
    """Point numba-cuda's cache where the CPU kernels' is and make it fail soft (once)."""
    from numba.cuda.core import caching
    from numba.cuda.core import config as cuda_config

    from ..disk_cache import make_fail_soft

    if config.CACHE_DIR and not os.environ.get("NUMBA_CACHE_DIR"):
        cuda_config.CACHE_DIR = config.CACHE_DIR
    make_fail_soft(caching)


# ----------------------------------------------------------------------------- factories

@dataclass(frozen=True)
class KernelSpec:
    """One kernel as launched: enough to build it again in another process.

    ``factory`` is the factory's ``module:qualname``, ``args``/``kwargs`` its call,
    ``argtypes`` the numba types of the launch's arguments, ``threads`` the launch bound.
    """

    factory: str
    args: tuple
    kwargs: tuple
    argtypes: tuple
    threads: int

    def build(self):
        """The :class:`Kernel` this spec names, from its factory (memoised there)."""
        import importlib

        module, name = self.factory.split(":")
        return getattr(importlib.import_module(module), name)(*self.args, **dict(self.kwargs))

    def describe(self):
        """A short readable name: the factory and its call."""
        call = ", ".join([_short(a) for a in self.args]
                         + [f"{k}={_short(v)}" for k, v in self.kwargs])
        return f"{self.factory.split(':')[1]}({call})"


def _short(value):
    if hasattr(value, "__dataclass_fields__"):
        return "(" + ",".join(str(getattr(value, f)) for f in value.__dataclass_fields__) + ")"
    return repr(value).replace(" ", "")


class Kernel:
    """A compiled-on-first-launch kernel with the factory call that made it.

    ``kernel[grid, threads](*args)`` launches it as a numba kernel does. ``dispatcher`` is the
    numba dispatcher (or the simulator's kernel); ``threads`` the most threads per block it
    was bounded for.
    """

    __slots__ = ("dispatcher", "threads", "factory", "args", "kwargs")

    def __init__(self, dispatcher, threads, factory, args, kwargs):
        self.dispatcher = dispatcher
        self.threads = threads
        self.factory = factory
        self.args = args
        self.kwargs = kwargs

    def __getitem__(self, launch_config):
        return functools.partial(self._launch, launch_config)

    def _launch(self, launch_config, *args):
        if _inventory is not None:
            _record(self, args)
            if _inventory.dry:
                return None
        return self.dispatcher[launch_config](*args)


#: Every factory's ``module:qualname``, in definition order (what an inventory should cover).
FACTORIES = []


def factory(build):
    """Decorate a kernel factory: memoise it (``functools.lru_cache``) and wrap the dispatcher
    it returns, made by :func:`jit`, in a :class:`Kernel` with the factory call."""
    name = f"{build.__module__}:{build.__qualname__}"
    FACTORIES.append(name)

    @functools.lru_cache(maxsize=None)
    @functools.wraps(build)
    def memoised(*args, **kwargs):
        dispatcher = build(*args, **kwargs)
        return Kernel(dispatcher, dispatcher.fastconv_threads, name, args,
                      tuple(sorted(kwargs.items())))
    return memoised


# ----------------------------------------------------------------------------- the inventory

class _Inventory:
    def __init__(self, dry):
        self.dry = dry
        self.specs = {}


_inventory = None


@contextlib.contextmanager
def recording(dry=False):
    """Record every kernel launched inside: yields a list that holds, on exit, one
    :class:`KernelSpec` per distinct kernel and signature, in launch order. With ``dry``
    the launches are skipped (results are garbage; for listing kernels only).

    Examples
    --------
    Under the simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU:

    >>> import numpy as np, fastconv
    >>> from fastconv.cuda import kernels
    >>> with kernels.dry_run() as specs:                                   # doctest: +SKIP
    ...     fastconv.max_pool2d(np.ones((1, 8, 8, 3), np.float32), 2, 2, "VALID",
    ...                         device="cuda")
    >>> [spec.describe()[:40] for spec in specs]                           # doctest: +SKIP
    ["pool_kernel('max', 'float32', (1, 2, 2), (1"]
    """
    global _inventory
    previous, _inventory = _inventory, _Inventory(dry)
    specs = []
    try:
        yield specs
    finally:
        specs.extend(_inventory.specs.values())
        _inventory = previous


def dry_run():
    """Record every kernel launched inside and launch none (see :func:`recording`)."""
    return recording(dry=True)


def _record(kernel, args):
    argtypes = tuple(_numba_type(value) for value in args)
    key = (kernel.factory, kernel.args, kernel.kwargs, argtypes)
    if key not in _inventory.specs:
        _inventory.specs[key] = KernelSpec(kernel.factory, kernel.args, kernel.kwargs,
                                           argtypes, kernel.threads)


def _numba_type(value):
    """The numba type a kernel argument gets at launch (scalars as numba types them)."""
    from numba import types
    from numba.np import numpy_support

    if isinstance(value, (bool, np.bool_)):
        return types.boolean
    if isinstance(value, (int, np.integer)):
        return types.int64
    if isinstance(value, (float, np.floating)):
        return types.float64
    if value.is_c_contiguous():
        layout = "C"
    elif value.is_f_contiguous():
        layout = "F"
    else:
        layout = "A"
    return types.Array(numpy_support.from_dtype(np.dtype(value.dtype)), len(value.shape),
                       layout)
