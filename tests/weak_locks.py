"""User locks for the weak-memory checker (tests/test_check_graph_cli.py), loaded as ``tests/weak_locks.py:NAME``."""

from pvspin.machine.memory import CACHE_LINE, Layout
from pvspin.machine.ops import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_cond_read_relaxed,
    cmpxchg_acquire,
    cmpxchg_relaxed,
    smp_cond_load_acquire,
    smp_store_release,
    xchg_relaxed,
)

WORD = Layout("weak_word", 4, [("val", 0, 4)])


class OrderedTas:
    """Test-and-test-and-set with an _acquire claim and a _release unlock: correct on any model."""

    def __init__(self, mem, ncpus):
        self.mem = mem

    def alloc_lock(self, name):
        return self.mem.alloc(WORD, name, align=CACHE_LINE)

    def spin_lock(self, lock):
        while True:
            yield atomic_cond_read_relaxed(lock.val, lambda v: v == 0)
            if (yield cmpxchg_acquire(lock.val, 0, 1)) == 0:
                return

    def spin_unlock(self, lock):
        yield smp_store_release(lock.val, 0)


class RelaxedTas(OrderedTas):
    """The same lock with relaxed claim and unlock: correct under SC and TSO, not under ARMv8."""

    def spin_lock(self, lock):
        while True:
            yield atomic_cond_read_relaxed(lock.val, lambda v: v == 0)
            if (yield cmpxchg_relaxed(lock.val, 0, 1)) == 0:
                return

    def spin_unlock(self, lock):
        yield WRITE_ONCE(lock.val, 0)



FIELDS = Layout("weak_fields", 4, [("val", 0, 4), ("locked", 0, 1), ("tail", 2, 2)])


class TailThenAcquire:
    """A queued lock for two CPUs in the shape of qspinlock's: the word holds a locked byte and a tail.

    A CPU that fails to take the free word announces itself with a relaxed ``xchg_relaxed(tail)``
    (bytes 2-3 only), waits with an acquire read of the word for the locked byte to clear, and
    claims the lock.  Its acquire takes byte 0 from the owner's release store of the locked
    byte: correct under every model.  Run with whole-word accesses (check/graph/wholeword.py),
    the xchg is an RMW of the word that carries byte 0 from the word it read into the word it
    writes, and the acquire may read that, its own, write.
    """

    def __init__(self, mem, ncpus):
        self.mem = mem

    def alloc_lock(self, name):
        return self.mem.alloc(FIELDS, name, align=CACHE_LINE)

    def spin_lock(self, lock):
        if (yield cmpxchg_acquire(lock.val, 0, 1)) == 0:
            return
        yield xchg_relaxed(lock.tail, 1)
        while True:
            val = yield smp_cond_load_acquire(lock.val, lambda v: v & 0xff == 0)
            if (yield cmpxchg_relaxed(lock.val, val, 1)) == val:
                return

    def spin_unlock(self, lock):
        yield smp_store_release(lock.locked, 0)


class TailThenAcquireWord(TailThenAcquire):
    """:class:`TailThenAcquire` with the tail swapped as the kernel's NR_CPUS >= 16K ``xchg_tail()``
    does it: a relaxed cmpxchg loop on the word, whose new word is computed from the old one."""

    def spin_lock(self, lock):
        if (yield cmpxchg_acquire(lock.val, 0, 1)) == 0:
            return
        old = yield READ_ONCE(lock.val)
        while (seen := (yield cmpxchg_relaxed(lock.val, old, (old & 0xffff) | 0x10000))) != old:
            old = seen
        while True:
            val = yield smp_cond_load_acquire(lock.val, lambda v: v & 0xff == 0)
            if (yield cmpxchg_relaxed(lock.val, val, 1)) == val:
                return
