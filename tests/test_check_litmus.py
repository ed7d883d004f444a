"""The checker's memory models against the classic litmus tests: exact sets of final outcomes."""

from __future__ import annotations

import pytest

from pvspin.check.exhaustive import explore
from pvspin.check.world import SC, TSO, World
from pvspin.machine import ops as o
from pvspin.machine.memory import Layout, Memory

VAR = Layout("var", 8, [("v", 0, 4)])
REGS = Layout("regs", 8, [("r0", 0, 4), ("r1", 4, 4)])


class Litmus:
    """A litmus test as a checker setup: each thread a generator, registers stored at the end."""

    acquisitions = 1
    watch = ()

    def __init__(self, *threads):
        self.mem = Memory()
        self.x = self.mem.alloc(VAR, "x", align=64)
        self.y = self.mem.alloc(VAR, "y", align=64)
        self.regs = [self.mem.alloc(REGS, f"regs{i}", align=64) for i in range(len(threads))]
        self.threads = threads
        self.ncpus = len(threads)

    def program(self, program):
        cpu = program[1]
        return self._run(cpu)

    def _run(self, cpu):
        regs = yield from self.threads[cpu](self.x.v, self.y.v)
        for i, value in enumerate(regs or ()):
            yield o.WRITE_ONCE(getattr(self.regs[cpu], f"r{i}"), value)

    def final_problems(self, world):
        return []

    def outcomes(self, model):
        seen = set()
        world = World(self, model)

        def record(w):
            seen.add(tuple(self.mem.read(getattr(r, f"r{i}").addr, 4) for r in self.regs for i in range(2)))

        result = explore(world, on_terminal=record)
        assert result.verdict == "verified"
        return seen


def _sb(mb):
    def t0(x, y):
        yield o.WRITE_ONCE(x, 1)
        if mb:
            yield o.smp_mb()
        r0 = yield o.READ_ONCE(y)
        return (r0,)

    def t1(x, y):
        yield o.WRITE_ONCE(y, 1)
        if mb:
            yield o.smp_mb()
        r1 = yield o.READ_ONCE(x)
        return (r1,)

    return Litmus(t0, t1)


def sb_outcomes(model, mb):
    return {(t[0], t[2]) for t in _sb(mb).outcomes(model)}


def test_sb_sc_forbids_both_zero():
    assert sb_outcomes(SC, False) == {(0, 1), (1, 0), (1, 1)}


def test_sb_tso_allows_both_zero():
    assert sb_outcomes(TSO, False) == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("model", [SC, TSO])
def test_sb_with_smp_mb_forbids_both_zero(model):
    assert sb_outcomes(model, True) == {(0, 1), (1, 0), (1, 1)}


def test_sb_with_xchg_forbids_both_zero_on_tso():
    """A locked RMW drains the store buffer: smp_store_mb (xchg) orders the store before the load."""

    def t0(x, y):
        yield o.smp_store_mb(x, 1)
        return ((yield o.READ_ONCE(y)),)

    def t1(x, y):
        yield o.smp_store_mb(y, 1)
        return ((yield o.READ_ONCE(x)),)

    assert {(t[0], t[2]) for t in Litmus(t0, t1).outcomes(TSO)} == {(0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("model", [SC, TSO])
def test_mp_forbids_flag_without_data(model):
    def writer(x, y):
        yield o.WRITE_ONCE(x, 1)
        yield o.smp_store_release(y, 1)

    def reader(x, y):
        r0 = yield o.smp_load_acquire(y)
        r1 = yield o.READ_ONCE(x)
        return (r0, r1)

    assert {(t[2], t[3]) for t in Litmus(writer, reader).outcomes(model)} == {(0, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize("model", [SC, TSO])
def test_lb_forbids_both_one(model):
    def t0(x, y):
        r0 = yield o.READ_ONCE(x)
        yield o.WRITE_ONCE(y, 1)
        return (r0,)

    def t1(x, y):
        r1 = yield o.READ_ONCE(y)
        yield o.WRITE_ONCE(x, 1)
        return (r1,)

    assert {(t[0], t[2]) for t in Litmus(t0, t1).outcomes(model)} == {(0, 0), (0, 1), (1, 0)}


@pytest.mark.parametrize("model", [SC, TSO])
def test_iriw_readers_agree_on_the_order_of_writes(model):
    def wx(x, y):
        yield o.WRITE_ONCE(x, 1)

    def wy(x, y):
        yield o.WRITE_ONCE(y, 1)

    def rxy(x, y):
        a = yield o.READ_ONCE(x)
        b = yield o.READ_ONCE(y)
        return (a, b)

    def ryx(x, y):
        a = yield o.READ_ONCE(y)
        b = yield o.READ_ONCE(x)
        return (a, b)

    outcomes = {t[4:] for t in Litmus(wx, wy, rxy, ryx).outcomes(model)}
    # (r0, r1) of reader 2 and (r0, r1) of reader 3: all 16 pairs but the one where they disagree
    everything = {(a, b, c, d) for a in (0, 1) for b in (0, 1) for c in (0, 1) for d in (0, 1)}
    assert outcomes == everything - {(1, 0, 1, 0)}


@pytest.mark.parametrize("model", [SC, TSO])
def test_2_plus_2w_forbids_both_first_writes_last(model):
    def t0(x, y):
        yield o.WRITE_ONCE(x, 1)
        yield o.WRITE_ONCE(y, 2)

    def t1(x, y):
        yield o.WRITE_ONCE(y, 1)
        yield o.WRITE_ONCE(x, 2)

    lit = Litmus(t0, t1)
    finals = set()
    world = World(lit, model)
    explore(world, on_terminal=lambda w: finals.add((lit.mem.read(lit.x.v.addr, 4), lit.mem.read(lit.y.v.addr, 4))))
    assert finals == {(2, 1), (1, 2), (2, 2)}


def test_tso_forwards_bytes_of_a_buffered_store_to_a_wider_load():
    """Accesses of different sizes alias: a buffered byte store shows in the same CPU's 32-bit load."""
    wide = Layout("word", 4, [("val", 0, 4), ("locked", 0, 1), ("pending", 1, 1)])

    class OneThread(Litmus):
        def __init__(self):
            super().__init__(self.t)
            self.w = self.mem.alloc(wide, "w", align=64)

        def t(self, x, y):
            yield o.WRITE_ONCE(self.w.val, 0x0101)
            yield o.WRITE_ONCE(self.w.pending, 0)
            v = yield o.READ_ONCE(self.w.val)
            return (v,)

    assert {t[0] for t in OneThread().outcomes(TSO)} == {0x0001}
