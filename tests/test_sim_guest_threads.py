"""Guest threads (``nwriters_stress`` above the vCPUs): the guest scheduler switches writer threads
only where the kernel can — never from ``spin_lock`` to ``spin_unlock`` — every writer makes
progress, and locktorture's statistics count writers, as the kernel's do."""

import json
import subprocess
import sys

import pytest

from pvspin.sim import workload
from pvspin.sim.scenario import Run, Scenario, merge


def scenario(vcpus=3, writers=7, pcpus=2, lock="pvqspinlock", host="kvm", duration_ms=6.0, sched=None, **extra):
    sched = {"slice_ms": 0.5, "hz": 2000} | (sched or {})
    return Scenario.model_validate(merge({
        "duration_ms": duration_ms, "seed": 3, "host": {"pcpus": pcpus, "hypervisor": host},
        "guests": [{"vcpus": vcpus, "lock": lock, "workload": {"nwriters_stress": writers, "guest_sched": sched}}],
    }, extra))  # fmt: skip


def watch_switches(run: Run) -> list[tuple]:
    """Record every switch: (cycle, vCPU, outgoing thread, whether it stood inside the lock code,
    its preempt_count, the locks its vCPU held, whether a computation of it was cut)."""
    guest, torture, _kernel = run.tortures[0]
    seen = []
    for rq in torture.runqueues:
        v = guest.vcpus[rq.cpu]

        def record(t, out, _in, v=v):
            inside_lock_code = out.code.gi_yieldfrom is not None  # suspended in kernel.spin_lock/unlock
            held = [lock for lock, holder in guest.holders.items() if holder is v]
            seen.append((t, v.cpu, out.tid, inside_lock_code, out.preempt_count, held, out.pending is not None))

        rq.on_switch = record
    return seen


@pytest.mark.parametrize("lock", ["pvqspinlock", "qspinlock", "ticket"])
def test_no_thread_is_switched_out_holding_or_acquiring_a_lock(lock):
    run = Run(scenario(lock=lock, host="kvm" if lock != "ticket" else "kvm-nopv"))
    switches = watch_switches(run)
    result = run.run()
    assert len(switches) >= 10  # the scheduler did switch, at 1.5x overcommit with halts and spins
    bad = [s for s in switches if s[3] or s[4] or s[5]]
    assert not bad, bad[:5]
    assert result["guests"][0]["guest_threads"]["switches"] == len(switches)


def test_the_switch_check_catches_a_thread_switched_inside_a_lock(monkeypatch):
    """The check above can fail: a writer that does not raise its thread's preempt_count is
    switched out holding its lock, or in its slow path, and the watch sees it."""
    real = workload.LockTorture.writer

    class Unmarked:
        preempt_count = 0

    def careless(self, cpu, rounds=None, thread=None):
        inner = real(self, cpu, rounds, Unmarked() if thread is not None else None)
        result = None
        while True:  # the inner writer's operations, with its cond_resched() points kept
            try:
                op = inner.send(result)
            except StopIteration:
                return
            result = yield op

    monkeypatch.setattr(workload.LockTorture, "writer", careless)
    run = Run(scenario(lock="qspinlock", sched={"slice_ms": 0.05, "hz": 50000}))
    switches = watch_switches(run)
    run.run()
    assert any(s[3] or s[5] for s in switches)


def test_every_writer_makes_progress_and_total_is_the_sum_over_writers():
    """nwriters_stress = 2 x vCPUs (the kernel's default) at 2x overcommit, through the CLI."""
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--vcpus", "4", "--pcpus", "2",
                          "--nwriters-stress", "8", "--duration-ms", "20", "--json"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    g = json.loads(out.stdout)["guests"][0]
    writers = g["per_writer"]["acquisitions"]
    assert len(writers) == 8 and min(writers) > 0
    assert g["per_writer"]["vcpu"] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert g["acquisitions"] == sum(writers) == sum(g["per_vcpu"]["acquisitions"])
    assert len(g["per_vcpu"]["acquisitions"]) == 4 and len(g["steal_ns"]) == 4
    last = g["locktorture"]["stats"][-1]
    assert (last["total"], last["max"], last["min"]) == (sum(writers), max(writers), min(writers))
    assert g["locktorture"]["nwriters_stress"] == 8 and g["guest_threads"]["threads"] == 8
    assert g["guest_threads"]["switches"] > 0


def test_a_turn_is_the_slice_up_to_the_next_tick():
    """On bare metal (no steal time), a thread's turn runs from its switch-in to the first tick
    after its slice has run out, give or take one critical section and the switch itself."""
    freq = 2500
    run = Run(scenario(vcpus=2, writers=4, pcpus=2, host="baremetal", lock="qspinlock",
                       sched={"slice_ms": 0.3, "hz": 2000}))  # fmt: skip
    switches = watch_switches(run)
    run.run()
    slice_, tick = int(0.3 * freq * 1000), freq * 1_000_000 // 2000
    for cpu in (0, 1):
        times = [s[0] for s in switches if s[1] == cpu]
        turns = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert len(turns) > 5
        assert all(slice_ <= turn <= slice_ + tick + 50 * freq for turn in turns), turns


def test_voluntary_preemption_switches_only_at_cond_resched():
    """With full preemption the tick cuts a computation outside a lock; with voluntary, a thread
    yields its vCPU only at cond_resched(), between two rounds."""
    cut = {}
    for mode in ("full", "voluntary"):
        long_delays = [{"workload": {"delay": {"kind": "fixed", "mean_ns": 20000}}}]
        run = Run(scenario(lock="qspinlock", sched={"preemption": mode}, guests=long_delays))
        switches = watch_switches(run)
        run.run()
        assert switches and not any(s[3] or s[4] or s[5] for s in switches)
        cut[mode] = sum(s[6] for s in switches)
    assert cut["full"] > 0 and cut["voluntary"] == 0


def test_one_writer_per_vcpu_runs_no_guest_scheduler():
    """The default: the writers are the vCPUs' programs themselves, and the result has no thread keys
    (tests/test_sim_digest.py pins that it is byte-identical to before guest threads)."""
    run = Run(scenario(vcpus=3, writers=3))
    assert run.tortures[0][1].runqueues == []
    g = run.run()["guests"][0]
    assert "per_writer" not in g and "guest_threads" not in g
    assert "guest_sched" not in Scenario().model_dump()["guests"][0]["workload"]
    assert scenario().model_dump()["guests"][0]["workload"]["guest_sched"]["slice_ms"] == 0.5  # given: dumped
