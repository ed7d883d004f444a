"""User locks whose waits are spin loops written out by hand, correct and broken (tests/test_check_spin_liveness.py).

Each is loaded as ``tests/spin_locks.py:NAME``, the way a user's lock is.
"""

from pvspin.machine.memory import CACHE_LINE, Layout
from pvspin.machine.ops import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_cond_read_relaxed,
    atomic_fetch_add,
    cmpxchg_acquire,
    smp_load_acquire,
    smp_mb,
    smp_processor_id,
    smp_store_release,
)

WORD = Layout("spin_word", 8, [("val", 0, 4), ("locked", 0, 1), ("head", 0, 2), ("next", 2, 2), ("flag0", 4, 1),
                               ("flag1", 5, 1)])


class _Lock:
    def __init__(self, mem, ncpus):
        self.mem = mem

    def alloc_lock(self, name):
        return self.mem.alloc(WORD, name, align=CACHE_LINE)

    def spin_unlock(self, lock):
        yield smp_store_release(lock.locked, 0)


class HandTtas(_Lock):
    """Test-and-test-and-set with the test written as a loop of plain reads."""

    def spin_lock(self, lock):
        while True:
            while (yield READ_ONCE(lock.locked)):
                pass
            if (yield cmpxchg_acquire(lock.locked, 0, 1)) == 0:
                return


class HandTtasNoRelease(HandTtas):
    """The unlock forgets to release: the next CPU spins on its plain reads for good."""

    def spin_unlock(self, lock):
        return
        yield


class CondTtas(_Lock):
    """HandTtas with the wait as one atomic_cond_read_relaxed: the same lock to the checker."""

    def spin_lock(self, lock):
        while True:
            yield atomic_cond_read_relaxed(lock.val, lambda v: v & 0xFF == 0)
            if (yield cmpxchg_acquire(lock.locked, 0, 1)) == 0:
                return


class CondTtasNoRelease(CondTtas):
    def spin_unlock(self, lock):
        return
        yield


class HandTicket(_Lock):
    """A ticket lock whose wait for its turn is a loop of acquire reads."""

    def spin_lock(self, lock):
        ticket = (yield atomic_fetch_add(lock.val, 1 << 16)) >> 16
        while (yield smp_load_acquire(lock.head)) != ticket:
            pass

    def spin_unlock(self, lock):
        head = yield READ_ONCE(lock.head)
        yield smp_store_release(lock.head, (head + 1) & 0xFFFF)


class HandTicketStuckHead(HandTicket):
    """The unlock writes the head back unchanged: the next ticket never comes up."""

    def spin_unlock(self, lock):
        head = yield READ_ONCE(lock.head)
        yield smp_store_release(lock.head, head)


class Polite(_Lock):
    """Each CPU raises its flag and backs off while the other's is up: safe, and both can back off forever."""

    def spin_lock(self, lock):
        me = yield smp_processor_id()
        mine, theirs = (lock.flag0, lock.flag1) if me == 0 else (lock.flag1, lock.flag0)
        while True:
            yield WRITE_ONCE(mine, 1)
            yield smp_mb()
            if not (yield READ_ONCE(theirs)):
                return
            yield WRITE_ONCE(mine, 0)

    def spin_unlock(self, lock):
        me = yield smp_processor_id()
        yield WRITE_ONCE(lock.flag0 if me == 0 else lock.flag1, 0)


class WaitForFlag(_Lock):
    """Every CPU spins until a flag nobody sets: no progress, by any CPU, on any fair cycle."""

    def spin_lock(self, lock):
        while not (yield READ_ONCE(lock.flag0)):
            pass
