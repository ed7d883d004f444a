"""The x86 ticket spinlock (pre-PV baseline): layout, FIFO order, trylock, final state."""

from lock_harness import (
    finished,
    in_cs,
    lock_then_unlock,
    run_stress,
    scripted_history,
    trylock_twice_then_unlock,
    waits_on,
)
from pvspin.kernel.config import LockConfig
from pvspin.kernel.ticket import ARCH_SPINLOCK, TicketSpinlock
from pvspin.machine.memory import Memory


def describe(word):
    return f"head={word & 0xFFFF} tail={word >> 16}"


def test_layout_head_low_tail_high():
    assert {f.name: (f.offset, f.size) for f in ARCH_SPINLOCK.fields} == {
        "head_tail": (0, 4),
        "head": (0, 2),
        "tail": (2, 2),
    }
    lock = TicketSpinlock(Memory(), 2).alloc_lock("lock0")
    assert lock.addr % 64 == 0


def test_tickets_are_served_in_order():
    mem = Memory()
    impl = TicketSpinlock(mem, 3)
    lock = impl.alloc_lock("lock0")
    phases = [
        (0, in_cs(0)),
        (2, waits_on(2, lock.head)),  # ticket 1
        (1, waits_on(1, lock.head)),  # ticket 2
        (0, finished(0)),
        (2, in_cs(2)),  # served before cpu1, which arrived later
        (2, finished(2)),
        (1, finished(1)),
    ]
    history, outcome = scripted_history(impl, mem, lock, phases, 3, describe)
    assert outcome.verdict == "ok", outcome.detail
    assert history == [
        "head=0 tail=0",
        "head=0 tail=1",
        "head=0 tail=2",
        "head=0 tail=3",
        "head=1 tail=3",
        "head=2 tail=3",
        "head=3 tail=3",
    ]
    assert impl.final_state_problems() == []


def test_trylock_only_when_free():
    mem = Memory()
    impl = TicketSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")
    assert trylock_twice_then_unlock(impl, mem, lock) == [True, False]
    assert impl.final_state_problems() == []


def test_head_wraps_at_16_bits():
    mem = Memory()
    impl = TicketSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")
    mem.write(lock.head_tail.addr, 4, 0xFFFF_FFFF)  # head == tail == 0xffff
    lock_then_unlock(impl, mem, lock)
    assert mem.read(lock.head_tail.addr, 4) == 0
    assert impl.final_state_problems() == []


def test_final_state_reports_a_held_lock():
    mem = Memory()
    impl = TicketSpinlock(mem, 2)
    lock = impl.alloc_lock("lock0")
    mem.write(lock.tail.addr, 2, 1)
    assert impl.final_state_problems() == ["lock0: head 0 != tail 1 at quiescence (lock held or waited for)"]


def test_mutual_exclusion_under_random_interleavings():
    for seed in range(30):
        outcome, count, problems = run_stress(TicketSpinlock, 4, 3, seed, LockConfig())
        assert outcome.verdict == "ok", (seed, outcome.detail)
        assert count == 12 and problems == []
