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
with two or more tasks: the scenarios without a PV lock kept their digests; and again when KVM's
halt polling came (``host.halt_poll_ns``, 200 µs by default on a KVM host): every JSON gained the
knob and two counters, and with those three keys removed every scenario in which no vCPU polled
kept its digest (the trace moved with the scenario that polls).  A change that alters
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
    ("tuned-host-traced", TUNED_HOST, {},
     ("vm_exits", "halts", "kicks", "irq_acquisitions", "lock_holder_preemptions", "halt_successful_poll")),
    ("guest-threads", GUEST_THREADS, {}, ("halts", "lock_holder_preemptions", "guest_threads")),
    ("kbuild-overcommit", KBUILD, {}, ("halts", "lock_holder_preemptions", "kbuild")),
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "qspinlock-baremetal": "0a40ea1d70a8c5a8ca34769982bae1c4723edfc004efea9e1d32337b17066043",
    "qspinlock-baremetal-no-patching": "51e197d4e5f9fc66e9b1f1f3c90ed5d01c9c3e1a0b8b09211f9f84fb5b462439",
    "qspinlock-kvm-overcommit-ple": "410cdf6acf736f83e78f26db6aa0f5cb22fb3bec8e64537d41003eaa802a60c8",
    "qspinlock-kvm-overcommit-no-ple": "c05834ead5411b81aa4539d39ebc66c19cc3edfbf74fbf3c336021bc2ca2deb1",
    "qspinlock-kvm-32-on-16": "f5fb4b51043336526c60a9d8cfaf8a1e5203bb26cf4581de7a6080e032df55e2",
    "qspinlock-no-paravirt-kernel": "904863f4cec23d2bf6ae756cf5ddf9dda1837b092a3393f4ee749701f82180f0",
    "qspinlock-no-paravirt-kvm-nopv": "3b59a4e998d421006d86df9da15a1cb3c67eccecc3841a2c215c1089db7ecbe0",
    "pvqspinlock-kvm-overcommit": "e7aa9e56e6f4e34181c0f64cf9e7cc5ee3696f36f63ccbcd75737f8cf4ca3747",
    "pvqspinlock-kvm-irq-spurious": "8bf0189bf71cd18ec4b1af6accde26322a45b5538aaf9e2f84b250bb2d12c783",
    "pvqspinlock-no-patching-locks": "02676cb32b09fc91ae1cc95b8bfebd5ed1ac7347346ce5f83ad472b67309575e",
    "pvqspinlock-hogs": "e506185d9e72a0462cd121ba1b0e5528732bb479130c2b587b35da9fff6a4c4d",
    "pvqspinlock-4.2-kvm-overcommit": "44736b96856ff6af41996fd693f39de948e1b5e2116e4d783b7f477334b22308",
    "pvqspinlock-5.2-kvm-overcommit": "7fe10eaf685f1b3d83b290c8b812dafee2c6e4804c5a583defe9c495c9e3621e",
    "virt-tas-kvm-nopv-overcommit": "464a68b58a9c789abc44b035aa0743ff2151bed0e46a349ce0b868d0c648a00f",
    "virt-tas-hogs-no-ple": "329f5b16d8f8a60d00621c539dea2350b5b039d35065912a4a3b86c5543c4a7b",
    "ticket-kvm-overcommit-irq": "ae9b3d21c1c9fad8e28b2de92fb15175144f0c931f4667168869471d8a278966",
    "ticket-baremetal": "1884b332e56fcf8254f5df7b41ecba0ecf72979a25699623552cfa653031f550",
    "two-guests-softirq-nmi": "a33f5ccbb604f652e8864dc5189f4c4ab87e7716f6ef5051bad50612e2ad41dc",
    "tuned-host-traced": "4b09a77ed9251449ebeee706894285c881ce2abf0d8b4a0ba35f9aee0bf6d164",
    "qspinlock-kvm-overcommit-ple-user-mode": "9bde8ffaffbfcb1652d29c1fe4fa8732a741accc78107112401e029578be2fc9",
    "pvqspinlock-kvm-irq-spurious-no-kick-boost": "2b6355bed1ef2fb24ca31e2aaf5e7acddf74223d477c65e286f251e2aff39dfc",
    "guest-threads": "bbbf9f574637b2483a3bc2c9646db77248cb4d60421bfb97ac19662127d145c9",
    "kbuild-overcommit": "7bce1acf6a13642f0ebc025343a52229e52906b3ca7b144bcabbe14845b2aa1d",
}

TRACED = "tuned-host-traced"
# ... and of its trace file, by the same engine (re-recorded alone when the file came to be
# streamed: the same events in the same order, written compactly, the track names last; and
# alone again when the file gained kick arrows, VM-exit slices, named spin waits, lock-word
# counters and non-zero thread ids -- the result digests above did not move; and with its scenario
# when halt polling came)
TRACE_DIGEST = "8b704a1a2fa79f2e010dd244c86d832bddf4674c0249ffc90651e00a6eddc891"


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
