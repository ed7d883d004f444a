"""A run's result does not depend on how it is cut into steps (progress chunks, statistics
intervals, a warm-up): reading the accounts between two steps must not move any clock."""

import pytest

from pvspin.sim.scenario import Run, Scenario, merge

HOST_TIMING = ("host_seconds", "guest_operations_per_host_second")


def result(lock: str, chunks: int) -> dict:
    data = merge(Scenario().model_dump(), {"duration_ms": 3, "host": {"pcpus": 4},
                                           "guests": [{"vcpus": 8, "lock": lock}]})  # fmt: skip
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
