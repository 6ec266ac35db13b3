"""Print issue 3's ratio table: fastconv vs TensorFlow per workload and per goal, with GFLOP/s
and GB/s against numpy's sgemm and a parallel copy measured in the same run.

    python benchmarks/ratios.py                 # every workload (a few minutes)
    python benchmarks/ratios.py --quick         # the seed workloads
    python benchmarks/ratios.py --json ratios.json --plot ratios.png

It is ``fastconv compare --goals`` (same options): one process, fastconv and TensorFlow timed
alternately on the same inputs, medians, JIT warmed first.
"""

import sys

from fastconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", "--goals", *sys.argv[1:]]))
