"""``pvspin run``: one scenario on the timed simulator, as a table or one JSON object."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from ..kernel.userlock import UserLockError
from .scenario import BadInput, Run, Scenario, scenario_from
from .trace import Tracer

EXIT_BAD_INPUT = 2


def parse_number(flag: str, text: str | None, kind=int, minimum=None):
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise BadInput(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise BadInput(f"{flag} must be at least {minimum}, got {text!r}")
    return value


def flag_overrides(flags: dict) -> dict:
    """The scenario fields given on the command line (flags left unset override nothing)."""
    host: dict = {}
    guest: dict = {}
    workload: dict = {}
    top: dict = {}
    if flags["host"] is not None:
        host["hypervisor"] = flags["host"]
    if flags["pcpus"] is not None:
        host["pcpus"] = parse_number("--pcpus", flags["pcpus"], minimum=1)
    if flags["ple"] is not None:
        host["scheduling"] = {"ple": flags["ple"]}
    if flags["spurious_hz"] is not None:
        host["spurious_wakeup_hz"] = parse_number("--spurious-hz", flags["spurious_hz"], float, 0)
    if flags["kernel"] is not None:
        guest["kernel"] = flags["kernel"]
    if flags["lock"] is not None:
        guest["lock"] = flags["lock"]
    if flags["vcpus"] is not None:
        guest["vcpus"] = parse_number("--vcpus", flags["vcpus"], minimum=1)
    if flags["patching"] is not None:
        guest["patching"] = flags["patching"]
    if flags["irq_rate"] is not None:
        guest["interrupts"] = {"rate_hz": parse_number("--irq-rate", flags["irq_rate"], float, 0)}
    if flags["locks"] is not None:
        workload["locks"] = parse_number("--locks", flags["locks"], minimum=1)
    if flags["hold_ns"] is not None:
        workload["hold"] = {"mean_ns": parse_number("--hold-ns", flags["hold_ns"], float, 0)}
    if flags["delay_ns"] is not None:
        workload["delay"] = {"mean_ns": parse_number("--delay-ns", flags["delay_ns"], float, 0)}
    if workload:
        guest["workload"] = workload
    if host:
        top["host"] = host
    if guest:
        top["guests"] = [guest]
    if flags["duration_ms"] is not None:
        top["duration_ms"] = parse_number("--duration-ms", flags["duration_ms"], float, 0)
        if top["duration_ms"] <= 0:
            raise BadInput(f"--duration-ms must be positive, got {flags['duration_ms']!r}")
    if flags["seed"] is not None:
        top["seed"] = parse_number("--seed", flags["seed"], minimum=0)
    if flags["hogs"] is not None:
        top["hog_guests"] = parse_number("--hogs", flags["hogs"], minimum=0)
    if flags["hog_vcpus"] is not None:
        top["hog_vcpus"] = parse_number("--hog-vcpus", flags["hog_vcpus"], minimum=1)
    return top


def build_scenario(scenario_file: str | None, flags: dict) -> Scenario:
    return scenario_from(scenario_file, flag_overrides(flags))


def execute(scenario: Scenario, trace_path: str | None, show_progress: bool) -> dict:
    tracer = Tracer(scenario.host.costs.freq_mhz) if trace_path else None
    try:
        run = Run(scenario, tracer=tracer)
    except (ValueError, UserLockError) as err:
        raise BadInput(str(err)) from None
    if show_progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("run", total=1.0)
            result = run.run(lambda done: bar.update(task, completed=done))
    else:
        result = run.run()
    if tracer is not None:
        tracer.finish(run.sim.now, run.sim)
        tracer.write(trace_path)
    return result


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
            f"{g['per_vcpu']['jain_index']:.3f}", f"{lat['p50']:,.0f}", f"{lat['p99']:,.0f}", f"{lat['p99.9']:,.0f}",
            f"{lat['max']:,.0f}", str(g["fail"]),
        )  # fmt: skip
    console.print(table)
    share = host["pcpu_time_share"]
    console.print("pCPU time: " + ", ".join(f"{name.replace('_', ' ')} {value:.1%}" for name, value in share.items()))
    for g in result["guests"]:
        per = g["per_vcpu"]
        # locktorture's statistics line
        console.print(
            f"{g['guest']}: Writes:  Total: {g['acquisitions']}  Max/Min: {per['max']}/{per['min']}   Fail: {g['fail']}"
        )
        console.print(
            f"{g['guest']}: VM exits {g['vm_exits']:,}, halts {g['halts']:,}, kicks {g['kicks']:,}, "
            f"lock-holder preemptions {g['lock_holder_preemptions']:,}"
        )
        kick, wake = g["pv_latency_ns"]["kick"], g["pv_latency_ns"]["wake"]
        if kick is not None or wake is not None:
            console.print(f"{g['guest']}: pv_latency_kick {kick} ns, pv_latency_wake {wake} ns (averages)")
        if g["lock_events"]:
            console.print(f"{g['guest']}: lock events: " + ", ".join(f"{k}={v:,}" for k, v in g["lock_events"].items()))
    console.print(
        f"simulated {host['simulated_seconds'] * 1e3:.1f} ms in {host['host_seconds']:.2f} s host time, "
        f"{host['guest_operations']:,} guest operations, {host['engine_events']:,} engine events"
    )


def main(scenario_file: str | None, flags: dict, trace_path: str | None, json_out: bool) -> int:
    try:
        scenario = build_scenario(scenario_file, flags)
        interactive = sys.stderr.isatty() and not json_out
        result = execute(scenario, trace_path, interactive)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        render(result, Console(width=None if sys.stdout.isatty() else 160, highlight=False))
        if trace_path:
            print(f"trace written to {trace_path} (open it in https://ui.perfetto.dev)")
    return 0
