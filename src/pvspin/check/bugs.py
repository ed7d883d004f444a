"""The bug corpus: every injectable bug, what it breaks, its fix, and a configuration that exposes it.

Kernel bugs are injected into the lock code through ``LockConfig.bugs`` (their
descriptions and fixing commits live in :mod:`pvspin.kernel.config`); hypervisor bugs are
checker options (the hypervisor is part of the checker's world).
"""

from __future__ import annotations

from dataclasses import dataclass, field

HYPERVISOR_BUGS = {
    "pv-wait-no-latch": (
        "the hypervisor drops a pv_kick() that arrives before the target halts (no pv_unhalted "
        "latch, KVM's kick-before-halt): the waiter then halts for good",
        None,
    ),
}


@dataclass(frozen=True)
class Exposure:
    """A small configuration in which the checker finds the bug, and what it reports."""

    lock: str
    cpus: int
    acquisitions: int
    memory_model: str
    expect: tuple[str, ...]  # properties the counterexample may violate
    interrupts: int = 0
    workload: str = "locktorture"
    overrides: dict = field(default_factory=dict)
    strategy: str = "exhaustive"
    preemptions: int = 0  # the bound, for the bounded strategy

    def options(self, bug: str, **changes):
        """The :class:`~pvspin.check.runner.CheckOptions` of this exposure of ``bug``, with ``changes``."""
        from .runner import CheckOptions

        fields = dict(lock=self.lock, cpus=self.cpus, acquisitions=self.acquisitions, memory_model=self.memory_model,
                      bugs=(bug,), interrupts=self.interrupts, workload=self.workload, overrides=dict(self.overrides),
                      strategy=self.strategy, preemptions=self.preemptions)
        fields.update(changes)
        return CheckOptions(**fields)


EXPOSURES = {
    "pv-kick-node-no-barrier": Exposure("pvqspinlock", 3, 1, "tso", ("lost-wakeup",)),
    "pending-after-tail": Exposure("qspinlock", 3, 2, "sc", ("mutual-exclusion", "deadlock", "final-state")),
    "unhash-without-slow-check": Exposure("pvqspinlock", 1, 1, "sc", ("guest-bug",), workload="unlock-unheld"),
    # A task reads node->count (0) and initialises qnodes[0], then an interrupt comes before
    # the sunk count store: the handler reads 0 too and takes qnodes[0] for its own lock.
    # Queued behind a predecessor there, it leaves locked = 1 behind, and the task, queued
    # behind a predecessor in turn, takes that for the MCS hand-over: two queue heads.  The
    # task's predecessor halts on _Q_SLOW_VAL, the task's set_locked() overwrites it, and
    # nobody kicks the halted head.  PV queues on any contention and its head's pending bit
    # makes later lockers queue, so 2 CPUs suffice: cpu0's second acquisition is the task,
    # behind cpu1's head; cpu0's handlers hold lock1 and later reuse the node, behind
    # cpu1's handler.  Four preemptions (none fewer: bounds 0-3 come up empty); the
    # exhaustive search finds it too, as a livelock, after about as long.
    "count-after-init": Exposure("pvqspinlock", 2, 2, "sc", ("lost-wakeup", "deadlock", "mutual-exclusion",
                                                             "final-state"), interrupts=3,
                                 strategy="bounded", preemptions=4),
    # PV lockers always queue, so two interrupt handlers nest queue nodes with 2 CPUs;
    # MAX_NODES shrunk to 1 makes the second nesting level the overflowing one.
    "no-max-nodes-fallback": Exposure("pvqspinlock", 2, 1, "sc", ("guest-bug",), interrupts=2,
                                      overrides={"max_nodes": 1}),
    "unbounded-pending-wait": Exposure("qspinlock", 3, 1, "sc", ("starvation",), workload="forever"),
    "pv-wait-no-latch": Exposure("pvqspinlock", 2, 1, "sc", ("lost-wakeup",)),
    # A waiter linked behind a predecessor needs two queued CPUs behind an owner and a pending
    # CPU: 4 CPUs x 1.  Its node->locked = 0 becomes visible after the link, overwriting the
    # predecessor's hand-over; it waits for good.  Correct under SC and TSO.
    "xchg-tail-release": Exposure("qspinlock", 4, 1, "armv8", ("deadlock",)),
}


def corpus() -> dict[str, tuple[str, str | None]]:
    """name -> (description, fixing commit or None), kernel bugs first."""
    from ..kernel.config import BUGS

    return {**BUGS, **HYPERVISOR_BUGS}


def fixes() -> dict[str, tuple[str, str]]:
    """Historical fixes that are not today's code (``--bug`` combines them with the bug they fixed)."""
    from ..kernel.config import FIXES

    return FIXES


def split(bugs) -> tuple[frozenset, frozenset]:
    """(kernel bugs and fixes, hypervisor bugs); raises ValueError naming an unknown one."""
    known = {**corpus(), **fixes()}
    for name in bugs:
        if name not in known:
            raise ValueError(f"--bug {name!r}: unknown bug (see --list-bugs)")
    return frozenset(b for b in bugs if b not in HYPERVISOR_BUGS), frozenset(b for b in bugs if b in HYPERVISOR_BUGS)
