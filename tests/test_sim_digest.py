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
when KVM's kick boost came (``host.kick_boost``, on by default on a KVM host): every JSON gained the
knob and two counters, and with the knob off every digest was checked unchanged but for them; on,
the model changed only where a boost took effect (``pvqspinlock-kvm-irq-spurious``,
``two-guests-softirq-nmi``), and the trace not at all.  A change
that alters the model on purpose must say so in its commit and record the new digests; nothing
else may.
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
     ("halts", "irq_acquisitions", "kick_yields")),
    ("pvqspinlock-kvm-irq-spurious-no-kick-boost", NO_KICK_BOOST,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", irq_rate="20000", spurious_hz="20000", seed="3"),
     ("halts", "kicks")),
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
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "qspinlock-baremetal": "da815f0d4d662b621c286d37b51ee1b61311bb61ca53d995fefebbca137eddc0",
    "qspinlock-baremetal-no-patching": "37f912f51e457cdc172256f27b8dde6322cc96bcc62d16effd6da9e24f79b3a7",
    "qspinlock-kvm-overcommit-ple": "ecfb2d99343eaf977416fb0b72dc7e5e8fd9c1081565b3f78e2c268d1334fcbc",
    "qspinlock-kvm-overcommit-no-ple": "54a2f879888d0fc91b3e9efccca330a170ec4d76bd7e82be834fa66951987a96",
    "qspinlock-kvm-32-on-16": "af019c1ba8d5e32a01eaadb678b9fa03b1cbd3ff03d33a59c5b1551e3e621233",
    "qspinlock-no-paravirt-kernel": "02bb4d811e522b0d64fee1b1cc4bbbae225048cd921b6c30c4c826236efaf35a",
    "qspinlock-no-paravirt-kvm-nopv": "98c3f2473c78816eb1ca849eef19d2fc9b7e03d976df1ed6a1bf95d978fed416",
    "pvqspinlock-kvm-overcommit": "b9ce63118a59d6061c4f2cb797013cdf282cd70dcab2b55d24d4f29ea43d9e21",
    "pvqspinlock-kvm-irq-spurious": "5f112484fcf4d01f482679fc96b0e434e90584c1846f6893a76214eaa4d7bd16",
    "pvqspinlock-kvm-irq-spurious-no-kick-boost": "088a77757af60d39869a8b4f42f139610be78ff403d41ecdfca83caddabef74b",
    "pvqspinlock-no-patching-locks": "db7f40e0913a379b8ad748cb78bc247aa4a0ac8efeb9d9eaebfd2414b626718c",
    "pvqspinlock-hogs": "734943db0aad538a1063ed490827f9c307cb9d9672b33afa413a3eff50491669",
    "pvqspinlock-4.2-kvm-overcommit": "7d752da8154e49bf7d93dc4876b3aa79a4c657fce82da66b761df0a1316ded47",
    "virt-tas-kvm-nopv-overcommit": "66e86decef855c111a28d1e70ce46f56e4695a0ed12837034fb02e63f164a3fb",
    "virt-tas-hogs-no-ple": "839c34f9f8dfc01f6447317c59245ef1acbb0213bbf118833d30515b071e6ae2",
    "ticket-kvm-overcommit-irq": "5f58a8050008dece4354ca2e5e226ae52efa9bba5283b60b9271f84e0c2d9de5",
    "ticket-baremetal": "94eef76be3466e7766dcf2e288e47a37d7f3c4e1877ed14bd568474afdbf18f3",
    "two-guests-softirq-nmi": "11fcfca66edfa0c291c47e7ccb9083710ae0e03459780ebf0cf45a831ee3e643",
    "tuned-host-traced": "9beb0d82f93ad81b1d73b574db447df8c28997983c797ce7f3b0000cba04102d",
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
    assert {s.host.boosts_kicks for s in scenarios if s.host.hypervisor == "kvm"} == {True, False}
    assert any(not g.patching for g in guests)
    assert any(g.workload.locks > 1 for g in guests)
    assert any(len(s.guests) > 1 for s in scenarios)
    assert any(sum(g.vcpus for g in s.guests) > s.host.pcpus for s in scenarios)  # overcommit
