"""``pvspin check --jobs N``: the partitioned exhaustive search and the sampling swarms on local processes.

Sound and complete as the sequential search: the same verdict and property on every case, the
same states where no reduction depends on the search order, the same counterexample token for
the sampling strategies; a worker killed mid-run is started again and the result is the same.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pvspin.check import partitioned
from pvspin.check.bugs import EXPOSURES, corpus
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.check.swarm import runs as _real_runs

LOCKS = Path(__file__).with_name("spin_locks.py")


def both(opts: CheckOptions, jobs: int = 2):
    return run(opts).result, run(replace(opts, jobs=jobs)).result


def test_a_state_travels_as_plain_values_and_comes_back_the_same():
    import pickle

    for opts in (CheckOptions(lock="qspinlock", cpus=3, acquisitions=2),
                 CheckOptions(lock="pvqspinlock", cpus=2, acquisitions=2, memory_model="tso")):
        world, other = build_world(opts), build_world(opts)
        rng = random.Random(1)
        saved = []
        while (moves := world.enabled()) and len(saved) < 40:
            world.execute(rng.choice(moves))
            state = pickle.loads(pickle.dumps(world.export_state()))
            saved.append((state, world.key(), world.state_place(), sorted(moves)))
            other.import_state(state)  # another world (another process): the same place and moves
            assert other.state_place()[2] == world.state_place()[2]
            assert sorted(other.enabled()) == sorted(world.enabled())
        for state, key, placed, _ in reversed(saved):  # the same world: the same key and hash too
            world.import_state(state)
            assert (world.key(), world.state_place()) == (key, placed)


def test_a_state_received_again_takes_its_contexts_from_memory_and_moves_as_the_original():
    """A context seen on an earlier import is not replayed (World.import_state); its generator is
    rebuilt when it moves, and every move leads where it led from the state first exported."""
    opts = CheckOptions(lock="pvqspinlock", cpus=3, acquisitions=1)
    world = build_world(opts)
    rng = random.Random(2)
    walk = []
    while (moves := world.enabled()) and len(walk) < 30:
        snap, state = world.snapshot(), world.export_state()
        after = {}
        for move in moves:
            world.restore(snap)
            world.execute(move)
            after[move] = world.key()
        walk.append((state, after))
        world.restore(snap)
        world.execute(rng.choice(moves))
    built = []  # the generators the receiving world starts
    program = world.setup.program
    world.setup.program = lambda p: built.append(p) or program(p)
    rounds = []
    for state, after in walk + walk:  # the second time round, every context is known
        for move, key in after.items():
            world.import_state(state)
            world.execute(move)
            assert world.key() == key
        rounds.append(len(built))
        built.clear()
    first, second = rounds[:len(walk)], rounds[len(walk):]
    assert second == [len(after) for _, after in walk]  # one rebuild per move: the context that moves
    assert sum(first) > sum(second)


@pytest.mark.parametrize("opts", [
    CheckOptions(lock="qspinlock", cpus=3, acquisitions=1),
    CheckOptions(lock="qspinlock", cpus=2, acquisitions=2, memory_model="tso"),
    CheckOptions(lock="pvqspinlock", cpus=2, acquisitions=1),
    CheckOptions(lock="ticket", cpus=3, acquisitions=1, symmetry="none"),
], ids=lambda o: f"{o.lock}-{o.cpus}x{o.acquisitions}-{o.memory_model}")
def test_verified_with_the_same_states(opts):
    seq, par = both(opts)
    assert (seq.verdict, par.verdict) == ("verified", "verified")
    assert par.states == seq.states


@pytest.mark.parametrize("opts", [
    CheckOptions(lock="qspinlock", cpus=3, acquisitions=2),  # full symmetry and ample sets
    CheckOptions(lock="qspinlock", cpus=2, acquisitions=2, memory_model="tso"),
    CheckOptions(lock="pvqspinlock", cpus=3, acquisitions=1),
    CheckOptions(lock="pvqspinlock", cpus=2, acquisitions=1, memory_model="tso"),
], ids=lambda o: f"{o.lock}-{o.cpus}x{o.acquisitions}-{o.memory_model}")
def test_the_states_and_transitions_of_the_sequential_search_exactly_for_any_workers(opts):
    """The cycle proviso and the ample sets depend on the state alone, not on the search order."""
    seq = run(opts).result
    for jobs in (2, 3):
        par = run(replace(opts, jobs=jobs)).result
        assert (par.verdict, par.states, par.transitions) == (seq.verdict, seq.states, seq.transitions), jobs


@pytest.mark.parametrize("name", ["HandTtasNoRelease", "Polite"])
def test_a_liveness_violation_is_found_in_the_joined_graph_and_replays(name):
    opts = CheckOptions(lock=f"{LOCKS}:{name}", cpus=2)
    seq, par = both(opts)
    assert par.verdict == "violation" and par.prop == seq.prop
    report = run(replace(opts, jobs=2))
    again = run(replace(opts, replay=report.replay))
    assert (again.result.prop, again.result.cycle_start) == (report.result.prop, report.result.cycle_start)


@pytest.mark.parametrize("symmetry", ["full", "none"])
def test_starvation_of_the_test_and_set_lock_under_symmetry(symmetry):
    report = run(CheckOptions(lock="virt-tas", cpus=3, workload="forever", symmetry=symmetry, jobs=2))
    assert (report.result.verdict, report.result.prop) == ("violation", "starvation")
    again = run(CheckOptions(lock="virt-tas", cpus=3, workload="forever", symmetry=symmetry, replay=report.replay))
    assert again.result.prop == "starvation"


def test_a_safety_counterexample_is_the_same_whatever_the_workers():
    """The fewest-preemption counterexample, searched up to the found one's count: timing does not show."""
    opts = EXPOSURES["pv-kick-node-no-barrier"].options("pv-kick-node-no-barrier")
    tokens = {run(replace(opts, jobs=jobs)).replay for jobs in (2, 3)}
    assert len(tokens) == 1


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_a_swarm_reports_the_sequential_run(strategy):
    opts = replace(EXPOSURES["pv-kick-node-no-barrier"].options("pv-kick-node-no-barrier"), strategy=strategy,
                   runs=300, seed=3)
    seq, par = run(opts), run(replace(opts, jobs=2))
    assert (par.result.verdict, par.replay) == (seq.result.verdict, seq.replay)


def test_a_swarm_without_violation_ran_every_run():
    r = run(CheckOptions(lock="qspinlock", cpus=2, strategy="random", runs=40, jobs=2)).result
    assert (r.verdict, r.executions) == ("incomplete", 40)


def test_a_killed_worker_is_started_again_and_the_search_completes():
    """The ticket lock has no per-CPU objects, hence no ample sets: its state count is exact."""
    opts = CheckOptions(lock="ticket", cpus=4, acquisitions=2, symmetry="none")
    killed = []

    def kill_once(pool):
        if not killed:
            pid = pool.call(0, "pid").result()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = partitioned.explore(opts, 2, on_step=kill_once)
    assert killed and result.verdict == "verified"
    assert result.states == run(opts).result.states


def test_the_state_limit_stops_every_worker():
    r = run(CheckOptions(lock="qspinlock", cpus=3, acquisitions=2, max_states=500, jobs=2)).result
    assert r.verdict == "incomplete" and "state limit" in r.note


@pytest.mark.parametrize("args,message", [
    (("--strategy", "graph", "--ray"), "--ray means nothing with --strategy graph"),
    (("--memory-model", "armv8", "--ray"), "--ray means nothing with --strategy exhaustive"),
    (("--strategy", "bounded", "--jobs", "2"), "--jobs means nothing with --strategy bounded"),
    (("--jobs", "0"), "--jobs 0: need at least 1"),
    (("--jobs", "two"), "--jobs 'two': not an integer"),
])
def test_what_cannot_run_in_parallel_is_refused_in_one_line(args, message):
    out = subprocess.run([sys.executable, "-m", "pvspin", "check", *args], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_without_ray_installed_ray_says_how_to_get_it():
    code = "import sys; sys.modules['ray'] = None; sys.argv = ['pvspin', 'check', '--ray']; from pvspin.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr == "error: --ray needs Ray, an optional extra: pip install 'pvspin[ray]'\n"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(corpus()))
def test_every_bug_of_the_corpus_has_the_same_verdict(name):
    opts = EXPOSURES[name].options(name)
    if opts.strategy == "graph" or opts.memory_model in ("armv8", "lkmm") or opts.strategy == "bounded":
        pytest.skip("found on one core only (the execution-graph checker, the bounded search)")
    seq, par = both(opts)
    assert (par.verdict, par.prop) == (seq.verdict, seq.prop)


def _runs_in_a_worker_that_dies(opts, first, stop):
    """``swarm.runs``, in a worker process killed (SIGKILL) at the first chunk of the check."""
    try:
        os.close(os.open(os.environ["PVSPIN_TEST_DEATH"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return _real_runs(opts, first, stop)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def test_a_swarm_whose_worker_is_killed_runs_its_chunk_again(tmp_path, monkeypatch):
    from pvspin.check import swarm

    opts = replace(EXPOSURES["pv-kick-node-no-barrier"].options("pv-kick-node-no-barrier"), strategy="random",
                   runs=300, seed=3)
    seq = run(opts)
    monkeypatch.setattr(swarm, "runs", _runs_in_a_worker_that_dies)
    monkeypatch.setenv("PVSPIN_TEST_DEATH", str(tmp_path / "died"))
    par = run(replace(opts, jobs=2))
    assert (tmp_path / "died").exists()
    assert (par.result.verdict, par.result.prop, par.replay) == (seq.result.verdict, seq.result.prop, seq.replay)


def _step_in_a_worker_that_dies(self, batches):
    os.kill(os.getpid(), signal.SIGKILL)


def test_workers_that_keep_dying_end_the_check_in_one_line(monkeypatch, capsys):
    from pvspin.cli import main

    monkeypatch.setattr(partitioned.Partition, "step", _step_in_a_worker_that_dies)  # the forked workers' too
    monkeypatch.setattr(sys, "argv", ["pvspin", "check", "--lock", "ticket", "--cpus", "2", "--jobs", "2"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 3
    assert capsys.readouterr().err == "error: a worker process died 6 times: the check gave up\n"
