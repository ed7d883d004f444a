"""``pvspin run``: one scenario on the timed simulator, as a table or one JSON object."""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console
from rich.table import Table

from ..kernel.userlock import UserLockError
from ..machine import watchdog
from ..output import unwritable
from .scenario import BadInput, Run, Scenario, merge, scenario_from
from .trace import Tracer
from .vcpu import SimulationError

# 1: a finding: a guest crashed (its BUG, its code failing as Python), or locktorture's FAILURE (Fail > 0)
EXIT_FINDING, EXIT_BAD_INPUT = 1, 2


def parse_number(flag: str, text: str | None, kind=int, minimum=None):
    """A flag's text as an int or a finite float; ranges are the scenario model's to check."""
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise BadInput(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if not math.isfinite(value):
        raise BadInput(f"{flag} must be a finite number, got {text!r}")
    if minimum is not None and value < minimum:
        raise BadInput(f"{flag} must be at least {minimum}, got {text!r}")
    return value


# The flags of ``run`` and ``sweep`` that set a scenario field: (field path, type; None: as given).
# One table both builds the overrides and names the flag when the scenario model refuses a value.
FLAG_FIELDS = {
    "host": ("host.hypervisor", None),
    "pcpus": ("host.pcpus", int),
    "ple": ("host.scheduling.ple", None),
    "spurious_hz": ("host.spurious_wakeup_hz", float),
    "kernel": ("guests.0.kernel", None),
    "lock": ("guests.0.lock", None),
    "vcpus": ("guests.0.vcpus", int),
    "patching": ("guests.0.patching", None),
    "irq_rate": ("guests.0.interrupts.rate_hz", float),
    "lock_count": ("guests.0.workload.locks", int),
    "hold_ns": ("guests.0.workload.hold.mean_ns", float),
    "delay_ns": ("guests.0.workload.delay.mean_ns", float),
    "duration_ms": ("duration_ms", float),
    "warmup_ms": ("warmup_ms", float),
    "stat_interval": ("stat_interval_ms", float),
    "nwriters_stress": ("guests.0.workload.nwriters_stress", int),
    "long_hold": ("guests.0.workload.long_hold", int),
    "workload": ("guests.0.workload.kind", None),
    "seed": ("seed", int),
    "hogs": ("hog_guests", int),
    "hog_vcpus": ("hog_vcpus", int),
}


def flag_name(flag: str) -> str:
    return "--" + flag.replace("_", "-")


def flag_fields(flags: dict) -> dict:
    """``{field path: flag}`` of the flags given, for errors that name the flag rather than the field."""
    return {path: flag_name(flag) for flag, (path, _) in FLAG_FIELDS.items() if flags.get(flag) is not None}


def flag_overrides(flags: dict) -> dict:
    """The scenario fields given on the command line (flags left unset override nothing)."""
    top: dict = {}
    for flag, (path, kind) in FLAG_FIELDS.items():
        text = flags.get(flag)
        if text is not None:
            value = text if kind is None else parse_number(flag_name(flag), text, kind)
            for part in reversed(path.split(".")):  # guests.0.vcpus -> {"guests": [{"vcpus": value}]}
                value = [value] if part == "0" else {part: value}
            top = merge(top, value)
    return top


def build_scenario(scenario_file: str | None, flags: dict) -> Scenario:
    scenario = scenario_from(scenario_file, flag_overrides(flags), flag_fields(flags))
    if flags.get("hog_vcpus") is not None and not scenario.hog_guests:
        raise BadInput(f"--hog-vcpus {flags['hog_vcpus']}: there are no hog guests to size (give --hogs N)")
    return scenario


WINDOW_FORMAT = "START:END, milliseconds of simulated time since boot"


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--trace-window START:END`` as (START, END) in milliseconds, 0 <= START < END, both finite."""
    if text is None:
        return None
    start_text, colon, end_text = text.partition(":")
    try:
        if not colon:
            raise ValueError
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise BadInput(f"--trace-window must be {WINDOW_FORMAT}, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise BadInput(f"--trace-window must be finite milliseconds, got {text!r}")
    if start < 0:
        raise BadInput(f"--trace-window must not start before 0 ms, got {text!r}")
    if start >= end:
        raise BadInput(f"--trace-window must start before it ends, got {text!r}")
    return start, end


def window_cycles(scenario: Scenario, window: tuple[float, float] | None, text: str | None) -> tuple[int, int] | None:
    """A window in ms as cycles of ``scenario``'s clock, refused if it starts after the run ends."""
    if window is None:
        return None
    cycles_per_ms = scenario.host.costs.freq_mhz * 1000
    length = scenario.warmup_ms + scenario.duration_ms
    if window[0] >= length:
        raise BadInput(f"--trace-window must start before the run ends (at {length:g} ms), got {text!r}")
    return int(window[0] * cycles_per_ms), int(window[1] * cycles_per_ms)  # as Run.run converts


def execute(scenario: Scenario, trace_path: str | None, show_progress: bool,
            trace_window: tuple[int, int] | None = None) -> dict:  # fmt: skip
    """Run ``scenario``; with ``trace_path``, stream its timeline there (within ``trace_window``, cycles).

    The trace file is opened once the run is set up, and ended (valid JSON) however the run ends:
    a guest's crash leaves the timeline up to it.
    """
    tracer = Tracer(scenario.host.costs.freq_mhz, trace_window) if trace_path else None
    try:
        run = Run(scenario, tracer=tracer)
    except (ValueError, UserLockError) as err:
        raise BadInput(str(err)) from None
    if tracer is None:
        return _run(run, show_progress)
    with open(trace_path, "w", encoding="utf-8", buffering=1 << 20) as out:
        tracer.start(out)
        try:
            return _run(run, show_progress)
        finally:
            tracer.finish(run.sim.now, run.sim)


def _run(run: Run, show_progress: bool) -> dict:
    if not show_progress:
        return run.run()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("run", total=1.0)
        return run.run(lambda done: bar.update(task, completed=done))


def render(result: dict, console: Console) -> None:
    """The table view: per guest, what locktorture and /sys/kernel/debug/lockevent would show."""
    host = result["host"]
    table = Table(title="pvspin run", title_justify="left")
    for column in (
        "guest",
        "lock",
        "vCPUs",
        "acq/s",
        "max/min",
        "Jain",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "max ns",
        "fail",
    ):
        table.add_column(column, justify="left" if column in ("guest", "lock") else "right")
    for g in result["guests"]:
        lat = g["latency_ns"]
        spread = g["fairness_max_over_min"]
        table.add_row(
            g["guest"], g["lock"], str(g["vcpus"]), f"{g['throughput']:,.0f}", "inf" if spread is None else f"{spread:.2f}",
            f"{g.get('per_writer', g['per_vcpu'])['jain_index']:.3f}", f"{lat['p50']:,.0f}", f"{lat['p99']:,.0f}", f"{lat['p99.9']:,.0f}",
            f"{lat['max']:,.0f}", str(g["fail"]),
        )  # fmt: skip
    console.print(table)
    share = host["pcpu_time_share"]
    console.print("pCPU time: " + ", ".join(f"{name.replace('_', ' ')} {value:.1%}" for name, value in share.items()))
    for g in result["guests"]:
        name = g["guest"]
        for line in kbuild_lines(g) if "kbuild" in g else locktorture_lines(g):
            console.print(f"{name}: {line}")
        console.print(
            f"{name}: VM exits {g['vm_exits']:,}, halts {g['halts']:,}, kicks {g['kicks']:,}, "
            f"lock-holder preemptions {g['lock_holder_preemptions']:,}, "
            f"waiters preempted while spinning {g['waiter_preemptions']:,}"
        )
        if g["halt_attempted_poll"]:  # KVM's own counters, as its debugfs names them
            console.print(f"{name}: kvm halt polling: halt_attempted_poll {g['halt_attempted_poll']:,}, "
                          f"halt_successful_poll {g['halt_successful_poll']:,}")  # fmt: skip
        if g["debugfs_dir"]:
            console.print(f"{name}: /sys/kernel/debug/{g['debugfs_dir']}/")
            for counter, value in g["lock_event_counts"].items():
                console.print(f"  {counter:<20} {value}")
        console.print(f"{name}: perf lock contention (per lock)")
        for line in perf_lock_lines(g["lock_contention"]):
            console.print(line)
        if any(r["samples"] for r in g["kvm_exits"].values()):
            console.print(f"{name}: perf kvm stat report (VM exits of all vCPUs)")
            for line in perf_kvm_lines(g["kvm_exits"]):
                console.print(line)
        console.print(f"{name}: steal time (ms) per vCPU: " + " ".join(f"{s / 1e6:.3f}" for s in g["steal_ns"]))
    console.print(
        f"simulated {host['simulated_seconds'] * 1e3:.1f} ms in {host['host_seconds']:.2f} s host time, "
        f"{host['guest_operations']:,} guest operations, {host['engine_events']:,} engine events"
    )


def dmesg_time(seconds: float) -> str:
    """The ``[%5lu.%06lu]`` stamp dmesg puts before a line, from simulated seconds since boot."""
    micros = round(seconds * 1e6)
    return f"[{micros // 1_000_000:5d}.{micros % 1_000_000:06d}]"


def locktorture_lines(g: dict) -> list[str]:
    """locktorture's statistics lines (``__torture_print_stats``: Writes, then ``???`` when the
    busiest writer did more than twice the idlest's acquisitions, Fail as 0/1 with ``!!!``) and its
    closing ``End of test`` line, with the parameters that mean here what they mean there."""
    torture = g["locktorture"]
    lines = []
    for st in torture["stats"]:
        unfair = "???" if st["max"] // 2 > st["min"] else ""
        fail = 1 if st["fail"] else 0
        lines.append(f"{dmesg_time(st['t_s'])} Writes:  Total: {st['total']}  Max/Min: {st['max']}/{st['min']} "
                     f"{unfair}  Fail: {fail} {'!!!' if fail else ''}".rstrip())
    params = f"nwriters_stress={torture['nwriters_stress']}"  # in the kernel's order
    if torture["long_hold"] is not None:
        params = f"long_hold={torture['long_hold']} {params}"
    lines.append(f"spin_lock-torture:--- End of test: {torture['verdict']}: {params}")
    return lines


def kbuild_lines(g: dict) -> list[str]:
    """A build's result: its completion time from boot, or how far it got."""
    b = g["kbuild"]
    what = f"kbuild: {b['tasks']} tasks by {b['jobs']} jobs on {g['vcpus']} vCPUs"
    if b["completion_ms"] is None:
        return [f"{what}: NOT COMPLETE, {b['tasks_done']} tasks done when the run ended (duration_ms)"]
    return [f"{what}: completed in {b['completion_ms']:.3f} ms"]


def human_time(ns: float) -> str:
    """A duration as perf prints one: ns, us, ms or s, two decimals above ns."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def perf_lock_lines(rows: list[dict]) -> list[str]:
    lines = [f" {'contended':>9} {'total wait':>12} {'max wait':>12} {'avg wait':>12} {'type':>12}   lock"]
    for r in sorted(rows, key=lambda r: (-r["total_wait_ns"], r["lock"])):  # perf sorts by total wait
        lines.append(f" {r['contended']:>9} {human_time(r['total_wait_ns']):>12} {human_time(r['max_wait_ns']):>12} "
                     f"{human_time(r['avg_wait_ns']):>12} {'spinlock':>12}   {r['lock']}")
    return lines


def perf_kvm_lines(exits: dict) -> list[str]:
    samples = sum(r["samples"] for r in exits.values())
    time_ns = sum(r["time_ns"] for r in exits.values())
    lines = [f"{'VM-EXIT':>20} {'Samples':>10} {'Samples%':>9} {'Time%':>9} {'Min Time':>11} {'Max Time':>11} "
             f"{'Avg time':>11}"]
    for reason, r in sorted(exits.items(), key=lambda item: (-item[1]["samples"], item[0])):  # perf: by samples
        if r["samples"]:
            lines.append(f"{reason:>20} {r['samples']:>10} {r['samples'] / samples:>9.2%} "
                         f"{(r['time_ns'] / time_ns if time_ns else 0):>9.2%} {r['min_ns'] / 1e3:>9.2f}us "
                         f"{r['max_ns'] / 1e3:>9.2f}us {r['avg_ns'] / 1e3:>9.2f}us")
    return lines


def main(scenario_file: str | None, flags: dict, trace_path: str | None, json_out: bool,
         trace_window: str | None = None) -> int:  # fmt: skip
    try:
        problem = unwritable("--trace", trace_path) if trace_path is not None else None
        if problem:
            raise BadInput(problem)
        window = parse_window(trace_window)
        if window is not None and trace_path is None:
            raise BadInput(f"--trace-window {trace_window}: there is no trace to window (give --trace FILE)")
        with watchdog.guard():
            scenario = build_scenario(scenario_file, flags)
            cycles = window_cycles(scenario, window, trace_window)
            if trace_path is not None:  # what the checks above cannot tell (e.g. as root): try it
                try:
                    open(trace_path, "ab").close()
                except OSError as err:
                    raise BadInput(f"--trace {trace_path}: {err.strerror or err}") from None
            interactive = sys.stderr.isatty() and not json_out
            result = execute(scenario, trace_path, interactive, cycles)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SimulationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FINDING
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        render(result, Console(width=None if sys.stdout.isatty() else 160, highlight=False))
        if trace_path:
            print(f"trace written to {trace_path} (open it in https://ui.perfetto.dev)")
    failed = any(g["fail"] for g in result["guests"])  # locktorture's FAILURE, or a kbuild's
    return EXIT_FINDING if failed else 0
