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


EXPOSURES = {
    "pv-kick-node-no-barrier": Exposure("pvqspinlock", 3, 1, "tso", ("lost-wakeup",)),
    "pending-after-tail": Exposure("qspinlock", 3, 2, "sc", ("mutual-exclusion", "deadlock", "final-state")),
    "unhash-without-slow-check": Exposure("pvqspinlock", 1, 1, "sc", ("guest-bug",), workload="unlock-unheld"),
    "count-after-init": Exposure("qspinlock", 2, 1, "sc", ("mutual-exclusion", "deadlock", "final-state",
                                                           "guest-bug"), interrupts=2),
    # PV lockers always queue, so two interrupt handlers nest queue nodes with 2 CPUs;
    # MAX_NODES shrunk to 1 makes the second nesting level the overflowing one.
    "no-max-nodes-fallback": Exposure("pvqspinlock", 2, 1, "sc", ("guest-bug",), interrupts=2,
                                      overrides={"max_nodes": 1}),
    "unbounded-pending-wait": Exposure("qspinlock", 3, 1, "sc", ("starvation",), workload="forever"),
    "pv-wait-no-latch": Exposure("pvqspinlock", 2, 1, "sc", ("lost-wakeup",)),
}


def corpus() -> dict[str, tuple[str, str | None]]:
    """name -> (description, fixing commit or None), kernel bugs first."""
    from ..kernel.config import BUGS

    return {**BUGS, **HYPERVISOR_BUGS}


def split(bugs) -> tuple[frozenset, frozenset]:
    """(kernel bugs, hypervisor bugs); raises ValueError naming an unknown one."""
    known = corpus()
    for name in bugs:
        if name not in known:
            raise ValueError(f"--bug {name!r}: unknown bug (see --list-bugs)")
    return frozenset(b for b in bugs if b not in HYPERVISOR_BUGS), frozenset(b for b in bugs if b in HYPERVISOR_BUGS)
