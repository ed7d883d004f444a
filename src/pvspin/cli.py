"""The ``pvspin`` command."""

from __future__ import annotations

import sys

import typer

RAY_HELP = ("run on a Ray cluster: ADDRESS (host:port, ray://host:port, or auto for the one `ray start` runs "
            "here), or no address for a cluster on this machine started for the run; needs pip install 'pvspin[ray]'  [default: none, local processes]")

# rich_markup_mode=None: help texts are plain text ("[default: ...]" and "x [y]" are not markup)
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="The Linux paravirt queued spinlock, executable, measurable and checkable.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"pvspin {version('pvspin')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit"),
) -> None:
    """The Linux paravirt queued spinlock, executable, measurable and checkable."""


@app.command()
def demo() -> None:
    """The seed's story in one minute: patch sites, unlock cost, overcommit, and a model check."""
    from . import demo as story

    raise typer.Exit(story.main())


# The scenario flags of ``run`` and ``sweep``: each is None unless given (so that it overrides the
# scenario file only then); the default shown is the scenario model's (tests/test_cli_help.py).
def _flag(metavar: str, help: str, default: str):
    return typer.Option(None, metavar=metavar, help=f"{help}  [default: {default}]", show_default=False)


HOST = _flag("NAME", "baremetal, kvm (PV spinlocks) or kvm-nopv", "kvm")
PCPUS = _flag("N", "physical CPUs", "4")
VCPUS = _flag("N", "vCPUs of the guest", "4")
DURATION_MS = _flag("MS", "simulated milliseconds measured", "20")
WARMUP_MS = _flag("MS", "simulated milliseconds run first and not measured (locktorture's Fail still counts)", "0")
HOLD_NS = _flag("NS", "mean hold time", "400")
DELAY_NS = _flag("NS", "mean delay between acquisitions", "2000")
LOCK_COUNT = _flag("N", "locks the writers pick from, one at random per acquisition", "1")


@app.command()
def sweep(
    param: list[str] = typer.Option([], metavar="NAME=V1,V2,...", help="a parameter and its values, one or two: overcommit, vcpus, pcpus, hold-ns, delay-ns, lock-count, hogs, hog-vcpus, irq-rate, spurious-hz, spin-threshold, or a numeric scenario field path (pvspin scenario --schema), e.g. overcommit=0.5,1,1.5,2,3 or guests.0.workload.long_hold_every=0,100  [default: none: required]", show_default=False),
    locks: str = typer.Option(None, metavar="KIND,KIND,...", help="lock kinds, one line each  [default: the scenario's]", show_default=False),
    seeds: str = typer.Option("3", metavar="N", help="seeds per point (error bars)"),
    out: str = typer.Option(None, metavar="DIR", help="results directory (CSV, JSON, plots); the same command again resumes  [default: none: required]", show_default=False),
    force: bool = typer.Option(False, "--force", help="reuse an --out that holds a sweep of other arguments, replacing it"),
    scenario: str = typer.Option(None, metavar="FILE", help="base TOML scenario (flags override it)  [default: none]", show_default=False),
    host: str = _flag("NAME", "baremetal, kvm or kvm-nopv (virt-tas always runs on kvm-nopv, the PV locks on kvm)", "kvm"),
    pcpus: str = PCPUS,
    vcpus: str = _flag("N", "vCPUs of the guest (overcommit sets it per point)", "4"),
    duration_ms: str = _flag("MS", "simulated milliseconds measured per point", "20"),
    warmup_ms: str = WARMUP_MS,
    hold_ns: str = HOLD_NS,
    delay_ns: str = DELAY_NS,
    lock_count: str = LOCK_COUNT,
    jobs: str = typer.Option(None, metavar="N", help="worker processes  [default: CPU count]", show_default=False),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="draw PNG and SVG plots"),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]", help=RAY_HELP, show_default=False),
) -> None:
    """Sweep one or two scenario parameters over lock kinds and seeds, in parallel; CSV, JSON and plots."""
    from .sim import sweep as sweeper

    flags = dict(host=host, pcpus=pcpus, vcpus=vcpus, duration_ms=duration_ms, warmup_ms=warmup_ms, hold_ns=hold_ns,
                 delay_ns=delay_ns, lock_count=lock_count)  # fmt: skip
    raise typer.Exit(sweeper.main(param, locks, seeds, out, scenario, flags, jobs, plots, force, ray))


@app.command()
def run(
    ctx: typer.Context,
    host: str = HOST,
    kernel: str = _flag("NAME", "paravirt or no-paravirt", "no-paravirt for ticket, else paravirt"),
    lock: str = _flag("NAME", "qspinlock, pvqspinlock, pvqspinlock-4.2, pvqspinlock-5.2, virt-tas, ticket, pvticket, or path/to/file.py:NAME", "what the host runs: pvqspinlock on kvm, qspinlock on baremetal (or one vCPU), virt-tas on kvm-nopv"),
    pcpus: str = PCPUS,
    vcpus: str = VCPUS,
    duration_ms: str = DURATION_MS,
    warmup_ms: str = WARMUP_MS,
    stat_interval: str = _flag("MS", "locktorture's stat_interval, but in simulated ms (the kernel's is in seconds): a Writes line every MS of the measurement; 0 none", "0"),
    nwriters_stress: str = _flag("N", "locktorture's nwriters_stress: writer threads, one per vCPU from vCPU 0; beyond --vcpus guest threads, writer i on vCPU i % vCPUs, at most 64 per vCPU (the kernel's default is 2 x CPUs)", "--vcpus"),
    long_hold: str = _flag("MS", "locktorture's long_hold: one acquisition in nwriters_stress x 2000 x long_hold holds the lock that long, as the kernel draws it; 0 never (the kernel's default is 100)", "0"),
    workload: str = _flag("KIND", "locktorture, or kbuild: a fixed build of many short tasks timed to its end, duration_ms its limit (its knobs under [guests.workload.kbuild] in a --scenario)", "locktorture"),
    seed: str = _flag("N", "seed", "0"),
    hogs: str = _flag("N", "competing guests whose vCPUs only burn CPU", "0"),
    hog_vcpus: str = _flag("N", "vCPUs per hog guest", "1"),
    lock_count: str = LOCK_COUNT,
    old_locks: str = typer.Option(None, "--locks", hidden=True),
    hold_ns: str = HOLD_NS,
    delay_ns: str = DELAY_NS,
    irq_rate: str = _flag("HZ", "interrupts per second per vCPU (handlers take their own lock)", "0"),
    spurious_hz: str = _flag("HZ", "spurious wake-ups per second of a halted vCPU", "0"),
    ple: bool = typer.Option(None, "--ple/--no-ple", help="pause-loop exiting  [default: on]", show_default=False),
    patching: bool = typer.Option(None, "--patching/--no-patching", help="apply_paravirt at boot  [default: on]", show_default=False),
    scenario: str = typer.Option(None, metavar="FILE", help="TOML scenario file (flags override it); see pvspin scenario  [default: none]", show_default=False),
    trace: str = typer.Option(None, metavar="FILE", help="write a Perfetto/Chrome trace of the timeline to this file, as it is simulated  [default: none]", show_default=False),
    trace_window: str = typer.Option(None, metavar="START:END", help="only what happens from START to END ms of simulated time since boot (a warm-up included) goes into the --trace file, slices crossing the edges clipped  [default: the whole run]", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Run locktorture on a simulated virtualization host and measure the lock.

    Exit status: 0 done, 1 a finding (locktorture's FAILURE: Fail > 0, a critical section entered
    while another vCPU was inside; or a guest that crashed), 2 bad input.
    """
    from .sim import command

    if old_locks is not None:
        typer.echo("error: run --locks is now --lock-count (the number of locks; sweep --locks is a list of lock kinds)",
                   err=True)  # fmt: skip
        raise typer.Exit(command.EXIT_BAD_INPUT)
    flags = {name: ctx.params[name] for name in command.FLAG_FIELDS}
    raise typer.Exit(command.main(scenario, flags, trace, json_out, trace_window))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             options_metavar="[--schema | --show [RUN OPTIONS]]")
def scenario(
    ctx: typer.Context,
    schema: bool = typer.Option(False, "--schema", help="print the scenario file's JSON Schema"),
    show: bool = typer.Option(False, "--show", help="print, as TOML, the scenario `pvspin run` would run with the run options that follow (--scenario FILE and flags)"),
) -> None:
    """Scenario files: their JSON Schema, or the merged scenario a run would use."""
    import json

    from .sim import command
    from .sim.scenario import BadInput, Scenario, to_toml

    if schema == show:
        typer.echo("error: give --schema or --show", err=True)
        raise typer.Exit(command.EXIT_BAD_INPUT)
    if schema:
        if ctx.args:
            typer.echo(f"error: --schema takes no other argument (got {ctx.args[0]})", err=True)
            raise typer.Exit(command.EXIT_BAD_INPUT)
        typer.echo(json.dumps(Scenario.model_json_schema(), indent=2))
        return
    run_command = typer.main.get_command(app).commands["run"]
    try:  # the run options, parsed as `pvspin run` parses them
        params = run_command.make_context("pvspin scenario --show", list(ctx.args)).params
    except typer.Exit as exit_:
        raise typer.Exit(command.EXIT_BAD_INPUT if exit_.exit_code else 0) from None
    try:
        scenario = command.build_scenario(params["scenario"], {name: params[name] for name in command.FLAG_FIELDS})
    except BadInput as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(command.EXIT_BAD_INPUT) from None
    typer.echo(to_toml(scenario.model_dump(mode="json")), nl=False)


@app.command()
def check(
    ctx: typer.Context,
    lock: str = typer.Option("qspinlock", metavar="NAME", help="qspinlock, qspinlock-16k, pvqspinlock, pvqspinlock-16k, pvqspinlock-4.2, pvqspinlock-5.2, virt-tas, ticket, pvticket, or path/to/file.py:NAME"),
    cpus: str = typer.Option("2", metavar="N", help="CPUs, each taking the lock --acquisitions times"),
    acquisitions: str = typer.Option("1", metavar="N", help="acquisitions per CPU"),
    memory_model: str = typer.Option("sc", metavar="MODEL", help="sc, tso (x86-TSO with store buffers), armv8 or lkmm (the Linux-kernel memory model; these two on execution graphs)"),
    bug: list[str] | None = typer.Option(None, metavar="NAME", help="inject a bug from the corpus (repeatable; see --list-bugs)"),  # noqa: B008
    list_bugs: bool = typer.Option(False, "--list-bugs", help="list the bug corpus and exit"),
    replay: str = typer.Option(None, metavar="TOKEN", help="re-run the interleaving of a printed replay token  [default: none]", show_default=False),
    strategy: str = typer.Option(None, metavar="NAME", help="exhaustive, random, pct, bounded (every execution with at most --preemptions preemptions), or graph (the execution-graph checker; armv8 always uses it)  [default: exhaustive]", show_default=False),
    runs: str = typer.Option(None, metavar="N", help="runs for random/pct  [default: 1000]", show_default=False),
    seed: str = typer.Option(None, metavar="N", help="seed for random/pct  [default: 0]", show_default=False),
    preemptions: str = typer.Option(None, metavar="N", help="preemption bound of the bounded strategy  [default: 2]", show_default=False),
    pct_depth: str = typer.Option(None, metavar="D", help="bug depth d of the pct strategy (d - 1 priority change points per run, 1 to 64)  [default: CPUs + interrupts + 1, one change point per context that can be preempted]", show_default=False),
    spurious_wakeups: str = typer.Option("0", metavar="N", help="budget of spurious wake-ups per execution"),
    interrupts: str = typer.Option("0", metavar="N", help="budget of interrupts per execution (each handler takes a lock)"),
    workload: str = typer.Option("locktorture", metavar="NAME", help="locktorture, forever (liveness: CPUs re-acquire without end) or unlock-unheld"),
    knob: list[str] | None = typer.Option(None, metavar="NAME=VALUE", help="LockConfig knob NAME=VALUE, e.g. max_nodes=1 (repeatable)"),  # noqa: B008
    symmetry: str = typer.Option("auto", metavar="MODE", help="full (states equal up to renaming CPUs are one), start (CPUs start in CPU order), none, or auto: full from 3 CPUs running the same code, else start"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    graph: str = typer.Option(None, metavar="FILE", help="execution-graph checker: draw the counterexample to FILE.dot (or .svg with graphviz)  [default: none]", show_default=False),
    lkmm_version: str = typer.Option(None, metavar="VERSION", help="with --memory-model lkmm: v00 (before rmw-sequences), v01 or current  [default: current]", show_default=False),
    max_states: str = typer.Option(None, metavar="N", help="stop after this many states (graphs for the graph checker): INCOMPLETE  [default: no limit]", show_default=False),
    max_seconds: str = typer.Option(None, metavar="S", help="stop after this many seconds: INCOMPLETE  [default: no limit]", show_default=False),
    jobs: str = typer.Option(None, metavar="N", help="workers: local processes, or with --ray Ray workers [default: 1; with --ray, the cluster's CPUs]", show_default=False),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]", help=RAY_HELP, show_default=False),
) -> None:
    """Model-check a lock: every interleaving (or a sample) under SC or x86-TSO, or every execution graph (ARMv8, LKMM).

    Exit status: 0 verified (or no violation within the bound), 1 violation, 2 bad input,
    3 incomplete (stopped by --max-states, --max-seconds, Ctrl-C or SIGTERM, with what was explored;
    or, with --jobs/--ray, by worker processes that kept dying, in one line).
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
            pct_depth=None if pct_depth is None else command.parse_int("--pct-depth", pct_depth),
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
    memory_model: str = typer.Option("sc", metavar="MODEL", help="sc, tso (x86-TSO), armv8 or lkmm (C tests)"),
    expect: str = typer.Option(None, metavar="FILE.csv", help="CSV of recorded verdicts (path,0|1; paths relative to the CSV's folder)  [default: none]", show_default=False),
    engine: str = typer.Option(None, metavar="NAME", help="interleaving or graph  [default: interleaving for sc and tso, graph for armv8 and lkmm]", show_default=False),
    lkmm_version: str = typer.Option(None, metavar="VERSION", help="with --memory-model lkmm: v00, v01 or current  [default: current]", show_default=False),
    spinlock: str = typer.Option(None, metavar="LOCK", help="C tests: spin_*() as abstract (lock.cat's lock), qspinlock, qspinlock-16k, pvqspinlock or path/to/file.py:NAME (the kernel's code, on the execution-graph checker, under any model)  [default: abstract]", show_default=False),
    compare_abstract: bool = typer.Option(False, "--compare-abstract", help="with --spinlock LOCK: run every C test that takes a lock with LOCK and with lock.cat's lock under LKMM, and compare their final states"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    jobs: int = typer.Option(1, metavar="N", help="run the tests on N processes (the output is the same)"),
) -> None:
    """Run X86, AArch64 and C litmus tests: reachable final states and herd7's Observation line per test."""
    from .litmus import command

    raise typer.Exit(command.main(paths, memory_model, expect, json_out, engine, lkmm_version, spinlock,
                                  compare_abstract, jobs))


@app.command()
def patch(
    host: str = typer.Option("baremetal", metavar="NAME", help="baremetal, kvm or kvm-nopv"),
    kernel: str = typer.Option("paravirt", metavar="NAME", help="paravirt or no-paravirt (!PARAVIRT)"),
    lock: str = typer.Option(None, metavar="NAME", help="qspinlock, pvqspinlock, pvqspinlock-4.2, pvqspinlock-5.2, virt-tas, ticket or pvticket  [default: what the build runs]", show_default=False),
    no_patching: bool = typer.Option(False, "--no-patching", help="boot with noreplace-paravirt"),
    patch_era: str = typer.Option("fixed", metavar="ERA", help="4.2 (callee-save sites stay indirect on guests), fixed (4.19-5.12), 6.8 (alternatives, RIP-relative calls) or newest (static calls, pv_ops_lock)"),
    compare_eras: bool = typer.Option(False, "--compare-eras", help="each site as every era emits and patches it, one row per era"),
    nopvspin: bool = typer.Option(False, "--nopvspin", help="boot with nopvspin"),
    cpus: str = typer.Option("4", metavar="N", help="vCPUs of the guest"),
    json_out: bool = typer.Option(False, "--json", help="a JSON list of sites on stdout"),
) -> None:
    """The paravirt lock call sites of a booted kernel: x86-64 bytes before and after apply_paravirt."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .kernel.build import boot_kernel
    from .kernel.paravirt import PATCH_ERAS
    from .machine.memory import Memory

    eras = PATCH_ERAS if compare_eras else (patch_era,)
    try:
        if not cpus.isdigit():
            raise ValueError(f"--cpus must be a positive integer, got {cpus!r}")
        if compare_eras and (no_patching or patch_era != "fixed"):
            raise ValueError("--compare-eras boots every era with patching on: drop --patch-era and --no-patching")
        guests = {era: boot_kernel(Memory(), int(cpus), kernel=kernel, host=host, lock=lock, nopvspin=nopvspin,
                                   patching=not no_patching, patch_era=era) for era in eras}
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if compare_eras:
        _print_era_comparison(guests, kernel, host, json_out)
        return
    guest = guests[patch_era]
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


def _print_era_comparison(guests: dict, kernel: str, host: str, json_out: bool) -> None:
    """``pvspin patch --compare-eras``: per call site, one row per era, before and after boot."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    tables = {era: guest.patch_table() for era, guest in guests.items()}
    if json_out:
        typer.echo(json.dumps(tables, indent=2))
        return
    names = {guest.name for guest in guests.values()}
    table = Table(title=f"{kernel} kernel on {host}: runs {', '.join(sorted(names))}; each call site in each era")
    for column in ("site", "era", "op", "before", "after", "after asm"):
        table.add_column(column, no_wrap=column in ("before", "after"), overflow="fold")
    eras = list(tables)
    for i in range(len(tables[eras[0]])):
        for era in eras:
            r = tables[era][i]
            table.add_row(r["where"] if era == eras[0] else "", era, r["op"], r["before"], r["after"],
                          escape(r["after_asm"]))
        table.add_section()
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table if tables[eras[0]] else f"{kernel} kernel on {host}: no patch sites (native code inline)")


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
