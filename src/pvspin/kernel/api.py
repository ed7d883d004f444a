"""The interface every guest spinlock offers to workloads, the timed simulator and the checker.

A lock implementation owns its memory (lock words, per-CPU queue nodes, hash tables) in
the machine's :class:`~pvspin.machine.memory.Memory`; guest code takes and releases lock
instances by ``yield from``-ing the generators below.
"""

from __future__ import annotations

from typing import Protocol

from ..machine.cpu import GuestCode
from ..machine.memory import View


class Spinlock(Protocol):
    """``spin_lock`` / ``spin_unlock`` / ``spin_trylock`` of include/linux/spinlock.h, one implementation."""

    name: str  # e.g. "qspinlock", "pvqspinlock", "ticket"

    def alloc_lock(self, name: str) -> View:
        """Allocate one lock instance, cache-line aligned (``DEFINE_SPINLOCK``)."""

    def spin_lock(self, lock: View) -> GuestCode:
        """Guest code: acquire ``lock``."""

    def spin_unlock(self, lock: View) -> GuestCode:
        """Guest code: release ``lock``."""

    def spin_trylock(self, lock: View) -> GuestCode:
        """Guest code returning True if ``lock`` was acquired without waiting."""

    def final_state_problems(self) -> list[str]:
        """At quiescence: every lock free, hash entries free, node counts 0; [] when all is well."""
