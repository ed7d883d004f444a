"""User locks that crash at run time, one way each, for tests/test_bad_input.py.

Each is the example TAS lock with one thing wrong; the name says what.
"""

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Layout

WORD = Layout("tas_lock", 4, [("val", 0, 4), ("locked", 0, 1)])


class Tas:
    def __init__(self, mem, ncpus):
        self.mem = mem

    def alloc_lock(self, name):
        return self.mem.alloc(WORD, name, align=CACHE_LINE)

    def spin_lock(self, lock):
        while True:
            yield o.atomic_cond_read_relaxed(lock.val, lambda v: v == 0)
            if (yield o.cmpxchg_acquire(lock.locked, 0, 1)) == 0:
                return

    def spin_unlock(self, lock):
        yield o.smp_store_release(lock.locked, 0)


class FactoryRaises(Tas):
    def __init__(self, mem, ncpus):
        raise RuntimeError("no lock today")


def factory_returns_int(mem, ncpus):
    return 42


class AllocRaises(Tas):
    def alloc_lock(self, name):
        raise KeyError(name)


class AllocReturnsInt(Tas):
    def alloc_lock(self, name):
        return 7


class LockRaises(Tas):
    def spin_lock(self, lock):
        yield from Tas.spin_lock(self, lock)
        raise ValueError("taken, then lost")


class UnlockRaises(Tas):
    def spin_unlock(self, lock):
        yield o.READ_ONCE(lock.val)
        return 1 // 0


class LockRaisesAtOnce(Tas):
    def spin_lock(self, lock):
        raise RuntimeError("not even a generator")


class LockNotGenerator(Tas):
    def spin_lock(self, lock):
        return None


class LockReturnsInt(Tas):
    def spin_lock(self, lock):
        return 3


class LockReturnsList(Tas):
    def spin_lock(self, lock):
        return [1, 2]


class YieldsInt(Tas):
    def spin_lock(self, lock):
        yield 5


class YieldsNone(Tas):
    def spin_lock(self, lock):
        yield


class YieldsString(Tas):
    def spin_lock(self, lock):
        yield "lock"


class YieldsEmptyTuple(Tas):
    def spin_lock(self, lock):
        yield ()


class YieldsUnknownOpcode(Tas):
    def spin_lock(self, lock):
        yield (99, lock.val)


class YieldsNegativeOpcode(Tas):
    def spin_lock(self, lock):
        yield (-1,)


class YieldsBadAddress(Tas):
    def spin_lock(self, lock):
        yield (o.LOAD, 12345, o.RELAXED)


class StoresToBadAddress(Tas):
    def spin_lock(self, lock):
        yield o.WRITE_ONCE("lock.val", 1)


class ShortOperation(Tas):
    def spin_lock(self, lock):
        yield (o.STORE, lock.val)


class CmpxchgNonInt(Tas):
    def spin_lock(self, lock):
        yield o.cmpxchg_acquire(lock.locked, 0, "one")


class BadPredicate(Tas):
    def spin_lock(self, lock):
        yield o.atomic_cond_read_relaxed(lock.val, lambda v: v.nope)


class KickNonInt(Tas):
    def spin_lock(self, lock):
        yield o.pv_kick("cpu1")
        yield from Tas.spin_lock(self, lock)


class OutOfMemory(Tas):
    def spin_lock(self, lock):
        yield o.READ_ONCE(lock.val)
        raise MemoryError


class Exits(Tas):
    def spin_lock(self, lock):
        yield o.READ_ONCE(lock.val)
        raise SystemExit(3)


def _deeper(n):
    return _deeper(n + 1)


class RecursesForever(Tas):
    def spin_lock(self, lock):
        yield o.READ_ONCE(lock.val)
        _deeper(0)


class FinalStateRaises(Tas):
    def final_state_problems(self):
        raise RuntimeError("cannot tell")


class NeverYields(Tas):
    def spin_lock(self, lock):
        yield o.READ_ONCE(lock.val)
        while True:
            pass


class NeverYieldsInFactory(Tas):
    def __init__(self, mem, ncpus):
        while True:
            pass
