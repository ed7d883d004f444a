"""``pvspin check`` on the execution-graph checker: from options to a report.

Runs for ``--memory-model armv8``, and for ``--strategy graph`` under ``sc`` or ``tso``
(the cross-check of the graph checker against the interleaving one).  The configuration
is the interleaving checker's (:mod:`pvspin.check.harness`): N CPUs, each a thread that
takes the lock K times, a critical section that increments a shared counter, the lock's
final-state checks.  Under armv8 the lock is built for arm64 (``LockConfig.arch``), where
the kernel's code differs by architecture; sub-word accesses to a lock word are checked
as whole-word atomics (:mod:`.wholeword`) and the report lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..harness import BadInput, make_setup
from .explorer import _FRONTIER, DependencyMiss, Explorer, GraphResult, Program, Unsupported
from .hypervisor import latches, run_hypercalls
from .models import MODELS
from .models import get as get_model
from .wholeword import Unlowerable, Words

GRAPH_MODELS = tuple(MODELS)


@dataclass
class GraphReport:
    options: object  # CheckOptions
    result: GraphResult
    lowered: list[str] = field(default_factory=list)
    program: Program | None = None
    explorer: Explorer | None = None
    lines: list = field(default_factory=list)  # the counterexample (report.Line), when there is one
    why: str | None = None
    replay: str | None = None
    dot: str | None = None


def validate(opts) -> None:
    """Refuse, in one line, what the graph checker does not model (never a silent run of something else)."""
    from ..runner import refuse_conflicts

    refuse_conflicts(opts)
    if opts.memory_model not in GRAPH_MODELS:
        raise BadInput(f"--memory-model {opts.memory_model!r}: choose from {', '.join(GRAPH_MODELS)}")
    if opts.strategy not in ("exhaustive", "graph"):
        raise BadInput(f"--strategy {opts.strategy} with --memory-model {opts.memory_model}: the execution-graph "
                       "checker explores every graph (use --strategy graph or leave --strategy out)")
    refusals = {
        "interrupts": "--interrupts: interrupts are not modelled by the execution-graph checker",
        "spurious_wakeups": "--spurious-wakeups: spurious wake-ups are not modelled by the execution-graph checker",
    }
    for name, message in refusals.items():
        if getattr(opts, name):
            raise BadInput(message)
    if opts.workload == "forever":
        raise BadInput("--workload forever: the execution-graph checker needs executions that end "
                       "(take --acquisitions K instead)")
    if opts.lkmm_version is not None:
        from .models.lkmm import VERSIONS

        if opts.memory_model != "lkmm":
            raise BadInput(f"--lkmm-version {opts.lkmm_version}: only with --memory-model lkmm")
        if opts.lkmm_version not in VERSIONS:
            raise BadInput(f"--lkmm-version {opts.lkmm_version!r}: choose from {', '.join(VERSIONS)}")
    if opts.memory_model in ("armv8", "lkmm") and opts.lock == "virt-tas":
        raise BadInput(f"--lock virt-tas --memory-model {opts.memory_model}: virt_spin_lock() is x86's "
                       "(arch/x86/include/asm/qspinlock.h); the generic and arm64 code has no test-and-set fallback "
                       "and would run plain qspinlock")
    if opts.memory_model in ("armv8", "lkmm") and opts.lock == "pvticket":
        raise BadInput(f"--lock pvticket --memory-model {opts.memory_model}: the PV ticket lock "
                       "(arch/x86/include/asm/spinlock.h, arch/x86/kernel/kvm.c) is x86's; arm64 had no paravirt "
                       "spinlocks then")
    if opts.symmetry not in ("auto", "none"):
        raise BadInput(f"--symmetry {opts.symmetry}: the execution-graph checker does not reduce by symmetry")


def build(opts) -> tuple[Program, Words]:
    from ..bugs import split
    from ..runner import CHECK_KNOBS

    kernel_bugs, hv_bugs = split(opts.bugs)
    if hv_bugs:
        raise BadInput(f"--bug {sorted(hv_bugs)[0]}: a hypervisor bug, which the execution-graph checker's "
                       "hypervisor (check/graph/hypervisor.py) does not model")
    knobs = {**CHECK_KNOBS, **opts.overrides}
    if opts.memory_model in ("armv8", "lkmm"):
        knobs["arch"] = "arm64"  # the generic C code (queued_fetch_set_pending_acquire's fetch_or), as arm64 builds it
    # knobs= refuses a --knob the lock does not declare reading (kernel/declarations.py)
    setup = make_setup(opts.lock, opts.cpus, opts.acquisitions, 0, kernel_bugs, knobs, opts.workload,
                       knobs=opts.overrides)
    mem = setup.mem
    flags = latches(mem, setup.ncpus)
    words = Words(mem)
    k = setup.acquisitions

    def thread(t: int):
        def acquisitions():
            for n in range(k):
                yield from setup.program(("task", t, n))

        return run_hypercalls(acquisitions(), t, flags)

    class _World:  # what Setup.final_problems reads of a world
        irqs_taken = 0

    def final_problems(memory: dict, returns: list) -> list[str]:
        saved = bytes(mem.data)
        try:
            for addr, value in memory.items():
                size = sizes[addr]
                mem.write(addr, size, value)
            return setup.final_problems(_World())
        finally:
            mem.data[:] = saved

    sizes: dict[int, int] = {}

    def initial(addr: int, size: int) -> int:
        sizes[addr] = size
        return mem.read(addr, size)

    program = Program(setup.ncpus, thread, initial, mem.name_of, final_problems=final_problems,
                      warn_ok=setup.warn_ok)
    return program, words


def run(opts, progress=None) -> GraphReport:
    from .. import token

    validate(opts)
    program, words = build(opts)
    model = get_model(opts.memory_model, opts.lkmm_version)
    name_of = program.name_of
    explorer = Explorer(program, model, max_graphs=opts.max_states, progress=progress,
                        lower=lambda op: words.lower(op, name_of))
    fingerprint = {**opts.fingerprint(), "engine": "graph"}
    try:
        if opts.replay is not None:
            result = _replay(opts, explorer, token.decode(fingerprint, opts.replay, packed=True))
        elif opts.jobs > 1:
            from . import parallel

            result = parallel.explore(explorer, opts.jobs, opts.max_seconds)
        else:
            result = explorer.run()
    except token.BadToken as exc:
        raise BadInput(str(exc)) from None
    except (Unsupported, Unlowerable, DependencyMiss) as exc:
        raise BadInput(f"--memory-model {opts.memory_model}: {exc}") from None
    report = GraphReport(opts, result, sorted(words.lowered), program, explorer)
    finding = result.finding
    if finding is not None:
        from .report import explain, stale_overwrite, to_dot

        report.lines = explain(finding.graph, opts.memory_model, name_of)
        report.why = stale_overwrite(finding.graph, name_of, None)
        report.replay = token.encode(fingerprint, finding.graph.path(), packed=True)
        report.dot = to_dot(finding.graph, opts.memory_model, name_of,
                            f"{opts.lock} {opts.memory_model}: {finding.prop}")
    return report


def _replay(opts, explorer: Explorer, path: list[int]) -> GraphResult:
    """The violation a token's graph is: rebuilt, checked as the search checks it."""
    try:
        g = explorer.replay(path)
    except ValueError as exc:
        raise BadInput(f"--replay: the token does not fit this configuration ({exc})") from None
    result = GraphResult(verdict="verified", graphs=len(path))
    step = explorer._next(g)
    if step[0] == _FRONTIER or not explorer.model.consistent(g) or not explorer._end(g, step, result):
        raise BadInput("--replay: the token does not lead to a violation (not a complete counterexample)")
    return result


def render(report: GraphReport, command_line) -> str:
    """The text report: what was checked, the verdict, and the counterexample with why it happened."""
    opts, r = report.options, report.result
    model = opts.memory_model.upper() + (f" {opts.lkmm_version or 'current'}" if opts.memory_model == "lkmm" else "")
    head = (f"pvspin check: {opts.lock}, {opts.cpus} CPU(s) x {opts.acquisitions} acquisition(s), "
            f"{model}, execution graphs")
    if opts.bugs:
        head += f", bug {', '.join(opts.bugs)}"
    lines = [head]
    if report.lowered:
        lines.append("checked: the lock with its sub-word accesses as whole-word RMWs (check/graph/wholeword.py): "
                     + ", ".join(report.lowered))
    stats = (f"{r.executions} executions (consistent graphs), {r.graphs} graphs explored, {r.revisits} revisits "
             f"in {r.seconds:.2f} s")
    if r.verdict != "violation":
        lines.append(f"{r.verdict.upper()}: {stats}" + (f" ({r.note})" if r.note else ""))
        return "\n".join(lines)
    f = r.finding
    lines.append(f"VIOLATION of {f.prop}: {stats}")
    lines.append(f"counterexample: an execution of {len(report.lines)} events, in an order "
                 f"{opts.memory_model.upper()} allows")
    for line in report.lines:
        where = f"{line.function} {line.line}".strip()
        lines.append(f"{line.n:4d}  cpu{line.cpu:<3} {where:<44} {line.action}")
        lines.extend(f"{'':10}- {note}" for note in line.notes)
    lines.append(f"  !!  {f.prop}: {f.detail}")
    if report.why:
        lines.append(f"  why: {report.why}")
    lines.append(f"replay: {command_line(opts)} --replay {report.replay}")
    return "\n".join(lines)


def as_dict(report: GraphReport) -> dict:
    opts, r = report.options, report.result
    f = r.finding
    return {
        "verdict": r.verdict, "property": f.prop if f else None, "detail": f.detail if f else "",
        "strategy": "graph", "engine": "graph", "lock": opts.lock, "cpus": opts.cpus,
        "acquisitions": opts.acquisitions, "memory_model": opts.memory_model, "bugs": list(opts.bugs),
        "executions": r.executions, "graphs": r.graphs, "revisits": r.revisits, "seconds": round(r.seconds, 3),
        "note": r.note, "lowered": report.lowered, "replay": report.replay, "why": report.why,
        "steps": [line.as_dict() for line in report.lines],
    }
