"""The bounded strategy: every execution with at most B preemptions, and honest about the rest."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pvspin.check import preemption
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.cli import app

BROKEN_TAS = CheckOptions(lock=f"{Path(__file__).parents[1] / 'examples' / 'user_lock.py'}:BrokenTasLock", cpus=2,
                          strategy="bounded")
NO_BARRIER_TSO = CheckOptions(lock="pvqspinlock", cpus=3, memory_model="tso", bugs=("pv-kick-node-no-barrier",),
                              strategy="bounded")


def _with(opts: CheckOptions, **changes) -> CheckOptions:
    return CheckOptions(**{**opts.__dict__, **changes})


def test_a_bug_needing_two_preemptions_is_found_with_two_and_not_with_one():
    below = run(_with(BROKEN_TAS, preemptions=1)).result
    assert below.verdict == "bounded" and below.prop is None
    found = run(_with(BROKEN_TAS, preemptions=2))
    assert found.result.verdict == "violation" and found.result.prop == "mutual-exclusion"
    assert found.preemptions == 2


def test_the_counterexample_found_stays_within_the_bound():
    """A store-buffering bug: found within a generous bound, then reported with at most that many preemptions."""
    report = run(_with(NO_BARRIER_TSO, preemptions=3))
    assert report.result.prop == "lost-wakeup"
    assert report.preemptions <= 3
    assert preemption.count(build_world(NO_BARRIER_TSO), report.result.moves) == report.preemptions


def test_no_violation_within_the_bound_is_not_a_verification():
    result = run(CheckOptions(lock="qspinlock", cpus=3, strategy="bounded", preemptions=2)).result
    assert result.verdict == "bounded"
    assert "at most 2 preemption(s)" in result.note and "verifies nothing" in result.note


def test_a_bound_without_limit_reaches_what_the_exhaustive_search_does():
    """With a bound no execution exceeds, the bounded search is a plain stateful search: same verdicts."""
    for opts in (CheckOptions(lock="pvqspinlock", cpus=2, bugs=("pv-wait-no-latch",)),
                 CheckOptions(lock="pvqspinlock", cpus=2, interrupts=2, bugs=("no-max-nodes-fallback",),
                              overrides={"max_nodes": 1})):
        exhaustive = run(opts).result
        bounded = run(_with(opts, strategy="bounded", preemptions=1000)).result
        assert exhaustive.verdict == bounded.verdict == "violation"


def test_the_state_limit_makes_the_bounded_search_incomplete():
    result = run(CheckOptions(lock="qspinlock", cpus=3, strategy="bounded", preemptions=3, max_states=100)).result
    assert result.verdict == "incomplete" and result.states == 100


def test_same_options_same_counterexample():
    a, b = run(_with(BROKEN_TAS, preemptions=3)), run(_with(BROKEN_TAS, preemptions=3))
    assert a.replay == b.replay


def test_the_cli_names_the_bound_and_rejects_a_negative_one():
    cli = CliRunner()
    out = cli.invoke(app, ["check", "--lock", "qspinlock", "--cpus", "2", "--strategy", "bounded", "--preemptions", "1"])
    assert out.exit_code == 0
    assert "bounded to 1 preemption(s)" in out.stdout and "NO VIOLATION WITHIN 1 PREEMPTION(S)" in out.stdout
    bad = cli.invoke(app, ["check", "--strategy", "bounded", "--preemptions", "-1"])
    assert bad.exit_code == 2 and "--preemptions -1" in bad.stderr and "\n" not in bad.stderr.strip()
