"""The PV ticket lock under the model checker: verified under SC and x86-TSO, and the two steps
of kvm_lock_spinning() that keep an unlocker from missing a halting waiter are both needed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pvspin.check.harness import make_setup
from pvspin.check.runner import CheckOptions, run
from pvspin.cli import app
from pvspin.kernel.ticket_paravirt import PvTicketSpinlock
from pvspin.machine import ops as o


def check(cpus, acquisitions, model, **kw):
    return run(CheckOptions(lock="pvticket", cpus=cpus, acquisitions=acquisitions, memory_model=model, **kw))


@pytest.mark.parametrize("model", ["sc", "tso"])
@pytest.mark.parametrize("cpus,acquisitions", [(2, 1), (2, 2)])
def test_pvticket_verifies(cpus, acquisitions, model):
    outcome = check(cpus, acquisitions, model)
    assert outcome.result.verdict == "verified", outcome.result.detail
    assert outcome.result.states > 1


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_pvticket_verifies_with_spurious_wakeups_and_an_interrupt(model):
    outcome = check(2, 1, model, spurious_wakeups=1, interrupts=1)
    assert outcome.result.verdict == "verified", outcome.result.detail


@pytest.mark.long  # beyond CI's budget: SC alone is 14 M states, about 25 CPU minutes
@pytest.mark.parametrize("model", ["sc", "tso"])
def test_pvticket_verifies_three_cpus_twice_each(model):
    """Long: under SC, 14,030,463 states, about 25 minutes of CPU and 1.3 GB (no symmetry reduction)."""
    outcome = check(3, 2, model)
    assert outcome.result.verdict == "verified", outcome.result.detail


def test_no_symmetry_reduction_since_the_kick_scans_cpus_in_order():
    assert make_setup("pvticket", 3, 1).symmetric == 0
    assert make_setup("ticket", 3, 1).symmetric == 0b111


def _no_op(self, lock):
    return None
    yield  # a generator, as the call site expects


def test_without_the_slowpath_flag_the_unlocker_never_kicks(monkeypatch):
    monkeypatch.setattr(PvTicketSpinlock, "ticket_enter_slowpath", _no_op)
    result = check(2, 1, "sc").result
    assert (result.verdict, result.prop) == ("violation", "lost-wakeup")


def test_without_the_pickup_test_a_waiter_sleeps_through_its_turn(monkeypatch):
    """An unlock between the timed-out spin and the flag: the unlocker saw no flag, so only the
    re-read of the head after setting it can tell the waiter that its turn has come."""
    real = PvTicketSpinlock.kvm_lock_spinning

    def skip_pickup(self, lock, want):
        gen = real(self, lock, want)
        result = None
        while True:
            try:
                op = gen.send(result)
            except StopIteration:
                return
            if op[0] == o.LOAD and op[1] is lock.head:
                result = want ^ 2  # "not yet our turn", whatever the head says
            else:
                result = yield op

    monkeypatch.setattr(PvTicketSpinlock, "kvm_lock_spinning", skip_pickup)
    result = check(2, 1, "sc").result
    assert (result.verdict, result.prop) == ("violation", "lost-wakeup")


def test_armv8_is_refused_in_one_line():
    out = CliRunner().invoke(app, ["check", "--lock", "pvticket", "--memory-model", "armv8"])
    assert out.exit_code == 2
    assert "is x86's" in out.stderr and len(out.stderr.strip().splitlines()) == 1
