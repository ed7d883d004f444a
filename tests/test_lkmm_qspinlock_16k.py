"""A finding: the NR_CPUS >= 16K qspinlock loses an update at 2 CPUs x 2 under the LKMM (docs/lkmm-qspinlock-16k.md).

The queued CPU's xchg_tail() cmpxchg loop fails once, reading the owner's first unlock, and
succeeds with a value computed from that read, reading the owner's second unlock; the queue's
atomic_cond_read_acquire() then reads the CPU's own cmpxchg write (rfi).  The LKMM orders that
acquire after the failed attempt's read only (``dep ; rfi``), so the critical section need not
see the owner's second one.  Every LKMM version allows it, the four changes of cna-verification
or not; an acquire xchg_tail() cures it.  ARMv8 forbids it (an acquire reading its own RMW's
write is ordered after that RMW); the 8-bit-pending build, whose xchg_tail() is one xchg, has no
failed attempt to carry the dependency from.
"""

from __future__ import annotations

import pytest

from litmus_helpers import lkmm_observations
from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions
from pvspin.kernel.config import LKMM_CHANGES


def check(version="current", bugs=(), lock="qspinlock-16k", model="lkmm"):
    return graphs.run(CheckOptions(lock=lock, cpus=2, acquisitions=2, memory_model=model, lkmm_version=version,
                                   bugs=tuple(bugs)))


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_two_cpus_taking_the_lock_twice_lose_an_update_under_every_lkmm_version(version):
    report = check(version)
    assert report.result.verdict == "violation" and report.result.finding.prop == "final-state"
    tail = [line for line in report.lines if line.function == "xchg_tail" and "try_cmpxchg_relaxed" in line.action]
    queued = tail[0].cpu
    assert len({line.action.split(":")[0] for line in tail}) >= 2  # the loop went round: a failed attempt
    acquire = next(line for line in report.lines if "smp_cond_load_acquire" in line.action)
    assert acquire.cpu == queued and f"from cpu{queued}'s store" in acquire.action  # its own write: rfi


def test_the_four_changes_of_cna_verification_leave_it():
    report = check("v00", bugs=sorted(LKMM_CHANGES))
    assert report.result.verdict == "violation" and report.result.finding.prop == "final-state"


@pytest.mark.slow  # about 100 s each here
@pytest.mark.parametrize("version,bugs", [("current", ("lkmm-xchg-tail-acquire",)),
                                          ("v00", (*sorted(LKMM_CHANGES), "lkmm-xchg-tail-acquire"))])
def test_an_acquire_xchg_tail_cures_it(version, bugs):
    result = check(version, bugs=bugs).result
    assert result.verdict == "verified", result.detail


@pytest.mark.slow  # about 35 s
def test_the_8_bit_pending_build_verifies_at_2x2():
    assert check(lock="qspinlock").result.verdict == "verified"


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_the_distilled_litmus_test_is_sometimes_and_with_an_acquire_never(version):
    out = lkmm_observations(["qspinlock-16k-xchg-tail", "qspinlock-16k-xchg-tail-acquire"], version)
    assert "Observation qspinlock-16k-xchg-tail Sometimes 1 28" in out, out
    assert "Observation qspinlock-16k-xchg-tail-acquire Never 0 28" in out, out
