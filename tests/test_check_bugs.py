"""The bug corpus: every injected bug the checker can expose is found, and only where it should be."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pvspin.check.bugs import EXPOSURES, corpus
from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions, run, uses_graphs

# About three minutes: a bounded search of 2.8 million states (see the exposure's comment);
# xchg-tail-release: about 40 s of execution graphs.
SLOW_EXPOSURES = {"count-after-init", "xchg-tail-release"}


def exposure_options(name: str, **changes) -> CheckOptions:
    return EXPOSURES[name].options(name, **changes)


def check(opts: CheckOptions) -> SimpleNamespace:
    """verdict, prop, detail, steps, replay (and preemptions) from whichever engine runs ``opts``."""
    if uses_graphs(opts):
        report = graphs.run(opts)
        finding = report.result.finding
        return SimpleNamespace(verdict=report.result.verdict, prop=finding and finding.prop,
                               detail=finding.detail if finding else "", steps=report.lines, replay=report.replay,
                               preemptions=None, why=report.why)
    report = run(opts)
    return SimpleNamespace(verdict=report.result.verdict, prop=report.result.prop, detail=report.result.detail,
                           steps=report.steps, replay=report.replay, preemptions=report.preemptions)


def test_every_bug_in_the_corpus_has_an_exposure_and_a_description():
    assert set(corpus()) == set(EXPOSURES)
    assert all(description for description, _ in corpus().values())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPOSURES else n
                                  for n in sorted(EXPOSURES)])
def test_bug_is_found_with_a_counterexample(name):
    found = check(exposure_options(name))
    assert found.verdict == "violation", f"{name} not found"
    assert found.prop in EXPOSURES[name].expect
    assert found.steps and found.replay
    if EXPOSURES[name].strategy == "bounded":
        assert found.preemptions <= EXPOSURES[name].preemptions


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


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_the_release_xchg_tail_is_correct_on_strong_models(model):
    """64d816cba06c was right for x86: the deadlock needs ARMv8's freedom to make a store visible late."""
    result = check(exposure_options("xchg-tail-release", memory_model=model))
    assert result.verdict == "verified", result.detail


# The exposure's counterexample (the search takes about 40 s: slow tier above); replaying takes a second.
XCHG_TAIL_RELEASE_REPLAY = ("063J5AR42u1X227DMAjl4viSpH3Y_3_sjO92HFXV2knd0ofUDnCAA8YKQP5heSJMXhINL4vM_xPOQcqDELHasSyRergGGHso7xvP"
                            "AiR4Omwc7FpDflEspGAERVDViM7iPdB2SrgEIivu_IiXd5BLLUk1noZeWDAJl2wzpEOnXUDv5wHHviB8SYZAc7MODQ-14EkvPOZJ"
                            "U8iKlgykRaHsQEV55wcnjUCEc8Ixrf8TqeRlHHWYpyoL8RO04-T4fMIRzDWX6lPiexiNbQOwSlDNrBt1MBF3rsGGFh-vYl0UdBCb"
                            "QysrKQ6GnIp2BRANrbDSxqaorJrz9IWQs-yLggInxrYpp-4c20Texw3Vq6InFXVwlfQvH1Je2WqEtRnSOinVnDJQB6Phui4f92Ds"
                            "PP7RNfkL3bJmTJsTdyFY2dtJ17jY5aJkY2Rk8tcCbzkaMolxu_CGLfmeGp_zde1fE2WYKGxNn6YVgVhpDLgBxvkFFQdNESQtN2u_"
                            "3UbhHb6y7i5vtmJqUn7OJpw9CdZbQvYte7d80wSmhh196APMXiIKByNnavMQ-gauugzK"
                            )


def test_xchg_tail_release_counterexample_is_the_late_node_initialisation():
    """The waiter's node->locked = 0 is ordered before neither its release xchg_tail's write nor its
    link, lands after the predecessor's hand-over, and overwrites it (the v4.5 arm64 hang)."""
    opts = exposure_options("xchg-tail-release", replay=XCHG_TAIL_RELEASE_REPLAY)
    found = check(opts)
    assert found.prop == "deadlock"
    waiter = found.detail.split()[0]
    node = f"qnodes[{waiter[3:]}][0].locked"
    assert f"waits forever in smp_cond_load_acquire({node})" in found.detail
    actions = [(line.cpu, line.function, line.action) for line in found.steps]
    handover = next(i for i, (_, fn, act) in enumerate(actions) if act.startswith(f"smp_store_release({node}, 0x1)"))
    init = next(i for i, (cpu, fn, act) in enumerate(actions) if act.startswith(f"WRITE_ONCE({node}, 0x0)"))
    link = next(i for i, (cpu, fn, act) in enumerate(actions) if f"cpu{cpu}" == waiter and fn == "queue"
                and ".next, " in act and act.startswith("WRITE_ONCE("))
    assert link < handover < init  # linked, handed over, then the initialisation lands
    assert "overwrote it" in found.why


@pytest.mark.slow
def test_pv_kick_node_without_its_barrier_loses_a_wakeup_under_armv8_too():
    """The store-buffering pair of pv_wait_node() and pv_kick_node() is as weak on arm64 (about 30 s)."""
    found = check(exposure_options("pv-kick-node-no-barrier", memory_model="armv8"))
    assert found.verdict == "violation" and found.prop == "lost-wakeup", found.detail
