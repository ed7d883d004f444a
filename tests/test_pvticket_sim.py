"""The PV ticket lock in a kernel build and on the simulated host: which build runs it, what
boot binds, and an overcommitted run in which waiters halt and unlockers kick them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pvspin.kernel.build import boot_kernel, generic_vcpu_is_preempted
from pvspin.kernel.paravirt import SYMBOLS
from pvspin.machine.memory import Memory
from pvspin.sim.command import build_scenario, execute
from pvspin.sim.sweep import build_sweep


def test_the_v41_paravirt_kernel_on_kvm_runs_pvticket_with_kvms_ops():
    guest = boot_kernel(Memory(), 4, kernel="paravirt", host="kvm", lock="pvticket")
    impl, lock_ops = guest.impl, guest.pv_ops.lock
    assert guest.name == "pvticket"
    assert lock_ops.lock_spinning.func.__name__ == "__raw_callee_save_kvm_lock_spinning"
    assert lock_ops.unlock_kick == impl.kvm_unlock_kick
    assert guest.boot_log == ["KVM setup paravirtual spinlock"]
    assert guest.vcpu_is_preempted is generic_vcpu_is_preempted  # v4.11 and later


def test_v41_patching_keeps_the_callee_save_site_indirect_and_calls_unlock_kick_directly():
    """v4.1's paravirt_patch_call() refuses a CLBR_ANY target at a CLBR_RET_REG site, as 4.2's did."""
    rows = {r["site"]: r for r in boot_kernel(Memory(), 4, kernel="paravirt", host="kvm", lock="pvticket").patch_table()}
    spinning, kick = rows["ticket_lock_spinning"], rows["ticket_unlock_kick"]
    assert (spinning["op"], spinning["clobbers"], spinning["patched"]) == ("pv_lock_ops.lock_spinning", "CLBR_RET_REG",
                                                                         False)
    assert spinning["after_asm"].startswith("call qword ptr [0xffffffff81c152e0]")
    assert kick["patched"] and kick["after_asm"].startswith(f"call {SYMBOLS['kvm_unlock_kick']:#x} <kvm_unlock_kick>")


def test_patched_sites_run_kvms_functions_and_unpatched_ones_read_pv_lock_ops():
    for patching, kick_source in ((True, "call 0xffffffff8105fa20 <kvm_unlock_kick>"),
                                  (False, "call *pv_lock_ops+0x8 (pv_lock_ops.unlock_kick, read now)")):
        guest = boot_kernel(Memory(), 2, kernel="paravirt", host="kvm", lock="pvticket", patching=patching)
        sites = {site.name: site for site in guest.patch_sites}
        assert kick_source in sites["ticket_unlock_kick"].source
        assert guest.impl.ticket_unlock_kick is sites["ticket_unlock_kick"].code
        assert guest.impl.ticket_lock_spinning is sites["ticket_lock_spinning"].code


@pytest.mark.parametrize("kernel,host", [("paravirt", "baremetal"), ("paravirt", "kvm-nopv"), ("no-paravirt", "kvm")])
def test_pvticket_needs_the_paravirt_kernel_on_a_pv_unhalt_host(kernel, host):
    with pytest.raises(ValueError, match="lock 'pvticket' needs kernel='paravirt' on host 'kvm'"):
        boot_kernel(Memory(), 4, kernel=kernel, host=host, lock="pvticket")


@pytest.mark.parametrize("option", [dict(nopvspin=True), dict(kvm_hints_realtime=True), dict(patch_era="4.2")])
def test_later_kernels_options_are_refused(option):
    with pytest.raises(ValueError, match="does not apply to lock 'pvticket'"):
        boot_kernel(Memory(), 4, kernel="paravirt", host="kvm", lock="pvticket", **option)


def test_kvm_without_a_lock_name_still_boots_pvqspinlock():
    assert boot_kernel(Memory(), 4, kernel="paravirt", host="kvm").name == "pvqspinlock"


def test_patch_command_lists_the_two_v41_sites():
    out = subprocess.run([sys.executable, "-m", "pvspin", "patch", "--host", "kvm", "--lock", "pvticket", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [r["op"] for r in json.loads(out.stdout)] == ["pv_lock_ops.lock_spinning", "pv_lock_ops.unlock_kick"]


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
