"""``pvspin demo``: what patching buys, measured on the simulator; the patch-site and overcommit set-ups."""

import subprocess
import sys

import pytest

from pvspin.demo import UNCONTENDED_BUILDS, overcommit_scenarios, patch_sites_table, uncontended_cycles
from pvspin.sim.config import Costs

BUILDS = {b.label: b for b in UNCONTENDED_BUILDS}


@pytest.fixture(scope="module")
def cycles():
    return {label: uncontended_cycles(build) for label, build in BUILDS.items()}


def test_patched_paravirt_costs_at_most_2_percent_more_than_no_paravirt(cycles):
    base, _ = cycles["!PARAVIRT"]
    patched, lock = cycles["PARAVIRT, bare metal, patched"]
    assert lock == "qspinlock"
    assert patched / base <= 1.02


def test_patching_off_is_measurably_slower(cycles):
    patched, _ = cycles["PARAVIRT, bare metal, patched"]
    unpatched, _ = cycles["PARAVIRT, bare metal, patching off"]
    assert unpatched > 1.1 * patched


def test_pv_on_kvm_runs_the_pv_lock_and_pays_for_its_unlock(cycles):
    base, _ = cycles["!PARAVIRT"]
    pv, lock = cycles["PARAVIRT on KVM: pvqspinlock"]
    assert lock == "pvqspinlock"
    assert pv > base  # a locked cmpxchg in place of a plain store
    assert cycles["PARAVIRT on KVM: pvqspinlock as in v4.2"][1] == "pvqspinlock-4.2"


def test_uncontended_cost_follows_the_cost_model():
    """The figure is measured, not tabulated: a dearer locked RMW shows up in it."""
    build = BUILDS["!PARAVIRT"]
    cheap, _ = uncontended_cycles(build, pairs=200)
    dear, _ = uncontended_cycles(build, pairs=200, costs=Costs(locked_rmw=Costs().locked_rmw + 100))
    assert dear == pytest.approx(cheap + 100, abs=1)


def test_patch_site_table_shows_the_native_store_and_the_pv_call():
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(patch_sites_table())
    text = console.export_text()
    unlock = next(line for line in text.splitlines() if "_raw_spin_unlock" in line)
    assert "mov byte ptr [rdi], 0" in unlock  # bare metal: the movb $0 patch
    assert "__raw_callee_save___pv_queued_spin_unlock" in unlock  # KVM: a direct call
    assert "[pv_lock_ops+0x8]" in unlock  # before: the indirect call through pv_ops


def test_overcommit_points_are_1x_and_2x_of_the_three_locks():
    points = overcommit_scenarios()
    assert {(lock, factor) for lock, factor, _ in points} == {
        (lock, f) for lock in ("qspinlock", "pvqspinlock", "virt-tas") for f in (1, 2)
    }
    for _, factor, scenario in points:
        assert scenario.guests[0].vcpus == factor * scenario.host.pcpus


@pytest.mark.slow
def test_demo_runs_under_a_minute_and_prints_four_tables():
    out = subprocess.run([sys.executable, "-m", "pvspin", "demo"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for title in ("(1) paravirt lock call sites", "(2) uncontended", "(3) locktorture", "(4)"):
        assert title in out.stdout
