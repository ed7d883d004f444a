"""The timed simulator's results, pinned: SHA-256 digests of ``pvspin run --json`` over scenarios
covering every lock, host and feature.

This is the regression oracle for refactoring and speeding up the engine: a change that is meant
to change nothing must leave every digest as it is.  Each scenario runs the way ``pvspin run``
runs it (``sim.command.build_scenario`` and ``execute``, 50 progress chunks) and is hashed as
the ``--json`` output is printed (``json.dumps(result, indent=2)``), minus the two host-timing
fields, which measure the machine, not the model.  One scenario also writes a Perfetto trace and
pins its bytes, so the tracer hooks stay where they are.

The expected digests were produced by commit 2ae79f4's engine (the single-class
``sim/engine.py``, before it was split), and re-recorded once when reading the accounts between
two steps stopped moving the run start of a vCPU inside its host switch-in (a result depended on
where the 50 progress steps fell; ``tests/test_sim_chunks.py``).  A change that alters the model
on purpose must say so in its commit and record the new digests; nothing else may.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from pvspin.sim.command import build_scenario, execute

HOST_TIMING = ("host_seconds", "guest_operations_per_host_second")

FLAGS = ("host", "kernel", "lock", "pcpus", "vcpus", "duration_ms", "seed", "hogs", "hog_vcpus", "locks", "hold_ns",
         "delay_ns", "irq_rate", "spurious_hz", "ple", "patching")  # fmt: skip

# Two guests on one socket (each its own memory and lines, directed yield within a VM only),
# NMI-level handlers in the PV one (where pv_wait is a no-op), softirq-level in the other,
# long holds, several shared lines per critical section, fixed and uniform distributions.
TWO_GUESTS = """
duration_ms = 3
seed = 4

[host]
pcpus = 4
sockets = 1
hypervisor = "kvm"

[[guests]]
name = "pv"
vcpus = 5
lock = "pvqspinlock"
interrupts = { rate_hz = 30000, level = "nmi" }

[guests.workload]
locks = 2
shared_lines = 2
long_hold_every = 50
long_hold_us = 20
hold = { kind = "uniform", mean_ns = 800 }
delay = { kind = "fixed", mean_ns = 300 }

[[guests]]
name = "native"
vcpus = 3
lock = "qspinlock"
interrupts = { rate_hz = 20000, level = "softirq" }
"""

# CFS knobs scaled down so that slices end, balancing and wake-up preemption happen in a short
# run; PLE windows capped; a transfer-jitter-free cache; one interrupt level below hardirq.
TUNED_HOST = """
duration_ms = 3
seed = 2

[host]
pcpus = 3
sockets = 3
hypervisor = "kvm"
spurious_wakeup_hz = 5000
costs = { transfer_jitter = 0, context_switch = 2000 }
scheduling = { sched_latency_us = 600, min_granularity_us = 100, wakeup_granularity_us = 50, ple_window_max = 20000 }

[[guests]]
vcpus = 7
lock = "pvqspinlock"
interrupts = { rate_hz = 10000, level = "hardirq" }

[guests.workload]
hold = { kind = "exponential", mean_ns = 1000 }
delay = { kind = "exponential", mean_ns = 100 }
"""

# Slices short enough to end, and preempt, within a 2 ms run (flags on top choose the rest).
SHORT_SLICES = """
duration_ms = 2

[host.scheduling]
sched_latency_us = 400
min_granularity_us = 100
wakeup_granularity_us = 100
"""

# (name, scenario file text or None, flags on top of it, what must happen in it): "what must happen"
# names guest result fields that must be non-zero, so that a scenario meant to pin a mechanism
# keeps exercising it.  Flag scenarios run 2 ms unless they say otherwise.
SCENARIOS = [
    ("qspinlock-baremetal", None, dict(host="baremetal", lock="qspinlock", vcpus="4", pcpus="4"), ()),
    ("qspinlock-baremetal-no-patching", None,
     dict(host="baremetal", lock="qspinlock", vcpus="4", pcpus="4", patching=False, seed="2"), ()),
    ("qspinlock-kvm-overcommit-ple", None, dict(lock="qspinlock", vcpus="8", pcpus="4"),
     ("vm_exits", "lock_holder_preemptions")),
    ("qspinlock-kvm-overcommit-no-ple", SHORT_SLICES, dict(lock="qspinlock", vcpus="8", pcpus="4", ple=False),
     ("lock_holder_preemptions",)),
    ("qspinlock-kvm-32-on-16", None, dict(lock="qspinlock", vcpus="32", pcpus="16", duration_ms="1"), ("vm_exits",)),
    ("qspinlock-no-paravirt-kernel", None, dict(kernel="no-paravirt", lock="qspinlock", vcpus="6", pcpus="4"),
     ("vm_exits",)),
    ("qspinlock-no-paravirt-kvm-nopv", None,
     dict(host="kvm-nopv", kernel="no-paravirt", lock="qspinlock", vcpus="6", pcpus="4", seed="5"), ("vm_exits",)),
    ("pvqspinlock-kvm-overcommit", None, dict(lock="pvqspinlock", vcpus="8", pcpus="4"), ("halts", "kicks")),
    ("pvqspinlock-kvm-irq-spurious", None,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", irq_rate="20000", spurious_hz="20000", seed="3"),
     ("halts", "irq_acquisitions")),
    ("pvqspinlock-no-patching-locks", None,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", patching=False, locks="3", hold_ns="2000", delay_ns="500"),
     ("halts", "kicks")),
    ("pvqspinlock-hogs", SHORT_SLICES, dict(lock="pvqspinlock", vcpus="4", pcpus="4", hogs="2", hog_vcpus="2"),
     ("halts", "lock_holder_preemptions")),
    ("pvqspinlock-4.2-kvm-overcommit", None, dict(lock="pvqspinlock-4.2", vcpus="8", pcpus="4", seed="1"),
     ("vm_exits",)),
    ("virt-tas-kvm-nopv-overcommit", None, dict(host="kvm-nopv", lock="virt-tas", vcpus="8", pcpus="4"),
     ("vm_exits",)),
    ("virt-tas-hogs-no-ple", SHORT_SLICES,
     dict(host="kvm-nopv", lock="virt-tas", vcpus="4", pcpus="4", hogs="1", hog_vcpus="3", ple=False),
     ("lock_holder_preemptions",)),
    ("ticket-kvm-overcommit-irq", None, dict(lock="ticket", vcpus="6", pcpus="4", irq_rate="10000"),
     ("irq_acquisitions",)),
    ("ticket-baremetal", None, dict(host="baremetal", lock="ticket", vcpus="4", pcpus="4"), ()),
    ("two-guests-softirq-nmi", TWO_GUESTS, {}, ("halts", "irq_acquisitions")),
    ("tuned-host-traced", TUNED_HOST, {}, ("vm_exits", "halts", "kicks", "irq_acquisitions", "lock_holder_preemptions")),
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "qspinlock-baremetal": "f1f6b668fca9455dbeb023f1d61a29b09f62b6d6aa2e9125a5c27d29e3350220",
    "qspinlock-baremetal-no-patching": "ce7ceef5c461b194285b5252745938fa26e47b086b8215f8bee87abb47b0bb5e",
    "qspinlock-kvm-overcommit-ple": "19875202e9bf2384b542ec98efabf74d69d8bc7e3c6d5a70c864ea1c13c2696c",
    "qspinlock-kvm-overcommit-no-ple": "00c18bbb359f81c6e5341125fc1f0894cf8395a61a6c1db399c02ae8212f76f6",
    "qspinlock-kvm-32-on-16": "0bccfaf6c47679da159db61adc203b31b3015c4617e0f27cf0db65ed17f2e562",
    "qspinlock-no-paravirt-kernel": "5972925d5e9175d3bb260786867f6ea5d9eadd84ae46ffc31c48fb564c825e8c",
    "qspinlock-no-paravirt-kvm-nopv": "c5a6a3643827e2abf135d65e7c341ee0e290a30dfff9d0714ac6547359efc5a0",
    "pvqspinlock-kvm-overcommit": "100446a8f6eccc2c49ae8f89523ea9d594168cac31cd5ade71bf77a7fcf80e8b",
    "pvqspinlock-kvm-irq-spurious": "c6580fcc0f6819b120d0f5b1f9cadd7b8f536f48f32322bbedb539b440f40938",
    "pvqspinlock-no-patching-locks": "f358f331d77f80f4d8deebc953cb30c6e696f2c4aaa5dce54ae50a4d78c46330",
    "pvqspinlock-hogs": "ec504ca696f86e5b7af772bbb33ce7e158c37a1be57aa3b2e3659df2ba6da7c7",
    "pvqspinlock-4.2-kvm-overcommit": "fe71962de7a9ff6359a2056079df64cdef5c663bc5aeeebc5e0dc881bba6a793",
    "virt-tas-kvm-nopv-overcommit": "85e3149d1f5424e8833661e9204859d4ff5be676f7084ea0aeb790405f9a9c47",
    "virt-tas-hogs-no-ple": "382c3c189d2ba07b38bf739a8320df874e68c8e0f5e88ceb41e528d31313ffd1",
    "ticket-kvm-overcommit-irq": "33310058dcaf30b71c62f1c8f12970f8455bec69e31013c84320996ae7d0d6ee",
    "ticket-baremetal": "dd6b7df9cd3c3efce2ed472ff4d76ea0ac9d3482669fb056c6419a597963830b",
    "two-guests-softirq-nmi": "4f076c3a4625d98ed591342acb7a3eb5e1352bf2aacb3fb0c9f06aaead15dbb0",
    "tuned-host-traced": "13754bcc870c6f246dc4c3ddcd7f226d0429941193b9e10f335a39f3d8b38b08",
}

TRACED = "tuned-host-traced"
# ... and of its trace file, by the same engine
TRACE_DIGEST = "97e86258975ae3f9b69bcff775cef4b557299c03a1991f2618e6fc9eb9e89af9"


def scenario_of(text: str | None, flags: dict, tmp_path):
    """The scenario ``pvspin run [--scenario FILE] FLAGS`` runs (2 ms unless a file or flag says)."""
    scenario_file = None
    if text is not None:
        scenario_file = tmp_path / "scenario.toml"
        scenario_file.write_text(text)
    all_flags = {name: None for name in FLAGS} | ({} if text is not None else {"duration_ms": "2"}) | flags
    return build_scenario(None if scenario_file is None else str(scenario_file), all_flags)


@pytest.mark.parametrize(("name", "text", "flags", "shows"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_result_digest_is_unchanged(name, text, flags, shows, tmp_path):
    trace_path = tmp_path / "trace.json" if name == TRACED else None
    result = execute(scenario_of(text, flags, tmp_path), None if trace_path is None else str(trace_path), False)
    for field in HOST_TIMING:
        del result["host"][field]
    for field in shows:
        assert any(g[field] for g in result["guests"]), f"{name} no longer exercises {field}"
    assert hashlib.sha256(json.dumps(result, indent=2).encode()).hexdigest() == EXPECTED[name]
    if trace_path is not None:
        assert hashlib.sha256(trace_path.read_bytes()).hexdigest() == TRACE_DIGEST


def test_the_scenarios_cover_every_lock_host_and_feature(tmp_path):
    """Every lock and host appears, and every feature is switched on somewhere."""
    scenarios = [scenario_of(text, flags, tmp_path) for _name, text, flags, _shows in SCENARIOS]
    guests = [g for s in scenarios for g in s.guests]
    assert {g.lock for g in guests} == {"qspinlock", "pvqspinlock", "pvqspinlock-4.2", "virt-tas", "ticket"}
    assert {s.host.hypervisor for s in scenarios} == {"baremetal", "kvm", "kvm-nopv"}
    assert {g.interrupts.level for g in guests if g.interrupts.rate_hz} == {"softirq", "hardirq", "nmi"}
    assert any(s.hog_guests for s in scenarios)
    assert any(s.host.spurious_wakeup_hz for s in scenarios)
    assert any(not s.host.scheduling.ple for s in scenarios)
    assert any(not g.patching for g in guests)
    assert any(g.workload.locks > 1 for g in guests)
    assert any(len(s.guests) > 1 for s in scenarios)
    assert any(sum(g.vcpus for g in s.guests) > s.host.pcpus for s in scenarios)  # overcommit
