"""The timeline ``pvspin run --trace`` writes is well formed: on every track, slices never
overlap and time never runs backwards.

A track is what Perfetto draws as one row: a pCPU (which vCPU it runs), a vCPU (its state, with
its spin waits nested inside its running slices, and its instants), a lock's holder.  A state
stamped before the one it ends (a vCPU acted on before its switch-in had completed) shows as a
slice starting inside the previous one; the scenarios below cover native and PV locks,
overcommit, preemption at slice ends and by wake-ups, directed yields, hogs, halts and kicks,
spurious wake-ups and interrupts at every level.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict

import pytest

from pvspin.sim.command import build_scenario, execute

# CFS scaled down so that slices end, wake-ups preempt and directed yields switch within a short
# run, with a host switch long enough for things to happen during it
SHORT_SLICES = """
[host.scheduling]
sched_latency_us = 400
min_granularity_us = 100
wakeup_granularity_us = 50
"""

# (name, scenario text or None, flags, guest result fields that must be non-zero: what it exercises)
SCENARIOS = [
    ("qspinlock-overcommit", None, dict(lock="qspinlock", vcpus="8", pcpus="4", duration_ms="5"),
     ("vm_exits", "waiter_preemptions")),
    ("qspinlock-overcommit-short-slices", SHORT_SLICES, dict(lock="qspinlock", vcpus="8", pcpus="4"),
     ("lock_holder_preemptions", "waiter_preemptions")),
    ("pvqspinlock-overcommit", None, dict(lock="pvqspinlock", vcpus="8", pcpus="4", duration_ms="5"),
     ("halts", "kicks")),
    ("pvqspinlock-4.2-short-slices", SHORT_SLICES, dict(lock="pvqspinlock-4.2", vcpus="8", pcpus="4", seed="1"),
     ("vm_exits", "lock_holder_preemptions")),
    ("pvticket-overcommit", None, dict(lock="pvticket", vcpus="6", pcpus="4", duration_ms="5"),
     ("vm_exits", "lock_holder_preemptions")),
    ("virt-tas-kvm-nopv", SHORT_SLICES, dict(host="kvm-nopv", lock="virt-tas", vcpus="8", pcpus="4"),
     ("vm_exits",)),
    ("qspinlock-baremetal", None, dict(host="baremetal", lock="qspinlock", vcpus="4", pcpus="4"), ()),
    # seed 3: with the default seed, the bounded spins' one-load-shorter timeouts (evaluations counted
    # as the kernel's loops do) left this short run without a lock-holder preemption
    ("pvqspinlock-hogs", SHORT_SLICES, dict(lock="pvqspinlock", vcpus="4", pcpus="4", hogs="2", hog_vcpus="2",
                                            seed="3"),
     ("lock_holder_preemptions",)),
    ("qspinlock-irq", SHORT_SLICES, dict(lock="qspinlock", vcpus="8", pcpus="4", irq_rate="20000"),
     ("irq_acquisitions", "waiter_preemptions")),
    ("pvqspinlock-irq-spurious", None,
     dict(lock="pvqspinlock", vcpus="6", pcpus="4", irq_rate="20000", spurious_hz="20000", seed="3",
          duration_ms="5"),
     ("halts", "irq_acquisitions")),
    ("ticket-no-ple-long-holds", SHORT_SLICES,
     dict(lock="ticket", vcpus="6", pcpus="4", ple=False, long_hold="1", lock_count="2"),
     ("waiter_preemptions",)),
]  # fmt: skip

TWO_GUESTS_NMI = """
duration_ms = 3
seed = 4

[host]
pcpus = 4
sockets = 1
scheduling = { sched_latency_us = 400, min_granularity_us = 100, wakeup_granularity_us = 50 }

[[guests]]
name = "pv"
vcpus = 5
lock = "pvqspinlock"
interrupts = { rate_hz = 30000, level = "nmi" }

[[guests]]
name = "native"
vcpus = 3
lock = "qspinlock"
interrupts = { rate_hz = 20000, level = "softirq" }
"""
SCENARIOS.append(("two-guests-nmi-softirq", TWO_GUESTS_NMI, {}, ("irq_acquisitions",)))


def traced_run(text: str | None, flags: dict, tmp_path) -> tuple[dict, list[dict], float]:
    """Run a scenario as ``pvspin run --trace`` does: its result, the trace file's events, and half
    a cycle in microseconds (the file's unit: times that are one cycle apart differ by more)."""
    scenario_file = None
    if text is not None:
        scenario_file = tmp_path / "scenario.toml"
        scenario_file.write_text(text)
    all_flags = ({} if text is not None and "duration_ms" in text else {"duration_ms": "3"}) | flags
    trace = tmp_path / "trace.json"
    scenario = build_scenario(None if scenario_file is None else str(scenario_file), all_flags)
    result = execute(scenario, str(trace), False)
    data = json.loads(trace.read_text())
    return result, data["traceEvents"] if isinstance(data, dict) else data, 0.5 / scenario.host.costs.freq_mhz


def tracks(events: list[dict]) -> dict[tuple, list[dict]]:
    """The slices and instants of each row, in the order the file has them."""
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        if e["ph"] in ("X", "i"):
            rows[(e["pid"], e["tid"], e["cat"])].append(e)
    return rows


def within(intervals: list[tuple[float, float]], start: float, end: float, eps: float) -> bool:
    """``[start, end]`` lies inside one of ``intervals`` (sorted, disjoint), to ``eps``."""
    i = bisect.bisect_right([a for a, _ in intervals], start + eps) - 1
    return i >= 0 and intervals[i][0] - eps <= start and end <= intervals[i][1] + eps


@pytest.mark.parametrize(("name", "text", "flags", "shows"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_slices_never_overlap_and_time_is_monotone_per_track(name, text, flags, shows, tmp_path):
    result, events, eps = traced_run(text, flags, tmp_path)
    for field in shows:
        assert any(g[field] for g in result["guests"]), f"{name} no longer exercises {field}"
    rows = tracks(events)
    assert rows
    for (pid, tid, cat), row in rows.items():
        for e in row:
            assert e.get("dur", 0) >= 0, (pid, tid, cat, e)
        for before, after in zip(row, row[1:], strict=False):
            assert after["ts"] >= before["ts"], ("time runs backwards", pid, tid, cat, before, after)
            if after["ph"] == "X" and before["ph"] == "X":
                assert after["ts"] > before["ts"] + before["dur"] - eps, ("overlap", pid, tid, cat, before, after)
    # a vCPU spins, kicks, halts and exits only while it runs
    running: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (pid, tid, cat), row in rows.items():
        if cat == "vcpu":
            running[(pid, tid)] = [(e["ts"], e["ts"] + e["dur"]) for e in row if e["name"] == "running"]
    spins = 0
    for (pid, tid, cat), row in rows.items():
        if cat in ("spin", "event"):
            for e in row:
                assert within(running[(pid, tid)], e["ts"], e["ts"] + e.get("dur", 0), eps), (name, pid, tid, e)
            spins += cat == "spin"
    assert spins
