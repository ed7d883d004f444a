"""State keys leave out dead locals, and nothing else: the pending operation and loop state stay."""

from __future__ import annotations

from pvspin.check import liveness, world
from pvspin.check.exhaustive import explore
from pvspin.check.runner import CheckOptions, build_world
from pvspin.check.world import generator_key


def _at_first_yield(fn, *args):
    gen = fn(*args)
    op = gen.send(None)
    return gen, op


def _dead_after_yield(x):
    used = x * 2
    yield ("op", used)  # x and used are dead from here on
    yield ("op", 0)


def _live_after_yield(x):
    yield ("op", 0)
    yield ("op", x)


def _loop_over(values):
    for v in values:  # the iterator lives on the stack, values is dead inside the loop
        yield ("op", v)


def _key(fn, *args):
    gen, op = _at_first_yield(fn, *args)
    return op, generator_key(gen, [])


def test_a_dead_local_does_not_distinguish_states():
    assert _key(_dead_after_yield, 1)[1] == _key(_dead_after_yield, 2)[1]


def test_a_live_local_does():
    assert _key(_live_after_yield, 1)[1] != _key(_live_after_yield, 2)[1]


def test_values_on_the_stack_across_a_yield_keep_every_local_in_the_key():
    assert _key(_loop_over, (0, 1))[1] != _key(_loop_over, (0, 2))[1]


def test_the_pending_operation_is_part_of_a_cpus_key():
    """_dead_after_yield's operand is dead once it resumes, but the world has yet to perform it."""
    class OneCpu:
        ncpus, acquisitions, watch = 1, 1, ()

        def __init__(self, x):
            from pvspin.machine import ops as o
            from pvspin.machine.memory import Layout, Memory

            self.mem = Memory()
            self.var = self.mem.alloc(Layout("var", 8, [("v", 0, 4)]), "var")
            self.x, self.o = x, o

        def program(self, program):
            return self._run()

        def _run(self):
            value = self.x
            yield self.o.WRITE_ONCE(self.var.v, value)

        def final_problems(self, w):
            return []

    one, two = world.World(OneCpu(1)), world.World(OneCpu(2))
    assert one.cpu_keys[0] != two.cpu_keys[0]


def test_bytecode_it_does_not_know_falls_back_to_every_local():
    def introspective():
        secret = 1
        yield locals()
        yield secret

    assert liveness.live_after(introspective.__code__) is None


def test_dead_locals_shrink_the_state_space_without_changing_the_verdict(monkeypatch):
    opts = CheckOptions(lock="qspinlock", cpus=3)
    with_liveness = explore(build_world(opts))
    monkeypatch.setattr(world, "live_names", lambda code, lasti: None)
    every_local = explore(build_world(opts))
    assert with_liveness.verdict == every_local.verdict == "verified"
    assert with_liveness.states < every_local.states


def _reachable(opts: CheckOptions, monkeypatch) -> set:
    seen = set()
    execute = world.World.execute

    def recording(self, move):
        execute(self, move)
        seen.add((bytes(self.data), tuple(sorted(self.holders.items()))))

    monkeypatch.setattr(world.World, "execute", recording)
    explore(build_world(opts))
    monkeypatch.setattr(world.World, "execute", execute)
    return seen


def test_merging_states_that_differ_in_dead_locals_loses_no_reachable_memory(monkeypatch):
    """Merged states are equivalent: the same memory contents and lock holders are reached."""
    # concrete states: full symmetry would reach some of them only up to renaming
    for opts in (CheckOptions(lock="qspinlock", cpus=3, memory_model="tso", symmetry="start"),
                 CheckOptions(lock="pvqspinlock", cpus=2, interrupts=1, symmetry="start")):
        with_liveness = _reachable(opts, monkeypatch)
        monkeypatch.setattr(world, "live_names", lambda code, lasti: None)
        every_local = _reachable(opts, monkeypatch)
        monkeypatch.undo()
        assert with_liveness == every_local
