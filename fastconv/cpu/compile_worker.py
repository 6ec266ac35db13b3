"""The background compiler: ``python -m fastconv.cpu.compile_worker``.

Started by :mod:`.compiling`, it reads pickled jobs ``(marker, family, algorithm, problem)``
from stdin, runs each problem (zeros of the caller's shapes) with that algorithm forced, which
compiles its kernels into Numba's disk cache and writes the marker, and answers ``done <marker>
<seconds>`` (or ``failed <marker> <why>``) on stdout. It runs at low priority, and when stdin
closes (its parent exited) it finishes the jobs already sent, then exits.
"""

from __future__ import annotations

import os
import pickle
import sys
import time


def main():
    try:
        os.nice(10)  # the parent's own work comes first
    except (AttributeError, OSError):
        pass
    os.environ["FASTCONV_COMPILE"] = "sync"
    from fastconv import config, dispatch
    from fastconv.cpu.compiling import materialise

    config.COMPILE = "sync"
    jobs = sys.stdin.buffer
    while True:
        try:
            marker, family, name, problem = pickle.load(jobs)
        except EOFError:
            return
        start = time.perf_counter()
        try:
            with dispatch.use_algorithm(name):
                dispatch.run(family, "cpu", materialise(problem))
            print("done", marker, f"{time.perf_counter() - start:.2f}", flush=True)
        except Exception as exc:  # reported; the parent compiles it itself
            print("failed", marker, " ".join(f"{type(exc).__name__}: {exc}".split()),
                  flush=True)


if __name__ == "__main__":
    main()
