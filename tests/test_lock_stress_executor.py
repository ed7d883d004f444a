"""Mutual exclusion, final state and lock events of every lock under random SC interleavings.

Small knobs (spin_threshold, pending_loops) make the bounded spins time out and PV
waiters halt within a few steps; spurious wake-ups exercise the re-check loops.  The
injected bugs that SC can expose are found here too, so these tests can fail.
"""

import pytest

from lock_harness import COUNTER, InterruptingExecutor, locker, run_stress, run_with_interrupts
from pvspin.kernel.config import LockConfig
from pvspin.kernel.lockevents import DRIVER_MAINTAINED, LOCK_EVENTS
from pvspin.kernel.qspinlock import QSpinlock
from pvspin.kernel.qspinlock_paravirt import PvQSpinlock
from pvspin.kernel.qspinlock_paravirt_42 import PvQSpinlock42
from pvspin.kernel.ticket import TicketSpinlock
from pvspin.machine import ops as o
from pvspin.machine.cpu import TASK
from pvspin.machine.memory import Memory
from pvspin.machine.scheduler import RandomScheduler

QUEUED = [QSpinlock, PvQSpinlock, PvQSpinlock42]
SEEDS = range(40)


def small(**kwargs):
    return LockConfig(spin_threshold=2, pending_loops=2, pv_prev_check_mask=1, **kwargs)


def merged_events(outcomes):
    events = {}
    for outcome in outcomes:
        for name, n in outcome.lock_events.items():
            events[name] = events.get(name, 0) + n
    return events


@pytest.mark.parametrize("cls", QUEUED + [TicketSpinlock])
@pytest.mark.parametrize("nr_cpus_16k", [False, True])
@pytest.mark.parametrize("ncpus", [2, 3, 4])
def test_mutual_exclusion_and_final_state(cls, nr_cpus_16k, ncpus):
    outcomes = []
    for seed in SEEDS:
        outcome, count, problems = run_stress(cls, ncpus, 3, seed, small(nr_cpus_16k=nr_cpus_16k), seed % 3)
        assert outcome.verdict == "ok" and outcome.finished, (seed, outcome.verdict, outcome.detail)
        assert count == 3 * ncpus, seed
        assert problems == [], (seed, problems)
        outcomes.append(outcome)
    events = merged_events(outcomes)
    assert set(events) <= set(LOCK_EVENTS) - DRIVER_MAINTAINED  # kernel names only; no clock in guest code
    if cls is QSpinlock:
        assert events["lock_pending"] > 0 and events["lock_slowpath"] > 0
    elif cls is PvQSpinlock:
        assert events["pv_wait_node" if ncpus > 2 else "pv_wait_head"] > 0
        assert events["pv_kick_unlock"] > 0 and events["pv_lock_stealing"] > 0
        assert events["pv_hash_hops"] >= events["pv_kick_unlock"]
        assert "lock_pending" not in events
    elif cls is PvQSpinlock42:
        assert events["pv_wait_head"] > 0 and events["pv_kick_unlock"] > 0
        assert "pv_lock_stealing" not in events and "lock_pending" not in events


def test_same_seed_same_run():
    runs = [run_stress(PvQSpinlock, 3, 3, 7, small(), 1) for _ in range(2)]
    (a, ca, pa), (b, cb, pb) = runs
    assert (a.steps, a.lock_events, ca, pa) == (b.steps, b.lock_events, cb, pb)


def test_default_knobs_still_work():
    """The real SPIN_THRESHOLD and _Q_PENDING_LOOPS: one bounded spin is still one step."""
    for cls in QUEUED:
        outcome, count, problems = run_stress(cls, 3, 3, 1, LockConfig())
        assert outcome.verdict == "ok" and count == 9 and problems == []


@pytest.mark.parametrize("cls", QUEUED)
def test_nested_contexts_use_the_next_nodes(cls):
    outcomes = []
    for seed in SEEDS:
        outcome, problems, counts, _ = run_with_interrupts(cls, 3, 3, seed, small(), rate=0.1, spurious_wakeups=seed % 2)
        assert outcome.verdict == "ok" and problems == [] and counts[0] == 9, (seed, outcome.detail, problems)
        outcomes.append(outcome)
    assert merged_events(outcomes).get("lock_use_node2", 0) > 0


@pytest.mark.parametrize("cls", QUEUED)
def test_more_nesting_than_nodes_spins_without_a_node(cls):
    outcomes = []
    for seed in SEEDS:
        outcome, problems, counts, _ = run_with_interrupts(cls, 3, 3, seed, small(max_nodes=1), rate=0.1)
        assert outcome.verdict == "ok" and problems == [] and counts[0] == 9, (seed, outcome.detail, problems)
        outcomes.append(outcome)
    events = merged_events(outcomes)
    assert events.get("lock_no_node", 0) > 0 and "lock_use_node2" not in events


def first_failure(run, seeds=range(400)):
    for seed in seeds:
        verdict = run(seed)
        if verdict != "ok":
            return seed, verdict
    return None


def test_pending_after_tail_bug_breaks_mutual_exclusion():
    def run(seed):
        outcome, count, problems = run_stress(QSpinlock, 3, 4, seed, small(bugs=frozenset({"pending-after-tail"})))
        return outcome.verdict if outcome.verdict != "ok" or (count == 12 and not problems) else "final-state"

    found = first_failure(run)
    assert found is not None and found[1] in ("mutex", "deadlock", "final-state")


@pytest.mark.parametrize("cls", [PvQSpinlock, PvQSpinlock42])
def test_no_max_nodes_fallback_bug_corrupts(cls):
    def run(seed):
        config = small(max_nodes=2, bugs=frozenset({"no-max-nodes-fallback"}))
        outcome, problems, counts, _ = run_with_interrupts(cls, 3, 3, seed, config, rate=0.1)
        return outcome.verdict if outcome.verdict != "ok" or not problems else "final-state"

    assert first_failure(run) is not None


def run_interrupted_at_count_store(cls, config, seed):
    """Interrupt each task once between its node-count load and store; the handler takes the same lock.

    The task has published nothing yet there, so the handler may contend for the same lock.
    """
    mem = Memory()
    impl = cls(mem, 3, config)
    lock = impl.alloc_lock("lock0")
    counter = mem.alloc(COUNTER, "counter")
    counts = {impl.qnodes[cpu][0].count for cpu in range(3)}
    interrupted = set()

    def at_count_store(cpu):
        op = cpu.op
        if op[0] == o.STORE and op[1] in counts and cpu.id not in interrupted and cpu.level == TASK:
            return not interrupted.add(cpu.id)
        return False

    programs = [locker(impl, lock, 0, counter, 2) for _ in range(3)]
    ex = InterruptingExecutor(
        mem, programs, RandomScheduler(seed), lambda level: locker(impl, lock, 0, counter, 1), seed, trigger=at_count_store
    )
    outcome = ex.run(100_000)
    ok = outcome.verdict == "ok" and mem.read(counter.value.addr, 8) == 6 + ex.interrupts
    return "ok" if ok and not impl.final_state_problems() else outcome.verdict, ex.interrupts


@pytest.mark.parametrize("cls", QUEUED)
def test_interrupt_inside_the_count_increment_is_harmless(cls):
    for seed in range(60):
        verdict, interrupts = run_interrupted_at_count_store(cls, small(), seed)
        assert verdict == "ok", seed


@pytest.mark.parametrize("cls", QUEUED)
def test_count_after_init_bug_reuses_a_node(cls):
    config = small(bugs=frozenset({"count-after-init"}))
    assert first_failure(lambda seed: run_interrupted_at_count_store(cls, config, seed)[0], range(400)) is not None
