"""A run's result does not depend on how it is cut into steps (progress chunks, statistics
intervals, a warm-up): reading the accounts between two steps must not move any clock."""

import pytest

from pvspin.sim.scenario import Run, Scenario, merge

HOST_TIMING = ("host_seconds", "guest_operations_per_host_second")


def result(lock: str, chunks: int, host: dict | None = None, guest: dict | None = None, seed: int = 0) -> dict:
    data = merge(Scenario().model_dump(), {"duration_ms": 3, "seed": seed, "host": {"pcpus": 4, **(host or {})},
                                           "guests": [{"vcpus": 8, "lock": lock, **(guest or {})}]})  # fmt: skip
    out = Run(Scenario.model_validate(data)).run(chunks=chunks)
    for field in HOST_TIMING:
        del out["host"][field]
    return out


@pytest.mark.parametrize("lock", ["qspinlock", "pvqspinlock"])
def test_one_step_or_many_give_the_same_result(lock):
    # qspinlock at 2x overcommit: a step used to end inside a host switch-in (the vCPU's run
    # starting after the context switch), and folding the accounts there moved its run start back
    whole = result(lock, 1)
    assert result(lock, 7) == whole
    assert result(lock, 50) == whole


@pytest.mark.parametrize(
    ("lock", "host", "guest", "seed"),
    [
        # a newly idle pCPU pulls the vCPU that waited longest: folding the accounts at a step
        # used to restart every runnable vCPU's wait, so the pull took another one
        ("pvqspinlock", {"spurious_wakeup_hz": 20000}, {"vcpus": 6, "interrupts": {"rate_hz": 20000}}, 3),
        # an interrupt pending at a spinner's switch-in used to count its time off the pCPU as
        # spinning, from the spin's start or from the last step, whichever came later
        ("ticket", {}, {"vcpus": 6, "interrupts": {"rate_hz": 10000}}, 0),
    ],
    ids=["pull-after-a-step", "interrupt-at-switch-in"],
)
def test_steps_do_not_move_the_scheduler_or_the_spin_clocks(lock, host, guest, seed):
    whole = result(lock, 1, host, guest, seed)
    assert result(lock, 50, host, guest, seed) == whole


def test_guest_threads_do_not_depend_on_the_steps():
    """A guest run queue reads its vCPU's steal time, which folding the accounts between steps (and
    resetting them at the warm-up's end) must not change."""
    data = {"duration_ms": 3, "warmup_ms": 0.7, "seed": 1,
            "host": {"pcpus": 3, "scheduling": {"sched_latency_us": 600, "min_granularity_us": 150}},
            "guests": [{"vcpus": 5, "lock": "pvqspinlock", "workload": {
                "nwriters_stress": 11, "guest_sched": {"slice_ms": 0.2, "hz": 5000}}}]}  # fmt: skip
    outs = []
    for chunks in (1, 50):
        out = Run(Scenario.model_validate(data)).run(chunks=chunks)
        for field in HOST_TIMING:
            del out["host"][field]
        outs.append(out)
    assert outs[0]["guests"][0]["guest_threads"]["switches"] > 10
    assert outs[0] == outs[1]
