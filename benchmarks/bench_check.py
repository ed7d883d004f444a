"""Model checker throughput: native qspinlock, exhaustive, the issue's calibration points.

The ARMv8 and LKMM points run on the execution-graph checker (graphs explored in the states column,
executions in the transitions column).  Each configuration runs in a fresh process (so peak memory is its own) with a time budget;
a run that hits the budget reports how far it got (verdict incomplete).

    .venv/bin/python benchmarks/bench_check.py            # the issue's points
    .venv/bin/python benchmarks/bench_check.py --budget 60
    .venv/bin/python benchmarks/bench_check.py --models armv8,lkmm   # the execution-graph points only
    .venv/bin/python benchmarks/bench_check.py --models armv8 --jobs 2   # each graph point on 1 and on 2 processes
    .venv/bin/python benchmarks/bench_check.py --baseline HEAD~3   # each point on both, side by side
    .venv/bin/python benchmarks/bench_check.py --symmetry start,full  # each point in each mode, side by side

``--baseline REV`` checks REV out into a temporary git worktree and runs every point
with that tree's ``src`` first, then with this one, so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POINTS = [  # (lock, cpus, acquisitions, memory model, target seconds or None)
    ("qspinlock", 3, 1, "sc", 5),
    ("qspinlock", 3, 1, "tso", 60),
    ("qspinlock", 3, 2, "sc", None),
    ("qspinlock", 4, 1, "sc", 120),
    ("pvqspinlock", 3, 1, "sc", None),
    ("qspinlock", 3, 2, "tso", None),
    ("qspinlock", 4, 2, "sc", None),  # Spin exhausts 24 GB on it: how far in the budget
    # ARMv8, on the execution-graph checker: "states" are graphs explored, "transitions" the
    # executions (complete consistent graphs; GenMC counts 6 for qspinlock with 2 threads)
    ("qspinlock", 2, 1, "armv8", None),
    ("pvqspinlock", 2, 1, "armv8", None),
    ("qspinlock", 2, 2, "armv8", None),
    ("qspinlock", 3, 1, "armv8", 30),
    ("qspinlock", 4, 1, "armv8", 600),
    # the Linux-kernel memory model (current), same engine
    ("qspinlock", 3, 1, "lkmm", 120),
    ("qspinlock", 4, 1, "lkmm", 1800),
]
GRAPH_MODELS = ("armv8", "lkmm")
GENMC_QSPINLOCK_2 = 6  # executions GenMC reports for its two-thread qspinlock test (the figure)


def one(lock: str, cpus: int, acq: int, model: str, budget: float, symmetry: str | None, jobs: int = 1) -> dict:
    from pvspin.check.exhaustive import explore
    from pvspin.check.runner import CheckOptions, build_world

    deadline = time.perf_counter() + budget

    def stop_at_deadline(_result):
        if time.perf_counter() > deadline:
            raise KeyboardInterrupt  # either search ends with an incomplete verdict

    if model in GRAPH_MODELS:
        from pvspin.check.graph import runner as graphs  # imported here: a --baseline tree may predate it

        parallel = {} if jobs == 1 else {"jobs": jobs, "max_seconds": budget}  # the workers keep the deadline
        g = graphs.run(CheckOptions(lock=lock, cpus=cpus, acquisitions=acq, memory_model=model, **parallel),
                       progress=stop_at_deadline).result
        verdict, states, transitions, executions, seconds = g.verdict, g.graphs, g.executions, g.executions, g.seconds
    else:
        mode = {} if symmetry is None else {"symmetry": symmetry}  # None: the tree's default (a baseline may predate it)
        world = build_world(CheckOptions(lock=lock, cpus=cpus, acquisitions=acq, memory_model=model, **mode))
        r = explore(world, progress=stop_at_deadline)
        verdict, states, transitions, executions, seconds = r.verdict, r.states, r.transitions, r.executions, r.seconds
    return {"lock": lock, "cpus": cpus, "acquisitions": acq, "model": model, "verdict": verdict,
            "states": states, "transitions": transitions, "executions": executions,
            "seconds": round(seconds, 2), "states_per_s": round(states / seconds) if seconds else None,
            "peak_rss_mb": round(max(resource.getrusage(who).ru_maxrss
                                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024)}


def run_point(point, budget: float, src: Path | None, symmetry: str | None = None, jobs: int = 1) -> dict:
    lock, cpus, acq, model, _ = point
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    mode = [] if symmetry is None else ["--one-symmetry", symmetry]
    mode += [] if jobs == 1 else ["--jobs", str(jobs)]
    out = subprocess.run([sys.executable, __file__, "--budget", str(budget), "--one", lock, str(cpus), str(acq), model,
                          *mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def print_row(name: str, r: dict, target) -> None:
    print(f"{name:<36} {r['verdict']:<10} {r['states']:>9} {r['transitions']:>11} {r['seconds']:>8} "
          f"{r['states_per_s']:>8} {r['peak_rss_mb']:>7}  {f'{target} s' if target else '-'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300, help="seconds per configuration")
    parser.add_argument("--baseline", metavar="REV", help="also run each point on this git revision, side by side")
    parser.add_argument("--symmetry", help="comma-separated modes (full, start, none) to run each point in")
    parser.add_argument("--models", help="comma-separated memory models: only their points (e.g. armv8,lkmm)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="graph points also on this many processes (check --jobs), beside one")
    parser.add_argument("--one", nargs=4, metavar=("LOCK", "CPUS", "ACQ", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--one-symmetry", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        lock, cpus, acq, model = args.one
        symmetry = None if model in GRAPH_MODELS else args.one_symmetry  # graphs are not reduced by symmetry
        print(json.dumps(one(lock, int(cpus), int(acq), model, args.budget, symmetry, args.jobs)))
        return
    modes = args.symmetry.split(",") if args.symmetry else [None]
    print(f"{'configuration':<36} {'verdict':<10} {'states':>9} {'transitions':>11} {'seconds':>8} "
          f"{'states/s':>8} {'peak MB':>7}  target")
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if args.baseline:
            subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-q", tmp, args.baseline], check=True)
            base = Path(tmp) / "src"
        try:
            for point in POINTS:
                lock, cpus, acq, model, target = point
                if args.models and model not in args.models.split(","):
                    continue
                name = f"{lock} N={cpus} K={acq} {model.upper()}"
                for mode in modes if model not in GRAPH_MODELS else [None]:
                    label = name if mode is None else f"{name} {mode}"
                    if base is not None:
                        print_row(f"{label} ({args.baseline})", run_point(point, args.budget, base, mode), target)
                    row = run_point(point, args.budget, None, mode)
                    print_row(label, row, target)
                    if args.jobs > 1 and model in GRAPH_MODELS:
                        print_row(f"{label} jobs={args.jobs}", run_point(point, args.budget, None, jobs=args.jobs), target)
                    if (lock, cpus, acq, model) == ("qspinlock", 2, 1, "armv8"):
                        genmc = (f"  GenMC, qspinlock with 2 threads: {GENMC_QSPINLOCK_2} executions; "
                                 f"ours, 2 x 1 under ARMv8: {row['executions']}")
                        print(genmc, flush=True)
        finally:
            if base is not None:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", tmp], check=True)


if __name__ == "__main__":
    main()
