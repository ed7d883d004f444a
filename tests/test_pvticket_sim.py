"""The PV ticket lock in a kernel build and on the simulated host: which build runs it, what
boot binds, and an overcommitted run in which waiters halt and unlockers kick them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pvspin.kernel.build import boot_kernel, generic_vcpu_is_preempted
from pvspin.machine.memory import Memory
from pvspin.sim.command import build_scenario, execute
from pvspin.sim.sweep import build_sweep


def test_the_v41_paravirt_kernel_on_kvm_runs_pvticket_with_kvms_ops():
    guest = boot_kernel(Memory(), 4, kernel="paravirt", host="kvm", lock="pvticket")
    impl = guest.impl
    assert guest.name == "pvticket"
    assert impl.lock_spinning == impl.kvm_lock_spinning and impl.unlock_kick == impl.kvm_unlock_kick
    assert guest.boot_log == ["KVM setup paravirtual spinlock"]
    assert guest.vcpu_is_preempted is generic_vcpu_is_preempted  # v4.11 and later
    assert guest.patch_sites == [] and "not modelled" in guest.sites_not_modelled


@pytest.mark.parametrize("kernel,host", [("paravirt", "baremetal"), ("paravirt", "kvm-nopv"), ("no-paravirt", "kvm")])
def test_pvticket_needs_the_paravirt_kernel_on_a_pv_unhalt_host(kernel, host):
    with pytest.raises(ValueError, match="lock 'pvticket' needs kernel='paravirt' on host 'kvm'"):
        boot_kernel(Memory(), 4, kernel=kernel, host=host, lock="pvticket")


@pytest.mark.parametrize("option", [dict(nopvspin=True), dict(kvm_hints_realtime=True), dict(patching=False),
                                    dict(patch_era="4.2")])
def test_later_kernels_options_are_refused(option):
    with pytest.raises(ValueError, match="does not apply to lock 'pvticket'"):
        boot_kernel(Memory(), 4, kernel="paravirt", host="kvm", lock="pvticket", **option)


def test_kvm_without_a_lock_name_still_boots_pvqspinlock():
    assert boot_kernel(Memory(), 4, kernel="paravirt", host="kvm").name == "pvqspinlock"


def test_patch_command_says_the_sites_are_not_modelled():
    out = subprocess.run([sys.executable, "-m", "pvspin", "patch", "--host", "kvm", "--lock", "pvticket"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "runs pvticket" in out.stdout and "not modelled" in out.stdout


RUN_FLAGS = ("host", "kernel", "lock", "pcpus", "vcpus", "duration_ms", "seed", "hogs", "hog_vcpus", "locks",
             "hold_ns", "delay_ns", "irq_rate", "spurious_hz", "ple", "patching")  # fmt: skip


def overcommitted():
    """4 vCPUs on 2 pCPUs, 20 ms; without pause-loop exiting, so that waiters spin SPIN_THRESHOLD loops."""
    flags = dict.fromkeys(RUN_FLAGS) | dict(lock="pvticket", pcpus="2", vcpus="4", duration_ms="20", ple=False)
    scenario = build_scenario(None, flags)
    return execute(scenario, None, False)


def test_overcommitted_waiters_halt_and_unlockers_kick_the_next_ticket():
    g = overcommitted()["guests"][0]
    events = g["lock_events"]
    assert g["lock"] == "pvticket" and g["fail"] == 0 and g["acquisitions"] > 0
    assert g["halts"] > 0 and g["kicks"] > 0
    # every halt is one kvm_lock_spinning() that did not pick the lock up; every kick is one
    # kvm_unlock_kick() that found the next ticket's waiter
    assert events["taken_slow"] - events.get("taken_slow_pickup", 0) >= g["halts"]
    assert events["released_slow_kicked"] == g["kicks"] <= events["released_slow"]


def test_pvspin_run_reports_the_kvm_spinlock_stats():
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--lock", "pvticket", "--pcpus", "2", "--vcpus", "4",
                          "--duration-ms", "20", "--no-ple", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    g = json.loads(out.stdout)["guests"][0]
    assert g["lock"] == "pvticket" and g["halts"] > 0 and g["lock_events"]["released_slow_kicked"] == g["kicks"]


def test_a_sweep_runs_pvticket_on_kvm():
    sweep = build_sweep(["overcommit=1,2"], "pvticket,pvqspinlock", 1, overrides={"host": {"pcpus": 2}, "duration_ms": 0.5})
    hosts = {(p.lock, p.values[0]): p.scenario.host.hypervisor for p in sweep.points()}
    assert hosts[("pvticket", 2)] == "kvm" == hosts[("pvqspinlock", 1)]
