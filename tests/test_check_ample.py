"""Ample sets: moves on per-CPU data no other CPU can reach are explored alone; nothing reachable is lost."""

from __future__ import annotations

import pytest

from pvspin.check import world as world_module
from pvspin.check.exhaustive import explore
from pvspin.check.runner import CheckOptions, build_world, run

CONFIGS = [
    dict(lock="qspinlock", cpus=3, memory_model="sc"),
    dict(lock="qspinlock", cpus=3, acquisitions=2, memory_model="sc"),
    dict(lock="pvqspinlock", cpus=3, memory_model="sc"),
    dict(lock="qspinlock", cpus=3, memory_model="tso"),
    dict(lock="pvqspinlock", cpus=2, acquisitions=2, memory_model="tso"),
    dict(lock="qspinlock", cpus=2, acquisitions=2, memory_model="tso", interrupts=1),
]


def _without_ample(monkeypatch):
    monkeypatch.setattr(world_module.World, "ample", lambda self, enabled: None)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_ample_sets_keep_every_quiescent_state_and_explore_less(config, monkeypatch):
    # concrete states (start symmetry only), so that the two searches' end states compare
    opts = CheckOptions(**config, symmetry="start")

    def quiescent_states():
        ends = set()
        result = explore(build_world(opts), on_terminal=lambda w: ends.add((bytes(w.data), w.irqs_taken)))
        return result, ends

    reduced, reduced_ends = quiescent_states()
    _without_ample(monkeypatch)
    full, full_ends = quiescent_states()
    assert reduced.verdict == full.verdict == "verified"
    assert reduced_ends == full_ends
    assert reduced.states < full.states and reduced.transitions < full.transitions


def test_the_tso_lost_wakeup_is_still_found_with_ample_sets():
    result = run(CheckOptions(lock="pvqspinlock", cpus=3, memory_model="tso", bugs=("pv-kick-node-no-barrier",)))
    assert (result.result.verdict, result.result.prop) == ("violation", "lost-wakeup")


def test_a_node_another_cpu_can_reach_is_not_private():
    world = build_world(CheckOptions(lock="qspinlock", cpus=2, symmetry="none"))
    ample = world._ample
    node0, node1 = (world.setup.lock.qnodes[c][0].addr for c in (0, 1))
    assert node1 in ample.reachable_by_others(0)  # cpu1 can always compute its own nodes' addresses
    assert node0 not in ample.reachable_by_others(0)
    world.data[world.setup.views[0].val.addr + 2] = 1 << 2  # lock0's tail now names qnodes[0][0]
    assert node0 in ample.reachable_by_others(0)


def test_a_user_lock_gets_no_object_rule():
    from pathlib import Path

    user = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"
    world = build_world(CheckOptions(lock=f"{user}:TasLock", cpus=2))
    assert not world._ample.objects_rule  # it may index per-CPU data by anything


def test_the_reduction_does_not_depend_on_the_order_of_the_moves(monkeypatch):
    """Under full symmetry the search meets some member of each orbit first, which one depends on the order."""
    from pvspin.check import exhaustive

    opts = CheckOptions(lock="qspinlock", cpus=3, acquisitions=2)
    forward = explore(build_world(opts))
    monkeypatch.setattr(exhaustive, "_ordered", lambda moves, last_cpu: moves[::-1])
    backward = explore(build_world(opts))
    assert (backward.states, backward.transitions) == (forward.states, forward.transitions)


def test_the_cycle_proviso_lets_the_other_cpus_move_past_a_private_spin(monkeypatch):
    """A CPU spinning for good on its own unpublished node: each read is an ample set alone and returns
    to the state it left; only the proviso explores the other CPU there, and then the spin shows."""
    from dataclasses import replace
    from pathlib import Path

    lock = Path(__file__).with_name("derived_locks.py")
    opts = CheckOptions(lock=f"{lock}:PvInitNodeSpins", cpus=2)
    for jobs in (1, 2):
        result = run(replace(opts, jobs=jobs)).result
        assert (result.verdict, result.prop) == ("violation", "deadlock"), jobs
    monkeypatch.setattr(world_module.World, "ample_kept", lambda self, cpu, before: True)
    assert run(opts).result.verdict == "verified"  # without the proviso: the spin is missed


def test_remembered_references_are_those_a_fresh_walk_finds():
    # Ample._range_refs answers from memory for contents it saw before: at every call of a
    # search (symmetry on, so the kinded walk), its answer must be what walking the bytes gives
    world = build_world(CheckOptions(lock="pvqspinlock", cpus=3, memory_model="sc"))
    ample = world._ample
    walk = ample.reachable_by_others
    calls = []

    def compared(cpu, targets=None):
        remembered = walk(cpu, targets)
        memory, ample._found = ample._found, {}
        fresh = walk(cpu, targets)
        ample._found = memory
        calls.append(remembered == fresh)
        return remembered

    ample.reachable_by_others = compared
    assert explore(world).verdict == "verified"
    assert ample.symmetry is not None and len(calls) > 1000 and all(calls)
