"""``pvspin check``: option handling, progress and output (text or JSON)."""

from __future__ import annotations

import json
import math
import sys
import time

from rich.console import Console

from ..kernel.config import KNOBS
from ..machine import watchdog
from ..parallel import WorkersLost
from .bugs import EXPOSURES, corpus, fixes
from .cycles import cycle_steps
from .harness import BadInput
from .report import format_steps
from .result import BOUNDED, INCOMPLETE, VIOLATION
from .runner import CheckOptions, Report, run, uses_graphs

# Exit statuses of ``pvspin check`` (documented in its --help): INCOMPLETE is neither a pass nor a
# violation, so that a script running the checker under ``timeout`` cannot take it for either.
EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


def parse_int(option: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: not an integer") from None


def parse_float(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"{option} {text!r}: must be a positive finite number")
    return value


def parse_knobs(items) -> dict:
    knobs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in KNOBS:
            raise BadInput(f"--knob {item!r}: expected NAME=VALUE with NAME one of {', '.join(KNOBS)}")
        knobs[name] = parse_int(f"--knob {name}", value)
    return knobs


def list_bugs(as_json: bool = False) -> str:
    if as_json:
        return json.dumps([{"name": name, "description": description, "fixed_by": fix,
                            "found_by": command_line(EXPOSURES[name].options(name), search=True)}
                           for name, (description, fix) in corpus().items()]
                          + [{"name": name, "description": description, "fixed_by": None, "found_by": None,
                              "fix_from": origin}
                             for name, (description, origin) in fixes().items()], indent=2)
    lines = []
    for name, (description, fix) in corpus().items():
        lines.append(f"{name}  (fixed by {fix or 'no upstream commit: injected variant'})")
        lines.append(f"   {description}")
        lines.append(f"   found by: {command_line(EXPOSURES[name].options(name), search=True)}")
    for name, (description, commit) in fixes().items():
        lines.append(f"{name}  (a fix that is not today's code, from {commit})")
        lines.append(f"   {description}")
    return "\n".join(lines)


def command_line(opts: CheckOptions, search: bool = False) -> str:
    """The ``pvspin check`` options of a configuration; with ``search``, the strategy's too (a replay needs none)."""
    parts = [f"pvspin check --lock {opts.lock} --cpus {opts.cpus} --acquisitions {opts.acquisitions}",
             f"--memory-model {opts.memory_model}"]
    if opts.lkmm_version is not None:
        parts.append(f"--lkmm-version {opts.lkmm_version}")
    parts += [f"--bug {b}" for b in opts.bugs]
    if opts.strategy == "graph":  # the engine, which a replay needs too
        parts.append("--strategy graph")
    elif search and opts.strategy == "bounded":
        parts.append(f"--strategy bounded --preemptions {opts.preemptions}")
    elif search and opts.strategy != "exhaustive":
        parts.append(f"--strategy {opts.strategy} --runs {opts.runs} --seed {opts.seed}")
        if opts.strategy == "pct":
            parts.append(f"--pct-depth {opts.depth()}")
    if opts.spurious_wakeups:
        parts.append(f"--spurious-wakeups {opts.spurious_wakeups}")
    if opts.interrupts:
        parts.append(f"--interrupts {opts.interrupts}")
    if opts.workload != "locktorture":
        parts.append(f"--workload {opts.workload}")
    parts += [f"--knob {k}={v}" for k, v in sorted(opts.overrides.items())]
    if opts.symmetry != "auto":
        parts.append(f"--symmetry {opts.symmetry}")
    return " ".join(parts)


def render(report: Report) -> str:
    opts, r = report.options, report.result
    strategy = f"bounded to {opts.preemptions} preemption(s)" if r.strategy == "bounded" else r.strategy
    if r.strategy == "pct":
        strategy = f"pct of depth {opts.depth()}"
    head = (f"pvspin check: {opts.lock}, {opts.cpus} CPU(s) x {opts.acquisitions} acquisition(s), "
            f"{opts.memory_model.upper()}, {strategy}")
    if opts.bugs:
        head += f", bug {', '.join(opts.bugs)}"
    if report.symmetry == "full" and r.strategy == "exhaustive":
        head += ", states up to renaming CPUs"
    if not report.declared:
        head += ", no symmetry or ample sets (the lock declares none)"
    if report.constants:
        head += ", with " + " ".join(f"{k}={v}" for k, v in report.constants.items())
    stats = f"{r.states} states, {r.transitions} transitions, {r.executions} executions in {r.seconds:.2f} s"
    if r.strategy in ("random", "pct"):
        stats = f"{r.executions} runs, {r.transitions} steps in {r.seconds:.2f} s"
    lines = [head]
    if r.verdict != VIOLATION:
        label = f"NO VIOLATION WITHIN {opts.preemptions} PREEMPTION(S)" if r.verdict == BOUNDED else r.verdict.upper()
        lines.append(f"{label}: {stats}" + (f" ({r.note})" if r.note else ""))
        return "\n".join(lines)
    lines.append(f"VIOLATION of {r.prop}: {stats}")
    lines.append(f"counterexample: {len(report.steps)} steps, {report.preemptions} preemptions")
    steps = format_steps(report.steps)
    if r.cycle_start is not None:  # a lasso: mark where the cycle begins
        steps.insert(r.cycle_start, f"  --  the cycle: {cycle_steps(r.cycle_start + 1, len(report.steps))} forever")
    lines.extend(steps)
    lines.append(f"  !!  {r.prop}: {r.detail}")
    lines.append(f"replay: {command_line(opts)} --replay {report.replay}")
    return "\n".join(lines)


def main(opts: CheckOptions, as_json: bool, graph_out: str | None = None) -> int:
    console = Console(stderr=True)
    progress = None
    if not as_json and console.is_terminal:
        started = time.perf_counter()

        def progress(r):
            elapsed = time.perf_counter() - started
            rate = r.transitions / elapsed if elapsed else 0
            console.print(f"[dim]{r.states} states, {r.executions} executions, {rate:,.0f} transitions/s, "
                          f"{elapsed:.0f} s elapsed (Ctrl-C prints what was explored)[/dim]", end="\r")
    watchdog.sigterm_as_interrupt()  # `timeout` sends SIGTERM: report what was explored, as for Ctrl-C
    try:
        if graph_out is not None:
            _check_graph_path(opts, graph_out)
        with watchdog.guard(opts.max_seconds):
            if uses_graphs(opts):
                from .graph import runner as graphs

                report = graphs.run(opts, progress=_graph_progress(progress))
            else:
                report = run(opts, progress=progress)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WorkersLost as exc:  # --jobs/--ray: worker processes kept dying
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt as stop:  # before the search began (loading the lock), or after it
        print(f"INCOMPLETE: {watchdog.stopped(stop)}, before any result", flush=True)
        return EXIT_INCOMPLETE
    if progress is not None:
        console.print(" " * 100, end="\r")
    if uses_graphs(opts):
        if graph_out:
            _write_graph(report, graph_out)
        print(json.dumps(graphs.as_dict(report), indent=2) if as_json else graphs.render(report, command_line),
              flush=True)
    elif as_json:
        print(json.dumps(report.as_dict(), indent=2), flush=True)
    else:
        print(render(report), flush=True)
    return EXIT_STATUS.get(report.result.verdict, EXIT_OK)


EXIT_STATUS = {VIOLATION: EXIT_VIOLATION, INCOMPLETE: EXIT_INCOMPLETE}


def _graph_progress(progress):
    if progress is None:
        return None

    class _Shown:  # what the interleaving progress line reads
        def __init__(self, r):
            self.states, self.executions, self.transitions = r.graphs, r.executions, r.graphs

    return lambda r: progress(_Shown(r))


def _check_graph_path(opts: CheckOptions, path: str) -> None:
    """``--graph`` is refused before the search when it cannot be honoured."""
    from ..output import unwritable

    if not uses_graphs(opts):
        raise BadInput(f"--graph {path}: drawings are of execution graphs (--memory-model armv8 or --strategy graph)")
    if not path.endswith((".dot", ".svg")):
        raise BadInput(f"--graph {path!r}: the file must end in .dot or .svg")
    problem = unwritable("--graph", path)
    if problem:
        raise BadInput(problem)


def _write_graph(report, path: str) -> None:
    """``--graph FILE.dot`` (or ``.svg``, through graphviz's ``dot`` when installed)."""
    import shutil
    import subprocess

    if report.dot is None:
        print(f"--graph {path}: no counterexample to draw", file=sys.stderr)
        return
    if path.endswith(".svg"):
        dot = shutil.which("dot")
        if dot is None:
            print(f"--graph {path}: SVG needs graphviz's dot, which is not installed; write a .dot file instead",
                  file=sys.stderr)
            return
        subprocess.run([dot, "-Tsvg", "-o", path], input=report.dot.encode(), check=True)
    else:
        with open(path, "w") as f:
            f.write(report.dot)
