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
where the 50 progress steps fell; ``tests/test_sim_chunks.py``), and again when two more such
dependences went: a newly idle pCPU's pull of the vCPU that waited longest, and the spin time
of a spinner interrupted at its switch-in; and again when nothing could act on a vCPU before its
switch-in had completed any more (a pCPU picks at the end of a VM exit, a preemption or an
interrupt during a host switch waits for its end: ``tests/test_sim_trace_order.py``); and again
when a bounded spin's ``bound`` came to count evaluations of its condition as the kernel's loops
do (a SPIN_THRESHOLD wait is SPIN_THRESHOLD loads, not one more; the pending wait is
``_Q_PENDING_LOOPS + 1`` loads, as its ``!cnt--`` gives; the trace file moved with it); and again
when KVM's kick boost came (``host.kick_boost``, on by default on a KVM host): every JSON gained the
knob and two counters, and with the knob off every digest was checked unchanged but for them; on,
the model changed only where a boost took effect (``pvqspinlock-kvm-irq-spurious``,
``two-guests-softirq-nmi``), and the trace not at all; and again when a workload could spend its
delays in user mode (``user_fraction``, 0 by default: every JSON gained it, and without it every
digest was checked unchanged); the two branches that made these last changes were merged and
the digests recorded once from the merged engine.  The scenario with guest threads
(``guest-threads``: more writers than vCPUs, two guest schedulers) and the kernel-build-like one
(``kbuild-overcommit``) came with those features, recorded on the merged engine; every other
digest was unchanged by them (with one writer per vCPU nothing runs differently, and the new
knobs are left out of a dump at their defaults); and again when a kick came to wake a halted vCPU
at once, as KVM does (runnable when the hypercall returns, so the boost reaches it; an idle pCPU
runs it the kick-to-run time after the kick), and load balancing came to pull only from a pCPU
with two or more tasks: the scenarios without a PV lock kept their digests.  A change that alters
the model on purpose must say so in its commit and record the new digests; nothing else may.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from pvspin.sim.command import build_scenario, execute

HOST_TIMING = ("host_seconds", "guest_operations_per_host_second")

FLAGS = ("host", "kernel", "lock", "pcpus", "vcpus", "duration_ms", "seed", "hogs", "hog_vcpus", "lock_count", "hold_ns",
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

# Guest threads: 7 writers on 3 vCPUs (3, 2, 2 per vCPU) under full preemption and steal-time
# accounting, and 5 on 2 under voluntary preemption without it, on 3 pCPUs, after a warm-up
# (which resets the steal time the run queues read); short guest and host slices and fast ticks,
# so that threads switch and vCPUs are preempted many times in a short run.
GUEST_THREADS = """
duration_ms = 3
warmup_ms = 0.5
seed = 7

[host]
pcpus = 3
hypervisor = "kvm"
scheduling = { sched_latency_us = 600, min_granularity_us = 150, wakeup_granularity_us = 100 }

[[guests]]
name = "full"
vcpus = 3
lock = "pvqspinlock"

[guests.workload]
nwriters_stress = 7
guest_sched = { slice_ms = 0.2, hz = 5000, switch_ns = 500 }

[[guests]]
name = "voluntary"
vcpus = 2
lock = "qspinlock"

[guests.workload]
nwriters_stress = 5
delay = { kind = "exponential", mean_ns = 5000 }
guest_sched = { slice_ms = 0.1, hz = 10000, preemption = "voluntary", steal_accounting = false }
"""

# A kernel-build-like run at 5/3x overcommit: 60 tasks by 10 job threads, a hot shared lock,
# host slices scaled down; the run ends at the cycle the last task is done.
KBUILD = """
duration_ms = 100
seed = 6

[host]
pcpus = 3
scheduling = { sched_latency_us = 1500, min_granularity_us = 300 }

[[guests]]
vcpus = 5
lock = "pvqspinlock"

[guests.workload]
kind = "kbuild"
hold = { kind = "exponential", mean_ns = 2000 }
kbuild = { tasks = 60, compute_us = 150, locks_per_task = 8, contended = 0.3 }
guest_sched = { slice_ms = 0.5, hz = 2000 }
"""

# Slices short enough to end, and preempt, within a 2 ms run (flags on top choose the rest).
SHORT_SLICES = """
duration_ms = 2

[host.scheduling]
sched_latency_us = 400
min_granularity_us = 100
wakeup_granularity_us = 100
"""

# KVM without its kick boost (kvm_sched_yield after KVM_HC_KICK_CPU, on by default on a KVM host).
NO_KICK_BOOST = """
duration_ms = 2

[host]
kick_boost = false
"""

# Writers that spend half of each delay in guest user mode, where PLE's directed yield passes them over.
USER_MODE = """
duration_ms = 2

[[guests]]
workload = { user_fraction = 0.5 }
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
    ("qspinlock-kvm-overcommit-ple-user-mode", USER_MODE, dict(lock="qspinlock", vcpus="8", pcpus="4"),
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
     ("halts", "irq_acquisitions", "kick_yields")),
    ("pvqspinlock-kvm-irq-spurious-no-kick-boost", NO_KICK_BOOST,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", irq_rate="20000", spurious_hz="20000", seed="3"),
     ("halts", "kicks")),
    ("pvqspinlock-no-patching-locks", None,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", patching=False, lock_count="3", hold_ns="2000", delay_ns="500"),
     ("halts", "kicks")),
    # seed 2: a seed whose run still preempts a lock holder once kicks woke at once
    ("pvqspinlock-hogs", SHORT_SLICES, dict(lock="pvqspinlock", vcpus="4", pcpus="4", hogs="2", hog_vcpus="2", seed="2"),
     ("halts", "lock_holder_preemptions")),
    ("pvqspinlock-4.2-kvm-overcommit", None, dict(lock="pvqspinlock-4.2", vcpus="8", pcpus="4", seed="1"),
     ("vm_exits",)),
    ("pvqspinlock-5.2-kvm-overcommit", None, dict(lock="pvqspinlock-5.2", vcpus="8", pcpus="4", seed="1"),
     ("vm_exits", "halts")),
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
    ("guest-threads", GUEST_THREADS, {}, ("halts", "lock_holder_preemptions", "guest_threads")),
    ("kbuild-overcommit", KBUILD, {}, ("halts", "lock_holder_preemptions", "kbuild")),
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "qspinlock-baremetal": "c2ec3b2e1329791c2d3cf43a3cf908c2935ce16367a7938855a9cc793dbbe1e2",
    "qspinlock-baremetal-no-patching": "62d1c62fe634a371444b204a54303c7b4481b3e82439e40a4912d4cb563992d9",
    "qspinlock-kvm-overcommit-ple": "932b67243274bf8a6a286890e1ae86c8bd7bb07f3c6bebc61a01ab087a4d740b",
    "qspinlock-kvm-overcommit-no-ple": "b70d4b8b7e4acb921fb078668556b74ef893ab63e4ed565284c001acd1119aee",
    "qspinlock-kvm-32-on-16": "9e6ef0ba628c5f70e3167cfe5dd0a8eb918d88331321a9f7d47ba26d0163abc0",
    "qspinlock-no-paravirt-kernel": "3ff32dea089408adaec2cd0b5c7e878c73fcef1b78c99cb41d42336df9fd15eb",
    "qspinlock-no-paravirt-kvm-nopv": "f1e45a3c9d624d5a3a23ff7f9c4a81c1689e926683c38b51fcefb44daf23ab7f",
    "pvqspinlock-kvm-overcommit": "8d58d2e3a24207c6c4b6525e649564d68891a918d8edac13287343ea6a89d154",
    "pvqspinlock-kvm-irq-spurious": "b1f8f71343add0b457426097351cd9eea8dd3ea8be6480e60f344833e86d3363",
    "pvqspinlock-no-patching-locks": "2efa542ac0d6dffd3b54789b01b28fce2dd5c2429d4116bbe7dbfaa41cea1acd",
    "pvqspinlock-hogs": "ddad791275b4122314abaa01d33f05f5453942bad4b0b6da514ac4cb33867332",
    "pvqspinlock-4.2-kvm-overcommit": "337f16ca758a525db5613eec5f2d499288431f837f48d40b42390943347e63eb",
    "pvqspinlock-5.2-kvm-overcommit": "01f9dcaa96205164d3ffc0959768f2c231c0654e25eb214edf31b6c1686e11b4",
    "virt-tas-kvm-nopv-overcommit": "1f1d337d414fb15d5cf70bf0aa45a2dc9557031cb73099a04d3892ae1c31939d",
    "virt-tas-hogs-no-ple": "914c6cd96e21ee252786eb7b570de340a28b8a95b2f4b2bbc5edb0a0ab75fe55",
    "ticket-kvm-overcommit-irq": "b0515d3991f3eee4db243994ae26352623a178997d77820b04ef7ea090fdf90f",
    "ticket-baremetal": "b1e4c816f57f639dc3207482e071cc25637a48726f613b702cd5b9a09dfa1de4",
    "two-guests-softirq-nmi": "ecf4ba065c39dd837a007fa9af44890c3b4115b056f9b50647578c6014b32705",
    "tuned-host-traced": "4139db97a82bd58ad03d0e2be90ff2a4173bbf1cd37e9e51681d641fd13364ff",
    "qspinlock-kvm-overcommit-ple-user-mode": "fe7267decb9f0376de795532b75f94e8ea08e14619ef34b35e9f593ac458fbe2",
    "pvqspinlock-kvm-irq-spurious-no-kick-boost": "ae2e5f9eed7bc8a5708d3c40bd34b1e10cae7fd392325b8665dbf78dc8320957",
    "guest-threads": "65fc8696cc63f1f1735db77e39963b17cb22b9ef20558f53134f966fae3c7797",
    "kbuild-overcommit": "0edaf123baf43845fab680048b9526ae2c174b89b049e710687018728ebfa977",
}

TRACED = "tuned-host-traced"
# ... and of its trace file, by the same engine (re-recorded alone when the file came to be
# streamed: the same events in the same order, written compactly, the track names last; and
# alone again when the file gained kick arrows, VM-exit slices, named spin waits, lock-word
# counters and non-zero thread ids -- the result digests above did not move)
TRACE_DIGEST = "8470d748023ec615e985e85bb0e70b7c76334064a12a900a2fac8b87bd73667f"


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
    assert {g.lock for g in guests} == {"qspinlock", "pvqspinlock", "pvqspinlock-4.2", "pvqspinlock-5.2", "virt-tas",
                                         "ticket"}
    assert {s.host.hypervisor for s in scenarios} == {"baremetal", "kvm", "kvm-nopv"}
    assert {g.interrupts.level for g in guests if g.interrupts.rate_hz} == {"softirq", "hardirq", "nmi"}
    assert any(s.hog_guests for s in scenarios)
    assert any(s.host.spurious_wakeup_hz for s in scenarios)
    assert any(not s.host.scheduling.ple for s in scenarios)
    assert {s.host.boosts_kicks for s in scenarios if s.host.hypervisor == "kvm"} == {True, False}
    assert any(g.workload.user_fraction for g in guests)
    assert any(not g.patching for g in guests)
    assert any(g.workload.locks > 1 for g in guests)
    assert any(len(s.guests) > 1 for s in scenarios)
    assert any(sum(g.vcpus for g in s.guests) > s.host.pcpus for s in scenarios)  # overcommit
    threaded = [g.workload.guest_sched for g in guests if (g.workload.nwriters_stress or 0) > g.vcpus]
    assert {sched.preemption for sched in threaded} == {"full", "voluntary"}  # guest threads
    assert {sched.steal_accounting for sched in threaded} == {True, False}
    assert any(g.workload.kind == "kbuild" for g in guests)
