"""The CPU kernels' disk cache: Numba's, made fail soft and keyed on the package (see
:mod:`fastconv.disk_cache`) and on the settings compiled into the kernels."""

from numba.core import caching

from .. import config
from ..disk_cache import make_fail_soft, package_digest  # noqa: F401  (compiling's key)


def make_cache_fail_soft():
    """Install the fail-soft reads and the package-wide key in Numba's CPU cache (idempotent)."""
    make_fail_soft(caching, config.compiled_tunables)
