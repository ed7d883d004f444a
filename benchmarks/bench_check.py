"""Model checker throughput: native qspinlock, exhaustive, the issue's calibration points.

Each configuration runs in a fresh process (so peak memory is its own) with a time budget;
a run that hits the budget reports how far it got (verdict incomplete).

    .venv/bin/python benchmarks/bench_check.py            # the issue's points
    .venv/bin/python benchmarks/bench_check.py --budget 60
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

POINTS = [  # (lock, cpus, acquisitions, memory model, target seconds or None)
    ("qspinlock", 3, 1, "sc", 5),
    ("qspinlock", 3, 1, "tso", 60),
    ("qspinlock", 3, 2, "sc", None),
    ("qspinlock", 4, 1, "sc", 120),
    ("pvqspinlock", 3, 1, "sc", None),
]


def one(lock: str, cpus: int, acq: int, model: str, budget: float) -> dict:
    from pvspin.check.exhaustive import explore
    from pvspin.check.runner import CheckOptions, build_world

    world = build_world(CheckOptions(lock=lock, cpus=cpus, acquisitions=acq, memory_model=model))
    deadline = time.perf_counter() + budget

    def stop_at_deadline(_result):
        if time.perf_counter() > deadline:
            raise KeyboardInterrupt  # explore() ends with an incomplete verdict

    r = explore(world, progress=stop_at_deadline)
    return {"lock": lock, "cpus": cpus, "acquisitions": acq, "model": model, "verdict": r.verdict,
            "states": r.states, "transitions": r.transitions, "executions": r.executions,
            "seconds": round(r.seconds, 2), "states_per_s": round(r.states / r.seconds) if r.seconds else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300, help="seconds per configuration")
    parser.add_argument("--one", nargs=4, metavar=("LOCK", "CPUS", "ACQ", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        lock, cpus, acq, model = args.one
        print(json.dumps(one(lock, int(cpus), int(acq), model, args.budget)))
        return
    print(f"{'configuration':<28} {'verdict':<10} {'states':>9} {'transitions':>11} {'seconds':>8} "
          f"{'states/s':>8} {'peak MB':>7}  target")
    for lock, cpus, acq, model, target in POINTS:
        out = subprocess.run([sys.executable, __file__, "--budget", str(args.budget), "--one", lock, str(cpus),
                              str(acq), model], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        name = f"{lock} N={cpus} K={acq} {model.upper()}"
        print(f"{name:<28} {r['verdict']:<10} {r['states']:>9} {r['transitions']:>11} {r['seconds']:>8} "
              f"{r['states_per_s']:>8} {r['peak_rss_mb']:>7}  {f'{target} s' if target else '-'}", flush=True)


if __name__ == "__main__":
    main()
