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
interrupt during a host switch waits for its end: ``tests/test_sim_trace_order.py``).  A change
that alters the model on purpose must say so in its commit and record the new digests; nothing
else may.

The scenario with guest threads (``guest-threads``: more writers than vCPUs, two guest
schedulers) was added later and recorded by the commit that added guest threads, and the
kernel-build-like one (``kbuild-overcommit``) by the commit that added that workload; every other
digest was left as it was (with one writer per vCPU nothing runs differently, and the new knobs
are left out of a dump at their defaults).
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
seed = 8

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
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", patching=False, lock_count="3", hold_ns="2000", delay_ns="500"),
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
    ("guest-threads", GUEST_THREADS, {}, ("halts", "lock_holder_preemptions", "guest_threads")),
    ("kbuild-overcommit", KBUILD, {}, ("halts", "lock_holder_preemptions", "kbuild")),
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "guest-threads": "a5ea7732d44e34bf662916016171ecc4b826b2d673bc9ee3ce23b5a452eec586",
    "kbuild-overcommit": "4a0162bdd3423ffe5a8ea9db8d370a87aa447e30147910a244ca0a6d9683bb91",
    "qspinlock-baremetal": "14c4f0a3e597696510cb2879b701102e1926461ddc66a82512da315c7025c0d2",
    "qspinlock-baremetal-no-patching": "0fd43e74f6681836101323db057b61cc66203640116d7cc23af18a22c2055ad5",
    "qspinlock-kvm-overcommit-ple": "3eeac17e413c9e762026debd5c01e146cbbed946af404227e2712453e8b31207",
    "qspinlock-kvm-overcommit-no-ple": "184e514b5229b441af2650860a46e31d7f102371e519376cc748bd110fb109cb",
    "qspinlock-kvm-32-on-16": "f9d8520bf62ed5e9a5d04568140a33c72029fff69cd0d8afe65a7c26162b6a83",
    "qspinlock-no-paravirt-kernel": "cd858cb93cc914656a77448c4a010da1f1d466fa48564f4878d1fc37389c37d0",
    "qspinlock-no-paravirt-kvm-nopv": "2fb43c73c1c9a3ee4b20e200be90e15c0eea9ac945fbd55dbaf9bc40aacb7867",
    "pvqspinlock-kvm-overcommit": "77968b8153655bd5184463b88c080b50e6c50928c34b50d101a9951c0eb43ea8",
    "pvqspinlock-kvm-irq-spurious": "dcbc7d5990e34653a7f70a51ef98aa95eda72c65af1297ed472ddbdacd2203fe",
    "pvqspinlock-no-patching-locks": "a2868ee753c082c69ec4927b7eaf9f2d0ee500036cf4954a67070c8fe50c8e46",
    "pvqspinlock-hogs": "e77132efc2621acf309a5a17c0e7b71bc8d02be4e6f3913b62eabaf5718e9ff9",
    "pvqspinlock-4.2-kvm-overcommit": "3188435a1a655bab45783519b4fc004b8b6700eb5ac6477177a990f0096dc872",
    "virt-tas-kvm-nopv-overcommit": "d2024602f15e5591b3ca58f8832316d20f2065fefc241b641f4b0cfeafa046d6",
    "virt-tas-hogs-no-ple": "4339f2a5383d171a258934ab8f95b6e73906a5e29938cebc46b06720b8371e0e",
    "ticket-kvm-overcommit-irq": "fce839205375cac9f8ff26cfe6fd2c5d0b61da48063fbd2fbd17b99e89dd94bd",
    "ticket-baremetal": "357df16a189dd9e8555df5f7fb322103d3cf3674398ca93da9898df8884c1009",
    "two-guests-softirq-nmi": "9d2d57a66fb59b45e56385010cb825c61e834138e895316ad2a709b084d30a48",
    "tuned-host-traced": "c8feb59f7fe47a23d65303523544ab5c3f5c83896bfe9b6d55aa43fc1e9d8b83",
}

TRACED = "tuned-host-traced"
# ... and of its trace file, by the same engine (re-recorded alone when the file came to be
# streamed: the same events in the same order, written compactly, the track names last; and
# alone again when the file gained kick arrows, VM-exit slices, named spin waits, lock-word
# counters and non-zero thread ids -- the result digests above did not move)
TRACE_DIGEST = "4c9471281b63ecaf3a370783071112fc941518a8e7f565875a7902a02fe4cfa7"


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
    threaded = [g.workload.guest_sched for g in guests if (g.workload.nwriters_stress or 0) > g.vcpus]
    assert {sched.preemption for sched in threaded} == {"full", "voluntary"}  # guest threads
    assert {sched.steal_accounting for sched in threaded} == {True, False}
    assert any(g.workload.kind == "kbuild" for g in guests)
