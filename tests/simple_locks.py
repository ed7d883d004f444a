"""Tiny locks in the guest vocabulary, for testing the drivers independently of kernel/."""

from pvspin.machine import ops as o
from pvspin.machine.memory import Layout

WORD = Layout("word", 4, [("val", 0, 4), ("head", 0, 2), ("tail", 2, 2), ("locked", 0, 1)], align=4)


def ticket_lock(lock):
    ticket = yield o.atomic_fetch_add(lock.val, 1 << 16)
    ticket >>= 16
    if ticket != (yield o.READ_ONCE(lock.head)):
        yield o.smp_cond_load_acquire(lock.head, lambda head: head == ticket)


def ticket_unlock(lock):
    head = yield o.READ_ONCE(lock.head)
    yield o.smp_store_release(lock.head, (head + 1) & 0xFFFF)


def tas_lock(lock):
    while True:
        yield o.smp_cond_load_relaxed(lock.val, lambda v: v == 0)
        if (yield o.atomic_cmpxchg_acquire(lock.val, 0, 1)) == 0:
            return


def tas_unlock(lock):
    yield o.smp_store_release(lock.locked, 0)


def locker(lock, lock_id, acquire, release, hold, delay, rounds=None):
    """A locktorture-style writer: take the lock, hold it, drop it, wait, repeat."""
    n = 0
    while rounds is None or n < rounds:
        yield from acquire(lock)
        yield o.cs_enter(lock_id)
        yield o.work(hold, o.WORK_CS)
        yield o.cs_exit(lock_id)
        yield from release(lock)
        yield o.work(delay)
        n += 1
