"""The x86 ticket spinlock before paravirt ticketlocks (arch/x86/include/asm/spinlock.h, 2.6.25 … 3.11).

The baseline qspinlock replaced: a 32-bit word of two 16-bit halves (NR_CPUS >= 256),
``head`` (now serving, low half) and ``tail`` (next ticket, high half).  A locker takes a
ticket with one ``xadd`` on the tail and spins until ``head`` reaches it; the unlocker
increments ``head``.  Every waiter spins on the same line, and a preempted next-in-line
vCPU stalls everyone behind it.
"""

from __future__ import annotations

from ..machine.cpu import GuestCode
from ..machine.memory import CACHE_LINE, Layout, Memory, View
from ..machine.ops import READ_ONCE, atomic_fetch_add, cmpxchg, smp_cond_load_acquire, smp_store_release
from .config import DEFAULT_CONFIG, LockConfig
from .declarations import PLAIN, LockDeclarations

TICKET_SHIFT = 16  # sizeof(__ticket_t) * 8 with a u16 ticket
_TICKET_MASK = (1 << TICKET_SHIFT) - 1

# arch_spinlock_t: union { __ticketpair_t head_tail; struct __raw_tickets { u16 head, tail; } tickets; }
ARCH_SPINLOCK = Layout("arch_spinlock", 4, [("head_tail", 0, 4), ("head", 0, 2), ("tail", 2, 2)], align=4)


class TicketSpinlock:
    """Ticket spinlock (implements :class:`~pvspin.kernel.api.Spinlock`)."""

    name = "ticket"
    # tickets name no CPU, and no data is per CPU
    DECLARED = LockDeclarations(symmetric=True, locals={
        "TicketSpinlock.ticket_spin_lock": {"old": PLAIN, "ticket": PLAIN},
        "TicketSpinlock.ticket_spin_trylock": {"old": PLAIN},
        "TicketSpinlock.ticket_spin_unlock": {"head": PLAIN},
    })

    def __init__(self, mem: Memory, ncpus: int, config: LockConfig = DEFAULT_CONFIG):
        # ``config`` is accepted for a uniform constructor; no LockConfig knob applies here.
        if not isinstance(ncpus, int) or not 1 <= ncpus <= _TICKET_MASK:
            raise ValueError(f"ncpus must be 1..{_TICKET_MASK} for 16-bit tickets, got {ncpus!r}")
        self.mem = mem
        self.ncpus = ncpus
        self.locks: list[View] = []

    def alloc_lock(self, name: str) -> View:
        """__ARCH_SPIN_LOCK_UNLOCKED: head == tail == 0, on a cache line of its own."""
        lock = self.mem.alloc(ARCH_SPINLOCK, name, align=CACHE_LINE)
        self.locks.append(lock)
        return lock

    def ticket_spin_lock(self, lock: View) -> GuestCode:
        """__ticket_spin_lock(): take a ticket (xadd on the tail), spin until head reaches it."""
        old = yield atomic_fetch_add(lock.head_tail, 1 << TICKET_SHIFT)  # lock xaddl
        ticket = old >> TICKET_SHIFT
        if old & _TICKET_MASK != ticket:
            yield smp_cond_load_acquire(lock.head, lambda head: head == ticket)

    def ticket_spin_trylock(self, lock: View) -> GuestCode:
        """__ticket_spin_trylock(): only if head == tail, take the next ticket by cmpxchg."""
        old = yield READ_ONCE(lock.head_tail)
        if old & _TICKET_MASK != old >> TICKET_SHIFT:
            return False
        return (yield cmpxchg(lock.head_tail, old, old + (1 << TICKET_SHIFT))) == old

    def ticket_spin_unlock(self, lock: View) -> GuestCode:
        """__ticket_spin_unlock(): ``incw head`` without a lock prefix (only the owner writes head)."""
        head = yield READ_ONCE(lock.head)
        yield smp_store_release(lock.head, (head + 1) & _TICKET_MASK)

    spin_lock = ticket_spin_lock
    spin_trylock = ticket_spin_trylock
    spin_unlock = ticket_spin_unlock

    def final_state_problems(self) -> list[str]:
        problems = []
        for lock in self.locks:
            word = self.mem.read(lock.head_tail.addr, 4)
            head, tail = word & _TICKET_MASK, word >> TICKET_SHIFT
            if head != tail:
                problems.append(f"{lock.name}: head {head} != tail {tail} at quiescence (lock held or waited for)")
        return problems
