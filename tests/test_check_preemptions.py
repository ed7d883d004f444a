"""Counterexamples with the fewest preemptions: counted as defined, and none with fewer exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.check import preemption
from pvspin.check.exhaustive import explore
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.check.world import FLUSH, STEP

BROKEN_TAS = CheckOptions(lock=f"{Path(__file__).parents[1] / 'examples' / 'user_lock.py'}:BrokenTasLock", cpus=2)
PENDING_AFTER_TAIL = CheckOptions(lock="qspinlock", cpus=3, acquisitions=2, bugs=("pending-after-tail",))
NO_BARRIER_TSO = CheckOptions(lock="pvqspinlock", cpus=3, memory_model="tso", bugs=("pv-kick-node-no-barrier",))


def _step(cpu: int) -> int:
    return cpu * 8 + STEP


def test_switching_away_from_a_cpu_that_could_continue_is_a_preemption():
    # BrokenTasLock: READ_ONCE, then WRITE_ONCE (entering the critical section and reading its
    # counter), the counter's write, the unlock.  cpu1 is switched away from in the critical section.
    race = [_step(0), _step(1), _step(1), _step(0)]
    assert preemption.count(build_world(BROKEN_TAS), race) == 2


def test_switching_away_from_a_finished_cpu_is_free():
    world = build_world(BROKEN_TAS)
    serial = []
    while not world.finished(0):
        serial.append(_step(0))
        world.execute(_step(0))
    serial += [_step(1)] * 3
    assert preemption.count(build_world(BROKEN_TAS), serial) == 0


def test_store_buffer_flushes_cost_no_preemption():
    world = build_world(CheckOptions(lock="qspinlock", cpus=2, memory_model="tso"))
    moves = []
    for move in (_step(0), _step(0), _step(0), _step(0)):
        if move not in world.enabled():
            break
        moves.append(move)
        world.execute(move)
        flushes = [m for m in world.enabled() if m & 7 == FLUSH]
        if flushes:  # cpu0's buffer drains while cpu0 keeps running
            moves.append(flushes[0])
            world.execute(flushes[0])
    assert any(m & 7 == FLUSH for m in moves)
    assert preemption.count(build_world(CheckOptions(lock="qspinlock", cpus=2, memory_model="tso")), moves) == 0


def _assert_minimal(opts: CheckOptions, report) -> None:
    """The reported count is the schedule's, and no schedule with one preemption fewer fails."""
    fewest = report.preemptions
    assert preemption.count(build_world(opts), report.result.moves) == fewest
    if fewest:
        moves, _ = preemption.bounded_search(build_world(opts), fewest - 1, max_states=10**7)
        assert moves is None


def test_the_broken_tas_lock_needs_two_preemptions():
    """One CPU preempted between its test and its set, the other preempted inside the critical section."""
    report = run(BROKEN_TAS)
    assert report.result.prop == "mutual-exclusion"
    assert report.preemptions == 2
    _assert_minimal(BROKEN_TAS, report)


def test_a_counterexample_has_fewer_preemptions_than_the_first_one_found():
    """Store buffers alone expose the missing barrier: the plain search's schedule preempts once."""
    first = explore(build_world(NO_BARRIER_TSO))
    report = run(NO_BARRIER_TSO)
    assert report.result.prop == "lost-wakeup"
    assert report.preemptions < preemption.count(build_world(NO_BARRIER_TSO), first.moves)
    _assert_minimal(NO_BARRIER_TSO, report)


def test_replaying_a_minimised_counterexample_gives_the_same_failure():
    report = run(NO_BARRIER_TSO)
    replayed = run(CheckOptions(**{**NO_BARRIER_TSO.__dict__, "replay": report.replay}))
    assert (replayed.result.prop, replayed.result.detail) == (report.result.prop, report.result.detail)
    assert replayed.preemptions == report.preemptions


@pytest.mark.slow
def test_pending_after_tail_counterexample_is_preemption_minimal():
    first = explore(build_world(PENDING_AFTER_TAIL))
    report = run(PENDING_AFTER_TAIL)
    assert report.result.prop in ("mutual-exclusion", "deadlock", "final-state")
    assert report.preemptions < preemption.count(build_world(PENDING_AFTER_TAIL), first.moves)
    _assert_minimal(PENDING_AFTER_TAIL, report)


def test_a_budget_too_small_to_finish_keeps_the_schedule_found():
    first = explore(build_world(PENDING_AFTER_TAIL))
    kept = preemption.fewest_preemptions(lambda: build_world(PENDING_AFTER_TAIL), first.moves, max_states=1000)
    assert kept == first.moves


def test_the_preference_puts_the_cause_before_its_consequences():
    assert preemption.preference("mutual-exclusion", 50) < preemption.preference("guest-bug", 10)
    assert preemption.preference("guest-bug", 50) < preemption.preference("guest-warning", 10)
    assert preemption.preference("guest-warning", 50) < preemption.preference("deadlock", 1)
    assert preemption.preference("deadlock", 30) < preemption.preference("lost-wakeup", 31)


def test_among_the_fewest_preemptions_the_two_owners_are_reported_not_the_hung_queue():
    """pending-after-tail makes two owners or a hung queue head, with as many preemptions: the
    first counterexample at the lowest bound (what was reported before) is the hang; the two
    owners are the cause, and their counterexample is no longer."""
    report = run(PENDING_AFTER_TAIL)
    first, _ = preemption.bounded_search(build_world(PENDING_AFTER_TAIL), report.preemptions, max_states=10**7)
    assert first is not None and preemption.count(build_world(PENDING_AFTER_TAIL), first) == report.preemptions
    assert preemption.outcome(lambda: build_world(PENDING_AFTER_TAIL), first) != "mutual-exclusion"
    assert report.result.prop == "mutual-exclusion"
    assert len(report.result.moves) <= len(first)
    _assert_minimal(PENDING_AFTER_TAIL, report)


def test_the_counterexample_reported_does_not_depend_on_the_one_found():
    """Whichever schedule a strategy found, the preferred one of the fewest preemptions comes back."""
    make = lambda: build_world(PENDING_AFTER_TAIL)  # noqa: E731
    found = [explore(make()).moves, preemption.search(make(), 6).moves]
    assert found[0] != found[1]
    answers = [preemption.fewest_preemptions(make, moves) for moves in found]
    assert answers[0] == answers[1]
