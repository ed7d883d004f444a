"""The ``pvspin`` command."""

from __future__ import annotations

import sys

import typer

RAY_HELP = ("run on a Ray cluster: ADDRESS (host:port, ray://host:port, or auto for the one `ray start` runs "
            "here), or no address for a cluster on this machine started for the run; needs pip install 'pvspin[ray]'")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The Linux paravirt queued spinlock, executable, measurable and checkable.")


@app.command()
def demo() -> None:
    """The seed's story in one minute: patch sites, unlock cost, overcommit, and a model check."""
    from . import demo as story

    raise typer.Exit(story.main())


@app.command()
def sweep(
    param: list[str] = typer.Option([], help="NAME=V1,V2,... (one or two; e.g. overcommit=0.5,1,1.5,2,3, hold-ns=200,800)"),
    locks: str = typer.Option(None, help="comma-separated lock kinds, one line each [default: the scenario's]"),
    seeds: str = typer.Option("3", help="seeds per point (error bars)"),
    out: str = typer.Option(None, help="results directory (CSV, JSON, plots); re-running resumes"),
    scenario: str = typer.Option(None, help="base TOML scenario (flags override it)"),
    host: str = typer.Option(None, help="baremetal, kvm or kvm-nopv (virt-tas always runs on kvm-nopv)"),
    pcpus: str = typer.Option(None, help="physical CPUs"),
    vcpus: str = typer.Option(None, help="vCPUs of the guest (overcommit sets it per point)"),
    duration_ms: str = typer.Option(None, help="simulated milliseconds per point"),
    hold_ns: str = typer.Option(None, help="mean hold time, ns"),
    delay_ns: str = typer.Option(None, help="mean delay between acquisitions, ns"),
    lock_count: str = typer.Option(None, help="locks the writers pick from"),
    jobs: str = typer.Option(None, help="worker processes [default: CPU count]"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="draw PNG and SVG plots"),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]", help=RAY_HELP),
) -> None:
    """Sweep one or two scenario parameters over lock kinds and seeds, in parallel; CSV, JSON and plots."""
    from .sim import sweep as sweeper

    flags = dict(host=host, pcpus=pcpus, vcpus=vcpus, duration_ms=duration_ms, hold_ns=hold_ns, delay_ns=delay_ns,
                 locks=lock_count)  # fmt: skip
    raise typer.Exit(sweeper.main(param, locks, seeds, out, scenario, flags, jobs, plots, ray))


@app.command()
def run(
    host: str = typer.Option(None, help="baremetal, kvm (PV spinlocks) or kvm-nopv [default: kvm]"),
    kernel: str = typer.Option(None, help="paravirt or no-paravirt [default: no-paravirt for ticket, else paravirt]"),
    lock: str = typer.Option(None, help="qspinlock, pvqspinlock, pvqspinlock-4.2, virt-tas, ticket, pvticket, or path/to/file.py:NAME"),
    pcpus: str = typer.Option(None, help="physical CPUs [default: 4]"),
    vcpus: str = typer.Option(None, help="vCPUs of the guest [default: 4]"),
    duration_ms: str = typer.Option(None, help="simulated milliseconds [default: 20]"),
    seed: str = typer.Option(None, help="seed [default: 0]"),
    hogs: str = typer.Option(None, help="competing CPU-hog guests"),
    hog_vcpus: str = typer.Option(None, help="vCPUs per hog guest"),
    locks: str = typer.Option(None, help="locks the writers pick from"),
    hold_ns: str = typer.Option(None, help="mean hold time, ns"),
    delay_ns: str = typer.Option(None, help="mean delay between acquisitions, ns"),
    irq_rate: str = typer.Option(None, help="interrupts per second per vCPU (handlers take their own lock)"),
    spurious_hz: str = typer.Option(None, help="spurious wake-ups per second of a halted vCPU"),
    ple: bool = typer.Option(None, "--ple/--no-ple", help="pause-loop exiting [default: on]"),
    patching: bool = typer.Option(None, "--patching/--no-patching", help="apply_paravirt at boot [default: on]"),
    scenario: str = typer.Option(None, help="TOML scenario file (flags override it)"),
    trace: str = typer.Option(None, help="write a Perfetto/Chrome trace of the timeline to this file"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Run locktorture on a simulated virtualization host and measure the lock."""
    from .sim import command

    flags = dict(host=host, kernel=kernel, lock=lock, pcpus=pcpus, vcpus=vcpus, duration_ms=duration_ms, seed=seed,
                 hogs=hogs, hog_vcpus=hog_vcpus, locks=locks, hold_ns=hold_ns, delay_ns=delay_ns, irq_rate=irq_rate,
                 spurious_hz=spurious_hz, ple=ple, patching=patching)  # fmt: skip
    raise typer.Exit(command.main(scenario, flags, trace, json_out))


@app.command()
def check(
    ctx: typer.Context,
    lock: str = typer.Option("qspinlock", help="qspinlock, qspinlock-16k, pvqspinlock, pvqspinlock-4.2, virt-tas, ticket, pvticket, or path/to/file.py:NAME"),
    cpus: str = typer.Option("2", help="CPUs, each taking the lock --acquisitions times"),
    acquisitions: str = typer.Option("1", help="acquisitions per CPU"),
    memory_model: str = typer.Option("sc", help="sc, tso (x86-TSO with store buffers), armv8 or lkmm (the Linux-kernel memory model; these two on execution graphs)"),
    bug: list[str] | None = typer.Option(None, help="inject a bug from the corpus (repeatable; see --list-bugs)"),  # noqa: B008
    list_bugs: bool = typer.Option(False, "--list-bugs", help="list the bug corpus and exit"),
    replay: str = typer.Option(None, help="re-run the interleaving of a printed replay token"),
    strategy: str = typer.Option(None, help="exhaustive, random, pct, bounded (every execution with at most --preemptions preemptions), or graph (the execution-graph checker; armv8 always uses it) [default: exhaustive]"),
    runs: str = typer.Option(None, help="runs for random/pct [default: 1000]"),
    seed: str = typer.Option(None, help="seed for random/pct [default: 0]"),
    preemptions: str = typer.Option(None, help="preemption bound of the bounded strategy [default: 2]"),
    spurious_wakeups: str = typer.Option("0", help="budget of spurious wake-ups per execution"),
    interrupts: str = typer.Option("0", help="budget of interrupts per execution (each handler takes a lock)"),
    workload: str = typer.Option("locktorture", help="locktorture, forever (liveness: CPUs re-acquire without end) or unlock-unheld"),
    knob: list[str] | None = typer.Option(None, help="LockConfig knob NAME=VALUE, e.g. max_nodes=1 (repeatable)"),  # noqa: B008
    symmetry: str = typer.Option("auto", help="full (states equal up to renaming CPUs are one), start (CPUs start in CPU order), none, or auto: full from 3 CPUs running the same code, else start"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    graph: str = typer.Option(None, help="execution-graph checker: draw the counterexample to FILE.dot (or .svg with graphviz)"),
    lkmm_version: str = typer.Option(None, help="with --memory-model lkmm: v00 (before rmw-sequences), v01 or current [default: current]"),
    max_states: str = typer.Option(None, help="stop after this many states (graphs for the graph checker): INCOMPLETE"),
    max_seconds: str = typer.Option(None, help="stop after this many seconds: INCOMPLETE"),
    jobs: str = typer.Option(None, help="workers: local processes, or with --ray Ray workers [default: 1; with --ray, the cluster's CPUs]"),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]", help=RAY_HELP),
) -> None:
    """Model-check a lock: every interleaving (or a sample) under SC or x86-TSO, or every execution graph (ARMv8, LKMM).

    Exit status: 0 verified (or no violation within the bound), 1 violation, 2 bad input,
    3 incomplete (stopped by --max-states, --max-seconds, Ctrl-C or SIGTERM, with what was explored).
    """
    from .check import command

    # the options given on the command line, by their flags: for the options that conflict
    given = frozenset(p.opts[0] for p in ctx.command.params
                      if p.name in ctx.params and ctx.get_parameter_source(p.name).name == "COMMANDLINE")
    try:
        if list_bugs:
            others = sorted(given - {"--list-bugs", "--json"})
            if others:
                raise command.BadInput(f"--list-bugs lists the corpus and takes no other option (got {others[0]})")
            typer.echo(command.list_bugs(as_json=json_out))
            return
        opts = command.CheckOptions(
            lock=lock, cpus=command.parse_int("--cpus", cpus), acquisitions=command.parse_int("--acquisitions", acquisitions),
            memory_model=memory_model, bugs=tuple(bug or ()), strategy=strategy or "exhaustive",
            runs=command.parse_int("--runs", "1000" if runs is None else runs),
            seed=command.parse_int("--seed", "0" if seed is None else seed),
            preemptions=command.parse_int("--preemptions", "2" if preemptions is None else preemptions),
            spurious_wakeups=command.parse_int("--spurious-wakeups", spurious_wakeups),
            interrupts=command.parse_int("--interrupts", interrupts), workload=workload,
            overrides=command.parse_knobs(knob or ()), replay=replay, symmetry=symmetry, lkmm_version=lkmm_version,
            max_states=None if max_states is None else command.parse_int("--max-states", max_states),
            max_seconds=None if max_seconds is None else command.parse_float("--max-seconds", max_seconds),
            jobs=command.parse_int("--jobs", "1" if jobs is None else jobs), ray=ray, given=given)
    except command.BadInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(command.EXIT_BAD_INPUT) from None
    raise typer.Exit(command.main(opts, json_out, graph))


@app.command()
def litmus(
    paths: list[str] = typer.Argument(..., help="litmus files, or directories searched recursively for *.litmus"),
    memory_model: str = typer.Option("sc", help="sc, tso (x86-TSO), armv8 or lkmm (C tests)"),
    expect: str = typer.Option(None, help="CSV of recorded verdicts (path,0|1; paths relative to the CSV's folder)"),
    engine: str = typer.Option(None, help="interleaving or graph [default: interleaving for sc and tso, graph for armv8 and lkmm]"),
    lkmm_version: str = typer.Option(None, help="with --memory-model lkmm: v00, v01 or current [default: current]"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Run X86, AArch64 and C litmus tests: reachable final states and herd7's Observation line per test."""
    from .litmus import command

    raise typer.Exit(command.main(paths, memory_model, expect, json_out, engine, lkmm_version))


@app.command()
def patch(
    host: str = typer.Option("baremetal", help="baremetal, kvm or kvm-nopv"),
    kernel: str = typer.Option("paravirt", help="paravirt or no-paravirt (!PARAVIRT)"),
    lock: str = typer.Option(None, help="qspinlock, pvqspinlock, pvqspinlock-4.2, virt-tas, ticket or pvticket (default: what the build runs)"),
    no_patching: bool = typer.Option(False, "--no-patching", help="boot with noreplace-paravirt"),
    patch_era: str = typer.Option("fixed", help="fixed, or 4.2: callee-save sites stay indirect on guests"),
    nopvspin: bool = typer.Option(False, "--nopvspin", help="boot with nopvspin"),
    cpus: str = typer.Option("4", help="vCPUs of the guest"),
    json_out: bool = typer.Option(False, "--json", help="a JSON list of sites on stdout"),
) -> None:
    """The paravirt lock call sites of a booted kernel: x86-64 bytes before and after apply_paravirt."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .kernel.build import boot_kernel
    from .machine.memory import Memory

    try:
        if not cpus.isdigit():
            raise ValueError(f"--cpus must be a positive integer, got {cpus!r}")
        guest = boot_kernel(Memory(), int(cpus), kernel=kernel, host=host, lock=lock, nopvspin=nopvspin,
                            patching=not no_patching, patch_era=patch_era)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = guest.patch_table()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{kernel} kernel on {host}: runs {guest.name}")
    for column in ("site", "op", "before", "after", "after asm"):
        table.add_column(column, no_wrap=column in ("before", "after"), overflow="fold")
    for r in rows:
        table.add_row(r["where"], r["op"], r["before"], r["after"], escape(r["after_asm"]))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table if rows else f"{kernel} kernel on {host}: runs {guest.name}, no patch sites (native code inline)")
    for line in guest.boot_log:
        console.print(line)


def main() -> None:
    app(args=optional_ray_address(sys.argv[1:]))


def optional_ray_address(args: list[str]) -> list[str]:
    """``--ray`` may stand alone (a local cluster): give it its value, which click cannot leave out."""
    from .parallel import LOCAL

    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(LOCAL)
    return out
