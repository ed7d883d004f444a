"""Detection rates of PCT against random walks on bug-corpus bugs that need several preemptions.

For each bug (its corpus exposure, or a variant of it), each strategy runs ``--runs`` independent
executions (run i of seed s is one execution; no shrinking, no report) and counts those that end in a
violation.  PCT runs at its default depth (``--pct-depth`` unset: CPUs + interrupts + 1) and at the
depths given with ``--depths``.  Same arguments, same counts: every run is seeded.

    .venv/bin/python benchmarks/bench_pct.py [--runs N] [--depths 2,3,4,5]
"""

from __future__ import annotations

import argparse
import time

from pvspin.check.bugs import EXPOSURES
from pvspin.check.pct import pct
from pvspin.check.randomwalk import random_walks
from pvspin.check.result import VIOLATION
from pvspin.check.runner import build_world

# (label, bug, changes to its exposure): the minimum preemptions are those `pvspin check` reports
CASES = [
    ("pending-after-tail, qspinlock 3x2 SC", "pending-after-tail", {}),
    ("pending-after-tail, qspinlock 3x2 TSO", "pending-after-tail", {"memory_model": "tso"}),
    ("count-after-init, pvqspinlock 2x2 SC, 3 irqs", "count-after-init", {"strategy": "random"}),
]


def rate(world, start: bytes, strategy: str, runs: int, depth: int | None = None) -> int:
    """How many of ``runs`` single executions from the snapshot ``start`` find a violation."""
    found = 0
    for seed in range(runs):
        world.restore(start)  # a strategy samples from the state it is given, and leaves it at a run's end
        if strategy == "pct":
            result = pct(world, 1, seed, depth)
        else:
            result = random_walks(world, 1, seed)
        found += result.verdict == VIOLATION
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--depths", default="2,3,4,5")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",") if d]
    print(f"{'bug':<46} {'strategy':<16} {'found':>9} {'rate':>7} {'s':>6}")
    for label, bug, changes in CASES:
        opts = EXPOSURES[bug].options(bug, **changes)
        world = build_world(opts)
        start = world.snapshot()
        rows = [("random", "random", None), (f"pct d={opts.depth()} (def.)", "pct", opts.depth())]
        rows += [(f"pct d={d}", "pct", d) for d in depths if d != opts.depth()]
        for name, strategy, depth in rows:
            started = time.perf_counter()
            found = rate(world, start, strategy, args.runs, depth)
            print(f"{label:<46} {name:<16} {found:>4}/{args.runs:<4} {found / args.runs:>7.1%} "
                  f"{time.perf_counter() - started:>6.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
