"""The kernel-build-like workload (``workload.kind = "kbuild"``): a fixed build timed to its end —
reported, deterministic per seed, ended where the last task is done, and longer on an
overcommitted host."""

import json
import subprocess
import sys

from pvspin.sim.scenario import Run, Scenario, merge

HOST_TIMING = ("host_seconds", "guest_operations_per_host_second")

# Host slices scaled down (a real build spans minutes of host slices; this one milliseconds).
BUILD = {
    "duration_ms": 200,
    "host": {"pcpus": 4, "scheduling": {"sched_latency_us": 2000, "min_granularity_us": 500}},
    "guests": [{"vcpus": 4, "lock": "qspinlock", "workload": {
        "kind": "kbuild", "hold": {"kind": "exponential", "mean_ns": 2000},
        "guest_sched": {"slice_ms": 0.5, "hz": 2000},
        "kbuild": {"tasks": 120, "compute_us": 200, "locks_per_task": 10, "contended": 0.3}}}],
}  # fmt: skip


def build(**changes) -> Scenario:
    return Scenario.model_validate(merge(BUILD, changes))


def run(scenario: Scenario, chunks: int = 50) -> dict:
    out = Run(scenario).run(chunks=chunks)
    for field in HOST_TIMING:
        del out["host"][field]
    return out


def test_every_task_is_done_and_the_run_ends_with_the_last():
    g = run(build())["guests"][0]
    b = g["kbuild"]
    assert b["tasks_done"] == sum(b["tasks_per_job"]) == 120 and b["jobs"] == 8  # 2 x vCPUs by default
    assert g["acquisitions"] == 120 * 10 == sum(g["per_writer"]["acquisitions"])
    assert b["completion_ms"] is not None and b["completion_ms"] < 200
    # the run stopped at the last task (completion_ms is rounded to the ns), not at 200 ms
    assert abs(g["simulated_seconds"] - b["completion_ms"] / 1000) < 1e-9
    assert "locktorture" not in g and b["verdict"] == "SUCCESS" and g["fail"] == 0
    assert any(row["lock"] == "contended_lock" and row["contended"] for row in g["lock_contention"])


def test_deterministic_per_seed_and_independent_of_the_steps():
    first = run(build(seed=5))
    assert run(build(seed=5), chunks=1) == first
    assert run(build(seed=6))["guests"][0]["kbuild"]["completion_ms"] != first["guests"][0]["kbuild"]["completion_ms"]


def test_an_overcommitted_host_takes_longer():
    """The same build on 4 pCPUs and on 3 (4/3x overcommit): the fixed work gets 3/4 of the CPU,
    so it cannot take less than about 4/3 as long; measured side by side, for both locks."""
    for lock in ("qspinlock", "pvqspinlock"):
        guests = [{"lock": lock}]
        alone = run(build(guests=guests))["guests"][0]["kbuild"]["completion_ms"]
        shared = run(build(guests=guests, host={"pcpus": 3}))["guests"][0]["kbuild"]["completion_ms"]
        assert shared > 1.25 * alone, (lock, alone, shared)


def test_no_job_is_switched_out_inside_a_lock():
    r = Run(build(guests=[{"lock": "pvqspinlock"}], host={"pcpus": 3}))
    guest, jobs, _kernel = r.tortures[0]
    bad, switches = [], []
    for rq in jobs.runqueues:
        v = guest.vcpus[rq.cpu]

        def record(t, out, _in, v=v):
            switches.append(t)
            if out.code.gi_yieldfrom is not None and out.code.gi_yieldfrom.gi_yieldfrom is not None:
                bad.append((t, "in the lock code", out))  # job -> _locked -> spin_lock/unlock
            if out.preempt_count or any(holder is v for holder in guest.holders.values()):
                bad.append((t, "holding", out))

        rq.on_switch = record
    r.run()
    assert len(switches) > 10 and not bad, bad[:3]


def test_a_build_that_does_not_finish_in_time_says_so():
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--workload", "kbuild", "--duration-ms", "1"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "guest0: kbuild: 200 tasks by 8 jobs on 4 vCPUs: NOT COMPLETE, " in out.stdout
    as_json = subprocess.run([sys.executable, "-m", "pvspin", "run", "--workload", "kbuild", "--json"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    b = json.loads(as_json.stdout)["guests"][0]["kbuild"]
    assert b["tasks_done"] == 200 and b["completion_ms"] > 0
