"""How long ``pvspin run`` takes for 48 vCPUs on 32 pCPUs (the issue's reference run).

    .venv/bin/python benchmarks/bench_run_48x32.py [--duration-ms 1000] [--lock pvqspinlock]

Same scenario as ``pvspin run --vcpus 48 --pcpus 32 --duration-ms 1000`` (default workload, KVM).
Reports wall time and CPU time of the process (CPU time is what to compare when the machine is
shared), guest operations, and guest operations per CPU-second against the 300k/s target.
"""

from __future__ import annotations

import argparse
import sys
import time

from pvspin.sim.scenario import Run, Scenario, merge


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineParser(description="time pvspin run: 48 vCPUs on 32 pCPUs")
    parser.add_argument("--duration-ms", type=_positive, default=1000.0, help="simulated ms (default 1000)")
    parser.add_argument("--lock", default="pvqspinlock", help="lock kind (default pvqspinlock)")
    args = parser.parse_args(argv)
    top = {"host": {"pcpus": 32}, "guests": [{"vcpus": 48, "lock": args.lock}], "duration_ms": args.duration_ms}
    try:
        scenario = Scenario.model_validate(merge(Scenario().model_dump(), top))
        run = Run(scenario)
    except ValueError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ops = result["host"]["guest_operations"]
    print(f"48 vCPUs on 32 pCPUs, {args.lock}, {args.duration_ms:g} ms simulated: "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU, {ops:,} guest operations, "
          f"{ops / cpu:,.0f} guest ops per CPU-second (target >= 300,000)")  # fmt: skip


if __name__ == "__main__":
    main()
