"""``fastconv warmup``: compile the kernels of a set of ops ahead of time, in parallel.

The kernels a call needs are found without computing it (:func:`fastconv.dispatch.
capture_problems` records the problems the benchmark workloads would run, and the dispatcher
says which algorithm each gets); each distinct compile key not yet in the disk cache becomes
one job for a :mod:`.compile_worker` process, one per core, so an install step or a
Dockerfile pays the compile time once, and in a fraction of the wall time.
"""

from __future__ import annotations

import os
import selectors
import sys
import time

from .. import dispatch
from . import compiling


def needed_jobs(cases, layouts=None, dtypes=("float32",)):
    """``[(key, family, algorithm, problem)]``: one per distinct compile key the cases need."""
    from .. import workloads

    jobs = {}
    for case in cases:
        for layout in (layouts or case.layouts):
            if layout not in case.layouts:
                continue
            for dtype in dtypes:
                call, _ = workloads.prepare(case, "fastconv", dtype=dtype, layout=layout)
                with dispatch.capture_problems() as seen:
                    call()
                for family, device, problem in seen:
                    impl = dispatch.select(family, device, problem)
                    key_of = getattr(impl.run, "compile_key", None)
                    if key_of is not None:
                        jobs.setdefault(key_of(problem), (family, impl.name, problem))
    return [(key, *job) for key, job in jobs.items()]


def _bar(done, total, width=30):
    filled = width * done // max(total, 1)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


def warmup(cases, layouts=None, dtypes=("float32",), workers=None, stream=sys.stderr):
    """Compile what ``cases`` need into the disk cache; return ``{description: seconds}``.

    Keys already cached are skipped. ``workers`` processes (default: one per core) compile
    concurrently; a progress bar goes to ``stream`` (None: silent).
    """
    todo = [job for job in needed_jobs(cases, layouts, dtypes) if not compiling._on_disk(job[0])]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    procs = [compiling.spawn_worker() for _ in range(workers if todo else 0)]
    queue = list(todo)
    busy = {}
    times = {}
    start = time.perf_counter()

    def send(proc):
        """Give ``proc`` a job, or leave it idle (False). Variants of one algorithm (layouts,
        activations) share most kernels: compiled at once by two workers they would be
        compiled twice, so they go to one worker at a time."""
        running = {key[:3] for key in busy.values()}
        index = next((i for i, job in enumerate(queue) if job[0][:3] not in running), None)
        if index is None:
            return False
        key, family, name, problem = queue.pop(index)
        busy[proc] = key
        compiling.send_job(proc, compiling.marker_name(key), family, name,
                           compiling.stand_in(problem, max_bytes=None))
        return True

    def show(note=""):
        if stream is not None:
            stream.write(f"\rfastconv warmup {_bar(len(times), len(todo))} "
                         f"{time.perf_counter() - start:5.1f} s {note[:60]:60s}")
            stream.flush()

    idle = [proc for proc in procs if not send(proc)]
    show()
    selector = selectors.DefaultSelector()
    for proc in procs:
        selector.register(proc.stdout, selectors.EVENT_READ, proc)
    while busy:
        for ready, _ in selector.select():
            proc = ready.data
            line = proc.stdout.readline().decode(errors="replace").split(maxsplit=2)
            if proc not in busy:
                continue
            key = busy.pop(proc)
            if not line:  # the worker died: its job is lost
                selector.unregister(proc.stdout)
                times[compiling.describe(key)] = float("nan")
                continue
            ok = line[0] == "done"
            times[compiling.describe(key)] = float(line[2]) if ok else float("nan")
            show(compiling.describe(key) + ("" if ok else " FAILED: " + " ".join(line[2:])))
            idle.append(proc)
            idle = [worker for worker in idle if not (queue and send(worker))]
    for key, *_ in queue:  # left when every worker died
        times[compiling.describe(key)] = float("nan")
    for proc in procs:
        proc.stdin.close()
        proc.wait()
    if stream is not None:
        stream.write(f"\rfastconv warmup {_bar(len(times), len(todo))} "
                     f"{time.perf_counter() - start:5.1f} s{' ' * 61}\n")
    return times
