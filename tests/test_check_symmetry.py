"""Symmetry reduction: start order (``start``) and orbits (``full``) must not change any verdict.

The soundness of full symmetry rests on its declarations of which values name a CPU.  The
bisimulation test checks them without trusting the renaming code: on the full, unreduced
state graph, states that share an orbit key must have successors that share orbit keys.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pvspin.check.harness import BadInput, make_setup
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.check.world import Violation, World
from pvspin.kernel.qspinlock import QSpinlock

USER_LOCKS = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"
DERIVED = Path(__file__).resolve().parent / "derived_locks.py"

CONFIGS = [
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="tso"),
    dict(lock="qspinlock-16k", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="ticket", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="virt-tas", cpus=3, acquisitions=2, memory_model="sc"),
    dict(lock="pvqspinlock", cpus=3, acquisitions=1, memory_model="sc"),
    dict(lock="pvqspinlock", cpus=2, acquisitions=1, memory_model="sc", interrupts=1),
    dict(lock="qspinlock", cpus=2, acquisitions=1, memory_model="sc", workload="forever"),
    # with a bug: the same property is violated either way
    dict(lock="pvqspinlock", cpus=3, acquisitions=1, memory_model="tso", bugs=("pv-kick-node-no-barrier",)),
    dict(lock="qspinlock", cpus=3, acquisitions=2, memory_model="sc", bugs=("pending-after-tail",)),
    dict(lock="qspinlock", cpus=3, acquisitions=1, memory_model="sc", bugs=("unbounded-pending-wait",),
         workload="forever"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_symmetry_keeps_the_verdict_and_explores_fewer_states(config):
    full, start, none = (run(CheckOptions(**config, symmetry=s)).result for s in ("full", "start", "none"))
    assert (full.verdict, full.prop) == (start.verdict, start.prop) == (none.verdict, none.prop)
    # Some start order is always pruned; without end (forever), a CPU back at its initial key
    # is a different state from its fresh start, which can cost as many states as are saved.
    if full.verdict == "verified" and config.get("workload") != "forever":
        assert start.states < none.states
        # ticket: once every CPU has drawn a ticket, no two are alike, and start order saw to the rest
        assert full.states <= start.states if config["lock"] == "ticket" else full.states < start.states


def test_full_symmetry_divides_the_native_state_space_by_nearly_n_factorial():
    opts = dict(lock="qspinlock", cpus=4, acquisitions=1)
    full, none = (run(CheckOptions(**opts, symmetry=s)).result.states for s in ("full", "none"))
    assert none / full > 24 * 0.8  # 4! renamings; states with twins in one place have fewer


def _orbit_graph_is_a_bisimulation(opts: CheckOptions) -> tuple[int, int]:
    """Explore every concrete state (no reduction); return (states, orbits) or fail on a bad merge."""
    world = build_world(opts)
    assert world.symmetry is not None
    world.twins = 0  # every move of every CPU: the unreduced graph
    canonical = world.symmetry.canonical

    def orbit() -> int:
        return hash(canonical()[0])

    root = world.snapshot()
    seen = {world.key()}
    todo = [root]
    successors_of: dict[int, set] = {}
    while todo:
        snap = todo.pop()
        world.restore(snap)
        here = orbit()
        moves = world.enabled()
        successors = set()
        for move in moves:
            world.restore(snap)
            try:
                world.execute(move)
            except Violation as v:
                successors.add(("violation", v.prop))
                world.ctx_snaps = [None] * world.n  # a violation leaves a step half done: rebuild
                world.ctxs = [[] for _ in range(world.n)]
                continue
            successors.add(orbit())
            key = world.key()
            if key not in seen:
                seen.add(key)
                todo.append(world.snapshot())
        if not moves:
            v = world.terminal_violation()
            successors.add(("terminal", v and v.prop))
        assert successors_of.setdefault(here, successors) == successors, "states of one orbit behave differently"
    return len(seen), len(successors_of)


BISIMULATION = [
    dict(lock="qspinlock", cpus=3),
    dict(lock="qspinlock", cpus=3, memory_model="tso"),
    dict(lock="qspinlock-16k", cpus=3),
    dict(lock="ticket", cpus=3),
    dict(lock="virt-tas", cpus=3),
    dict(lock="pvqspinlock", cpus=2, interrupts=1),
    dict(lock="qspinlock", cpus=3, workload="unlock-unheld"),  # cpu0 is no twin
    dict(lock="qspinlock", cpus=3, bugs=("pending-after-tail",)),
    # user locks with one kernel function rewritten: the kinds their overrides inherit
    dict(lock=f"{DERIVED}:NativeXchgTail", cpus=3),
    dict(lock=f"{DERIVED}:PvTrylock", cpus=2, interrupts=1),
]
BISIMULATION_SLOW = [
    dict(lock="pvqspinlock", cpus=3),
    dict(lock="pvqspinlock-4.2", cpus=3),
    dict(lock="qspinlock", cpus=2, acquisitions=2, interrupts=2),
    dict(lock="pvqspinlock", cpus=3, memory_model="tso", bugs=("pv-kick-node-no-barrier",)),
]


@pytest.mark.parametrize("config", BISIMULATION, ids=lambda c: "-".join(str(v).rpartition("/")[2] for v in c.values()))
def test_states_sharing_an_orbit_key_have_successors_sharing_orbit_keys(config):
    states, orbits = _orbit_graph_is_a_bisimulation(CheckOptions(**config, symmetry="full"))
    assert orbits < states


@pytest.mark.slow
@pytest.mark.parametrize("config", BISIMULATION_SLOW, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_orbit_keys_are_a_bisimulation_for_larger_configurations(config):
    states, orbits = _orbit_graph_is_a_bisimulation(CheckOptions(**config, symmetry="full"))
    assert orbits < states


def test_the_search_visits_each_orbit_of_the_reachable_states_once(monkeypatch):
    monkeypatch.setattr(World, "ample", lambda self, enabled: None)  # ample sets do skip states
    opts = CheckOptions(lock="qspinlock", cpus=3)
    _, orbits = _orbit_graph_is_a_bisimulation(opts)
    assert run(opts).result.states == orbits


def test_a_renaming_and_its_inverse_give_one_key():
    """The orbit key does not depend on which member of the orbit the search stands on."""
    world = build_world(CheckOptions(lock="qspinlock", cpus=3))
    for move in (0, 8, 16, 0, 8):  # cpu0, cpu1 and cpu2 each take steps
        world.execute(move)
    before = world.symmetry.canonical()[0]
    renamed = build_world(CheckOptions(lock="qspinlock", cpus=3))
    for move in (8, 16, 0, 8, 16):  # the same steps, by cpu1, cpu2 and cpu0
        renamed.execute(move)
    assert renamed.symmetry.canonical()[0] == before


def test_an_undeclared_integer_local_is_an_error_not_a_guess(monkeypatch):
    declared = QSpinlock.DECLARED
    kinds = dict(declared.locals)
    kinds["QSpinlock.queue"] = {k: v for k, v in kinds["QSpinlock.queue"].items() if k != "tail"}
    monkeypatch.setattr(QSpinlock, "DECLARED", replace(declared, locals=kinds))
    with pytest.raises(BadInput, match=r"full symmetry: local 'tail' of QSpinlock.queue .*--symmetry start"):
        run(CheckOptions(lock="qspinlock", cpus=3))


def test_auto_renames_from_three_twins_on():
    assert build_world(CheckOptions(lock="qspinlock", cpus=3)).symmetry is not None
    assert build_world(CheckOptions(lock="qspinlock", cpus=2)).symmetry is None  # start order only
    assert build_world(CheckOptions(lock="qspinlock", cpus=3, workload="unlock-unheld")).symmetry is None
    assert build_world(CheckOptions(lock="qspinlock", cpus=2, symmetry="full")).symmetry is not None


def test_only_cpus_that_start_alike_are_twins():
    assert make_setup("qspinlock", 3, 1).symmetric == 0b111
    assert make_setup("pvqspinlock", 3, 1, workload="unlock-unheld").symmetric == 0b110  # cpu0 unlocks first
    assert make_setup(f"{USER_LOCKS}:TasLock", 3, 1).symmetric == 0  # a user's lock may single a CPU out


def test_the_user_lock_search_is_unchanged():
    config = dict(lock=f"{USER_LOCKS}:TasLock", cpus=3, acquisitions=1, memory_model="sc")
    states = {s: run(CheckOptions(**config, symmetry=s)).result.states for s in ("full", "start", "none")}
    assert len(set(states.values())) == 1


def test_full_symmetry_is_deterministic_across_hash_seeds():
    """The orbit key's representative is chosen by comparing encodings, never by hash values."""
    import json
    import os
    import subprocess
    import sys

    def counts(seed: str) -> tuple:
        out = subprocess.run([sys.executable, "-m", "pvspin", "check", "--lock", "pvqspinlock", "--cpus", "3",
                              "--memory-model", "tso", "--json"], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        d = json.loads(out.stdout)
        return d["states"], d["transitions"], d["executions"]

    assert counts("1") == counts("2")


def test_the_report_names_the_reduction_the_search_used():
    assert run(CheckOptions(lock="qspinlock", cpus=3)).symmetry == "full"
    assert run(CheckOptions(lock="qspinlock", cpus=2)).symmetry == "start"  # auto, two twins
    assert run(CheckOptions(lock="qspinlock", cpus=3, strategy="random", runs=5)).symmetry == "start"
    assert run(CheckOptions(lock="qspinlock", cpus=3, symmetry="none")).symmetry == "none"
