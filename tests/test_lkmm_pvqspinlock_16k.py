"""A finding: the NR_CPUS >= 16K pvqspinlock loses an update under the LKMM (docs/lkmm-pvqspinlock-16k.md).

The queue head's set_pending() is atomic_or() on the word, relaxed and with no dependency
into its write; trylock_clear_pending()'s atomic_cmpxchg_acquire() reads that write (rfi),
and the LKMM orders such an acquire after nothing before it.  The owner's release reached
the head only through its xchg_tail() cmpxchg, so the next critical section need not see
the previous one.  The lowering plays no part (the unlock's byte cmpxchg is read, by
another CPU, as the byte is in the kernel); ARMv8 forbids it (an acquire reading an RMW's
write of its own thread is ordered after it), x86 too.
"""

from __future__ import annotations

import pytest

from litmus_helpers import lkmm_observations
from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_the_16k_pv_lock_loses_an_update_under_every_lkmm_version(version):
    report = graphs.run(CheckOptions(lock="pvqspinlock-16k", cpus=2, memory_model="lkmm", lkmm_version=version))
    assert report.result.verdict == "violation" and report.result.finding.prop == "final-state"
    functions = [line.function for line in report.lines]
    assert {"xchg_tail", "set_pending", "trylock_clear_pending"} <= set(functions)
    acquire = next(line for line in report.lines
                   if line.function == "trylock_clear_pending" and "try_cmpxchg_acquire" in line.action)
    assert "read lock0.val = 0x900 from cpu0's store" in acquire.action  # its own atomic_or()'s write


@pytest.mark.parametrize("model", ["sc", "tso", "armv8"])
def test_the_16k_pv_lock_verifies_on_the_hardware_models(model):
    report = graphs.run(CheckOptions(lock="pvqspinlock-16k", cpus=2, memory_model=model))  # execution graphs
    assert report.result.verdict == "verified"


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_the_distilled_litmus_test_is_sometimes_and_a_fully_ordered_set_pending_never(version):
    out = lkmm_observations(["pvqspinlock-16k-head", "pvqspinlock-16k-head-mb"], version)
    assert "Observation pvqspinlock-16k-head Sometimes 1 9" in out, out
    assert "Observation pvqspinlock-16k-head-mb Never 0 8" in out, out
