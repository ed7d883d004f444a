"""Running a litmus test: engines by memory model, the reachable final states, herd's verdict.

An *engine* is a callable ``engine(test) -> {final_state: count}`` that raises
:class:`~.source.Unsupported` (with a reason naming the construct and its line) for a
test it cannot run.  ``final_state`` is a :data:`~.test.FinalState`: the observed
registers and locations in herd's order.  What ``count`` counts is the engine's to say;
it is only printed, and the verdict depends on which states occur, not on how often.
:data:`ENGINES` maps a memory-model name to its engine; a new engine registers itself
with :func:`register`.

The interleaving engine (``sc``, ``tso``) runs the test on the model checker's
:class:`~pvspin.check.world.World` with the exhaustive search, which visits every
reachable state once: a final state's count is the number of distinct terminal states
of the checker (whole memory, observed registers included) that show it, not a number
of executions as in herd.  Final registers reach memory as stores to a private slot per
observed register at the end of each thread, so that they are part of the state the
search keys on.  It has no exclusive monitor: tests with LDXR/STXR are unsupported
there, and its TSO store buffer holds :data:`~pvspin.check.world.STORE_BUFFER_SIZE`
stores, so a thread with more is unsupported under ``tso``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..machine import ops as o
from ..machine.memory import CACHE_LINE, Layout
from .cond import holds, observation, verdict
from .source import Unsupported
from .test import LOCATION_SIZE, FinalState, Instance, LitmusTest

Engine = Callable[[LitmusTest], dict[FinalState, int]]

ENGINES: dict[str, Engine] = {}  # memory model -> its default engine
ENGINES_BY_NAME: dict[tuple[str, str], Engine] = {}  # (memory model, engine name) -> engine
MEMORY_MODELS = ("sc", "tso", "armv8", "lkmm")  # what `pvspin litmus` accepts; ENGINES says which are available
LKMM_VERSIONS = ("v00", "v01", "current")  # --lkmm-version; the default is current
# graphs one C test may take under LKMM before it is reported unsupported (a few seconds each thousand):
# the suites' five-CPU lock tests would take minutes each
LKMM_GRAPH_LIMIT = 10_000
ARCHES = {"sc": ("X86", "AArch64"), "tso": ("X86", "AArch64"), "armv8": ("X86", "AArch64"), "lkmm": ("C",)}
ENGINE_NAMES = ("interleaving", "graph")


def register(model: str, engine: Engine, name: str = "interleaving", default: bool = True) -> None:
    """Make ``engine`` (called ``name``) run tests under ``model``; the model's default unless ``default`` is False."""
    ENGINES_BY_NAME[(model, name)] = engine
    if default:
        ENGINES[model] = engine


class LitmusFault(Exception):
    """A thread computed an address that is no location, or did something else herd would reject."""


def outcomes(test: LitmusTest, memory_model: str, engine_name: str | None = None,
             version: str | None = None) -> dict[FinalState, int]:
    """The reachable final states of ``test`` under ``memory_model`` (of ``version``: LKMM), each with its engine's count."""
    if version is not None:
        memory_model = f"{memory_model}-{version}"
    engine = ENGINES.get(memory_model) if engine_name is None else ENGINES_BY_NAME.get((memory_model, engine_name))
    if engine is None:
        raise Unsupported(f"unsupported: no {engine_name or ''} engine for the {memory_model} memory model")
    return engine(test)


@dataclass(frozen=True)
class Result:
    """What herd prints for a test: its final states, the verdict and the ``Observation`` line's numbers."""

    test: LitmusTest
    states: dict[FinalState, int]  # after the filter
    satisfied: frozenset  # the states in which the condition's proposition holds
    positive: int  # sum of counts of those states
    negative: int  # and of the others
    verdict: int  # 1: the condition as written holds

    @property
    def observation(self) -> str:
        return f"Observation {self.test.name} {observation(self.positive, self.negative)} {self.positive} {self.negative}"


def judge(test: LitmusTest, states: dict[FinalState, int], instance: Instance | None = None) -> Result:
    """herd's verdict on a set of final states: apply the filter, then the quantified condition."""
    instance = instance or test.instance()
    cond = test.condition
    kept = {}
    satisfied = set()
    positive = negative = 0
    for state, count in sorted(states.items()):
        values = dict(state)
        if cond.filter is not None and not holds(cond.filter, values, instance.address):
            continue
        kept[state] = count
        if holds(cond.prop, values, instance.address):
            satisfied.add(state)
            positive += count
        else:
            negative += count
    return Result(test, kept, frozenset(satisfied), positive, negative, verdict(cond.quantifier, positive, negative))


def run(test: LitmusTest, memory_model: str, engine_name: str | None = None, version: str | None = None) -> Result:
    return judge(test, outcomes(test, memory_model, engine_name, version))


# --------------------------------------------------------------------------- the interleaving engine
REGISTER_SLOT = Layout("saved_register", 8, [("v", 0, 8)])


class _Setup:
    """A litmus test as a setup for :class:`~pvspin.check.world.World` (see :mod:`pvspin.check.harness`)."""

    acquisitions = 1
    watch = ()

    def __init__(self, instance: Instance):
        self.instance = instance
        self.mem = instance.mem
        self.ncpus = len(instance.threads)
        observed = [v for v in instance.test.observed if v.is_register]
        self.saved = [[] for _ in range(self.ncpus)]  # per thread: (slot, register name)
        self.private = {}  # slot address -> its thread: World checks no other CPU touches it
        self.slots = {}  # observed register -> its slot
        for var in observed:
            slot = self.mem.alloc(REGISTER_SLOT, f"P{var.thread}:{var.name}", align=CACHE_LINE).v
            self.saved[var.thread].append((slot, var.name))
            self.private[slot.addr] = var.thread
            self.slots[var] = slot

    def program(self, program: tuple):
        return self._run(program[1])

    def _run(self, cpu: int):
        thread = self.instance.threads[cpu]
        regs = yield from thread.program()
        for slot, name in self.saved[cpu]:
            yield o.WRITE_ONCE(slot, thread.register(regs, name))

    def final_problems(self, world) -> list:
        return []


def interleaving_engine(memory_model: str) -> Engine:
    """The model checker's exhaustive interleaving search under ``sc`` or ``tso``, as an engine."""
    from ..check.exhaustive import explore
    from ..check.result import VERIFIED
    from ..check.world import STORE_BUFFER_SIZE, TSO, World

    def engine(test: LitmusTest) -> dict[FinalState, int]:
        if "exclusive" in test.features:
            raise Unsupported(f"unsupported: exclusive pair (LDXR/STXR) at line {test.features['exclusive']}: "
                              f"the interleaving checker ({memory_model}) has no exclusive monitor")
        if memory_model == TSO:
            for tid, code in enumerate(test.threads):
                if code.stores > STORE_BUFFER_SIZE:
                    raise Unsupported(f"unsupported: thread {tid} has {code.stores} stores, more than the "
                                      f"interleaving checker's TSO store buffer holds ({STORE_BUFFER_SIZE})")
        instance = test.instance()
        setup = _Setup(instance)
        mem = instance.mem
        counts: dict[FinalState, int] = {}

        def record(world) -> None:
            state = instance.final_state(lambda var: mem.read(setup.slots[var].addr, LOCATION_SIZE),
                                         lambda addr: mem.read(addr, LOCATION_SIZE))
            counts[state] = counts.get(state, 0) + 1

        try:
            result = explore(World(setup, memory_model), on_terminal=record)
        except LitmusFault as fault:
            raise Unsupported(f"unsupported: {fault}") from None
        if result.note == "interrupted":
            raise KeyboardInterrupt  # explore() ends a Ctrl-C'd search quietly; the command must stop
        if result.verdict != VERIFIED:
            raise Unsupported(f"unsupported: the interleaving checker stopped: {result.prop or result.verdict}: "
                              f"{result.detail or result.note}")
        return counts

    return engine


register("sc", interleaving_engine("sc"))
register("tso", interleaving_engine("tso"))


# --------------------------------------------------------------------------- the execution-graph engine
def graph_engine(memory_model: str, version: str | None = None) -> Engine:
    """The execution-graph checker (:mod:`pvspin.check.graph`) under ``memory_model``, as an engine.

    A final state's count is the number of consistent execution graphs that end in it, as
    herd counts executions.  Exclusive pairs are supported; mixed-size accesses are not
    (the front ends refuse them before this runs).  Under LKMM a graph in which a thread
    waits forever for a lock is no execution (herd's lock.cat has none), not a deadlock.
    """
    from ..check.graph.explorer import DependencyMiss, Explorer, Program
    from ..check.graph.explorer import Unsupported as GraphUnsupported
    from ..check.graph.models import get

    model = get(memory_model, version)
    discard_stuck = memory_model == "lkmm"
    limit = LKMM_GRAPH_LIMIT if memory_model == "lkmm" else None

    def engine(test: LitmusTest) -> dict[FinalState, int]:
        instance = test.instance()
        mem = instance.mem
        threads = instance.threads

        def outcome(memory: dict, returns: list) -> FinalState:
            return instance.final_state(
                lambda var: threads[var.thread].register(returns[var.thread], var.name),
                lambda addr: memory.get(addr, mem.read(addr, LOCATION_SIZE)))

        program = Program(len(threads), lambda t: threads[t].program(), mem.read, mem.name_of, outcome=outcome,
                          discard_stuck=discard_stuck)
        try:
            # no loops, and one source line for all: no loop bound
            result = Explorer(program, model, max_graphs=limit, loop_bound=None).run()
        except (LitmusFault, GraphUnsupported, DependencyMiss) as fault:
            raise Unsupported(f"unsupported: {fault}") from None
        if result.note == "interrupted":
            raise KeyboardInterrupt
        if result.verdict != "verified":
            finding = result.finding
            raise Unsupported(f"unsupported: the graph checker stopped: "
                              f"{finding.prop + ': ' + finding.detail if finding else result.note}")
        return result.outcomes

    return engine


for _model in ("sc", "tso", "armv8"):
    register(_model, graph_engine(_model), "graph", default=_model == "armv8")
register("lkmm", graph_engine("lkmm"), "graph")
for _version in LKMM_VERSIONS:
    register(f"lkmm-{_version}", graph_engine("lkmm", _version), "graph")
