"""Engine throughput: guest operations per CPU-second, contended locktorture, and how it scales.

    .venv/bin/python benchmarks/bench_engine.py                    # this tree
    .venv/bin/python benchmarks/bench_engine.py --baseline 2ae79f4  # each point on both, side by side
    .venv/bin/python benchmarks/bench_engine.py --profile pvqspinlock
    make compile && .venv/bin/python benchmarks/bench_engine.py --baseline 2ae79f4   # the compiled engine

Two tables.  *Throughput*: every lock, 8 vCPUs on 4 pCPUs, ``--duration-ms`` simulated, and all
of them together (their operations over their CPU time).  *Scaling*: every lock at 4 vCPUs and at
128, overcommitted 2x (as the throughput table) and one vCPU per pCPU, each pair over the same
simulated vCPU-time, as CPU microseconds per guest operation and per engine event, and how much
each grows.  Per event is the engine's own scaling; per operation also counts how many more
events the model takes per operation with more vCPUs (yield storms under overcommit).

Each run is a fresh process; host time is that process's CPU time (``time.process_time``), the
best of ``--repeats`` runs, so that other load on a shared machine inflates it less than
wall-clock time would.  ``--baseline REV`` checks REV out into a temporary git worktree and runs
every point with that tree's ``src`` and with this one, alternating run by run, so that both see
the same machine load, and prints the ratios (this tree over REV's).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCKS = ("ticket", "qspinlock", "virt-tas", "pvqspinlock", "pvqspinlock-4.2")
SCALING = {  # shape: (vCPUs, pCPUs, simulated ms) at 4 and at 128 vCPUs, the same vCPU-time
    "2x overcommit": ((4, 2, 64.0), (128, 64, 2.0)),
    "1:1": ((4, 4, 16.0), (128, 128, 0.5)),
}


def measure(lock: str, vcpus: int, pcpus: int, duration_ms: float, repeats: int = 1) -> dict:
    """Guest operations, engine events and the best CPU time of ``repeats`` identical runs."""
    from pvspin.sim.config import HostConfig
    from pvspin.sim.scenario import GuestSpec, Run, Scenario

    host = "kvm-nopv" if lock == "virt-tas" else "kvm"
    scenario = Scenario(host=HostConfig(pcpus=pcpus, hypervisor=host), guests=[GuestSpec(vcpus=vcpus, lock=lock)],
                        duration_ms=duration_ms, seed=1)  # fmt: skip
    best = None
    for _ in range(repeats):
        run = Run(scenario)
        start = time.process_time()  # CPU time of this process: robust to other load on the machine
        run.run(chunks=1)
        seconds = time.process_time() - start
        best = seconds if best is None else min(best, seconds)
    try:
        from pvspin.sim._compiled import compiled
    except ImportError:  # a tree from before the optional compiled engine
        compiled = list
    return {"ops": sum(v.ops for v in run.sim.vcpus), "events": run.sim.events, "seconds": best,
            "engine": "compiled (mypyc)" if compiled() else "pure Python"}  # fmt: skip


def run_point(src: Path | None, lock: str, vcpus: int, pcpus: int, duration_ms: float, repeats: int) -> dict:
    """:func:`measure` in a fresh process, importing pvspin from ``src`` (None: this tree's)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, __file__, "--one", lock, str(vcpus), str(pcpus), str(duration_ms),
                          str(repeats)], capture_output=True, text=True, check=True, env=env)  # fmt: skip
    return json.loads(out.stdout)


def best(a: dict | None, b: dict) -> dict:
    return b if a is None or b["seconds"] < a["seconds"] else a


def ratio(new: float, old: float | None) -> str:
    return f"{new / old:>6.2f}x" if old else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-ms", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; the fastest counts (noisy hosts)")
    parser.add_argument("--baseline", metavar="REV", help="also run each point on this git revision, side by side")
    parser.add_argument("--no-scaling", action="store_true", help="only the throughput table")
    parser.add_argument("--profile", choices=LOCKS, help="a cProfile of one lock's throughput point")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        lock, vcpus, pcpus, ms, repeats = args.one
        print(json.dumps(measure(lock, int(vcpus), int(pcpus), float(ms), int(repeats))))
        return
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(measure, args.profile, 8, 4, args.duration_ms)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if args.baseline:
            subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-q", tmp, args.baseline], check=True)
            base = Path(tmp) / "src"
        try:

            def both(*point):
                """The point on REV's tree and on this one, alternating, best of ``--repeats`` each."""
                old = new = None
                for _ in range(args.repeats):
                    if base is not None:
                        old = best(old, run_point(base, *point, 1))
                    new = best(new, run_point(None, *point, 1))
                return old, new

            throughput(both, args)
            if not args.no_scaling:
                scaling(both, args)
        finally:
            if base is not None:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", tmp], check=True)


def throughput(both, args) -> None:
    print(f"throughput: 8 vCPUs on 4 pCPUs, {args.duration_ms} ms simulated"
          + (f"; ratios: this tree / {args.baseline}" if args.baseline else ""))  # fmt: skip
    print(f"{'lock':<16} {'guest ops':>10} {'events':>10} {'CPU s':>7} {'ops/s':>10} {'baseline':>10} {'ratio':>7}")
    totals = {"ops": 0, "seconds": 0.0, "base_ops": 0, "base_seconds": 0.0}
    for i, lock in enumerate(LOCKS):
        old, new = both(lock, 8, 4, args.duration_ms)
        if i == 0:
            print(f"(engine: {new['engine']}" + (f"; {args.baseline}: {old['engine']})" if old else ")"))
        rate = new["ops"] / new["seconds"]
        old_rate = old["ops"] / old["seconds"] if old else None
        totals["ops"] += new["ops"]
        totals["seconds"] += new["seconds"]
        if old:
            totals["base_ops"] += old["ops"]
            totals["base_seconds"] += old["seconds"]
        print(f"{lock:<16} {new['ops']:>10,} {new['events']:>10,} {new['seconds']:>7.2f} {rate:>10,.0f} "
              f"{f'{old_rate:,.0f}' if old_rate else '':>10} {ratio(rate, old_rate)}", flush=True)  # fmt: skip
    rate = totals["ops"] / totals["seconds"]
    old_rate = totals["base_ops"] / totals["base_seconds"] if totals["base_seconds"] else None
    print(f"{'all together':<16} {totals['ops']:>10,} {'':>10} {totals['seconds']:>7.2f} {rate:>10,.0f} "
          f"{f'{old_rate:,.0f}' if old_rate else '':>10} {ratio(rate, old_rate)}")  # fmt: skip


def scaling(both, args) -> None:
    print("\nscaling: CPU us per guest operation and per engine event, 4 vCPUs against 128, the same simulated "
          "vCPU-time" + (f"; in brackets, {args.baseline}'s" if args.baseline else ""))  # fmt: skip
    print(f"{'lock':<16} {'shape':<13} {'us/op 4':>8} {'us/op 128':>10} {'growth':>15} "
          f"{'us/ev 4':>8} {'us/ev 128':>10} {'growth':>15}")  # fmt: skip
    for lock in LOCKS:
        for shape, (small, large) in SCALING.items():
            (old_small, new_small), (old_large, new_large) = both(lock, *small), both(lock, *large)

            def cost(run: dict, per: str) -> float:
                return run["seconds"] / run[per] * 1e6

            cells = []
            for per in ("ops", "events"):
                growth = f"{cost(new_large, per) / cost(new_small, per):.1f}x"
                if old_small is not None:
                    growth += f" [{cost(old_large, per) / cost(old_small, per):.1f}x]"
                cells.append(f"{cost(new_small, per):>8.2f} {cost(new_large, per):>10.2f} {growth:>15}")
            print(f"{lock:<16} {shape:<13} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
