"""``pvspin run``'s perf-style sections: ``perf lock contention`` per lock, ``perf kvm stat``'s VM
exits by reason with counts and time, steal time per vCPU, waiters preempted while spinning."""

import json
import subprocess
import sys

import pytest

from pvspin.sim.command import build_scenario, execute, human_time


def result(**flags) -> dict:
    return execute(build_scenario(None, flags), None, False)["guests"][0]


def test_exits_by_reason_add_up_to_the_exit_count():
    g = result(lock="pvqspinlock", vcpus="8", pcpus="4", duration_ms="3")
    exits = g["kvm_exits"]
    assert set(exits) == {"EXTERNAL_INTERRUPT", "HLT", "PAUSE_INSTRUCTION", "VMCALL"}
    assert sum(exits[r]["samples"] for r in ("EXTERNAL_INTERRUPT", "HLT", "PAUSE_INSTRUCTION")) == g["vm_exits"]
    assert exits["VMCALL"]["samples"] == g["kicks"] > 0
    # the kick hypercall takes 7.4 us in place; a boosted one lasts until the kicker runs again
    assert exits["VMCALL"]["min_ns"] == 7400.0
    assert g["kick_yields"] > 0 and exits["VMCALL"]["max_ns"] > 7400.0
    for r in exits.values():
        if r["samples"]:
            assert r["min_ns"] <= r["avg_ns"] <= r["max_ns"] and r["time_ns"] >= r["max_ns"]
    assert exits["HLT"]["samples"] == g["halts"] > 0
    assert exits["HLT"]["max_ns"] > 1000  # a halt lasts until the vCPU runs again, not just the exit


def test_bare_metal_has_no_exits_and_no_steal():
    g = result(host="baremetal", lock="qspinlock", vcpus="4", pcpus="4", duration_ms="1")
    assert all(r["samples"] == 0 for r in g["kvm_exits"].values())
    assert g["steal_ns"] == [0.0] * 4


def test_contention_per_lock_and_steal_per_vcpu_under_overcommit():
    g = result(lock="qspinlock", vcpus="8", pcpus="4", duration_ms="3", lock_count="2")
    rows = g["lock_contention"]
    assert [r["lock"] for r in rows] == ["lock0", "lock1"]
    assert 0 < sum(r["contended"] for r in rows) <= g["acquisitions"]
    for r in rows:
        assert r["max_wait_ns"] <= r["total_wait_ns"] and r["avg_wait_ns"] * r["contended"] == pytest.approx(
            r["total_wait_ns"], rel=1e-3)
    assert len(g["steal_ns"]) == 8 and sum(g["steal_ns"]) > 0  # 8 on 4: half of them wait at any time
    assert g["waiter_preemptions"] > 0  # PLE: a spinning waiter yields its pCPU


def test_an_uncontended_lock_has_no_contention():
    g = result(lock="qspinlock", host="baremetal", vcpus="1", pcpus="1", duration_ms="1")
    assert g["lock_contention"][0]["contended"] == 0 and g["lock_contention"][0]["avg_wait_ns"] == 0.0


def test_the_sections_in_the_table_view():
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--vcpus", "8", "--pcpus", "4", "--duration-ms", "2"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = lines.index("guest0: perf lock contention (per lock)")
    assert lines[at + 1].split() == ["contended", "total", "wait", "max", "wait", "avg", "wait", "type", "lock"]
    assert lines[at + 2].split()[-2:] == ["spinlock", "lock0"]
    at = lines.index("guest0: perf kvm stat report (VM exits of all vCPUs)")
    assert lines[at + 1].split() == ["VM-EXIT", "Samples", "Samples%", "Time%", "Min", "Time", "Max", "Time", "Avg",
                                     "time"]  # fmt: skip
    assert any(line.startswith("guest0: steal time (ms) per vCPU: ") and len(line.split()) == 14 for line in lines)
    json_out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--duration-ms", "1", "--json"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "kvm_exits" in json.loads(json_out.stdout)["guests"][0]


def test_human_time():
    assert [human_time(x) for x in (999.4, 1000, 1_234_567, 3.5e9)] == ["999 ns", "1.00 us", "1.23 ms", "3.50 s"]
