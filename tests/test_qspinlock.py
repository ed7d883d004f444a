"""Native qspinlock: constants, tail encoding, layouts, and the lock word stepped through its transitions."""

import pytest

from lock_harness import COUNTER, finished, in_cs, locker, scripted_history, waits_on
from pvspin.kernel.config import BUGS, LockConfig
from pvspin.kernel.qspinlock import (
    _Q_LOCKED_MASK,
    _Q_LOCKED_VAL,
    _Q_PENDING_VAL,
    QSPINLOCK,
    QSpinlock,
    qspinlock_types,
)
from pvspin.machine import ops as o
from pvspin.machine.executor import Executor
from pvspin.machine.memory import Memory
from pvspin.machine.scheduler import RandomScheduler


def test_constants_below_16k_cpus():
    q = qspinlock_types(False)
    assert (_Q_LOCKED_VAL, _Q_PENDING_VAL, _Q_LOCKED_MASK) == (1, 0x100, 0xFF)
    assert q._Q_PENDING_MASK == 0xFF00
    assert q._Q_TAIL_IDX_MASK == 0x30000
    assert q._Q_TAIL_CPU_MASK == 0xFFFC0000
    assert q._Q_TAIL_MASK == 0xFFFF0000
    assert q._Q_LOCKED_PENDING_MASK == 0xFFFF
    assert (q._Q_TAIL_OFFSET, q._Q_TAIL_CPU_BITS) == (16, 14)


def test_constants_16k_cpus_and_more():
    q = qspinlock_types(True)
    assert q._Q_PENDING_MASK == 0x100
    assert q._Q_TAIL_IDX_MASK == 0x600
    assert q._Q_TAIL_CPU_MASK == 0xFFFFF800
    assert q._Q_TAIL_MASK == 0xFFFFFE00
    assert q._Q_LOCKED_PENDING_MASK == 0x1FF
    assert q._Q_TAIL_CPU_BITS == 21


@pytest.mark.parametrize("nr_cpus_16k", [False, True])
def test_masks_partition_the_word(nr_cpus_16k):
    q = qspinlock_types(nr_cpus_16k)
    fields = [_Q_LOCKED_MASK, q._Q_PENDING_MASK, q._Q_TAIL_IDX_MASK, q._Q_TAIL_CPU_MASK]
    assert sum(fields) == 0xFFFFFFFF
    for i, a in enumerate(fields):
        for b in fields[i + 1 :]:
            assert a & b == 0


def test_encode_tail_reference_values():
    q = qspinlock_types(False)
    assert q.encode_tail(0, 0) == 0x40000
    assert q.encode_tail(5, 1) == 0x190000
    assert qspinlock_types(True).encode_tail(0, 0) == 0x800


@pytest.mark.parametrize("nr_cpus_16k", [False, True])
def test_encode_decode_round_trip(nr_cpus_16k):
    q = qspinlock_types(nr_cpus_16k)
    for cpu in (0, 1, 5, 100, (1 << q._Q_TAIL_CPU_BITS) - 2):
        for idx in range(4):
            tail = q.encode_tail(cpu, idx)
            assert tail and tail & ~q._Q_TAIL_MASK == 0
            assert q.decode_tail(tail) == (cpu, idx)


def test_decode_tail_names_the_per_cpu_node():
    impl = QSpinlock(Memory(), 6)
    node = impl.decode_tail(0x190000)
    assert node is impl.qnodes[5][1]
    assert node.next.name == "qnodes[5][1].next"


def test_struct_qspinlock_views_alias_the_word():
    mem = Memory()
    lock = QSpinlock(mem, 2).alloc_lock("lock0")
    assert lock.addr % 64 == 0
    assert {f.name: (f.offset, f.size) for f in QSPINLOCK.fields} == {
        "val": (0, 4),
        "locked": (0, 1),
        "pending": (1, 1),
        "locked_pending": (0, 2),
        "tail": (2, 2),
    }
    mem.write(lock.tail.addr, 2, 0x19)
    mem.write(lock.pending.addr, 1, 1)
    mem.write(lock.locked.addr, 1, 1)
    assert mem.read(lock.val.addr, 4) == 0x190101


def test_too_many_cpus_for_the_tail_is_refused():
    with pytest.raises(ValueError, match="16384"):
        QSpinlock(Memory(), 1 << 14)
    QSpinlock(Memory(), 1 << 14, LockConfig(nr_cpus_16k=True))  # the 16K layout has room


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"pending_loops": 0}, "pending_loops"),
        ({"spin_threshold": -3}, "spin_threshold"),
        ({"pv_prev_check_mask": 6}, "pv_prev_check_mask"),
        ({"max_nodes": 5}, "max_nodes"),
        ({"bugs": frozenset({"no-such-bug"})}, "no-such-bug"),
    ],
)
def test_bad_config_names_the_bad_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        LockConfig(**kwargs)


def test_every_bug_has_a_description():
    for name, (description, commit) in BUGS.items():
        assert description and (commit is None or len(commit) == 12), name
    LockConfig(bugs=frozenset(BUGS))  # all known names are accepted together


def _history(config, phases, ncpus):
    mem = Memory()
    impl = QSpinlock(mem, ncpus, config)
    lock = impl.alloc_lock("lock0")
    phases = [(cpu, done(impl, lock)) for cpu, done in phases]
    return scripted_history(impl, mem, lock, phases, ncpus, impl.describe_val)


@pytest.mark.parametrize("nr_cpus_16k", [False, True])
def test_pending_path_transitions(nr_cpus_16k):
    history, outcome = _history(
        LockConfig(nr_cpus_16k=nr_cpus_16k),
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: waits_on(1, lock.locked)),  # pending owner waits for the owner
            (0, lambda impl, lock: finished(0)),
            (1, lambda impl, lock: finished(1)),
        ],
        2,
    )
    assert outcome.verdict == "ok"
    assert history == ["(0,0,0)", "(0,0,1)", "(0,1,1)", "(0,1,0)", "(0,0,1)", "(0,0,0)"]
    assert outcome.lock_events == {"lock_pending": 1}


@pytest.mark.parametrize("nr_cpus_16k", [False, True])
def test_queue_path_transitions(nr_cpus_16k):
    history, outcome = _history(
        LockConfig(nr_cpus_16k=nr_cpus_16k),
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: waits_on(1, lock.locked)),
            (2, lambda impl, lock: waits_on(2, lock.val)),  # queue head waits for (*,0,0)
            (0, lambda impl, lock: finished(0)),
            (1, lambda impl, lock: finished(1)),
            (2, lambda impl, lock: finished(2)),
        ],
        3,
    )
    assert outcome.verdict == "ok"
    assert history == [
        "(0,0,0)",
        "(0,0,1)",  # cpu0: fast path
        "(0,1,1)",  # cpu1: pending
        "(2:0,1,1)",  # cpu2: xchg_tail
        "(2:0,1,0)",  # cpu0: unlock
        "(2:0,0,1)",  # cpu1: clear_pending_set_locked
        "(2:0,0,0)",  # cpu1: unlock
        "(0,0,1)",  # cpu2: claim, last in the queue
        "(0,0,0)",
    ]
    assert outcome.lock_events == {"lock_pending": 1, "lock_slowpath": 1}


def test_queue_hand_off_to_a_successor():
    history, outcome = _history(
        LockConfig(),
        [
            (0, lambda impl, lock: in_cs(0)),
            (1, lambda impl, lock: waits_on(1, lock.locked)),
            (2, lambda impl, lock: waits_on(2, lock.val)),
            (3, lambda impl, lock: waits_on(3, impl.qnodes[3][0].locked)),  # behind cpu2 in the queue
            (0, lambda impl, lock: finished(0)),
            (1, lambda impl, lock: finished(1)),
            (2, lambda impl, lock: in_cs(2)),
            (3, lambda impl, lock: waits_on(3, lock.val)),  # cpu3 is the head now
            (2, lambda impl, lock: finished(2)),
            (3, lambda impl, lock: finished(3)),
        ],
        4,
    )
    assert outcome.verdict == "ok"
    assert history[history.index("(3:0,0,0)") :] == ["(3:0,0,0)", "(3:0,0,1)", "(3:0,0,0)", "(0,0,1)", "(0,0,0)"]


def test_pending_wait_is_bounded():
    """Seeing (0,1,0), the slow path reads the word at most _Q_PENDING_LOOPS + 1 times for the hand-over."""
    impl = QSpinlock(Memory(), 2, LockConfig(pending_loops=7))
    lock = impl.alloc_lock("lock0")
    first = next(impl.native_queued_spin_lock_slowpath(lock, _Q_PENDING_VAL))
    assert first[0] == o.COND_LOAD and first[1] is lock.val and first[4] == 8
    assert first[2](_Q_PENDING_VAL) is False and first[2](_Q_PENDING_VAL | _Q_LOCKED_VAL) is True


def _kernel_pending_wait_evaluations(word: int, pending_loops: int) -> int:
    """How often qspinlock.c evaluates ``(VAL != _Q_PENDING_VAL) || !cnt--`` in
    ``atomic_cond_read_relaxed()`` (a load, the test, cpu_relax(), again), ``cnt`` starting at
    ``_Q_PENDING_LOOPS``, while the word reads ``word`` throughout.  C's post-decrement and
    short-circuit ``||`` written out."""
    cnt, evaluations = pending_loops, 0
    while True:
        evaluations += 1
        val = word  # VAL = READ_ONCE(lock->val)
        if val != _Q_PENDING_VAL:
            break
        stop, cnt = cnt == 0, cnt - 1  # !cnt--
        if stop:
            break
    return evaluations


def _model_pending_wait_evaluations(config: LockConfig, word: int) -> int:
    """Run the model's slow path on a word that stays ``word`` and count its evaluations of the
    pending-wait condition, executing the bounded wait as ops.smp_cond_load_relaxed defines it
    (at most ``bound`` loads, each tested)."""
    impl = QSpinlock(Memory(), 2, config)
    lock = impl.alloc_lock("lock0")
    op = next(impl.native_queued_spin_lock_slowpath(lock, _Q_PENDING_VAL))
    assert op[0] == o.COND_LOAD and op[1] is lock.val
    evaluations = 0
    for _ in range(op[4]):
        evaluations += 1
        if op[2](word):
            break
    return evaluations


@pytest.mark.parametrize("pending_loops", [1 << 9, 1, 2])  # x86's value, the generic one, a small model's
def test_pending_wait_evaluates_its_condition_as_often_as_the_kernel(pending_loops):
    """The word stays (0,1,0): the kernel evaluates the condition _Q_PENDING_LOOPS + 1 times (513 on x86)."""
    config = LockConfig(pending_loops=pending_loops)
    kernel = _kernel_pending_wait_evaluations(_Q_PENDING_VAL, pending_loops)
    assert kernel == pending_loops + 1
    assert _model_pending_wait_evaluations(config, _Q_PENDING_VAL) == kernel
    # The hand-over seen on the first load ends both at once.
    assert _model_pending_wait_evaluations(config, _Q_LOCKED_VAL) == 1
    assert _kernel_pending_wait_evaluations(_Q_LOCKED_VAL, pending_loops) == 1


def test_unbounded_pending_wait_bug_removes_the_bound():
    mem = Memory()
    impl = QSpinlock(mem, 2, LockConfig(bugs=frozenset({"unbounded-pending-wait"})))
    lock = impl.alloc_lock("lock0")
    first = next(impl.native_queued_spin_lock_slowpath(lock, _Q_PENDING_VAL))
    assert first[0] == o.COND_LOAD and first[1] is lock.val and first[4] is None


def test_trylock():
    mem = Memory()
    impl = QSpinlock(mem, 1)
    lock = impl.alloc_lock("lock0")
    results = []

    def program():
        results.append((yield from impl.spin_trylock(lock)))
        results.append((yield from impl.spin_trylock(lock)))
        yield from impl.spin_unlock(lock)
        results.append((yield from impl.spin_trylock(lock)))
        yield from impl.spin_unlock(lock)

    assert Executor(mem, [program()], RandomScheduler(0)).run().verdict == "ok"
    assert results == [True, False, True]
    assert impl.final_state_problems() == []


def test_virt_spin_lock_is_test_and_set():
    """With the key on, the slow path never queues or pends: the word only goes (0,0,0) <-> (0,0,1)."""
    mem = Memory()
    impl = QSpinlock(mem, 3)
    impl.virt_spin_lock_key = True
    lock = impl.alloc_lock("lock0")
    seen = set()

    class Watch(RandomScheduler):
        def next_cpu(self, runnable, current):
            seen.add(mem.read(lock.val.addr, 4))
            return super().next_cpu(runnable, current)

    counter = mem.alloc(COUNTER, "counter")
    programs = [locker(impl, lock, 0, counter, 5) for _ in range(3)]
    outcome = Executor(mem, programs, Watch(3)).run()
    assert outcome.verdict == "ok" and mem.read(counter.value.addr, 8) == 15
    assert seen == {0, 1}
    assert outcome.lock_events == {}


def test_virt_spin_lock_off_returns_false():
    impl = QSpinlock(Memory(), 1)
    gen = impl.virt_spin_lock(impl.alloc_lock("lock0"))
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value is False


def test_final_state_problems_reports_a_held_lock_and_a_leaked_count():
    mem = Memory()
    impl = QSpinlock(mem, 2)
    lock = impl.alloc_lock("lock0")
    assert impl.final_state_problems() == []
    mem.write(lock.val.addr, 4, 0x40001)
    mem.write(impl.qnodes[1][0].count.addr, 4, 1)
    problems = impl.final_state_problems()
    assert problems == [
        "lock0: lock word is (0:0,0,1) at quiescence, not (0,0,0)",
        "qnodes[1][0].count: per-CPU node count of cpu1 is 1, not 0",
    ]


def test_pending_wait_in_the_simulator_spins_for_the_kernels_loads():
    """A timed run where the word stays (0,1,0): the first load, then _Q_PENDING_LOOPS PAUSE + load
    turns (the kernel's 512 cpu_relax() between its 513 loads on x86), then the wait gives up."""
    from pvspin.sim.config import HostConfig, Scheduling
    from pvspin.sim.engine import Simulator
    from pvspin.sim.vcpu import T_SPIN

    mem = Memory()
    impl = QSpinlock(mem, 1, LockConfig(pending_loops=7))
    lock = impl.alloc_lock("lock0")
    mem.write(lock.val.addr, 4, _Q_PENDING_VAL)
    seen = {}

    def prog():
        op = next(impl.native_queued_spin_lock_slowpath(lock, _Q_PENDING_VAL))
        seen["val"] = yield op

    sim = Simulator(HostConfig(pcpus=1, scheduling=Scheduling(ple=False)), seed=0)
    sim.add_guest("g0", mem, [prog()])
    sim.run(10**9)
    assert seen["val"] == _Q_PENDING_VAL
    assert sim.vcpus[0].acct[T_SPIN] == 7 * (sim.costs.pause + sim.costs.l1_hit)
