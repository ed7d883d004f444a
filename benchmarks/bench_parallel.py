"""Parallel speed-ups, whole commands timed side by side: --jobs 2 over --jobs 1, and --ray over --jobs 2.

Each pair runs in turn (A B A B ...), so both see the same machine load; the ratio is taken
pair by pair and its median printed, with the load average before and after and each side's
CPU seconds (a ratio of CPU seconds above 1 is work the parallel run adds).

    .venv/bin/python benchmarks/bench_parallel.py                 # every pair, 3 rounds
    .venv/bin/python benchmarks/bench_parallel.py --only check-qspinlock-3x3 --rounds 5
    .venv/bin/python benchmarks/bench_parallel.py --ray auto      # --ray pairs on a running cluster

The ``--ray`` pairs start a local Ray cluster per run unless ``--ray ADDRESS`` names one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PVSPIN = [sys.executable, "-m", "pvspin"]
SWEEP = ["sweep", "--param", "hold-ns=100,200,400,800", "--seeds", "2", "--duration-ms", "20", "--no-plots"]
CHECK_Q33 = ["check", "--lock", "qspinlock", "--cpus", "3", "--acquisitions", "3"]
CHECK_PV32 = ["check", "--lock", "pvqspinlock", "--cpus", "3", "--acquisitions", "2"]


def pairs(ray: str | None) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (A, B): the ratio printed is B's wall time over A's (how much faster A is)."""
    remote = ["--ray"] + ([ray] if ray else [])
    return {
        "sweep-8-points": (SWEEP + ["--jobs", "2"], SWEEP + ["--jobs", "1"]),
        "check-qspinlock-3x3": (CHECK_Q33 + ["--jobs", "2"], CHECK_Q33 + ["--jobs", "1"]),
        "check-pvqspinlock-3x2": (CHECK_PV32 + ["--jobs", "2"], CHECK_PV32 + ["--jobs", "1"]),
        "sweep-ray-vs-jobs-2": (SWEEP + remote, SWEEP + ["--jobs", "2"]),
        "check-qspinlock-3x3-ray-vs-jobs-2": (CHECK_Q33 + remote + ["--jobs", "2"], CHECK_Q33 + ["--jobs", "2"]),
    }


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds (the command and its children) of one run, and its last line of output."""
    out = None
    if args[0] == "sweep":
        out = tempfile.mkdtemp(prefix="bench-sweep-")
        args = args + ["--out", out]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(PVSPIN + args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return wall, cpu, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated pair names")
    parser.add_argument("--ray", default=None, help="a running cluster's address for the --ray pairs")
    a = parser.parse_args()
    chosen = pairs(a.ray)
    if a.only:
        chosen = {name: chosen[name] for name in a.only.split(",")}
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    for name, (fast, slow) in chosen.items():
        ratios, walls, cpus = [], ([], []), ([], [])
        for _ in range(a.rounds):
            wa, ca, last = timed(fast)
            wb, cb, _ = timed(slow)
            ratios.append(wb / wa)
            walls[0].append(wa)
            walls[1].append(wb)
            cpus[0].append(ca)
            cpus[1].append(cb)
        med = statistics.median
        print(f"{name}: {med(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); "
              f"wall {med(walls[0]):.1f} s vs {med(walls[1]):.1f} s; CPU {med(cpus[0]):.1f} s vs {med(cpus[1]):.1f} s; "
              f"load {os.getloadavg()[0]:.1f}; {last}", flush=True)


if __name__ == "__main__":
    main()
