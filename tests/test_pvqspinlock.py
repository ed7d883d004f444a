"""pvqspinlock (modern and v4.2): hash table, halting and kicking, lock-word transitions, unlock of an unheld lock."""

import pytest

from lock_harness import COUNTER, finished, halted, in_cs, locker, scripted_history
from pvspin.kernel.config import LockConfig
from pvspin.kernel.qspinlock_paravirt import (
    GOLDEN_RATIO_64,
    PV_HE_MIN,
    PV_HE_PER_LINE,
    PvQSpinlock,
    hash_ptr,
    pv_hash_size,
    vcpu_halted,
    vcpu_hashed,
    vcpu_running,
)
from pvspin.kernel.qspinlock_paravirt_42 import GOLDEN_RATIO_PRIME_64, PvQSpinlock42
from pvspin.kernel.qspinlock_paravirt_52 import PvQSpinlock52
from pvspin.machine import ops as o
from pvspin.machine.executor import Executor
from pvspin.machine.memory import Memory
from pvspin.machine.scheduler import RandomScheduler

SMALL = LockConfig(spin_threshold=1, pending_loops=1)


def test_hash_constants_and_sizing():
    assert (PV_HE_PER_LINE, PV_HE_MIN) == (4, 256)
    assert [pv_hash_size(n) for n in (1, 4, 64, 65, 100, 128, 1000)] == [256, 256, 256, 256, 256, 512, 2048]


def test_hash_ptr_is_the_kernels_hash_64():
    assert hash_ptr(0, 8) == 0
    assert hash_ptr(1, 8) == GOLDEN_RATIO_64 >> 56 == 0x61
    assert hash_ptr(0x1040, 10) == ((0x1040 * GOLDEN_RATIO_64) % (1 << 64)) >> 54


def _hash_64_v42_shifts(val: int, bits: int) -> int:
    """hash_64() of v4.2 without a fast multiplier: its shift-and-add sequence, written out."""
    m = (1 << 64) - 1
    h = n = val
    n = (n << 18) & m
    h = (h - n) & m
    n = (n << 33) & m
    h = (h - n) & m
    n = (n << 3) & m
    h = (h + n) & m
    n = (n << 3) & m
    h = (h - n) & m
    n = (n << 4) & m
    h = (h + n) & m
    n = (n << 2) & m
    h = (h + n) & m
    return h >> (64 - bits)


def test_the_42_lock_hashes_with_the_42_multiplier():
    """v4.2's hash_64() multiplied by GOLDEN_RATIO_PRIME_64; v4.7 on, by GOLDEN_RATIO_64."""
    assert GOLDEN_RATIO_PRIME_64 == 0x9E37FFFFFFFC0001 == 2**63 + 2**61 - 2**57 + 2**54 - 2**51 - 2**18 + 1
    assert PvQSpinlock42.HASH_MULTIPLIER == GOLDEN_RATIO_PRIME_64
    assert PvQSpinlock.HASH_MULTIPLIER == GOLDEN_RATIO_64 == 0x61C8864680B583EB
    for addr in (1, 0x1040, 0xFFFF888012345680):
        assert hash_ptr(addr, 8, GOLDEN_RATIO_PRIME_64) == _hash_64_v42_shifts(addr, 8)
    # Each lock picks its bucket with its own era's hash.
    for cls in (PvQSpinlock, PvQSpinlock42):
        mem = Memory()
        impl = cls(mem, 2)
        lock = impl.alloc_lock("lock0")
        first = next(impl.hash_entries(lock))
        assert first is impl.pv_lock_hash[hash_ptr(lock.addr, 8, cls.HASH_MULTIPLIER) & ~3]
    lock_addr = PvQSpinlock42(Memory(), 2).alloc_lock("lock0").addr
    assert hash_ptr(lock_addr, 8, GOLDEN_RATIO_PRIME_64) != hash_ptr(lock_addr, 8, GOLDEN_RATIO_64)


def test_the_42_virt_fallback_is_virt_queued_spin_lock_by_cmpxchg():
    """The seed's asm/qspinlock.h: virt_queued_spin_lock(), a cmpxchg retried with cpu_relax()."""
    mem = Memory()
    impl = PvQSpinlock42(mem, 2)
    lock = impl.alloc_lock("lock0")
    assert impl.virt_spin_lock.__func__ is PvQSpinlock42.virt_queued_spin_lock
    assert not hasattr(PvQSpinlock, "virt_queued_spin_lock")
    impl.virt_spin_lock_key = True  # X86_FEATURE_HYPERVISOR
    mem.write(lock.val.addr, 4, 1)
    gen = impl.native_queued_spin_lock_slowpath(lock, 1)
    ops = [next(gen)]
    ops.append(gen.send((False, 1)))  # the word is held: relax, and cmpxchg again
    ops.append(gen.send(None))
    assert [op[0] for op in ops] == [o.TRY_CMPXCHG, o.CPU_RELAX, o.TRY_CMPXCHG]
    assert ops[0][1] is lock.val
    with pytest.raises(StopIteration):
        gen.send((True, 0))
    impl.virt_spin_lock_key = False
    gen = impl.native_queued_spin_lock_slowpath(lock, 1)
    assert next(gen)[0] != o.TRY_CMPXCHG  # off: straight on to the pending path


def test_hash_table_is_cache_line_aligned_and_sized_from_ncpus():
    impl = PvQSpinlock(Memory(), 100)
    assert len(impl.pv_lock_hash) == 256 and impl.pv_lock_hash_bits == 8
    assert impl.pv_lock_hash[0].addr % 64 == 0
    assert impl.pv_lock_hash[5].node.name == "pv_lock_hash[5].node"
    table = impl.pv_lock_hash
    impl.pv_init_lock_hash()  # platform init calling it again keeps the table
    assert impl.pv_lock_hash is table


def _drive(mem, gen):
    """Run one guest generator alone to completion; return its result and the outcome."""
    result = []

    def program():
        result.append((yield from gen))

    outcome = Executor(mem, [program()], RandomScheduler(0)).run()
    return (result[0] if result else None), outcome


def test_hash_probes_linearly_from_the_start_of_the_line():
    mem = Memory()
    impl = PvQSpinlock(mem, 2)
    locks = [impl.alloc_lock(f"lock{i}") for i in range(6)]
    node = impl.qnodes[0][0]
    target = locks[0]
    start = hash_ptr(target.addr, impl.pv_lock_hash_bits) & ~3
    # Fill the first two entries of the line with other locks: our entry is the third probe.
    for i in range(2):
        mem.write(impl.pv_lock_hash[start + i].lock.addr, 8, locks[i + 1].addr)
    lp, outcome = _drive(mem, impl.pv_hash(target, node))
    assert lp is impl.pv_lock_hash[start + 2].lock
    assert outcome.lock_events == {"pv_hash_hops": 3}
    assert mem.read(impl.pv_lock_hash[start + 2].node.addr, 8) == node.addr
    found, _ = _drive(mem, impl.pv_unhash(target))
    assert found == node.addr
    assert mem.read(lp.addr, 8) == 0


def test_hash_wraps_around_the_table_and_bugs_when_full():
    mem = Memory()
    impl = PvQSpinlock(mem, 1)
    lock, other = impl.alloc_lock("lock0"), impl.alloc_lock("lock1")
    for he in impl.pv_lock_hash:
        mem.write(he.lock.addr, 8, other.addr)
    last = impl.pv_lock_hash[-1]
    start = hash_ptr(lock.addr, impl.pv_lock_hash_bits) & ~3
    mem.write(impl.pv_lock_hash[start - 1].lock.addr, 8, 0)  # the only free entry: just before the line
    lp, outcome = _drive(mem, impl.pv_hash(lock, impl.qnodes[0][0]))
    assert lp is impl.pv_lock_hash[start - 1].lock
    assert outcome.lock_events["pv_hash_hops"] == 256
    _, outcome = _drive(mem, impl.pv_hash(lock, impl.qnodes[0][0]))
    assert outcome.verdict == "bug" and "no free hash entry for lock0" in outcome.detail
    assert last.lock.name == "pv_lock_hash[255].lock"


def test_pv_unhash_without_entry_is_a_bug():
    mem = Memory()
    impl = PvQSpinlock(mem, 1)
    _, outcome = _drive(mem, impl.pv_unhash(impl.alloc_lock("lock0")))
    assert outcome.verdict == "bug" and "no hash entry for lock0" in outcome.detail


@pytest.mark.parametrize("cls", [PvQSpinlock, PvQSpinlock42])
def test_unlock_of_unheld_lock_warns_and_carries_on(cls):
    mem = Memory()
    impl = cls(mem, 1)
    lock = impl.alloc_lock("lock0")
    gen = impl.spin_unlock(lock)
    op = next(gen)
    assert op[1] is lock.locked and op[2:4] == (1, 0)  # cmpxchg locked 1 -> 0
    assert gen.send(0) == o.atomic_read(lock.val)  # saw 0: neither locked nor SLOW
    assert gen.send(0) == o.WARN(f"pvqspinlock: lock {lock.addr:#x} (lock0) has corrupted value 0x0!")
    with pytest.raises(StopIteration):
        gen.send(None)  # and returns: no unhash, no BUG


def test_executor_counts_the_corrupted_value_warning():
    mem = Memory()
    impl = PvQSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")

    def program():
        yield from impl.spin_unlock(lock)
        yield from impl.spin_lock(lock)  # still usable afterwards
        yield from impl.spin_unlock(lock)

    outcome = Executor(mem, [program()], RandomScheduler(0)).run()
    assert outcome.verdict == "ok" and impl.final_state_problems() == []
    assert outcome.warnings == [f"cpu0: pvqspinlock: lock {lock.addr:#x} (lock0) has corrupted value 0x0!"]


@pytest.mark.parametrize("cls", [PvQSpinlock, PvQSpinlock42])
def test_unhash_without_slow_check_bug_turns_the_warning_into_bug(cls):
    mem = Memory()
    impl = cls(mem, 1, LockConfig(bugs=frozenset({"unhash-without-slow-check"})))
    _, outcome = _drive(mem, impl.spin_unlock(impl.alloc_lock("lock0")))
    assert outcome.verdict == "bug" and outcome.warnings == []


def test_standalone_lock_binds_the_pv_call_sites():
    impl = PvQSpinlock(Memory(), 2)
    assert impl.queued_spin_lock_slowpath == impl.pv_queued_spin_lock_slowpath
    assert impl.queued_spin_unlock == impl.pv_queued_spin_unlock
    assert next(impl.pv_wait(impl.qnodes[0][0].state, vcpu_halted)) == o.pv_wait(impl.qnodes[0][0].state, vcpu_halted)
    assert next(impl.pv_kick(1)) == o.pv_kick(1)
    assert impl.virt_spin_lock_key is False


def _history(cls, config, phases, ncpus):
    mem = Memory()
    impl = cls(mem, ncpus, config)
    lock = impl.alloc_lock("lock0")
    phases = [(cpu, done(impl, lock)) for cpu, done in phases]
    history, outcome = scripted_history(impl, mem, lock, phases, ncpus, impl.describe_val)
    return impl, mem, history, outcome


def test_head_halts_on_slow_val_and_unlock_kicks_it():
    impl, mem, history, outcome = _history(
        PvQSpinlock,
        SMALL,
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: halted(1)),  # head: spin, hash, SLOW, halt
            (0, lambda impl, lock: finished(0)),
            (1, lambda impl, lock: finished(1)),
        ],
        2,
    )
    assert outcome.verdict == "ok"
    assert history == [
        "(0,0,0)",
        "(0,0,1)",  # cpu0: fast path
        "(1:0,0,1)",  # cpu1: queued (no stealing: the lock is held)
        "(1:0,1,1)",  # cpu1 head: set_pending while spinning
        "(1:0,0,1)",  # timed out: clear_pending
        "(1:0,0,3)",  # hashed, xchg to _Q_SLOW_VAL
        "(1:0,0,0)",  # cpu0: unlock slow path (unhash, release, kick)
        "(1:0,1,0)",  # cpu1 woken: set_pending
        "(1:0,0,1)",  # trylock_clear_pending
        "(0,0,1)",  # claim: last in the queue
        "(0,0,0)",
    ]
    assert outcome.lock_events == {
        "lock_slowpath": 1,
        "pv_hash_hops": 1,
        "pv_wait_head": 1,
        "pv_kick_unlock": 1,
    }
    assert impl.final_state_problems() == []


def pending_set(impl, lock):
    return lambda ex: ex.mem.read(lock.val.addr, 4) & impl.q._Q_PENDING_MASK


def test_pv_kick_node_hashes_a_halted_successor_instead_of_kicking():
    """cpu2 halts in pv_wait_node; the owner that makes it head sets SLOW and hashes it; the unlock kicks."""
    states = []

    def state_of(cpu):
        def done(impl, lock):
            def check(ex):
                states.append(ex.mem.read(impl.qnodes[cpu][0].state.addr, 1))
                return False

            return check

        return done

    impl, mem, history, outcome = _history(
        PvQSpinlock,
        SMALL,
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: pending_set(impl, lock)),  # head spinning: no stealing now
            (2, lambda impl, lock: halted(2)),  # queued behind cpu1, halted on its state
            (1, lambda impl, lock: halted(1)),  # head, halted on SLOW
            (0, lambda impl, lock: finished(0)),  # unlock kicks cpu1
            (1, lambda impl, lock: in_cs(1)),  # cpu1 owns; pv_kick_node(cpu2) already ran
            (1, lambda impl, lock: finished(1)),
            (2, lambda impl, lock: finished(2)),
        ],
        3,
    )
    assert outcome.verdict == "ok", outcome.detail
    assert outcome.lock_events["pv_wait_node"] == 1
    assert outcome.lock_events["pv_wait_head"] == 1
    assert outcome.lock_events["pv_kick_unlock"] == 2  # one per halted waiter, both at unlock time
    assert history == [
        "(0,0,0)",
        "(0,0,1)",
        "(1:0,0,1)",  # cpu1 queued
        "(1:0,1,1)",  # cpu1 head, spinning
        "(2:0,1,1)",  # cpu2 cannot steal (pending set): queued behind cpu1
        "(2:0,0,1)",  # cpu1 stops spinning
        "(2:0,0,3)",  # cpu1 hashed itself and set SLOW, halts
        "(2:0,0,0)",  # cpu0 unlock: unhash, release, kick cpu1
        "(2:0,1,0)",
        "(2:0,0,1)",  # cpu1 holds; not last, so set_locked keeps cpu2's tail
        "(2:0,0,3)",  # cpu1's pv_kick_node: cpu2 halted, so SLOW + hash on its behalf
        "(2:0,0,0)",  # cpu1 unlock: unhash cpu2's entry, release, kick cpu2
        "(2:0,1,0)",  # cpu2 head (already hashed: state vcpu_hashed)
        "(2:0,0,1)",
        "(0,0,1)",  # cpu2 claims as last in the queue
        "(0,0,0)",
    ]
    assert impl.final_state_problems() == []


def test_wait_early_when_the_previous_node_is_not_running():
    mem = Memory()
    impl = PvQSpinlock(mem, 2, LockConfig(spin_threshold=1 << 10, pv_prev_check_mask=0xFF))
    node, prev = impl.qnodes[0][0], impl.qnodes[1][0]
    mem.write(prev.state.addr, 1, vcpu_halted)
    gen = impl.pv_wait_node(node, prev)
    spin = next(gen)
    assert spin[0] == o.COND_LOAD and spin[1] is node.locked and spin[4] == 1  # loop 1024: check at once
    assert gen.send(0) == o.READ_ONCE(prev.state)
    assert gen.send(vcpu_halted) == o.smp_store_mb(node.state, vcpu_halted)  # early: halt now
    assert gen.send(vcpu_running) == o.READ_ONCE(node.locked)
    assert gen.send(0) == o.lockevent_inc("pv_wait_node")
    assert gen.send(None) == o.lockevent_cond_inc("pv_wait_early", True)
    assert gen.send(None) == o.pv_wait(node.state, vcpu_halted)


def test_wait_node_spins_in_chunks_of_the_check_interval():
    mem = Memory()
    impl = PvQSpinlock(mem, 2, LockConfig(spin_threshold=1 << 10, pv_prev_check_mask=0xFF))
    node, prev = impl.qnodes[0][0], impl.qnodes[1][0]
    gen = impl.pv_wait_node(node, prev)
    bounds = []
    op = next(gen)
    while op[0] in (o.COND_LOAD, o.LOAD) and op[1] is not node.state:
        if op[0] == o.COND_LOAD:
            bounds.append(op[4])
        op = gen.send(0 if op[0] == o.COND_LOAD else vcpu_running)
    assert bounds == [1, 256, 256, 256, 255]  # 1024 loads of node->locked in all, prev checked 4 times
    assert sum(bounds) == 1024
    assert op == o.smp_store_mb(node.state, vcpu_halted)


def test_node_halts_and_keeps_hashed_state_set_by_the_kicker():
    mem = Memory()
    impl = PvQSpinlock(mem, 2, SMALL)
    node, prev = impl.qnodes[0][0], impl.qnodes[1][0]
    gen = impl.pv_wait_node(node, prev)
    op = next(gen)
    while op[0] != o.PV_WAIT:
        op = gen.send(0 if op[0] in (o.COND_LOAD, o.LOAD) else None)
    assert op == o.pv_wait(node.state, vcpu_halted)
    assert gen.send(None) == o.cmpxchg(node.state, vcpu_halted, vcpu_running)
    assert vcpu_hashed != vcpu_halted  # the cmpxchg leaves vcpu_hashed in place


def test_lock_stealing_counts_pv_lock_stealing():
    """A queue exists but its head is idle (pending clear): a newcomer steals the free lock."""
    mem = Memory()
    impl = PvQSpinlock(mem, 3, SMALL)
    lock = impl.alloc_lock("lock0")
    mem.write(lock.val.addr, 4, impl.q.encode_tail(1, 0))  # (1:0,0,0): head asleep elsewhere
    stolen, outcome = _drive(mem, impl.pv_hybrid_queued_unfair_trylock(lock))
    assert stolen is True and outcome.lock_events == {"pv_lock_stealing": 1}
    assert impl.describe_val(mem.read(lock.val.addr, 4)) == "(1:0,0,1)"
    mem.write(lock.val.addr, 4, impl.q.encode_tail(1, 0) | 0x100)  # head spinning: no stealing
    stolen, outcome = _drive(mem, impl.pv_hybrid_queued_unfair_trylock(lock))
    assert stolen is False and outcome.lock_events == {}


def test_v42_head_halts_with_slow_val_and_generic_code_claims():
    impl, mem, history, outcome = _history(
        PvQSpinlock42,
        SMALL,
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: halted(1)),
            (0, lambda impl, lock: finished(0)),
            (1, lambda impl, lock: finished(1)),
        ],
        2,
    )
    assert outcome.verdict == "ok"
    # No pending bit ever: (tail, 0, locked) throughout.
    assert history == ["(0,0,0)", "(0,0,1)", "(1:0,0,1)", "(1:0,0,3)", "(1:0,0,0)", "(0,0,1)", "(0,0,0)"]
    assert outcome.lock_events["pv_kick_unlock"] == 1
    assert impl.final_state_problems() == []


def test_v42_kick_node_wakes_the_new_head_at_once():
    mem = Memory()
    impl = PvQSpinlock42(mem, 2)
    lock, node = impl.alloc_lock("lock0"), impl.qnodes[1][0]
    mem.write(node.cpu.addr, 4, 1)
    mem.write(node.state.addr, 1, vcpu_halted)
    gen = impl.pv_kick_node(lock, node)
    assert next(gen) == o.xchg(node.state, vcpu_running)
    assert gen.send(vcpu_halted) == o.READ_ONCE(node.cpu)
    assert gen.send(1) == o.pv_kick(1)


def test_pv_wait_node_counted_with_spin_threshold_one():
    mem = Memory()
    impl = PvQSpinlock(mem, 3, SMALL)
    lock = impl.alloc_lock("lock0")
    counter = mem.alloc(COUNTER, "counter")
    events = {}
    for seed in range(20):
        programs = [locker(impl, lock, 0, counter, 3) for _ in range(3)]
        outcome = Executor(mem, programs, RandomScheduler(seed)).run()
        assert outcome.verdict == "ok", outcome.detail
        for name, n in outcome.lock_events.items():
            events[name] = events.get(name, 0) + n
    assert mem.read(counter.value.addr, 8) == 20 * 9
    assert events["pv_wait_node"] > 0 and events["pv_wait_head"] > 0
    assert events["pv_kick_unlock"] > 0 and events["pv_lock_stealing"] > 0
    assert "lock_pending" not in events  # PV lockers never take the native pending path
    assert impl.final_state_problems() == []


@pytest.mark.parametrize(
    "bugs, store, fence",
    [(frozenset(), o.smp_store_mb, True), (frozenset({"pv-kick-node-no-barrier"}), o.WRITE_ONCE, False)],
)
def test_kick_node_no_barrier_bug_drops_both_full_barriers(bugs, store, fence):
    impl = PvQSpinlock(Memory(), 2, LockConfig(spin_threshold=1, bugs=bugs))
    lock, node, prev = impl.alloc_lock("lock0"), impl.qnodes[0][0], impl.qnodes[1][0]
    waiter = impl.pv_wait_node(node, prev)
    op = next(waiter)
    while op[0] in (o.COND_LOAD, o.LOAD):
        op = waiter.send(0 if op[0] == o.COND_LOAD else vcpu_running)
    assert op == store(node.state, vcpu_halted)  # [S] state = halted, then [L] node->locked
    kicker = impl.pv_kick_node(lock, node)
    first = next(kicker)
    assert (first == o.smp_mb__before_atomic()) is fence
    if fence:
        first = kicker.send(None)
    assert first == o.cmpxchg_relaxed(node.state, vcpu_halted, vcpu_hashed)


def _wait_early_ops(impl, prev, answers):
    """The operations pv_wait_early(prev) yields, fed ``answers`` in turn, and what it returns."""
    gen = impl.pv_wait_early(prev)
    seen = [next(gen)]
    try:
        for answer in answers:
            seen.append(gen.send(answer))
    except StopIteration as stop:
        return seen, stop.value
    raise AssertionError(f"pv_wait_early did not return after {answers}")


def test_pv_wait_early_of_52_also_asks_vcpu_is_preempted_and_later_ones_do_not():
    """v5.2-v5.3: prev->state != vcpu_running || vcpu_is_preempted(prev->cpu); v5.4 on: the state only."""
    for preempted in (True, False):
        impl = PvQSpinlock52(Memory(), 2)
        prev = impl.qnodes[1][0]
        seen, result = _wait_early_ops(impl, prev, [vcpu_running, 1, preempted])
        assert [op[0] for op in seen] == [o.LOAD, o.LOAD, o.VCPU_IS_PREEMPTED]
        assert seen[0][1] is prev.state and seen[1][1] is prev.cpu and seen[2][1] == 1
        assert result is preempted
    # A predecessor that is not running: true at once, prev->cpu never read (the || short-circuits).
    seen, result = _wait_early_ops(PvQSpinlock52(Memory(), 2), prev, [vcpu_halted])
    assert result is True and len(seen) == 1
    impl = PvQSpinlock(Memory(), 2)
    seen, result = _wait_early_ops(impl, impl.qnodes[1][0], [vcpu_running])
    assert result is False and [op[0] for op in seen] == [o.LOAD]


def test_a_preempted_predecessor_makes_the_52_node_halt_early():
    """In pv_wait_node: the first iteration's check (loop = SPIN_THRESHOLD, loop & 0xff == 0) finds a
    running but preempted predecessor, and the node goes to halt without spinning out its budget."""
    for cls, halts_early in ((PvQSpinlock52, True), (PvQSpinlock, False)):
        impl = cls(Memory(), 2)
        node, prev = impl.qnodes[0][0], impl.qnodes[1][0]
        gen = impl.pv_wait_node(node, prev)
        op = next(gen)  # the first bounded spin on node->locked, one evaluation
        assert op[0] == o.COND_LOAD and op[4] == 1
        op = gen.send(0)
        assert op[1] is prev.state
        op = gen.send(vcpu_running)
        if halts_early:
            assert op[0] == o.LOAD and op[1] is prev.cpu
            op = gen.send(1)
            assert op[0] == o.VCPU_IS_PREEMPTED
            op = gen.send(True)
            assert op[1] is node.state  # smp_store_mb(pn->state, vcpu_halted)
        else:
            assert op[0] == o.COND_LOAD and op[1] is node.locked  # spins on
