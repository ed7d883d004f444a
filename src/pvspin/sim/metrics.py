"""What a run measured, in the terms a kernel engineer reads: throughput, fairness, latency,
where the pCPU time went, exits, kicks, halts and the kernel's lock-event counters."""

from __future__ import annotations

from ..kernel.lockevents import debugfs_counts
from .engine import Simulator
from .kbuild import KernelBuild
from .vcpu import EXIT_REASONS, NO_EXIT, T_CS, T_HALT, T_HOST, T_HV, T_PREEMPT, T_RUN, T_SPIN, Guest
from .workload import LockTorture


def jain_index(values: list[int]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(x * x for x in values)
    return (total * total) / (len(values) * squares) if squares else 1.0


def kvm_exits(sim: Simulator, guest: Guest, ns) -> dict:
    """``perf kvm stat report``'s VM-EXIT rows: per reason, samples and time out of guest mode
    (an exit still open when the run ends counts up to the end)."""
    samples, cycles = list(guest.exit_samples), list(guest.exit_cycles)
    lo, hi = list(guest.exit_min), list(guest.exit_max)
    for v in guest.vcpus:
        if v.exit_reason != NO_EXIT:
            r, spent = v.exit_reason, sim.now - v.exit_at
            cycles[r] += spent
            lo[r] = spent if lo[r] < 0 else min(lo[r], spent)
            hi[r] = max(hi[r], spent)
    return {
        reason: {"samples": samples[r], "time_ns": ns(cycles[r]), "min_ns": ns(max(lo[r], 0)), "max_ns": ns(hi[r]),
                 "avg_ns": ns(cycles[r] / samples[r]) if samples[r] else 0.0}
        for r, reason in enumerate(EXIT_REASONS)
    }  # fmt: skip


def lock_contention(torture: LockTorture, ns) -> list[dict]:
    """``perf lock contention``'s rows, per lock: acquisitions that found another writer holding
    or waiting for the lock when they called spin_lock, and how long they waited."""
    if isinstance(torture, KernelBuild):  # a pool of a thousand locks: those contended, as perf lists them
        names = torture.lock_names()
        return [
            {"lock": names[i], "contended": n, "total_wait_ns": ns(total), "max_wait_ns": ns(most),
             "avg_wait_ns": ns(total / n)}
            for i, (n, total, most) in enumerate(zip(torture.contended, torture.wait_total, torture.wait_max,
                                                     strict=True)) if n
        ]  # fmt: skip
    return [
        {"lock": f"lock{i}", "contended": n, "total_wait_ns": ns(total), "max_wait_ns": ns(most),
         "avg_wait_ns": ns(total / n) if n else 0.0}
        for i, (n, total, most) in enumerate(zip(torture.contended, torture.wait_total, torture.wait_max, strict=True))
    ]  # fmt: skip


def locktorture_stats(stats: list[tuple], freq: int) -> list[dict]:
    return [{"t_s": round(t / (freq * 1e6), 6), "total": total, "max": hi, "min": lo, "fail": fail}
            for t, total, hi, lo, fail in stats]  # fmt: skip


def guest_metrics(sim: Simulator, guest: Guest, torture: LockTorture, lock: str, t0: int, stats: list[tuple]) -> dict:
    """Metrics of one guest's locktorture run, measured from cycle ``t0``, with stable names (the
    ``--json`` schema); ``lock`` is the lock it ran, ``stats`` locktorture's periodic totals."""
    freq = sim.costs.freq_mhz
    elapsed = sim.now - t0
    seconds = elapsed / (freq * 1e6) if elapsed else 0.0
    per_writer = list(torture.acquisitions)  # locktorture's per-writer counts
    total = sum(per_writer)
    lo, hi = min(per_writer), max(per_writer)
    per_vcpu = per_writer  # one writer per vCPU; with guest threads, the sum of each vCPU's
    if torture.threads:
        per_vcpu = [0] * len(guest.vcpus)
        for w, n in enumerate(per_writer):
            per_vcpu[torture.thread_cpu[w]] += n
    hist = torture.latencies

    def ns(cycles: float) -> float:
        return round(cycles * 1000 / freq, 1)

    vcpus = guest.vcpus
    acct = [sum(v.acct[i] for v in vcpus) for i in range(7)]
    directory, counts = debugfs_counts(guest.lock_events, lock)
    metrics = {
        "guest": guest.name,
        "vcpus": len(vcpus),
        "simulated_seconds": seconds,
        "acquisitions": total,
        "throughput": total / seconds if seconds else 0.0,
        "fail": guest.mutex_failures,
        "per_vcpu": spread(per_vcpu),
        "fairness_max_over_min": (hi / lo) if lo else None,  # over writers, locktorture's Max/Min
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
        "irq_acquisitions": sum(torture.irq_acquisitions) - torture.irq_baseline,
        "lock_events": dict(sorted(guest.lock_events.items())),  # raw per-CPU sums, as the kernel keeps them
        # what reading each debugfs file gives: every counter the kernel has, in its order
        "debugfs_dir": directory,
        "lock_event_counts": counts,
        "warnings": len(guest.warnings),
        "locktorture": {
            "nwriters_stress": torture.writers,
            "long_hold": torture.config.long_hold,
            "stats": locktorture_stats(stats, freq),
            "verdict": "FAILURE" if guest.mutex_failures else "SUCCESS",
        },
        "lock_contention": lock_contention(torture, ns),
        "kvm_exits": kvm_exits(sim, guest, ns),
        "steal_ns": [ns(v.acct[T_PREEMPT]) for v in vcpus],
        "waiter_preemptions": guest.waiter_preemptions,
        "directed_yield_attempted": guest.directed_yield_attempted,
        "kick_yields": guest.kick_yields,
        "halt_attempted_poll": guest.halt_attempted_poll,
        "halt_successful_poll": guest.halt_successful_poll,
    }
    if torture.threads:
        metrics |= guest_threads(torture, per_writer)
    if isinstance(torture, KernelBuild):  # not locktorture: its figure instead
        verdict = metrics.pop("locktorture")["verdict"]
        metrics |= kbuild(torture, freq, verdict)
    return metrics


def kbuild(build: KernelBuild, freq: int, verdict: str) -> dict:
    """A build's figure: the time from boot until its last task was done (None: not done in time)."""
    done = build.completed_at
    return {
        "kbuild": {
            "tasks": build.build.tasks,
            "tasks_done": build.tasks_done,
            "jobs": build.writers,
            "completion_ms": None if done is None else round(done / (freq * 1000), 6),
            "tasks_per_job": list(build.tasks_per_job),
            "verdict": verdict,
        }
    }


def spread(counts: list[int]) -> dict:
    """Acquisitions over writers or vCPUs: the extremes, the mean, Jain's index and the counts."""
    return {
        "min": min(counts),
        "mean": sum(counts) / len(counts),
        "max": max(counts),
        "jain_index": round(jain_index(counts), 4),
        "acquisitions": counts,
    }


def guest_threads(torture: LockTorture, per_writer: list[int]) -> dict:
    """With guest threads (more writers than vCPUs): per writer, and what the guest scheduler did
    (keys present only then, so that results without threads are as they were)."""
    return {
        "per_writer": spread(per_writer) | {"vcpu": list(torture.thread_cpu)},
        "guest_threads": {
            "threads": len(torture.threads),
            "switches": sum(rq.switches for rq in torture.runqueues),
            "switches_per_vcpu": [rq.switches for rq in torture.runqueues],
        },
    }


def host_metrics(sim: Simulator, t0: int) -> dict:
    """Where the physical CPUs' time went from cycle ``t0``, over all guests."""
    freq = sim.costs.freq_mhz
    capacity = (sim.now - t0) * len(sim.pcpus)
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
        "simulated_seconds": (sim.now - t0) / (freq * 1e6),
        "warmup_seconds": t0 / (freq * 1e6),
        "engine_events": sim.events,
        "guest_operations": sum(v.ops for v in sim.vcpus),
    }
