"""The exhaustive explorer: correct locks verify, broken ones are caught, results are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.check.exhaustive import explore
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.check.world import Violation, World
from pvspin.machine.ops import READ_ONCE

USER_LOCKS = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"

FAST = [
    (lock, cpus, acq, model)
    for lock in ("qspinlock", "qspinlock-16k", "ticket", "virt-tas")
    for cpus, acq in ((2, 1), (2, 2), (3, 1))
    for model in ("sc", "tso")
] + [
    ("pvqspinlock", 2, 1, "sc"), ("pvqspinlock", 2, 1, "tso"),
    ("pvqspinlock-4.2", 2, 1, "sc"), ("pvqspinlock-4.2", 2, 1, "tso"), ("pvqspinlock-4.2", 2, 2, "sc"),
]
SLOW = [
    ("pvqspinlock", 2, 2, "sc"), ("pvqspinlock", 2, 2, "tso"), ("pvqspinlock", 3, 1, "sc"),
    ("pvqspinlock", 3, 1, "tso"), ("pvqspinlock-4.2", 3, 1, "sc"),
]


def verify(lock, cpus, acq, model, **kw):
    return run(CheckOptions(lock=lock, cpus=cpus, acquisitions=acq, memory_model=model, **kw)).result


@pytest.mark.parametrize("lock,cpus,acq,model", FAST)
def test_correct_lock_verifies(lock, cpus, acq, model):
    result = verify(lock, cpus, acq, model)
    assert result.verdict == "verified", result.detail
    assert result.states > 1


@pytest.mark.slow
@pytest.mark.parametrize("lock,cpus,acq,model", SLOW)
def test_correct_lock_verifies_bigger(lock, cpus, acq, model):
    result = verify(lock, cpus, acq, model)
    assert result.verdict == "verified", result.detail


def test_pvqspinlock_42_loses_a_wakeup_under_tso():
    """4.2's unlock kicked only a head it saw vcpu_halted: its store of 0 to the locked byte may
    still sit in the store buffer when it reads the head's state, while the head, having set
    vcpu_halted, still reads _Q_SLOW_VAL and halts (fixed upstream by kicking unconditionally)."""
    result = verify("pvqspinlock-4.2", 2, 2, "tso")
    assert (result.verdict, result.prop) == ("violation", "lost-wakeup")


@pytest.mark.slow
def test_pvqspinlock_42_loses_a_wakeup_to_a_nested_handler_under_sc():
    """The same unconditional-kick fix, reached under SC through interrupts (~45 s): a late
    pv_kick_node() resets the hashed head's state to vcpu_running and kicks it, the kick merges
    with an unlock's kick to the head's CPU and ends the halt of that CPU's handler; the head
    then halts on _Q_SLOW_VAL and the unlocker, reading vcpu_running, does not kick."""
    result = verify("pvqspinlock-4.2", 2, 2, "sc", interrupts=3)
    assert (result.verdict, result.prop) == ("violation", "lost-wakeup")


def test_native_qspinlock_verifies_with_interrupt_handlers_nesting():
    result = verify("qspinlock", 2, 1, "sc", interrupts=2)
    assert result.verdict == "verified", result.detail


def test_pvqspinlock_tolerates_spurious_wakeups():
    result = verify("pvqspinlock", 2, 1, "sc", spurious_wakeups=1)
    assert result.verdict == "verified", result.detail


def test_user_tas_lock_verifies_and_broken_one_is_caught():
    assert verify(f"{USER_LOCKS}:TasLock", 3, 2, "tso").verdict == "verified"
    broken = verify(f"{USER_LOCKS}:BrokenTasLock", 2, 1, "sc")
    assert (broken.verdict, broken.prop) == ("violation", "mutual-exclusion")


def test_same_configuration_same_exploration():
    a = verify("qspinlock", 3, 1, "tso")
    b = verify("qspinlock", 3, 1, "tso")
    assert (a.states, a.transitions, a.executions) == (b.states, b.transitions, b.executions)


@pytest.mark.parametrize("lock,model", [("qspinlock", "tso"), ("pvqspinlock", "sc")])
def test_sleep_sets_visit_every_state_a_plain_search_reaches(lock, model, monkeypatch):
    """Sleep sets prune transitions, never states: compare with a search that tries every move."""
    monkeypatch.setattr(World, "ample", lambda self, enabled: None)  # ample sets do prune states (test_check_ample.py)
    opts = CheckOptions(lock=lock, cpus=2, acquisitions=2 if lock == "qspinlock" else 1, memory_model=model,
                        symmetry="start")  # concrete states: the plain search below does not rename CPUs
    result = explore(build_world(opts))

    world = build_world(opts)
    seen = {world.key()}
    todo = [world.snapshot()]
    while todo:
        snap = todo.pop()
        for move in (world.restore(snap), world.enabled())[1]:
            world.restore(snap)
            world.execute(move)
            key = world.key()
            if key not in seen:
                seen.add(key)
                todo.append(world.snapshot())
    assert result.states == len(seen) > 100


def test_random_and_pct_find_the_broken_lock_deterministically():
    for strategy in ("random", "pct"):
        a = run(CheckOptions(lock=f"{USER_LOCKS}:BrokenTasLock", cpus=2, strategy=strategy, runs=200, seed=3))
        b = run(CheckOptions(lock=f"{USER_LOCKS}:BrokenTasLock", cpus=2, strategy=strategy, runs=200, seed=3))
        assert a.result.verdict == "violation"
        assert a.replay == b.replay


def test_pct_depth_defaults_to_one_change_point_per_context_and_shapes_the_schedules():
    assert CheckOptions(cpus=2).depth() == 3 and CheckOptions(cpus=3, interrupts=2).depth() == 6
    assert CheckOptions(cpus=3, pct_depth=2).depth() == 2
    lock = f"{USER_LOCKS}:BrokenTasLock"
    given = run(CheckOptions(lock=lock, cpus=3, strategy="pct", runs=200, seed=3, pct_depth=4))
    default = run(CheckOptions(lock=lock, cpus=3, strategy="pct", runs=200, seed=3))
    assert given.replay == default.replay  # 3 CPUs: the default is 4
    others = {run(CheckOptions(lock=lock, cpus=3, strategy="pct", runs=200, seed=3, pct_depth=d)).replay
              for d in (1, 2, 6)}
    assert len(others | {given.replay}) > 1


def test_sampling_a_correct_lock_is_incomplete_not_verified():
    result = run(CheckOptions(lock="qspinlock", cpus=3, strategy="random", runs=50)).result
    assert result.verdict == "incomplete" and result.executions == 50


def test_a_foreign_access_to_private_per_cpu_data_is_reported():
    world: World = build_world(CheckOptions(lock="qspinlock", cpus=2))
    count = world.setup.lock.qnodes[0][0].count
    with pytest.raises(Violation) as err:
        world._perform(1, READ_ONCE(count), 0)
    assert err.value.prop == "private-access"


def test_state_limit_gives_an_incomplete_verdict():
    result = verify("qspinlock", 3, 1, "sc", max_states=100)
    assert result.verdict == "incomplete" and result.states == 100
