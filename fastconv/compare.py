"""Run workloads through fastconv and TensorFlow: equality, speed, tables, JSON and a plot.

The machinery behind ``fastconv compare`` and ``benchmarks/ratios.py``; the cases come from
:mod:`fastconv.workloads`, the clocks from :mod:`fastconv.timing`.
"""

from __future__ import annotations

import math
import platform
import sys
import traceback
from dataclasses import asdict, dataclass

import numpy as np

from . import timing, workloads
from .testing import EXACT_OPS, tolerance
#: Print the traceback of a failing case (``fastconv compare --debug``).
SHOW_TRACEBACKS = False


@dataclass
class Result:
    """One case run through both backends."""

    case: str
    op: str
    layout: str  # data_format fastconv ran with (NHWC, NCHW, ...)
    channels_first: bool
    dtype: str
    device: str
    shape: str
    unit: str  # "flop" or "byte"
    work: float
    goals: tuple
    max_abs_error: float = math.nan
    tolerance: float = math.nan
    equal: bool = False
    fastconv_ms: float = math.nan
    tf_ms: float = math.nan
    error: str = ""  # an exception's message when a backend failed

    @property
    def speedup(self):
        return self.tf_ms / self.fastconv_ms

    @property
    def rate(self):
        """fastconv's GFLOP/s (convolutions) or GB/s (pooling)."""
        return self.work / (self.fastconv_ms * 1e-3) / 1e9

    @property
    def rate_unit(self):
        return "GFLOP/s" if self.unit == "flop" else "GB/s"

    def ceiling_fraction(self, ceilings):
        """fastconv's rate as a fraction of the matching machine ceiling (sgemm or copy)."""
        if not ceilings:
            return math.nan
        key = "sgemm_gflops" if self.unit == "flop" else "copy_gbps"
        return self.rate / ceilings[key]

    def to_dict(self, ceilings=None):
        data = asdict(self)
        data.update(speedup=self.speedup, rate=self.rate, rate_unit=self.rate_unit,
                    ceiling_fraction=self.ceiling_fraction(ceilings), goals=list(self.goals))
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in data.items()}


def max_error(got, want):
    """Max abs difference, or inf when shapes differ; NaNs must sit in the same places."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return math.inf
    if got.size == 0:
        return 0.0
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return math.inf
    diff = np.abs(got - want)
    return float(np.nanmax(diff)) if not np.all(np.isnan(diff)) else 0.0


def run_case(case, layout="channels_last", dtype="float32", device="cpu", repeat=7,
             target=timing.SAMPLE_SECONDS):
    """Check one case against TensorFlow and time both; never raises (errors go in the row)."""
    result = Result(case.name, case.op, case.data_format(layout), layout == "channels_first",
                    dtype, device, case.describe(layout), case.unit, float(case.work(dtype)),
                    case.goals)
    try:
        arrays = workloads.make_arrays(case, dtype)
        fc_call, fc_numpy = workloads.prepare(case, "fastconv", dtype, layout, device, arrays)
        tf_call, tf_numpy = workloads.prepare(case, "tensorflow", dtype, layout, device, arrays)
        got, want = fc_numpy(fc_call()), tf_numpy(tf_call())  # also compiles the JIT kernels
        result.max_abs_error = max_error(got, want)
        result.tolerance = (0.0 if case.op in EXACT_OPS
                            else tolerance(dtype, want) if want.size else tolerance(dtype, 0.0))
        result.equal = result.max_abs_error <= result.tolerance
        fc_seconds, tf_seconds = timing.time_pair(fc_call, tf_call, repeat, target)
        result.fastconv_ms, result.tf_ms = fc_seconds * 1e3, tf_seconds * 1e3
    except Exception as error:  # noqa: BLE001  (a failing case is a row, not a crash)
        result.error = f"{type(error).__name__}: {error}"
        if SHOW_TRACEBACKS:
            traceback.print_exc()
    return result


def jobs(cases, layouts=None, dtypes=("float32",)):
    """(case, layout, dtype) triples: each case in each of its layouts that ``layouts`` allows."""
    return [(case, layout, dtype) for dtype in dtypes for case in cases
            for layout in case.layouts if layouts is None or layout in layouts]


class Progress:
    """A one-line text progress bar on stderr (one line per step when not a terminal)."""

    def __init__(self, total, stream=None, width=24):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def show(self, label):
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {label}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:120])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self, label):
        self.show(label)
        self.done += 1

    def close(self):
        self.show("done")
        if self.tty:
            self.stream.write("\n")


def run(job_list, device="cpu", repeat=7, progress=True, target=timing.SAMPLE_SECONDS):
    """Run every (case, layout, dtype) job; returns the list of :class:`Result`."""
    bar = Progress(len(job_list)) if progress else None
    results = []
    for case, layout, dtype in job_list:
        if bar:
            bar.step(f"{case.name} ({case.data_format(layout)}, {dtype})")
        results.append(run_case(case, layout, dtype, device, repeat, target))
    if bar:
        bar.close()
    return results


# ----------------------------------------------------------------------------- reporting

def geometric_mean(values):
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def _fmt(value, spec):
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_table(results, ceilings=None):
    """The per-case table, as text."""
    header = ("op", "case", "layout", "shape", "max abs err", "equal", "fastconv ms", "TF ms",
              "speedup", "rate", "% ceiling")
    rows = []
    for r in results:
        equal = "ERROR" if r.error else ("yes" if r.equal else "NO")
        rows.append((r.op, r.case, r.layout, r.shape, _fmt(r.max_abs_error, ".1e"), equal,
                     _fmt(r.fastconv_ms, ".3f"), _fmt(r.tf_ms, ".3f"),
                     _fmt(r.speedup, ".2f") + "x" if not r.error else "-",
                     f"{_fmt(r.rate, '.1f')} {r.rate_unit}" if not r.error else "-",
                     _fmt(100 * r.ceiling_fraction(ceilings), ".0f")))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    numeric = set(range(4, len(header)))
    lines = []
    for row in [header, tuple("-" * w for w in widths)] + rows:
        cells = [str(v).rjust(w) if i in numeric else str(v).ljust(w)
                 for i, (v, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines += [f"ERROR in {r.case}: {r.error}" for r in results if r.error]
    return "\n".join(lines)


def summary(results):
    """One line: how many cases are equal, and the geometric-mean speedup."""
    ok = sum(r.equal for r in results)
    mean = geometric_mean(r.speedup for r in results if not r.error)
    return (f"{ok}/{len(results)} cases equal to TensorFlow; geometric-mean speedup "
            f"{_fmt(mean, '.2f')}x over {sum(not r.error for r in results)} cases")


def format_ceilings(ceilings, when="now"):
    return (f"machine ceilings measured {when}: numpy sgemm {ceilings['sgemm_gflops']:.1f} "
            f"GFLOP/s, parallel copy {ceilings['copy_gbps']:.1f} GB/s (read + write)")


def goal_rows(results, ceilings=None):
    """Issue 3's goals table: one dict per goal with the worst and the mean case."""
    rows = []
    timed = [r for r in results if not r.error]
    for key, (text, min_speedup, min_fraction) in workloads.GOALS.items():
        members = [r for r in timed if key in r.goals]
        if not members:
            continue
        worst = min(members, key=lambda r: r.speedup)
        row = dict(goal=text, cases=len(members), worst_case=f"{worst.case} ({worst.layout})",
                   worst_speedup=worst.speedup,
                   mean_speedup=geometric_mean(r.speedup for r in members),
                   target=f">= {min_speedup:g}x")
        met = worst.speedup >= min_speedup
        if min_fraction is not None and ceilings:
            # The bandwidth/compute goal applies to each case; report the lowest fraction.
            lowest = min(r.ceiling_fraction(ceilings) for r in members)
            row["target"] += f", >= {100 * min_fraction:.0f}% ceiling (lowest {100 * lowest:.0f}%)"
            met = met and lowest >= min_fraction
        row["met"] = met
        rows.append(row)
    if timed:
        mean = geometric_mean(r.speedup for r in timed)
        rows.append(dict(goal="geometric mean over the whole suite", cases=len(timed),
                         worst_case="-", worst_speedup=math.nan, mean_speedup=mean,
                         target=">= 2x", met=mean >= 2))
    pairs = _layout_pairs(timed)
    if pairs:
        ratio, name = max(pairs)
        rows.append(dict(goal="NCHW time / NHWC time (fastconv)", cases=len(pairs),
                         worst_case=name, worst_speedup=ratio,
                         mean_speedup=geometric_mean(p for p, _ in pairs), target="<= 1.3",
                         met=ratio <= 1.3))
    return rows


def _layout_pairs(results):
    """(fastconv channels-first time / channels-last time, case) for cases run in both."""
    last = {(r.case, r.dtype): r for r in results if not r.channels_first}
    return [(r.fastconv_ms / last[r.case, r.dtype].fastconv_ms, r.case) for r in results
            if r.channels_first and (r.case, r.dtype) in last]


def format_goals(rows):
    header = ("goal (issue 3)", "cases", "worst case", "worst", "geomean", "target", "met")
    body = [(g["goal"], str(g["cases"]), g["worst_case"], _fmt(g["worst_speedup"], ".2f"),
             _fmt(g["mean_speedup"], ".2f"), g["target"], "yes" if g["met"] else "NO")
            for g in rows]
    widths = [max(len(row[i]) for row in body + [header]) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
                     for row in [header, tuple("-" * w for w in widths)] + body)


def environment():
    """Versions and machine facts recorded with the results."""
    import os

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "numpy": np.__version__}
    for name in ("numba", "tensorflow", "fastconv"):
        module = sys.modules.get(name)
        info[name] = getattr(module, "__version__", None)
    return info


def to_json(results, ceilings=None, options=None):
    return {"environment": environment(), "ceilings": ceilings, "options": options or {},
            "results": [r.to_dict(ceilings) for r in results],
            "goals": goal_rows(results, ceilings)}


def plot(results, path, title="fastconv vs TensorFlow"):
    """Horizontal bar chart of the speedup per case (log scale) with the 1x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in results if not r.error]
    labels = [f"{r.case} ({r.layout})" if r.layout not in ("NHWC", "NWC", "NDHWC") else r.case
              for r in rows]
    speedups = [r.speedup for r in rows]
    colors = ["#c0392b" if not r.equal else ("#2e86c1" if r.speedup >= 1 else "#e67e22")
              for r in rows]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * max(len(rows), 1)))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, speedups, color=colors, height=0.7)
    ax.axvline(1.0, color="black", linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for yi, s in zip(y, speedups):
        ax.text(s * 1.04, yi, f"{s:.2f}x", va="center", fontsize=7)
    low, high = min(speedups + [1.0]), max(speedups + [1.0])
    ax.set_xlim(low / 1.6, high * 1.8)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("speedup over TensorFlow (TF time / fastconv time), log scale; "
                  "right of the line = fastconv faster")
    mean = geometric_mean(speedups)
    ax.set_title(f"{title}  (geometric mean {mean:.2f}x; orange: slower, red: not equal)",
                 fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
