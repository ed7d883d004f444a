"""User locks for the weak-memory checker (tests/test_check_graph_cli.py), loaded as ``tests/weak_locks.py:NAME``."""

from pvspin.machine.memory import CACHE_LINE, Layout
from pvspin.machine.ops import WRITE_ONCE, atomic_cond_read_relaxed, cmpxchg_acquire, cmpxchg_relaxed, smp_store_release

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
