"""The paravirt ticket spinlock: x86 ``CONFIG_PARAVIRT_SPINLOCKS`` from v3.12 to v4.1, in its v4.0-v4.1 form.

What pvqspinlock replaced in v4.2 (and what every published comparison of pvqspinlock is
against).  The lock word is the ticket lock's ``arch_spinlock_t`` (u16 ``head`` low, u16
``tail`` high; u16 tickets since NR_CPUS >= 256 / __TICKET_LOCK_INC), with two changes the
PV build makes (arch/x86/include/asm/spinlock_types.h):

* ``__TICKET_LOCK_INC`` is 2, so that bit 0 of a ticket is free for
* ``TICKET_SLOWPATH_FLAG`` (1): "some waiter has halted, the unlocker must kick".  It lived
  in the *tail* from v3.12 to v3.19; d6abfdb2022368d8 ("x86/spinlocks/paravirt: Fix memory
  corruption on unlock", v4.0) moved it to the *head*, because the old unlock read the tail
  after its ``add`` had released the lock, when the lock's memory may already be freed.  The
  v4.0 unlock learns the flag from the value its own ``xadd`` on the head returns.  This
  module models the v4.0-v4.1 form.

A waiter spins ``SPIN_THRESHOLD`` loops on the head, then calls ``__ticket_lock_spinning``
(``pv_lock_ops.lock_spinning``), which on KVM is :meth:`PvTicketSpinlock.kvm_lock_spinning`:
record ``(lock, want)`` in the per-CPU ``klock_waiting``, join the ``waiting_cpus`` mask, set
the slow-path flag, look at the head once more, and halt.  The unlocker's ``xadd`` returns
the flag; it then calls ``__ticket_unlock_kick`` (``pv_lock_ops.unlock_kick`` =
:meth:`PvTicketSpinlock.kvm_unlock_kick`), which scans ``waiting_cpus`` for the CPU whose
``want`` is the next ticket and kicks it with ``KVM_HC_KICK_CPU``.  The first acquirer that
finds the flag set and no one queued behind it clears it again
(``__ticket_check_and_clear_slowpath``).

Lock-word states are written ``(head[+F], tail)``, F being the slow-path flag in bit 0 of
the head; e.g. ``(2+F, 6)``: ticket 2 holds the lock, tickets 4 is queued, someone halted.

Sources read: arch/x86/include/asm/spinlock.h and arch/x86/kernel/kvm.c of v3.14-v3.19
(the flag in the tail, as in longman88/kernel-qspinlock and mv0/tip), and the v4.0 forms
of ``arch_spin_lock``, ``arch_spin_trylock``, ``arch_spin_unlock``,
``__ticket_check_and_clear_slowpath`` and ``xen_lock_spinning`` (whose pickup test with
``smp_mb__after_atomic`` and ``__tickets_equal`` d6abfdb2022368d8 gave ``kvm_lock_spinning``
too).  The v4.0 ``__ticket_enter_slowpath`` (``set_bit(0, &lock->tickets.head)``) is from
that commit's description, not re-read from a tree.

Not modelled: the ``paravirt_ticketlocks_enabled`` static key off (a PARAVIRT_SPINLOCKS
kernel on bare metal or on a host without PV_UNHALT: the unlock is a plain ``add`` on the
head and the slow-path hooks are NOPs) -- this class is always the KVM-enabled build; the
spin-time histogram of CONFIG_KVM_DEBUG_FS.  The paravirt call sites of ``lock_spinning`` and
``unlock_kick`` are :data:`pvspin.kernel.paravirt.TICKETLOCK_OPS`.
"""

from __future__ import annotations

from ..machine import ops
from ..machine.cpu import GuestCode
from ..machine.memory import CACHE_LINE, NULL, Layout, Memory, View
from ..machine.ops import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_andnot,
    atomic_fetch_add,
    atomic_or,
    cmpxchg,
    lockevent_inc,
    smp_cond_load_acquire,
    smp_mb__after_atomic,
    smp_processor_id,
    smp_wmb,
)
from .config import DEFAULT_CONFIG, LockConfig
from .declarations import LockDeclarations
from .lockevents import RELEASED_SLOW, RELEASED_SLOW_KICKED, TAKEN_SLOW, TAKEN_SLOW_PICKUP
from .ticket import ARCH_SPINLOCK

TICKET_LOCK_INC = 2  # __TICKET_LOCK_INC with CONFIG_PARAVIRT_SPINLOCKS
TICKET_SLOWPATH_FLAG = 1  # bit 0 of the head (v4.0+)
TICKET_SHIFT = 16  # sizeof(__ticket_t) * 8, u16 tickets
_TICKET_MASK = (1 << TICKET_SHIFT) - 1
_TAIL_INC = TICKET_LOCK_INC << TICKET_SHIFT

# struct kvm_lock_waiting { struct arch_spinlock *lock; __ticket_t want; }, per CPU (klock_waiting)
KVM_LOCK_WAITING = Layout("kvm_lock_waiting", 16, [("lock", 0, 8), ("want", 8, 2)])
# cpumask_t waiting_cpus: NR_CPUS bits in unsigned longs
CPUMASK_WORD = Layout("cpumask", 8, [("bits", 0, 8)])
_BITS_PER_LONG = 64


def tickets_equal(one: int, two: int) -> bool:
    """``__tickets_equal()``: equal tickets up to the slow-path flag (renamed: Python mangles ``__names`` in classes)."""
    return not ((one ^ two) & ~TICKET_SLOWPATH_FLAG & _TICKET_MASK)


def kvm_kick_cpu(cpu: int) -> GuestCode:
    """``kvm_kick_cpu``: the KVM_HC_KICK_CPU hypercall (sets the target's ``pv_unhalted``)."""
    yield ops.pv_kick(cpu)


class PvTicketSpinlock:
    """The PV ticket lock of v4.0-v4.1 on KVM (implements :class:`~pvspin.kernel.api.Spinlock`).

    The two slow-path hooks are call sites on the instance, ``ticket_lock_spinning`` and
    ``ticket_unlock_kick`` (``__ticket_lock_spinning`` / ``__ticket_unlock_kick``, calling the
    ``pv_lock_ops`` slots ``lock_spinning`` / ``unlock_kick`` of that era).  Constructed directly
    they call KVM's functions, as after ``kvm_spinlock_init``; a kernel build
    (:mod:`pvspin.kernel.build`) installs its patched sites there instead.  ``kick_cpu`` is
    ``kvm_kick_cpu``.
    """

    name = "pvticket"
    # Not symmetric: kvm_unlock_kick() scans waiting_cpus in CPU order, so which waiter a racing
    # scan still finds depends on CPU numbers.  per_cpu_by_reference is what the checker assumed
    # of every named lock before declarations; but the scan reaches klock_waiting[cpu] by a number
    # read from waiting_cpus, which no reference scan sees (an open question, not yet a finding).
    DECLARED = LockDeclarations(knobs={"spin_threshold"}, per_cpu_by_reference=True)

    def __init__(self, mem: Memory, ncpus: int, config: LockConfig = DEFAULT_CONFIG):
        # With an increment of 2, 2**15 tickets: more waiters than that would wrap the tail onto the head.
        if not isinstance(ncpus, int) or not 1 <= ncpus < 1 << (TICKET_SHIFT - 1):
            raise ValueError(f"ncpus must be 1..{(1 << (TICKET_SHIFT - 1)) - 1} for 16-bit tickets in steps "
                             f"of {TICKET_LOCK_INC}, got {ncpus!r}")
        self.mem = mem
        self.ncpus = ncpus
        self.spin_threshold = (config or DEFAULT_CONFIG).spin_threshold  # SPIN_THRESHOLD
        self.locks: list[View] = []
        self.klock_waiting = mem.alloc_percpu(KVM_LOCK_WAITING, "klock_waiting", ncpus)
        words = -(-ncpus // _BITS_PER_LONG)
        self.waiting_cpus = mem.alloc(CPUMASK_WORD, "waiting_cpus", (words,), align=CACHE_LINE)
        # pv_lock_ops as kvm_spinlock_init() sets them on a host with KVM_FEATURE_PV_UNHALT
        self.ticket_lock_spinning = self.kvm_lock_spinning
        self.ticket_unlock_kick = self.kvm_unlock_kick
        self.kick_cpu = kvm_kick_cpu

    def alloc_lock(self, name: str) -> View:
        """__ARCH_SPIN_LOCK_UNLOCKED: (0, 0), on a cache line of its own."""
        lock = self.mem.alloc(ARCH_SPINLOCK, name, align=CACHE_LINE)
        self.locks.append(lock)
        return lock

    # ------------------------------------------------------------- arch/x86/include/asm/spinlock.h
    def arch_spin_lock(self, lock: View) -> GuestCode:
        """``arch_spin_lock()`` of v4.0-v4.1: take a ticket; spin SPIN_THRESHOLD loops, then lock_spinning; repeat."""
        # inc = xadd(&lock->tickets, inc): (h, t) -> (h, t+2), a locked xadd of the whole word
        old = yield atomic_fetch_add(lock.head_tail, _TAIL_INC)
        head, tail = old & _TICKET_MASK, old >> TICKET_SHIFT
        if head == tail:  # likely(inc.head == inc.tail): (t, t) -> (t, t+2), ours, flag clear
            return
        spin_threshold = self.spin_threshold
        while True:
            # do { inc.head = READ_ONCE(lock->tickets.head); if (__tickets_equal(..)) goto
            # clear_slowpath; cpu_relax(); } while (--count): SPIN_THRESHOLD reads of the head,
            # one bounded wait here (an acquire load: every load is, on x86-TSO)
            head = yield smp_cond_load_acquire(lock.head, lambda h: tickets_equal(h, tail), spin_threshold)
            if tickets_equal(head, tail):
                break  # (t[+F], *): our turn
            yield from self.ticket_lock_spinning(lock, tail)  # __ticket_lock_spinning(lock, inc.tail)
        # clear_slowpath:
        yield from self.ticket_check_and_clear_slowpath(lock, head)

    def ticket_check_and_clear_slowpath(self, lock: View, head: int) -> GuestCode:
        """``__ticket_check_and_clear_slowpath()``: (t+F, t+2) -> (t, t+2) when no one queued behind us."""
        if head & TICKET_SLOWPATH_FLAG:
            new_head = head & ~TICKET_SLOWPATH_FLAG
            tail = (new_head + TICKET_LOCK_INC) & _TICKET_MASK  # only us: the tail is one ticket on
            old = head | tail << TICKET_SHIFT
            # try to clear the slow-path flag when there are no contenders; fails (and keeps
            # the flag, so our unlock kicks) when a later ticket has been drawn
            yield cmpxchg(lock.head_tail, old, new_head | tail << TICKET_SHIFT)

    def arch_spin_trylock(self, lock: View) -> GuestCode:
        """``arch_spin_trylock()`` of v4.0-v4.1: only if (h[+F], h), take ticket h by cmpxchg, clearing F."""
        old = yield READ_ONCE(lock.head_tail)
        if not tickets_equal(old & _TICKET_MASK, old >> TICKET_SHIFT):
            return False
        # (h[+F], h) -> (h, h+2): new.head_tail &= ~TICKET_SLOWPATH_FLAG, no one waits to be kicked
        new = ((old + _TAIL_INC) & 0xFFFF_FFFF) & ~TICKET_SLOWPATH_FLAG
        return (yield cmpxchg(lock.head_tail, old, new)) == old

    def arch_spin_unlock(self, lock: View) -> GuestCode:
        """``arch_spin_unlock()`` of v4.0-v4.1 with ``paravirt_ticketlocks_enabled`` on.

        ``head = xadd(&lock->tickets.head, TICKET_LOCK_INC)``: (h[+F], t) -> (h+2[+F], t), and
        the old head tells whether anyone halted; the lock word is not read again after the
        release (the v3.12-v3.19 unlock re-read the tail: d6abfdb2022368d8).
        """
        head = yield atomic_fetch_add(lock.head, TICKET_LOCK_INC)  # lock xaddw: full barrier
        if head & TICKET_SLOWPATH_FLAG:
            head &= ~TICKET_SLOWPATH_FLAG
            # __ticket_unlock_kick(lock, head + TICKET_LOCK_INC): wake whoever holds the next ticket
            yield from self.ticket_unlock_kick(lock, (head + TICKET_LOCK_INC) & _TICKET_MASK)

    spin_lock = arch_spin_lock
    spin_trylock = arch_spin_trylock
    spin_unlock = arch_spin_unlock

    def ticket_enter_slowpath(self, lock: View) -> GuestCode:
        """``__ticket_enter_slowpath()`` (v4.0+): ``set_bit(0, &lock->tickets.head)``: (h, t) -> (h+F, t).

        ``set_bit`` with a constant bit is ``lock orb $1`` on the head's low byte; a locked
        16-bit ``or`` of 1 on the head changes the same bit.
        """
        yield atomic_or(TICKET_SLOWPATH_FLAG, lock.head)

    # ------------------------------------------------------------- arch/x86/kernel/kvm.c
    def cpumask_word(self, cpu: int):
        return self.waiting_cpus[cpu // _BITS_PER_LONG].bits

    def kvm_lock_spinning(self, lock: View, want: int) -> GuestCode:
        """``kvm_lock_spinning()`` (v4.0-v4.1): publish (lock, want), set the slow-path flag, re-check, halt."""
        if (yield ops.in_nmi()):
            return
        cpu = yield smp_processor_id()
        w = self.klock_waiting[cpu]  # this_cpu_ptr(&klock_waiting)
        # local_irq_save(flags): an interrupt handler must not see a half-written (lock, want)
        flags = yield ops.local_irq_disable()
        # "lock" may only be non-NULL while "want" is correct: clear it before changing want
        yield WRITE_ONCE(w.lock, NULL)
        yield smp_wmb()
        yield WRITE_ONCE(w.want, want)
        yield smp_wmb()
        yield WRITE_ONCE(w.lock, lock.addr)
        yield lockevent_inc(TAKEN_SLOW)  # add_stats(TAKEN_SLOW, 1)
        # cpumask_set_cpu(cpu, &waiting_cpus): lock bts
        yield atomic_or(1 << cpu % _BITS_PER_LONG, self.cpumask_word(cpu))
        # Mark entry to the slow path before the pickup test, or an unlocker that did not see
        # the flag would not kick us: (h, t) -> (h+F, t)
        yield from self.ticket_enter_slowpath(lock)
        yield smp_mb__after_atomic()  # the set_bit must not pass the read below
        # check again that it did not become free while we were not looking
        head = yield READ_ONCE(lock.head)
        if tickets_equal(head, want):
            yield lockevent_inc(TAKEN_SLOW_PICKUP)  # add_stats(TAKEN_SLOW_PICKUP, 1)
        else:
            # halt until it is our turn and we are kicked: halt() with interrupts off, else
            # safe_halt() (sti; hlt) so that an interrupt handler that reused klock_waiting in
            # its own lock's slow path cannot leave us asleep.  The halt is the machine's
            # PV_WAIT on w->lock, which only this CPU writes: it halts while w->lock still
            # names this lock (always, unless an interrupt's nested kvm_lock_spinning cleared
            # it) until kicked; a kick that came first is latched, as KVM's pv_unhalted is.
            if flags:
                yield ops.local_irq_enable()  # safe_halt()'s sti
            yield ops.pv_wait(w.lock, lock.addr)
        # out: cpumask_clear_cpu(cpu, &waiting_cpus) (lock btr), w->lock = NULL
        yield atomic_andnot(1 << cpu % _BITS_PER_LONG, self.cpumask_word(cpu))
        yield WRITE_ONCE(w.lock, NULL)
        yield ops.local_irq_restore(flags)

    def kvm_unlock_kick(self, lock: View, ticket: int) -> GuestCode:
        """``kvm_unlock_kick()``: kick the vCPU waiting on ``lock`` for ``head`` to reach ``ticket``."""
        yield lockevent_inc(RELEASED_SLOW)  # add_stats(RELEASED_SLOW, 1)
        cpu = yield from self.find_next_bit(0)
        while cpu < self.ncpus:  # for_each_cpu(cpu, &waiting_cpus)
            w = self.klock_waiting[cpu]
            if (yield READ_ONCE(w.lock)) == lock.addr and (yield READ_ONCE(w.want)) == ticket:
                yield lockevent_inc(RELEASED_SLOW_KICKED)  # add_stats(RELEASED_SLOW_KICKED, 1)
                yield from self.kick_cpu(cpu)  # kvm_kick_cpu(cpu)
                break
            cpu = yield from self.find_next_bit(cpu + 1)

    def find_next_bit(self, start: int) -> GuestCode:
        """``cpumask_next()`` / ``find_next_bit()`` over ``waiting_cpus``: one plain load per word looked at."""
        cpu = start
        while cpu < self.ncpus:
            word = yield READ_ONCE(self.cpumask_word(cpu))
            bits = word >> cpu % _BITS_PER_LONG
            if bits:
                return cpu + ((bits & -bits).bit_length() - 1)
            cpu = (cpu // _BITS_PER_LONG + 1) * _BITS_PER_LONG
        return self.ncpus

    # ------------------------------------------------------------- invariants
    def final_state_problems(self) -> list[str]:
        """At quiescence: head == tail (the flag may stay set), no CPU in waiting_cpus, every klock_waiting.lock NULL."""
        problems = []
        for lock in self.locks:
            word = self.mem.read(lock.head_tail.addr, 4)
            head, tail = word & _TICKET_MASK, word >> TICKET_SHIFT
            if not tickets_equal(head, tail):
                problems.append(f"{lock.name}: head {head} != tail {tail} at quiescence (lock held or waited for)")
        for word in self.waiting_cpus:
            if bits := self.mem.read(word.bits.addr, 8):
                problems.append(f"{word.name}: waiting_cpus {bits:#x} not empty at quiescence")
        for cpu, w in enumerate(self.klock_waiting):
            if self.mem.read(w.lock.addr, 8) != NULL:
                problems.append(f"klock_waiting[{cpu}].lock still set at quiescence")
        return problems
