"""The four LKMM ordering changes of cna-verification: each changes the one access it names, and the lock stays correct."""

from __future__ import annotations

import pytest

from pvspin.check.graph import runner as graphs
from pvspin.check.harness import BadInput, make_setup
from pvspin.check.runner import CheckOptions, run
from pvspin.kernel.config import LKMM_CHANGES
from pvspin.machine import ops as o

# change -> the kernel function it is in, and the operation it becomes (opcode, ordering)
CHANGED = {
    "lkmm-xchg-tail-release": ("xchg_tail", (o.TRY_CMPXCHG, o.RELEASE)),
    "lkmm-set-locked-release": ("clear_pending_set_locked", (o.FETCH_ADD, o.RELEASE)),
    "lkmm-pending-release-mb": ("queued_fetch_set_pending_acquire", (o.FETCH_OR, o.RELEASE)),
    "lkmm-clear-pending-release": ("clear_pending", (o.FETCH_ANDNOT, o.RELEASE)),
}


def ops_of(change: str) -> list[tuple]:
    """The operations of the step a change overrides, run once against a lock word reading 0x101."""
    setup = make_setup("qspinlock-16k", 2, 1, 0, frozenset({change}))
    lock = setup.lock
    function = getattr(lock, CHANGED[change][0])
    word = setup.views[0]
    gen = function(word, 1 << lock.q._Q_TAIL_OFFSET) if function.__name__ == "xchg_tail" else function(word)
    out, result = [], None
    try:
        while True:
            op = gen.send(result)
            out.append(op)
            result = (True, 0x101) if op[0] == o.TRY_CMPXCHG else 0x101
    except StopIteration:
        return out


def test_the_names_are_the_corpus_fixes():
    assert set(CHANGED) == set(LKMM_CHANGES)


@pytest.mark.parametrize("change", sorted(CHANGED))
def test_each_change_strengthens_its_access(change):
    _, (opcode, order) = CHANGED[change]
    changed = [op for op in ops_of(change) if op[0] == opcode]
    assert changed and changed[0][-1] == order
    if change == "lkmm-pending-release-mb":
        assert ops_of(change)[1] == o.smp_mb()


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_all_four_keep_the_lock_correct_on_strong_models(model):
    report = run(CheckOptions(lock="qspinlock-16k", cpus=3, acquisitions=1, memory_model=model,
                              bugs=tuple(sorted(CHANGED))))
    assert report.result.verdict == "verified", report.result.detail


def test_all_four_keep_the_lock_correct_under_armv8():
    report = graphs.run(CheckOptions(lock="qspinlock-16k", cpus=2, acquisitions=1, memory_model="armv8",
                                     bugs=tuple(sorted(CHANGED))))
    assert report.result.verdict == "verified"


@pytest.mark.parametrize("lock", ["qspinlock", "pvqspinlock", "virt-tas", "ticket"])
def test_the_changes_are_refused_on_other_builds(lock):
    with pytest.raises(BadInput, match="use --lock qspinlock-16k"):
        make_setup(lock, 2, 1, 0, frozenset({"lkmm-clear-pending-release"}))


def _pending_wait_source(bugs: tuple[str, ...]) -> str:
    """Under v00 at 3 x 1 with ``bugs``: the function whose write the lost update's pending wait read."""
    report = graphs.run(CheckOptions(lock="qspinlock-16k", cpus=3, acquisitions=1, memory_model="lkmm",
                                     lkmm_version="v00", bugs=bugs))
    assert report.result.verdict == "violation" and report.result.finding.prop == "final-state"
    wait = next(line for line in report.lines if line.function == "native_queued_spin_lock_slowpath"
                and "smp_cond_load_acquire" in line.action)
    step = int(wait.action.rsplit("at step ", 1)[1])
    return report.lines[[line.n for line in report.lines].index(step)].function


def test_v00_the_pending_waiter_reads_the_release_through_a_queuing_cpu_s_relaxed_xchg_tail():
    """V1 of docs/lkmm-qspinlock-16k.md: unlock ->rfe xchg_tail RMW ->rfe the pending wait."""
    assert _pending_wait_source(()) == "xchg_tail"


def test_v00_with_a_release_xchg_tail_the_chain_goes_through_the_other_waiter_s_fetch_or_acquire():
    """V2: lkmm-xchg-tail-release removes V1; the same chain through a relaxed-write acquire RMW remains."""
    assert _pending_wait_source(("lkmm-xchg-tail-release",)) == "queued_fetch_set_pending_acquire"


@pytest.mark.slow  # about 230 s here
def test_v00_two_of_the_four_changes_are_enough_at_3x1():
    report = graphs.run(CheckOptions(lock="qspinlock-16k", cpus=3, acquisitions=1, memory_model="lkmm",
                                     lkmm_version="v00", bugs=("lkmm-pending-release-mb", "lkmm-xchg-tail-release")))
    assert report.result.verdict == "verified" and report.result.executions == 816
