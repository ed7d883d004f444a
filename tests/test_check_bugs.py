"""The bug corpus: every injected bug the checker can expose is found, and only where it should be."""

from __future__ import annotations

import pytest

from pvspin.check.bugs import EXPOSURES, corpus
from pvspin.check.runner import CheckOptions, run

# About three minutes: a bounded search of 2.8 million states (see the exposure's comment).
SLOW_EXPOSURES = {"count-after-init"}


def exposure_options(name: str, **changes) -> CheckOptions:
    return EXPOSURES[name].options(name, **changes)


def test_every_bug_in_the_corpus_has_an_exposure_and_a_description():
    assert set(corpus()) == set(EXPOSURES)
    assert all(description for description, _ in corpus().values())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPOSURES else n
                                  for n in sorted(EXPOSURES)])
def test_bug_is_found_with_a_counterexample(name):
    report = run(exposure_options(name))
    assert report.result.verdict == "violation", f"{name} not found"
    assert report.result.prop in EXPOSURES[name].expect
    assert report.steps and report.replay
    if EXPOSURES[name].strategy == "bounded":
        assert report.preemptions <= EXPOSURES[name].preemptions


FIXED_FAST = ["no-max-nodes-fallback", "pv-wait-no-latch"]
FIXED_SLOW = ["pv-kick-node-no-barrier", "pending-after-tail"]  # about 10 s each


@pytest.mark.parametrize("name", FIXED_FAST + [pytest.param(n, marks=pytest.mark.slow) for n in FIXED_SLOW])
def test_the_same_configuration_without_the_bug_verifies(name):
    """The finding is the bug's: the fixed code passes the very same search."""
    report = run(exposure_options(name, bugs=()))
    assert report.result.verdict == "verified", report.result.detail


# What the exposure of count-after-init prints (the search itself takes minutes: slow tier above).
COUNT_AFTER_INIT_REPLAY = ("_ruN-AoAAAMAAAgICAgICAgICAgICAkLCAgICAgICAgICAgICQAAAAAAAAAAAwAAAAAAAAAAAQABAAAAAAgICAgICAgICAgIC"
                           "AgICAgICAgICAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAgICAgICAAA")


def test_count_after_init_counterexample_interrupts_the_count_store_and_loses_a_wakeup():
    report = run(exposure_options("count-after-init", replay=COUNT_AFTER_INIT_REPLAY))
    assert report.result.prop == "lost-wakeup"
    assert report.preemptions == EXPOSURES["count-after-init"].preemptions
    window = [s for s in report.steps if s.level == "task" and s.function == "queue" and s.action.startswith("interrupt")]
    assert window, "no interrupt between the node's initialisation and the count store"
    cpu = window[0].cpu
    node = f"qnodes[{cpu}][0].locked"
    assert [s.level for s in report.steps if s.cpu == cpu and s.action.startswith(f"WRITE_ONCE({node}")] == [
        "task", "softirq"]  # the task initialised the node, its interrupt handler took it again
    assert "no kick pending" in report.result.detail


@pytest.mark.slow
def test_the_count_after_init_configuration_without_the_bug_is_clean_within_two_preemptions():
    """Its full state space is out of reach; a smaller bound than the exposure's takes about 40 s."""
    report = run(exposure_options("count-after-init", bugs=(), preemptions=2))
    assert report.result.verdict == "bounded", report.result.detail


def test_unlocking_an_unheld_pv_lock_only_warns_without_the_bug():
    report = run(exposure_options("unhash-without-slow-check", bugs=()))
    assert report.result.verdict == "verified"


@pytest.mark.slow
def test_tso_only_bug_is_not_found_under_sc():
    report = run(exposure_options("pv-kick-node-no-barrier", memory_model="sc"))
    assert report.result.verdict == "verified"


def test_tso_only_bug_is_found_under_tso_with_three_cpus_only():
    assert run(exposure_options("pv-kick-node-no-barrier", cpus=2)).result.verdict == "verified"


def test_tso_only_bug_is_not_found_under_sc_with_two_cpus():
    """The fast-tier version: the store-buffering window needs TSO, whatever the size."""
    assert run(exposure_options("pv-kick-node-no-barrier", memory_model="sc", cpus=2)).result.verdict == "verified"


def test_unbounded_pending_wait_is_a_liveness_finding():
    report = run(exposure_options("unbounded-pending-wait"))
    assert report.result.prop == "starvation"
    assert "weakly fair cycle" in report.result.detail
    fixed = run(exposure_options("unbounded-pending-wait", bugs=(), cpus=2))
    assert fixed.result.verdict == "verified"


def test_lost_wakeup_without_the_kick_latch_and_none_with_it():
    assert run(exposure_options("pv-wait-no-latch")).result.prop == "lost-wakeup"
    assert run(exposure_options("pv-wait-no-latch", bugs=())).result.verdict == "verified"
