"""The operation vocabulary: the result and memory effect of every atomic, footprints."""

import pytest

from pvspin.machine import ops as o
from pvspin.machine.executor import Executor
from pvspin.machine.memory import Layout, Memory
from pvspin.machine.scheduler import RandomScheduler

WORD = Layout("word", 4, [("val", 0, 4), ("lo", 0, 2), ("hi", 2, 2), ("b0", 0, 1)], align=4)


def run_one(initial: int, op_factory):
    """Run one operation on a fresh word holding ``initial``; return (result, word after)."""
    mem = Memory()
    w = mem.alloc(WORD, "w")
    mem.write(w.val.addr, 4, initial)
    box = {}

    def prog():
        box["result"] = yield op_factory(w)

    out = Executor(mem, [prog()], RandomScheduler(0)).run()
    assert out.finished
    return box["result"], mem.read(w.val.addr, 4)


@pytest.mark.parametrize(
    "factory, initial, result, after",
    [
        (lambda w: o.READ_ONCE(w.val), 0x1234, 0x1234, 0x1234),
        (lambda w: o.WRITE_ONCE(w.b0, 0x1FF), 0x1200, None, 0x12FF),
        (lambda w: o.smp_store_release(w.hi, 7), 0x1, None, 0x0007_0001),
        (lambda w: o.smp_load_acquire(w.hi), 0x0005_0001, 5, 0x0005_0001),
        (lambda w: o.xchg(w.hi, 9), 0x0003_0001, 3, 0x0009_0001),
        (lambda w: o.xchg_relaxed(w.hi, 9), 0x0003_0001, 3, 0x0009_0001),
        (lambda w: o.smp_store_mb(w.b0, 2), 0x100, 0, 0x102),
        (lambda w: o.atomic_cmpxchg(w.val, 0, 1), 0, 0, 1),
        (lambda w: o.atomic_cmpxchg_acquire(w.val, 0, 1), 5, 5, 5),
        (lambda w: o.cmpxchg_release(w.b0, 1, 0), 0x101, 1, 0x100),
        (lambda w: o.atomic_try_cmpxchg_acquire(w.val, 0, 1), 0, (True, 0), 1),
        (lambda w: o.atomic_try_cmpxchg_relaxed(w.val, 0, 1), 3, (False, 3), 3),
        (lambda w: o.atomic_fetch_add(w.val, 5), 10, 10, 15),
        (lambda w: o.atomic_fetch_add_relaxed(w.val, -1), 0, 0, 0xFFFF_FFFF),
        (lambda w: o.atomic_add(0x100, w.val), 0x1, 0x1, 0x101),
        (lambda w: o.atomic_sub(0x100, w.val), 0x101, 0x101, 0x1),
        (lambda w: o.atomic_fetch_or_acquire(w.val, 0x100), 0x0004_0001, 0x0004_0001, 0x0004_0101),
        (lambda w: o.atomic_or(0x100, w.val), 0x1, 0x1, 0x101),
        (lambda w: o.atomic_fetch_andnot(w.val, 0x100), 0x0004_0101, 0x0004_0101, 0x0004_0001),
        (lambda w: o.atomic_andnot(0x1, w.val), 0x101, 0x101, 0x100),
        (lambda w: o.atomic_xchg_release(w.val, 0), 0xABC, 0xABC, 0),
        (lambda w: o.atomic_read(w.val), 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF),
        (lambda w: o.atomic_set(w.val, 3), 0, None, 3),
        (lambda w: o.atomic_set_release(w.lo, 3), 0x0009_0000, None, 0x0009_0003),
        (lambda w: o.smp_cond_load_acquire(w.val, lambda v: v == 4), 4, 4, 4),
    ],
)
def test_atomic_result_and_effect(factory, initial, result, after):
    assert run_one(initial, factory) == (result, after)


def test_bounded_cond_load_times_out_with_the_last_value():
    # A bounded wait whose condition never holds is a timeout: the caller sees the value.
    assert run_one(6, lambda w: o.smp_cond_load_relaxed(w.val, lambda v: v == 0, bound=512)) == (6, 6)


def test_unbounded_cond_load_that_never_holds_is_a_deadlock():
    mem = Memory()
    w = mem.alloc(WORD, "w")

    def prog():
        yield o.smp_cond_load_acquire(w.val, lambda v: v == 1)

    out = Executor(mem, [prog()], RandomScheduler(0)).run()
    assert out.verdict == "deadlock"
    assert "w.val" in out.detail


def test_footprints_name_location_access_and_order():
    mem = Memory()
    w = mem.alloc(WORD, "w")
    assert o.footprint(o.READ_ONCE(w.val)) == (w.val, o.READ, o.RELAXED)
    assert o.footprint(o.smp_store_release(w.b0, 0)) == (w.b0, o.WRITE, o.RELEASE)
    assert o.footprint(o.xchg_relaxed(w.hi, 1)) == (w.hi, o.RMW, o.RELAXED)
    assert o.footprint(o.atomic_try_cmpxchg_acquire(w.val, 0, 1)) == (w.val, o.RMW, o.ACQUIRE)
    assert o.footprint(o.smp_cond_load_acquire(w.val, bool)) == (w.val, o.READ, o.ACQUIRE)
    assert o.footprint(o.pv_wait(w.b0, 3)) == (w.b0, o.READ, o.RELAXED)
    assert o.footprint(o.smp_mb()) == (None, None, o.FULL)
    assert o.footprint(o.work(10)) == (None, None, o.RELAXED)


def test_describe_reads_like_kernel_code():
    mem = Memory()
    w = mem.alloc(WORD, "lock0")
    assert o.describe(o.xchg_relaxed(w.hi, 0x4)) == "xchg_relaxed(lock0.hi, 0x4)"
    assert o.describe(o.atomic_cmpxchg(w.val, 0, 1)) == "cmpxchg(lock0.val, 0x0, 0x1)"
    assert o.describe(o.smp_store_release(w.b0, 0)) == "smp_store_release(lock0.b0, 0x0)"
    assert o.describe(o.READ_ONCE(w.val)) == "READ_ONCE(lock0.val)"
    assert o.describe(o.smp_cond_load_acquire(w.val, bool, bound=4)) == "smp_cond_load_acquire(lock0.val, bound=4)"
    assert o.describe(o.pv_wait(w.b0, 3)) == "pv_wait(lock0.b0, 0x3)"
    assert o.describe(o.smp_mb()) == "smp_mb()"


def test_kick_before_halt_is_latched_in_the_untimed_executor():
    mem = Memory()
    w = mem.alloc(WORD, "w")

    def waiter():
        yield o.WRITE_ONCE(w.lo, 1)
        yield o.smp_cond_load_acquire(w.hi, lambda v: v == 1)  # kicker has kicked by now
        yield o.pv_wait(w.b0, 0)  # would sleep forever without the latch

    def kicker():
        yield o.smp_cond_load_acquire(w.lo, lambda v: v == 1)
        yield o.pv_kick(0)
        yield o.WRITE_ONCE(w.hi, 1)

    out = Executor(mem, [waiter(), kicker()], RandomScheduler(3)).run()
    assert out.verdict == "ok" and out.finished
