"""Two user locks for ``pvspin check --lock examples/user_lock.py:NAME``.

A lock is a class called as ``NAME(mem, ncpus)`` offering ``alloc_lock(name)`` and the
guest-code generators ``spin_lock(lock)`` / ``spin_unlock(lock)`` (see
pvspin/kernel/api.py); ``final_state_problems()`` is optional.
"""

from pvspin.machine.memory import CACHE_LINE, Layout
from pvspin.machine.ops import READ_ONCE, WRITE_ONCE, atomic_cond_read_relaxed, cmpxchg_acquire, smp_store_release

WORD = Layout("tas_lock", 4, [("val", 0, 4), ("locked", 0, 1)])


class TasLock:
    """Test-and-test-and-set: wait until the word reads 0, then claim it with one cmpxchg."""

    name = "tas"

    def __init__(self, mem, ncpus):
        self.mem = mem
        self.locks = []

    def alloc_lock(self, name):
        lock = self.mem.alloc(WORD, name, align=CACHE_LINE)
        self.locks.append(lock)
        return lock

    def spin_lock(self, lock):
        while True:
            yield atomic_cond_read_relaxed(lock.val, lambda v: v == 0)
            if (yield cmpxchg_acquire(lock.locked, 0, 1)) == 0:
                return

    def spin_unlock(self, lock):
        yield smp_store_release(lock.locked, 0)

    def final_state_problems(self):
        return [f"{lock.name} is {self.mem.read(lock.val.addr, 4)} at the end" for lock in self.locks
                if self.mem.read(lock.val.addr, 4)]


class BrokenTasLock(TasLock):
    """Tests, then sets with a plain store: two CPUs that both saw 0 both take the lock."""

    name = "broken-tas"

    def spin_lock(self, lock):
        while True:
            if (yield READ_ONCE(lock.locked)) == 0:
                yield WRITE_ONCE(lock.locked, 1)
                return
