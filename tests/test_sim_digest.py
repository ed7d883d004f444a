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
``_Q_PENDING_LOOPS + 1`` loads, as its ``!cnt--`` gives; the trace file moved with it).  A change
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
]  # fmt: skip

# SHA-256 of each scenario's JSON result (see the module docstring for where they come from)
EXPECTED = {
    "qspinlock-baremetal": "14c4f0a3e597696510cb2879b701102e1926461ddc66a82512da315c7025c0d2",
    "qspinlock-baremetal-no-patching": "0fd43e74f6681836101323db057b61cc66203640116d7cc23af18a22c2055ad5",
    "qspinlock-kvm-overcommit-ple": "3eeac17e413c9e762026debd5c01e146cbbed946af404227e2712453e8b31207",
    "qspinlock-kvm-overcommit-no-ple": "184e514b5229b441af2650860a46e31d7f102371e519376cc748bd110fb109cb",
    "qspinlock-kvm-32-on-16": "f9d8520bf62ed5e9a5d04568140a33c72029fff69cd0d8afe65a7c26162b6a83",
    "qspinlock-no-paravirt-kernel": "cd858cb93cc914656a77448c4a010da1f1d466fa48564f4878d1fc37389c37d0",
    "qspinlock-no-paravirt-kvm-nopv": "2fb43c73c1c9a3ee4b20e200be90e15c0eea9ac945fbd55dbaf9bc40aacb7867",
    "pvqspinlock-kvm-overcommit": "0e2abd0c20aa0cc756ace6aadd99a4e12515554c4b6b356e6f50e6eeb16bad49",
    "pvqspinlock-kvm-irq-spurious": "17b5f2efe0d536f05693a9324767a72e85df064fc6506668eb0a3e113e8e5197",
    "pvqspinlock-no-patching-locks": "6fa06cd94ed03bf9bcc0cf27be9708a861d006cf3f412e519e2f9c43909fe031",
    "pvqspinlock-hogs": "3d50d58f3e0fdf6957152acb1a16a6f411f435af98e46e4fa6532482c520f7b9",
    "pvqspinlock-4.2-kvm-overcommit": "3188435a1a655bab45783519b4fc004b8b6700eb5ac6477177a990f0096dc872",
    "pvqspinlock-5.2-kvm-overcommit": "6e1be68746f51178a5423656aba755d6a2f02d4e53ba505a98b01d28f5e839a9",
    "virt-tas-kvm-nopv-overcommit": "d2024602f15e5591b3ca58f8832316d20f2065fefc241b641f4b0cfeafa046d6",
    "virt-tas-hogs-no-ple": "4339f2a5383d171a258934ab8f95b6e73906a5e29938cebc46b06720b8371e0e",
    "ticket-kvm-overcommit-irq": "fce839205375cac9f8ff26cfe6fd2c5d0b61da48063fbd2fbd17b99e89dd94bd",
    "ticket-baremetal": "357df16a189dd9e8555df5f7fb322103d3cf3674398ca93da9898df8884c1009",
    "two-guests-softirq-nmi": "3aba24bbba8ae51a56548ad4271f5a8e2b37fea0dcd6d9c780464a626dfd7883",
    "tuned-host-traced": "3f98469a6c567be5167ce5d811e3be2b46ac3f1c8ef4c54a683e5a9540ed99e4",
}

TRACED = "tuned-host-traced"
# ... and of its trace file, by the same engine (re-recorded alone when the file came to be
# streamed: the same events in the same order, written compactly, the track names last; and
# alone again when the file gained kick arrows, VM-exit slices, named spin waits, lock-word
# counters and non-zero thread ids -- the result digests above did not move)
TRACE_DIGEST = "28da4037044b53d573e818f0718e1980cf5036e3e94fb29e2d1b0aea74debdf4"


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
    assert any(not g.patching for g in guests)
    assert any(g.workload.locks > 1 for g in guests)
    assert any(len(s.guests) > 1 for s in scenarios)
    assert any(sum(g.vcpus for g in s.guests) > s.host.pcpus for s in scenarios)  # overcommit
