"""Start symmetry: CPUs running the same code start in CPU order; verdicts must not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.check.harness import make_setup
from pvspin.check.runner import CheckOptions, run

USER_LOCKS = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"

CONFIGS = [
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="tso"),
    dict(lock="ticket", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="virt-tas", cpus=3, acquisitions=2, memory_model="sc"),
    dict(lock="pvqspinlock", cpus=2, acquisitions=1, memory_model="sc", interrupts=1),
    dict(lock="qspinlock", cpus=2, acquisitions=1, memory_model="sc", workload="forever"),
    # with a bug: the same property is violated either way
    dict(lock="pvqspinlock", cpus=3, acquisitions=1, memory_model="tso", bugs=("pv-kick-node-no-barrier",)),
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="sc", bugs=("unbounded-pending-wait",),
         workload="forever"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_symmetry_keeps_the_verdict_and_explores_fewer_states(config):
    on = run(CheckOptions(**config)).result
    off = run(CheckOptions(**config, symmetry=False)).result
    assert (on.verdict, on.prop) == (off.verdict, off.prop)
    # Some start order is always pruned; without end (forever), a CPU back at its initial key
    # is a different state from its fresh start, which can cost as many states as are saved.
    if on.verdict == "verified" and config.get("workload") != "forever":
        assert on.states < off.states


def test_only_cpus_that_start_alike_are_twins():
    assert make_setup("qspinlock", 3, 1).symmetric == 0b111
    assert make_setup("pvqspinlock", 3, 1, workload="unlock-unheld").symmetric == 0b110  # cpu0 unlocks first
    assert make_setup(f"{USER_LOCKS}:TasLock", 3, 1).symmetric == 0  # a user's lock may single a CPU out


def test_the_user_lock_search_is_unchanged():
    config = dict(lock=f"{USER_LOCKS}:TasLock", cpus=3, acquisitions=1, memory_model="sc")
    assert run(CheckOptions(**config)).result.states == run(CheckOptions(**config, symmetry=False)).result.states
