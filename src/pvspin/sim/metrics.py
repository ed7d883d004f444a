"""What a run measured, in the terms a kernel engineer reads: throughput, fairness, latency,
where the pCPU time went, exits, kicks, halts and the kernel's lock-event counters."""

from __future__ import annotations

from .engine import Simulator
from .vcpu import T_CS, T_HALT, T_HOST, T_HV, T_PREEMPT, T_RUN, T_SPIN, Guest
from .workload import LockTorture


def jain_index(values: list[int]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(x * x for x in values)
    return (total * total) / (len(values) * squares) if squares else 1.0


def _average(events: dict[str, int], total: str, count: str) -> int | None:
    """A qstat latency sum (ns) divided by its event count, rounded as DIV_ROUND_CLOSEST_ULL."""
    n = events.get(count, 0)
    return (events.get(total, 0) + n // 2) // n if n else None


def guest_metrics(sim: Simulator, guest: Guest, torture: LockTorture) -> dict:
    """Metrics of one guest's locktorture run, with stable names (the ``--json`` schema)."""
    freq = sim.costs.freq_mhz
    seconds = sim.now / (freq * 1e6) if sim.now else 0.0
    per_vcpu = list(torture.acquisitions)
    total = sum(per_vcpu)
    lo, hi = min(per_vcpu), max(per_vcpu)
    hist = torture.latencies

    def ns(cycles: int) -> float:
        return round(cycles * 1000 / freq, 1)

    vcpus = guest.vcpus
    acct = [sum(v.acct[i] for v in vcpus) for i in range(7)]
    return {
        "guest": guest.name,
        "vcpus": len(vcpus),
        "simulated_seconds": seconds,
        "acquisitions": total,
        "throughput": total / seconds if seconds else 0.0,
        "fail": guest.mutex_failures,
        "per_vcpu": {
            "min": lo,
            "mean": total / len(per_vcpu),
            "max": hi,
            "jain_index": round(jain_index(per_vcpu), 4),
            "acquisitions": per_vcpu,
        },
        "fairness_max_over_min": (hi / lo) if lo else None,
        "latency_ns": {
            "p50": ns(hist.percentile(50)),
            "p99": ns(hist.percentile(99)),
            "p99.9": ns(hist.percentile(99.9)),
            "max": ns(hist.maximum),
        },
        "vcpu_time_s": {
            "critical_section": acct[T_CS] / (freq * 1e6),
            "spinning": acct[T_SPIN] / (freq * 1e6),
            "other_guest": max(0, acct[T_RUN] - acct[T_CS] - acct[T_SPIN] - acct[T_HV]) / (freq * 1e6),
            "hypervisor": (acct[T_HV] + acct[T_HOST]) / (freq * 1e6),
            "halted": acct[T_HALT] / (freq * 1e6),
            "runnable": acct[T_PREEMPT] / (freq * 1e6),
        },
        "vm_exits": sum(v.exits for v in vcpus),
        "halts": sum(v.halts for v in vcpus),
        "kicks": sum(v.kicks for v in vcpus),
        "lock_holder_preemptions": guest.lock_holder_preemptions,
        "irq_acquisitions": sum(torture.irq_acquisitions),
        "lock_events": dict(sorted(guest.lock_events.items())),
        # as /sys/kernel/debug/lock_event_counts/ shows them: latencies averaged per kick
        "pv_latency_ns": {
            "kick": _average(guest.lock_events, "pv_latency_kick", "pv_kick_unlock"),
            "wake": _average(guest.lock_events, "pv_latency_wake", "pv_kick_wake"),
        },
        "warnings": len(guest.warnings),
    }


def host_metrics(sim: Simulator) -> dict:
    """Where the physical CPUs' time went, over all guests."""
    freq = sim.costs.freq_mhz
    capacity = sim.now * len(sim.pcpus)
    acct = [sum(v.acct[i] for v in sim.vcpus) for i in range(7)]
    busy = acct[T_RUN] + acct[T_HOST]

    def share(cycles: int) -> float:
        return round(cycles / capacity, 4) if capacity else 0.0

    return {
        "pcpus": len(sim.pcpus),
        "pcpu_time_share": {
            "critical_section": share(acct[T_CS]),
            "spinning": share(acct[T_SPIN]),
            "other_guest": share(max(0, acct[T_RUN] - acct[T_CS] - acct[T_SPIN] - acct[T_HV])),
            "hypervisor": share(acct[T_HV] + acct[T_HOST]),
            "idle": share(max(0, capacity - busy)),
        },
        "simulated_seconds": sim.now / (freq * 1e6),
        "engine_events": sim.events,
        "guest_operations": sum(v.ops for v in sim.vcpus),
    }
