"""Liveness of spin loops written out by hand: fair cycles without progress are found, correct locks verify.

The checker's definition (check/cycles.py): a reachable weakly fair cycle on which an
unfinished CPU never makes progress (acquires, or completes its lock-unlock run) is a
violation -- deadlock, livelock or starvation by what the cycle does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.check import exhaustive
from pvspin.check.runner import CheckOptions, run

LOCKS = Path(__file__).with_name("spin_locks.py")


def check(name: str, **kw) -> object:
    return run(CheckOptions(lock=f"{LOCKS}:{name}", **kw))


@pytest.fixture(params=["with the stack shortcut", "components only"])
def search(request, monkeypatch):
    """Both ways the search finds a cycle: closing one on its stack, and the component check that is the proof."""
    if request.param == "components only":
        monkeypatch.setattr(exhaustive, "_stack_cycle", lambda *a: False)
    return request.param


@pytest.mark.parametrize("model", ["sc", "tso"])
@pytest.mark.parametrize("name,cpus,k", [("HandTtas", 2, 2), ("HandTtas", 3, 1), ("HandTicket", 2, 2),
                                         ("HandTicket", 3, 1), ("CondTtas", 2, 2)])
def test_correct_spin_loop_locks_verify(name, cpus, k, model, search):
    report = run(CheckOptions(lock=f"{LOCKS}:{name}", cpus=cpus, acquisitions=k, memory_model=model))
    assert report.result.verdict == "verified", report.result.detail


@pytest.mark.parametrize("model", ["sc", "tso"])
@pytest.mark.parametrize("name", ["HandTtasNoRelease", "HandTicketStuckHead", "WaitForFlag"])
def test_a_spin_on_a_value_nobody_writes_is_a_deadlock_lasso(name, model, search):
    report = check(name, cpus=2, memory_model=model)
    r = report.result
    assert (r.verdict, r.prop) == ("violation", "deadlock")
    assert r.cycle_start is not None and r.cycle_start < len(r.moves)
    assert "memory does not change" in r.detail


def test_the_spin_written_out_and_the_spin_as_one_wait_get_the_same_verdict(search):
    for workload in ("locktorture", "forever"):
        hand = check("HandTtasNoRelease", cpus=2, workload=workload).result
        cond = check("CondTtasNoRelease", cpus=2, workload=workload).result
        assert hand.prop == cond.prop == "deadlock"
    hand = check("HandTtas", cpus=2, workload="forever").result
    cond = check("CondTtas", cpus=2, workload="forever").result
    assert hand.prop == cond.prop == "starvation"  # test-and-set is unfair: one CPU can keep winning


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_backing_off_forever_is_a_livelock(model, search):
    r = check("Polite", cpus=2, memory_model=model).result
    assert (r.verdict, r.prop) == ("violation", "livelock")
    assert "cpu0, cpu1" in r.detail


def test_polite_is_still_mutually_exclusive():
    """The livelock is the only fault: bounded to no cycle, the safety properties hold."""
    r = check("Polite", cpus=2, strategy="bounded", preemptions=3).result
    assert r.verdict == "bounded"


@pytest.mark.parametrize("name", ["HandTtasNoRelease", "Polite", "HandTtas"])
def test_a_lasso_replays_to_the_same_violation(name):
    workload = "forever" if name == "HandTtas" else "locktorture"
    found = check(name, cpus=2, workload=workload)
    again = check(name, cpus=2, workload=workload, replay=found.replay)
    assert (again.result.prop, again.result.detail) == (found.result.prop, found.result.detail)
    assert again.result.cycle_start == found.result.cycle_start


@pytest.mark.parametrize("symmetry", ["full", "start", "none"])
def test_starvation_under_every_symmetry_with_components_only(symmetry, monkeypatch):
    """Test-and-set starves a CPU; under full symmetry the component is lifted to concrete states first."""
    monkeypatch.setattr(exhaustive, "_stack_cycle", lambda *a: False)
    report = run(CheckOptions(lock="virt-tas", cpus=3, workload="forever", symmetry=symmetry))
    assert (report.result.verdict, report.result.prop) == ("violation", "starvation")
    again = run(CheckOptions(lock="virt-tas", cpus=3, workload="forever", symmetry=symmetry, replay=report.replay))
    assert again.result.prop == "starvation"  # the lasso is concrete: it replays without any renaming
