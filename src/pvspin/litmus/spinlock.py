"""``pvspin litmus --spinlock``: a C test's ``spin_*()`` as the kernel's lock code instead of lock.cat.

By default a C test's lock is LKMM's abstract lock (``lock.cat``: LKR/LKW/UL/RL/RU events,
see :mod:`.c`).  With ``--spinlock qspinlock`` (or ``qspinlock-16k``, ``pvqspinlock``,
``path/to/file.py:NAME``) each location the test passes to ``spin_*()`` is a lock word of
that lock, built as ``pvspin check --lock NAME`` builds it (the checker's shrunk constants,
the generic code as arm64 builds it under ``armv8`` and ``lkmm``), with its per-CPU queue
nodes; each thread is a CPU, and

=====================  =============================================
C                      guest code
=====================  =============================================
``spin_lock(s)``       ``queued_spin_lock()`` (the lock's ``spin_lock``)
``spin_unlock(s)``     ``queued_spin_unlock()``
``spin_trylock(s)``    ``queued_spin_trylock()``, as 0/1
``spin_is_locked(s)``  ``queued_spin_is_locked()`` as a truth value (the kernel returns the
                       word, which callers test; herd's RL/RU read 0 or 1)
=====================  =============================================

``smp_mb__after_spinlock()`` and ``smp_mb__after_unlock_lock()`` are the lock
architecture's: LKMM defines them only around lock.cat's LKW/UL events, which the real
lock has not, so they are what the kernel the lock is built for defines -- on arm64
``smp_mb()`` and nothing (arch/arm64/include/asm/spinlock.h), on x86 nothing (the lock is
a LOCK-prefixed RMW).

The test runs on the execution-graph checker (:mod:`pvspin.check.graph`) with the lock's
sub-word accesses as whole-word RMWs (:mod:`~pvspin.check.graph.wholeword`; no model here
has mixed sizes), ``pv_wait``/``pv_kick`` as events (:mod:`~pvspin.check.graph.hypervisor`),
the spin-waits as awaits and the loop bound of ``pvspin check``.  The lock's own accesses
take part in the memory model but are no part of the final state: only the test's
locations and registers are.  Graphs that end with a CPU spinning forever (a deadlock, the
lock's or the test's) and graphs cut at the loop bound are counted and reported, never
dropped silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..machine import ops as o
from .source import Unsupported

ABSTRACT = "abstract"
NAMED = ("qspinlock", "qspinlock-16k", "pvqspinlock")  # the qspinlock family of pvspin check --lock
CHOICES = (ABSTRACT, *NAMED)
# graphs one test may take with a real lock before it is reported unsupported (LKMM's abstract
# lock has LKMM_GRAPH_LIMIT): the lock's slow path multiplies the graphs of a contended test
LOCK_GRAPH_LIMIT = 200_000

_ARM64_FENCES = {o.MB_AFTER_SPINLOCK: o.MB, o.MB_AFTER_UNLOCK_LOCK: None}
_X86_FENCES = {o.MB_AFTER_SPINLOCK: None, o.MB_AFTER_UNLOCK_LOCK: None}


class BadSpinlock(ValueError):
    """A ``--spinlock`` value that names no usable lock; the message names the value."""


class KernelLock:
    """The lock a ``--spinlock`` value names, for tests run under ``memory_model``; builds it per instance."""

    def __init__(self, name: str, memory_model: str):
        from ..check.harness import BadInput, lock_spec
        from ..check.runner import CHECK_KNOBS
        from ..kernel.config import LockConfig

        if name not in NAMED and ":" not in name:
            raise BadSpinlock(f"--spinlock {name!r}: expected {', '.join(CHOICES)} or path/to/file.py:NAME")
        try:
            self.spec = lock_spec(name)
        except BadInput as exc:  # its message speaks of --lock
            raise BadSpinlock(f"--spinlock {str(exc).removeprefix('--lock ')}") from None
        self.name = name
        self.arch = "arm64" if memory_model in ("armv8", "lkmm") else "x86"  # as pvspin check builds it
        self.config = (LockConfig(nr_cpus_16k=self.spec.nr_cpus_16k, arch=self.arch, **CHECK_KNOBS)
                       if self.spec.takes_config else None)
        self._fences = _ARM64_FENCES if self.arch == "arm64" else _X86_FENCES
        probe = self.build(None, 1)  # a user's file that is no lock is refused here, before any test runs
        self.constants = self._constants(probe)

    def build(self, mem, ncpus: int):
        """The lock in ``mem`` (a fresh one if None) for ``ncpus`` CPUs."""
        from ..check.harness import BadInput
        from ..kernel.userlock import UserLockError
        from ..machine.memory import Memory

        try:
            return self.spec.build(Memory() if mem is None else mem, ncpus, self.config)
        except (BadInput, UserLockError) as exc:
            raise BadSpinlock(f"--spinlock {str(exc).removeprefix('--').removeprefix('lock ')}") from None

    def _constants(self, lock) -> dict:
        from ..kernel.config import DEFAULT_CONFIG, KNOBS
        from ..kernel.declarations import declared_by
        from ..kernel.userlock import CheckedLock

        if self.config is None:
            return {}
        declared = lock.declared if isinstance(lock, CheckedLock) else declared_by(type(lock))
        return {k: getattr(self.config, k) for k in KNOBS
                if k in declared.knobs and getattr(self.config, k) != getattr(DEFAULT_CONFIG, k)}

    def describe(self, memory_model: str) -> str:
        """What ran, for the header: the code, its build, the constants, the lock's barriers."""
        if ":" in self.name:
            parts = [self.spec.description]
        else:
            layout = "NR_CPUS >= 16K layout" if self.spec.nr_cpus_16k else "NR_CPUS < 16K layout"
            code = "kernel/locking/qspinlock.c" + (" with qspinlock_paravirt.h, pv_wait/pv_kick as events"
                                                   if self.name.startswith("pv") else "")
            parts = [code, layout]
        if self.config is not None:  # a lock that takes no LockConfig has no architecture to be built for
            parts.append(f"the generic code as {self.arch} builds it")
        if memory_model == "lkmm" and ":" not in self.name:  # the LKMM has no mixed-size accesses
            parts.append("whole-word lock word for lkmm")
        if self.constants:
            parts.append("constants " + ", ".join(f"{k}={v}" for k, v in self.constants.items()))
        parts.append("smp_mb__after_spinlock() = " + ("smp_mb(), as on arm64" if self.arch == "arm64" else
                                                      "nothing, as on x86"))
        return f"{self.name} ({'; '.join(parts)})"

    # ------------------------------------------------------------- what the C front end calls
    def fence(self, kind):
        """The barrier a C test's fence is with this lock: the lock's own two as its architecture has them."""
        return self._fences.get(kind, kind)

    def call(self, kind: str, lock, view):
        """Guest code for ``spin_lock`` ... ``spin_is_locked`` of ``view``; returns the C value."""
        from .run import LitmusFault

        if kind == "spin_lock":
            yield from lock.spin_lock(view)
            return 0
        if kind == "spin_unlock":
            yield from lock.spin_unlock(view)
            return 0
        method = getattr(lock, kind, None)
        if method is None:
            raise LitmusFault(f"the lock has no {kind}()")
        value = yield from method(view)
        return (value != 0) + 0  # a Dep stays one: what branches on it depends on the lock's read


@dataclass
class LockRun:
    """One test with a real lock: its final states, and what the search counted besides executions."""

    outcomes: dict
    executions: int
    stuck: int  # graphs that ended with a CPU spinning forever
    cut: int  # graphs cut at the loop bound
    graphs: int
    seconds: float
    lowered: list[str] = field(default_factory=list)
    first_stuck: str | None = None  # the first stuck graph's waits, in the checker's words

    @property
    def note(self) -> str:
        parts = [f"{self.executions} executions", f"{self.stuck} stuck", f"{self.cut} cut at the loop bound"]
        return ", ".join(parts) + f", {self.graphs} graphs in {self.seconds:.2f} s"


def run(test, lock: KernelLock, memory_model: str, version: str | None = None) -> LockRun:
    """``test`` with ``lock`` under the model: :class:`LockRun`, or :class:`Unsupported` saying why not."""
    from ..check.graph.explorer import DependencyMiss, Explorer, Program
    from ..check.graph.explorer import Unsupported as GraphUnsupported
    from ..check.graph.hypervisor import latches, run_hypercalls
    from ..check.graph.models import get
    from ..check.graph.wholeword import Unlowerable, Words
    from .run import LitmusFault
    from .test import LOCATION_SIZE

    if "" in test.locks:
        raise Unsupported(f"unsupported: a computed lock pointer at line {test.locks['']} (the {lock.name} lock "
                          "needs each lock to be a parameter it can allocate)")
    for var in test.observed:
        if not var.is_register and var.name in test.locks:
            raise Unsupported(f"unsupported: the condition reads the lock {var.name} (its word is the "
                              f"{lock.name} lock's, not lock.cat's 0/1)")
    for name in test.locks:
        if test.locations.get(name, 0) != 0:
            raise Unsupported(f"unsupported: the lock {name} starts as {test.locations[name]!r}, not unlocked")
    model = get(memory_model, version)
    instance = test.instance(lock)
    mem = instance.mem
    threads = instance.threads
    flags = latches(mem, len(threads))
    words = Words(mem)  # after every allocation: it reads the layouts in memory

    def outcome(memory: dict, returns: list):
        return instance.final_state(
            lambda var: threads[var.thread].register(returns[var.thread], var.name),
            lambda addr: memory.get(addr, mem.read(addr, LOCATION_SIZE)))

    def explore(discard_stuck: bool):
        program = Program(len(threads), lambda t: run_hypercalls(threads[t].program(), t, flags), mem.read,
                          mem.name_of, outcome=outcome, discard_stuck=discard_stuck)
        return Explorer(program, model, max_graphs=LOCK_GRAPH_LIMIT,
                        lower=lambda op: words.lower(op, mem.name_of)).run()

    started = time.perf_counter()
    try:
        result = explore(discard_stuck=True)  # count the stuck graphs and go on
        first = None
        if result.blocked and result.verdict in ("verified", "bounded"):
            again = explore(discard_stuck=False)  # the same search, stopping at the first: to name it
            first = again.finding.detail if again.finding is not None else None
    except (LitmusFault, GraphUnsupported, DependencyMiss, Unlowerable) as fault:
        raise Unsupported(f"unsupported: {fault}") from None
    if result.note == "interrupted":
        raise KeyboardInterrupt
    if result.verdict not in ("verified", "bounded"):
        finding = result.finding
        raise Unsupported(f"unsupported: the graph checker stopped: "
                          f"{finding.prop + ': ' + finding.detail if finding else result.note}")
    return LockRun(result.outcomes, result.executions, result.blocked, result.cut, result.graphs,
                   time.perf_counter() - started, sorted(words.lowered), first)
