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
from .explorer import DependencyMiss, Explorer, GraphResult, Program, Unsupported
from .hypervisor import latches, run_hypercalls
from .models import MODELS
from .wholeword import Unlowerable, Words

GRAPH_MODELS = tuple(MODELS)


@dataclass
class GraphReport:
    options: object  # CheckOptions
    result: GraphResult
    lowered: list[str] = field(default_factory=list)
    program: Program | None = None
    explorer: Explorer | None = None


def validate(opts) -> None:
    """Refuse, in one line, what the graph checker does not model (never a silent run of something else)."""
    if opts.memory_model not in GRAPH_MODELS:
        raise BadInput(f"--memory-model {opts.memory_model!r}: choose from {', '.join(GRAPH_MODELS)}")
    if opts.strategy not in ("exhaustive", "graph"):
        raise BadInput(f"--strategy {opts.strategy} with --memory-model {opts.memory_model}: the execution-graph "
                       "checker explores every graph (use --strategy graph or leave --strategy out)")
    refusals = {
        "interrupts": "--interrupts: interrupts are not modelled by the execution-graph checker",
        "spurious_wakeups": "--spurious-wakeups: spurious wake-ups are not modelled by the execution-graph checker",
        "replay": "--replay: replay tokens are the interleaving checker's",
    }
    for name, message in refusals.items():
        if getattr(opts, name):
            raise BadInput(message)
    if opts.workload == "forever":
        raise BadInput("--workload forever: the execution-graph checker needs executions that end "
                       "(take --acquisitions K instead)")
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
    if opts.memory_model == "armv8":
        knobs["arch"] = "arm64"
    setup = make_setup(opts.lock, opts.cpus, opts.acquisitions, 0, kernel_bugs, knobs, opts.workload)
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
    validate(opts)
    program, words = build(opts)
    model = MODELS[opts.memory_model]
    name_of = program.name_of
    explorer = Explorer(program, model, max_graphs=opts.max_states, progress=progress,
                        lower=lambda op: words.lower(op, name_of))
    try:
        result = explorer.run()
    except (Unsupported, Unlowerable, DependencyMiss) as exc:
        raise BadInput(f"--memory-model {opts.memory_model}: {exc}") from None
    return GraphReport(opts, result, sorted(words.lowered), program, explorer)
