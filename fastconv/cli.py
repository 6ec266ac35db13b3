"""The ``fastconv`` command line: ``fastconv compare``, ``warmup``, ``ceilings`` and ``train``.

``fastconv compare`` runs the benchmark workloads (:mod:`fastconv.workloads`) through fastconv
and TensorFlow in one process, checks the results are equal, times both side by side and prints
a table; it exits with status 1 when any case differs or fails. ``fastconv ceilings`` prints
what this machine reaches at best (numpy sgemm GFLOP/s, parallel copy GB/s). ``fastconv warmup``
compiles the kernels of the common CNN layers (the workloads; ``--ops`` to choose) into the
disk cache ahead of time, one process per core, with a progress bar.

Examples
--------
    fastconv compare                       # every workload, float32, both layouts
    fastconv compare --quick               # the seed workloads only, fewer repeats
    fastconv compare --ops conv2d,max_pool2d --layout NHWC --json out.json --plot out.png
    fastconv compare --cases 'mnist_*' --dtype float64
    fastconv compare --goals               # add issue 3's goals table
    fastconv warmup                        # the common CNN set, float32, both layouts
    fastconv warmup --ops conv2d,max_pool2d --dtype all
    fastconv ceilings
    fastconv train --epochs 5 --check-keras   # seed 001's CNN trained on fastconv's kernels
"""

from __future__ import annotations

import argparse
import json
import os
import sys

_LAYOUT_NAMES = {"channels_last": "channels_last", "last": "channels_last", "nhwc": "channels_last",
                 "nwc": "channels_last", "ndhwc": "channels_last",
                 "channels_first": "channels_first", "first": "channels_first",
                 "nchw": "channels_first", "ncw": "channels_first", "ncdhw": "channels_first"}


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()] if text else None


def _parser():
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare", help="check fastconv against TensorFlow and time both on the workloads",
        description="Run the benchmark workloads through fastconv and TensorFlow, check they are "
                    "equal, time both (same process, alternating runs, medians, JIT warmed) and "
                    "print a table. Exit status 1 if any case differs or fails.")
    compare.add_argument("--ops", help="comma-separated op names (conv2d, max_pool2d, ...) or "
                                       "families (conv, pool, network)")
    compare.add_argument("--cases", help="comma-separated case names or patterns ('mnist_*')")
    compare.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                         help="where fastconv runs (TensorFlow always runs on the CPU)")
    compare.add_argument("--dtype", default="float32",
                         help="float32, float64 or both comma-separated (default float32)")
    compare.add_argument("--layout", default="all",
                         help="NHWC (channels_last), NCHW (channels_first) or all (default: each "
                              "case in the layouts it lists)")
    compare.add_argument("--repeat", type=int, help="timed samples per backend (default 7, "
                                                    "3 with --quick)")
    compare.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    compare.add_argument("--plot", metavar="PATH.png", help="write a bar chart of speedups here")
    compare.add_argument("--quick", action="store_true",
                         help="only the seed workloads, fewer timing repeats")
    compare.add_argument("--goals", action="store_true", help="also print issue 3's goals table")
    compare.add_argument("--no-ceilings", action="store_true",
                         help="skip measuring the sgemm and copy ceilings")
    compare.add_argument("--list", action="store_true", help="list the selected cases and exit")
    compare.add_argument("--debug", action="store_true", help="print tracebacks of failing cases")
    compare.add_argument("--peers", metavar="LIST",
                         help="comma-separated tf, torch, ort, jax (or 'all'): the layer table "
                              "beside each peer, each in its own process (a peer not installed "
                              "is skipped)")
    compare.add_argument("--functional", action="store_true",
                         help="run fastconv.functional's cases beside the tf.nn API and "
                              "torch.nn.functional instead (needs torch)")
    commands.add_parser("ceilings", help="measure numpy sgemm GFLOP/s and parallel-copy GB/s")
    train = commands.add_parser(
        "train", help="train seed 001's MNIST CNN on the bundled digits with fastconv's kernels",
        description="Train seed 001's CNN on scikit-learn's digits (resized to 28x28): every "
                    "conv and pool forward and backward on fastconv, dense layers, loss and "
                    "Adam in NumPy (needs fastconv[train]).")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--check-keras", action="store_true",
                       help="train the same model in Keras from the same weights and batches "
                            "and compare the loss of every step of the first epoch")
    train.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    warm = commands.add_parser(
        "warmup", help="compile the kernels of the common CNN layers ahead of time",
        description="Compile the kernels that the benchmark workloads (the common CNN layers) "
                    "need into the disk cache, one process per core, so that later first "
                    "calls load them instead of compiling. Kernels already cached are skipped.")
    warm.add_argument("--ops", help="comma-separated op names or families (default: all)")
    warm.add_argument("--cases", help="comma-separated case names or patterns")
    warm.add_argument("--dtype", default="float32", help="float32, float64 or all")
    warm.add_argument("--layout", default="all", help="NHWC, NCHW or all")
    warm.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    warm.add_argument("--list", action="store_true", help="list what would compile and exit")
    return parser


def _layouts(parser, text):
    if text.lower() == "all":
        return None
    try:
        return {_LAYOUT_NAMES[name.lower()] for name in _split(text)}
    except KeyError as error:
        parser.error(f"--layout: unknown layout {error.args[0]!r}; use NHWC, NCHW or all")


def _dtypes(parser, text):
    dtypes = ["float32", "float64"] if text == "all" else _split(text)
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            parser.error(f"--dtype: {dtype!r} is not supported; use float32, float64 or all")
    return dtypes


def _check_cuda(parser):
    from .cuda.launch import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        parser.error(f"--device cuda: the CUDA backend cannot run here: {reason}; run on a "
                     f"machine with an NVIDIA GPU and driver, or use --device cpu")


def _compare_peers(parser, args):
    """``fastconv compare --peers tf,torch,ort,jax``: :mod:`fastconv.compare_peers`' table."""
    from . import compare, compare_peers, timing

    peers = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    if peers == ["all"]:
        peers = list(compare_peers.PEERS)
    unknown = [p for p in peers if p not in compare_peers.PEERS]
    if unknown or not peers:
        parser.error(f"--peers: {args.peers!r}; choose from {', '.join(compare_peers.PEERS)} "
                     f"or all")
    layers = _named(compare_peers.LAYERS, args.cases)
    if args.list:
        for layer in layers:
            print(f"{layer.name:28s} {layer.kind}")
        return 0
    if not layers:
        parser.error("no layer matches --cases; see `fastconv compare --peers all --list`")
    ceilings = None if args.no_ceilings else timing.ceilings()
    if ceilings:
        print(compare.format_ceilings(ceilings))
    bar = compare.Progress(len(layers) * len(peers))
    rows, skipped = compare_peers.run(peers, layers, args.repeat or (3 if args.quick else 7),
                                      bar.step)
    bar.close()
    for message in skipped:
        print(message)
    if rows:
        print(compare_peers.format_table(rows, ceilings))
    if args.plot and rows:
        print(f"plot: {compare_peers.plot(rows, args.plot)}")
    if args.json:
        import dataclasses

        with open(args.json, "w") as fh:
            json.dump({"ceilings": ceilings, "skipped": skipped,
                       "results": [dataclasses.asdict(r) for r in rows]}, fh, indent=1)
    return 0 if all(r.equal and not r.error for r in rows) else 1


def _compare_torch(parser, args):
    """``fastconv compare --functional``: :mod:`fastconv.compare_torch`'s table."""
    from . import compare, compare_torch, config, timing

    try:
        import torch  # noqa: F401
    except ImportError:
        parser.error("--functional needs PyTorch: pip install 'fastconv[torch]'")
    config.COMPILE = "sync"
    cases = _named(compare_torch.CASES, args.cases)
    if args.list:
        for case in cases:
            print(f"{case.name:28s} {case.op}")
        return 0
    if not args.no_ceilings:
        from .compare import format_ceilings

        print(format_ceilings(timing.ceilings()))
    bar = compare.Progress(len(cases))
    results = compare_torch.run(cases, args.repeat or (3 if args.quick else 7), bar.step)
    bar.close()
    print(compare_torch.format_table(results))
    print(compare_torch.summary(results))
    if args.json:
        import dataclasses

        with open(args.json, "w") as fh:
            json.dump({"results": [dataclasses.asdict(r) for r in results]}, fh, indent=1)
    return 0 if all(r.equal and not r.error for r in results) else 1


def _named(items, cases):
    """The items whose ``name`` matches one of ``--cases``' comma-separated patterns (all of
    them without ``--cases``)."""
    patterns = _split(cases)
    return [item for item in items
            if not patterns or any(_matches(item.name, p) for p in patterns)]


def _matches(name, pattern):
    import fnmatch

    return fnmatch.fnmatch(name, pattern) or name == pattern


def _compare(parser, args):
    from . import compare, config, timing, workloads

    if args.functional:
        return _compare_torch(parser, args)
    if args.peers:
        return _compare_peers(parser, args)
    config.COMPILE = "sync"  # time the kernels, never the NumPy tier of first calls
    compare.SHOW_TRACEBACKS = args.debug
    cases = workloads.select(ops=_split(args.ops), quick=args.quick, names=_split(args.cases))
    job_list = compare.jobs(cases, _layouts(parser, args.layout), _dtypes(parser, args.dtype))
    if not job_list:
        parser.error("no workload matches --ops/--cases/--layout; see `fastconv compare --list`")
    if args.list:
        for case, layout, dtype in job_list:
            print(f"{case.name:36s} {case.op:18s} {case.tag:8s} {case.data_format(layout):6s} "
                  f"{dtype:8s} {case.describe(layout)}")
        return 0
    if args.device == "cuda":
        _check_cuda(parser)
    try:
        tf = workloads.import_tensorflow()
    except ImportError as error:
        print(f"fastconv compare: {error}", file=sys.stderr)
        return 2
    repeat = args.repeat or (3 if args.quick else 7)
    ceilings = None if args.no_ceilings else timing.ceilings()
    results = compare.run(job_list, args.device, repeat)
    if ceilings:
        ceilings = timing.ceilings(previous=ceilings)  # the best of before and after the cases

    where = "GPU (numba.cuda)" if args.device == "cuda" else "CPU"
    print(f"fastconv on the {where} vs TensorFlow {tf.__version__} on the CPU; median of "
          f"{repeat} alternating samples each. Channels-first rows: TF runs the same layer on "
          f"channels-last data (its CPU kernels refuse NCHW).")
    if ceilings:
        print(compare.format_ceilings(ceilings, "in this run (best of before and after the cases)"))
    print()
    print(compare.format_table(results, ceilings))
    print()
    print(compare.summary(results))
    if args.goals:
        print()
        print(compare.format_goals(compare.goal_rows(results, ceilings)))
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in ("command",)}
        with open(args.json, "w") as handle:
            json.dump(compare.to_json(results, ceilings, options), handle, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        compare.plot(results, args.plot, title=f"fastconv ({args.device}) vs TensorFlow")
        print(f"wrote {args.plot}")
    return 0 if all(r.equal and not r.error for r in results) else 1


def _ceilings():
    from . import compare, timing

    print(compare.format_ceilings(timing.ceilings()))
    return 0


def _warmup(parser, args):
    from . import workloads
    from .cpu import compiling, warmup

    cases = workloads.select(ops=_split(args.ops), names=_split(args.cases))
    if not cases:
        parser.error("no workload matches --ops/--cases; see `fastconv compare --list`")
    layouts, dtypes = _layouts(parser, args.layout), _dtypes(parser, args.dtype)
    if args.list:
        for key, *_ in warmup.needed_jobs(cases, layouts, dtypes):
            state = "cached" if compiling._on_disk(key) else "to compile"
            print(f"{compiling.describe(key):48s} {state}")
        return 0
    times = warmup.warmup(cases, layouts, dtypes, args.jobs)
    for what, seconds in sorted(times.items(), key=lambda item: -item[1]):
        print(f"{what:48s} {seconds:6.1f} s")
    failed = [what for what, seconds in times.items() if seconds != seconds]
    print(f"{len(times) - len(failed)} kernel sets compiled"
          + (f", {len(failed)} failed: {', '.join(failed)}" if failed else "")
          + ("" if times else " (everything was cached already)"))
    return 1 if failed else 0


def main(argv=None):
    """Entry point of the ``fastconv`` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        return _compare(parser, args)
    if args.command == "ceilings":
        return _ceilings()
    if args.command == "warmup":
        return _warmup(parser, args)
    if args.command == "train":
        if args.epochs < 1 or args.batch_size < 1:
            parser.error("--epochs and --batch-size must be positive")
        from . import train

        return train.main(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
