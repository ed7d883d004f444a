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
