"""The whole-word lowering's masked RMW carries the word's other fields from its read: a data dependency.

A sub-word store, xchg or cmpxchg run as an RMW of the whole word (check/graph/wholeword.py)
writes back the other fields' bits it read.  A later read of the thread that reads that write
(rfi) takes those bits -- in the kernel's code it takes them from whoever wrote them, often
another CPU (rfe).  The LKMM orders nothing after an rfi, only after ``dep ; rfi``; without the
dependency the lowered lock was *weaker* than the kernel's and the checker reported lost
updates of pvqspinlock (2x1) and qspinlock (3x1) that the kernel's code does not have.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions

ROOT = Path(__file__).resolve().parent.parent


def check(lock: str, cpus: int = 2, model: str = "lkmm", version: str = "current", **extra):
    kw = {"lkmm_version": version} if model == "lkmm" else {}
    return graphs.run(CheckOptions(lock=lock, cpus=cpus, memory_model=model, **kw, **extra)).result


@pytest.fixture
def here(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("model", ["armv8", "lkmm"])
@pytest.mark.parametrize("lock", ["TailThenAcquire", "TailThenAcquireWord"])
def test_a_relaxed_tail_swap_before_the_acquire_keeps_the_unlock_visible(here, lock, model):
    """The sub-word ``xchg_relaxed(tail)`` (lowered) and the kernel's whole-word cmpxchg loop for it
    agree: the acquire that reads the swap's write sees the critical section it ends."""
    result = check(f"tests/weak_locks.py:{lock}", model=model)
    assert result.verdict == "verified", result.finding
    assert result.executions > 0


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_pvqspinlock_verifies_with_two_cpus(version):
    """Was a lost update: the head's acquire in trylock_clear_pending() read its own lowered
    set_pending() write, which carried the locked byte of the unlock its xchg_tail() had read."""
    result = check("pvqspinlock", version=version)
    assert result.verdict == "verified", result.finding
    assert result.executions > 0


@pytest.mark.slow  # about 70 s each on an idle core, 200 s on this shared machine
@pytest.mark.parametrize("version", ["v01", "current"])
def test_the_byte_tail_qspinlock_verifies_with_three_cpus_after_rmw_sequences(version):
    """Was a lost update under every version: the queue head's smp_cond_load_acquire() read its own
    lowered xchg_relaxed(tail) write, the unlock's release reaching it through no dependency."""
    result = check("qspinlock", cpus=3, version=version)
    assert result.verdict == "verified", result.finding


def test_the_byte_tail_qspinlock_still_loses_an_update_before_rmw_sequences():
    """v00's violation (another CPU's relaxed xchg_tail between the unlock and the acquire) is the
    published one and does not go through the lowering: it stays."""
    result = check("qspinlock", cpus=3, version="v00")
    assert result.verdict == "violation" and result.finding.prop == "final-state"
