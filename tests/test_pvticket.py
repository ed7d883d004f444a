"""The PV ticket lock of v4.0-v4.1 (kernel/ticket_paravirt.py): FIFO tickets, halting after
SPIN_THRESHOLD, the slow-path flag in the head, and the kick of the next ticket's waiter."""

from __future__ import annotations

import pytest

from lock_harness import (
    finished,
    halted,
    in_cs,
    lock_then_unlock,
    run_stress,
    run_with_interrupts,
    scripted_history,
    trylock_twice_then_unlock,
    waits_on,
)
from pvspin.kernel.config import LockConfig
from pvspin.kernel.ticket_paravirt import (
    TICKET_LOCK_INC,
    TICKET_SLOWPATH_FLAG,
    PvTicketSpinlock,
    tickets_equal,
)
from pvspin.machine import ops as o
from pvspin.machine.memory import Memory

SMALL = LockConfig(spin_threshold=1)


def describe(word):
    """The lock word as (head[+F], tail), F the slow-path flag in bit 0 of the head."""
    head, tail = word & 0xFFFF, word >> 16
    return f"({head & ~TICKET_SLOWPATH_FLAG}{'+F' if head & TICKET_SLOWPATH_FLAG else ''},{tail})"


def test_constants_are_the_pv_builds():
    assert (TICKET_LOCK_INC, TICKET_SLOWPATH_FLAG) == (2, 1)
    assert tickets_equal(4 | TICKET_SLOWPATH_FLAG, 4)
    assert not tickets_equal(6, 4)


def test_uncontended_lock_and_unlock_touch_the_word_once_each():
    """The fast paths: one xadd of the word to lock, one xadd of the head to unlock, nothing read after it."""
    mem = Memory()
    impl = PvTicketSpinlock(mem, 2)
    lock = impl.alloc_lock("lock0")
    gen = impl.spin_lock(lock)
    op = next(gen)
    assert (op[0], op[1], op[2]) == (o.FETCH_ADD, lock.head_tail, TICKET_LOCK_INC << 16)
    with pytest.raises(StopIteration):
        gen.send(0)  # (0,0): ours
    gen = impl.spin_unlock(lock)
    op = next(gen)
    assert (op[0], op[1], op[2]) == (o.FETCH_ADD, lock.head, TICKET_LOCK_INC)
    with pytest.raises(StopIteration):
        gen.send(0)  # old head without the flag: no kick, and the lock is not read again


def test_a_waiter_spins_spin_threshold_loops_before_halting():
    mem = Memory()
    impl = PvTicketSpinlock(mem, 2, LockConfig(spin_threshold=7))
    lock = impl.alloc_lock("lock0")
    phases = [(0, in_cs(0)), (1, waits_on(1, lock.head))]
    sched_phases = phases + [(1, halted(1)), (0, finished(0)), (1, finished(1))]
    history, outcome = scripted_history(impl, mem, lock, sched_phases, 2, describe)
    assert outcome.verdict == "ok", outcome.detail
    assert history == ["(0,0)", "(0,2)", "(0,4)", "(0+F,4)", "(2+F,4)", "(2,4)", "(4,4)"]
    assert outcome.lock_events == {"taken_slow": 1, "released_slow": 1, "released_slow_kicked": 1}
    assert impl.final_state_problems() == []


def test_the_spin_before_halting_is_bounded_by_spin_threshold():
    mem = Memory()
    impl = PvTicketSpinlock(mem, 2, LockConfig(spin_threshold=7))
    lock = impl.alloc_lock("lock0")
    gen = impl.spin_lock(lock)
    next(gen)
    op = gen.send(2 << 16)  # (0,2) before our xadd: ticket 2 waits for head 0 to reach it
    assert (op[0], op[1], op[4]) == (o.COND_LOAD, lock.head, 7)
    assert op[2](2) and op[2](2 | TICKET_SLOWPATH_FLAG) and not op[2](0)
    op = gen.send(0)  # timed out: kvm_lock_spinning starts (in_nmi first)
    assert op == o.in_nmi()


def test_tickets_are_served_in_order_and_the_unlocker_kicks_the_next_ticket():
    """cpu2 draws ticket 2, cpu1 ticket 4; both halt.  cpu0's unlock scans waiting_cpus from cpu1
    but kicks cpu2, whose want is the next ticket; cpu1 sleeps on until cpu2's unlock kicks it."""
    mem = Memory()
    impl = PvTicketSpinlock(mem, 3, SMALL)
    lock = impl.alloc_lock("lock0")
    seen = []

    def note(cpu_done, what):
        def done(ex):
            seen.append((what, ex.halted[1], ex.halted[2]))
            return cpu_done(ex)
        return done

    phases = [
        (0, in_cs(0)),
        (2, halted(2)),
        (1, halted(1)),
        (0, finished(0)),
        (2, note(in_cs(2), "cpu2 runs")),
        (2, finished(2)),
        (1, finished(1)),
    ]
    history, outcome = scripted_history(impl, mem, lock, phases, 3, describe)
    assert outcome.verdict == "ok", outcome.detail
    assert history == [
        "(0,0)",
        "(0,2)",  # cpu0: ticket 0, fast path
        "(0,4)",  # cpu2: ticket 2
        "(0+F,4)",  # cpu2: kvm_lock_spinning sets the flag, halts
        "(0+F,6)",  # cpu1: ticket 4, sets the flag again, halts
        "(2+F,6)",  # cpu0: unlock, the xadd returns F: kick want 2 = cpu2
        "(4+F,6)",  # cpu2: ticket 4 was drawn, so the flag stays; its unlock kicks cpu1
        "(4,6)",  # cpu1: last in line, clears the flag
        "(6,6)",  # cpu1: unlock, fast
    ]
    assert seen[0] == ("cpu2 runs", True, False)  # cpu1 still halted when cpu2 runs
    assert outcome.lock_events == {"taken_slow": 2, "released_slow": 2, "released_slow_kicked": 2}
    assert impl.final_state_problems() == []


def test_pickup_after_setting_the_flag_does_not_halt():
    """The owner unlocks between the waiter's timeout and its re-check: taken_slow_pickup, no halt."""
    mem = Memory()
    impl = PvTicketSpinlock(mem, 2, SMALL)
    lock = impl.alloc_lock("lock0")
    w = impl.klock_waiting[1]

    def registered(ex):  # cpu1 has published (lock, want) and is about to set the flag
        return mem.read(w.lock.addr, 8) == lock.addr

    phases = [(0, in_cs(0)), (1, registered), (0, finished(0)), (1, finished(1))]
    history, outcome = scripted_history(impl, mem, lock, phases, 2, describe)
    assert outcome.verdict == "ok", outcome.detail
    assert history == ["(0,0)", "(0,2)", "(0,4)", "(2,4)", "(2+F,4)", "(2,4)", "(4,4)"]
    assert outcome.lock_events == {"taken_slow": 1, "taken_slow_pickup": 1}
    assert impl.final_state_problems() == []


def test_trylock_takes_a_free_lock_clearing_a_stale_flag_and_refuses_a_held_one():
    mem = Memory()
    impl = PvTicketSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")
    mem.write(lock.head_tail.addr, 4, 4 << 16 | 4 | TICKET_SLOWPATH_FLAG)  # (4+F,4): free, flag left set
    assert trylock_twice_then_unlock(impl, mem, lock) == [True, False]
    assert describe(mem.read(lock.head_tail.addr, 4)) == "(6,6)"
    assert impl.final_state_problems() == []


@pytest.mark.parametrize("seed", range(6))
def test_stress_with_spurious_wakeups_keeps_mutual_exclusion(seed):
    outcome, count, problems = run_stress(PvTicketSpinlock, 4, 6, seed, SMALL, spurious_wakeups=3)
    assert outcome.verdict == "ok", outcome.detail
    assert count == 24
    assert problems == []
    assert outcome.lock_events.get("taken_slow", 0) > 0


@pytest.mark.parametrize("seed", range(4))
def test_stress_with_interrupts_taking_their_own_locks(seed):
    outcome, problems, counts, handled = run_with_interrupts(PvTicketSpinlock, 3, 5, seed, SMALL, rate=0.1)
    assert outcome.verdict == "ok", outcome.detail
    assert problems == []
    assert counts[0] == 15 and sum(counts[1:]) == handled


def test_final_state_names_a_waiter_left_registered():
    mem = Memory()
    impl = PvTicketSpinlock(mem, 2)
    lock = impl.alloc_lock("lock0")
    mem.write(impl.klock_waiting[1].lock.addr, 8, lock.addr)
    mem.write(impl.waiting_cpus[0].bits.addr, 8, 0b10)
    assert impl.final_state_problems() == [
        "waiting_cpus[0]: waiting_cpus 0x2 not empty at quiescence",
        "klock_waiting[1].lock still set at quiescence",
    ]


def test_too_many_cpus_for_the_tickets_is_refused():
    with pytest.raises(ValueError, match="ncpus must be 1..32767"):
        PvTicketSpinlock(Memory(), 1 << 15)


def test_tickets_wrap_at_16_bits():
    """(0xfffe, 0xfffe): the xadd of the word carries the tail out of 32 bits, the unlock's xadd of the head wraps it."""
    mem = Memory()
    impl = PvTicketSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")
    mem.write(lock.head_tail.addr, 4, 0xFFFE_FFFE)
    lock_then_unlock(impl, mem, lock)
    assert mem.read(lock.head_tail.addr, 4) == 0
    assert impl.final_state_problems() == []
