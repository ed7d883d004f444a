"""The execution-graph checker on hand-written shapes: exact outcome sets under SC, TSO and ARMv8.

Each shape is a few threads of guest code; the outcome is the tuple of what each thread
returns.  The sets are the textbook ones (herd's verdicts for these shapes are in the
peers' suites, which tests/test_litmus_graph.py runs).
"""

from __future__ import annotations

import pytest

from pvspin.check.graph.explorer import DependencyMiss, Explorer, Program, Unsupported
from pvspin.check.graph.models import MODELS
from pvspin.machine import ops as o
from pvspin.machine.memory import Layout, Memory

VAR = Layout("var", 8, [("v", 0, 4)])


def outcomes(threads, model: str) -> set:
    mem = Memory()
    x, y = mem.alloc(VAR, "x", align=64).v, mem.alloc(VAR, "y", align=64).v
    program = Program(len(threads), lambda t: threads[t](x, y), mem.read, mem.name_of,
                      outcome=lambda memory, returns: tuple(returns))
    result = Explorer(program, MODELS[model]).run()
    assert result.verdict == "verified", result.finding
    return set(result.outcomes)


def sb(fence=None):
    def t0(x, y):
        yield o.WRITE_ONCE(x, 1)
        if fence:
            yield fence()
        return (yield o.READ_ONCE(y))

    def t1(x, y):
        yield o.WRITE_ONCE(y, 1)
        if fence:
            yield fence()
        return (yield o.READ_ONCE(x))

    return [t0, t1]


def mp(writer_fence=None, reader="plain"):
    def t0(x, y):
        yield o.WRITE_ONCE(x, 1)
        if writer_fence:
            yield writer_fence()
        yield o.WRITE_ONCE(y, 1)

    def t1(x, y):
        flag = yield (o.smp_load_acquire(y) if reader == "acquire" else o.READ_ONCE(y))
        if reader == "rmb":
            yield o.smp_rmb()
        if reader == "addr":  # x's address computed from the flag: an address dependency
            return flag, (yield o.READ_ONCE(x.depending(getattr(flag ^ flag, "deps", 0))))
        return flag, (yield o.READ_ONCE(x))

    return [t0, t1]


def lb(dependency: bool):
    def thread(mine, theirs):
        r = yield o.READ_ONCE(mine)
        yield o.WRITE_ONCE(theirs, 1 + (r ^ r) if dependency else 1)  # r ^ r: a data dependency on r
        return r

    return [lambda x, y: thread(x, y), lambda x, y: thread(y, x)]


ALL = {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("model, fence, expected", [
    ("sc", None, ALL - {(0, 0)}), ("tso", None, ALL), ("armv8", None, ALL),
    ("tso", o.smp_mb, ALL - {(0, 0)}), ("armv8", o.smp_mb, ALL - {(0, 0)}),
    ("armv8", o.smp_wmb, ALL),  # DMB ISHST orders stores only
])
def test_store_buffering(model, fence, expected):
    assert outcomes(sb(fence), model) == expected


@pytest.mark.parametrize("model, writer, reader, weak", [
    ("sc", None, "plain", False), ("tso", None, "plain", False), ("armv8", None, "plain", True),
    ("armv8", o.smp_wmb, "plain", True), ("armv8", None, "rmb", True), ("armv8", o.smp_wmb, "rmb", False),
    ("armv8", o.smp_wmb, "acquire", False), ("armv8", o.smp_wmb, "addr", False),
])
def test_message_passing(model, writer, reader, weak):
    got = {(r[1][0], r[1][1]) for r in outcomes(mp(writer, reader), model)}
    assert ((1, 0) in got) == weak and {(0, 0), (0, 1), (1, 1)} <= got


@pytest.mark.parametrize("model, dependency, cycle", [
    ("sc", False, False), ("tso", False, False), ("armv8", False, True), ("armv8", True, False),
])
def test_load_buffering_needs_a_revisit_past_program_order(model, dependency, cycle):
    """ARMv8 lets both loads read the other thread's later store -- unless each store depends on its load."""
    assert ((1, 1) in outcomes(lb(dependency), model)) == cycle


def test_a_dependency_hidden_by_int_is_caught_not_trusted():
    """Converting a read value with int() drops its dependencies; the replay then notices the change."""
    def thread(mine, theirs):
        r = yield o.READ_ONCE(mine)
        if int(r):  # a branch the checker cannot see
            yield o.WRITE_ONCE(theirs, 2)
        yield o.WRITE_ONCE(theirs, 1)
        return r

    with pytest.raises(DependencyMiss, match="could not follow"):
        outcomes([lambda x, y: thread(x, y), lambda x, y: thread(y, x)], "armv8")


def _spin_program(threads):
    mem = Memory()
    x, y = mem.alloc(VAR, "x", align=64).v, mem.alloc(VAR, "y", align=64).v
    return Program(len(threads), lambda t: threads[t](x, y), mem.read, mem.name_of)


def spinner(x, y):
    while not (yield o.READ_ONCE(x)):
        pass


def setter(x, y):
    yield o.WRITE_ONCE(x, 1)


def test_a_spin_written_out_is_cut_at_the_loop_bound_and_never_verified():
    result = Explorer(_spin_program([spinner, setter]), MODELS["armv8"]).run()
    assert result.verdict == "bounded" and result.cut > 0
    assert result.executions > 0  # the spins that saw the 1 within the bound ended


def test_without_a_loop_bound_a_spin_written_out_is_refused_not_unrolled_forever():
    with pytest.raises(Unsupported, match=r"looping in spinner .*must wait in one smp_cond_load"):
        Explorer(_spin_program([spinner]), MODELS["armv8"], loop_bound=None).run()


@pytest.mark.parametrize("model, verdict", [("sc", "bounded"), ("armv8", "violation")])
def test_what_follows_a_spin_written_out_is_still_checked(model, verdict):
    def reader(x, y):  # message passing with a hand-written spin on the flag, no barriers
        yield from spinner(y, x)
        if (yield o.READ_ONCE(x)) == 0:
            yield o.WARN("the flag came before the data")

    def writer(x, y):
        yield o.WRITE_ONCE(x, 1)
        yield o.WRITE_ONCE(y, 1)

    result = Explorer(_spin_program([reader, writer]), MODELS[model]).run()
    assert result.verdict == verdict
    if verdict == "violation":
        assert result.finding.prop == "guest-warning"


def test_a_wait_that_nothing_releases_is_a_deadlock():
    def waiter(x, y):
        yield o.smp_cond_load_acquire(x, lambda v: v == 1)

    def writer(x, y):
        yield o.WRITE_ONCE(x, 1)
        yield o.WRITE_ONCE(x, 2)  # the wait may miss the 1: then x ends as 2 and it waits forever

    mem = Memory()
    x = mem.alloc(VAR, "x", align=64).v
    threads = [waiter, writer]
    program = Program(2, lambda t: threads[t](x, None), mem.read, mem.name_of)
    result = Explorer(program, MODELS["sc"]).run()
    assert result.verdict == "violation" and result.finding.prop == "deadlock"
    assert "x.v staying 0x2" in result.finding.detail


def test_a_failed_cmpxchg_depends_on_its_operands():
    """Load buffering through a cmpxchg that fails: whether it fails is computed from the value read
    (the compare), so the store after the branch on it is ordered after that read -- and redoing the
    read redoes the cmpxchg, though it failed both times."""

    def t0(x, y, z):
        a = yield o.READ_ONCE(x)
        ok, _ = yield o.try_cmpxchg_relaxed(y, a + 7, 5)  # y stays 0: fails whatever a is
        if not ok:
            yield o.WRITE_ONCE(z, 1)
        return int(a)

    def t1(x, y, z):
        b = yield o.READ_ONCE(z)
        if b:
            yield o.WRITE_ONCE(x, 1)
        return int(b)

    mem = Memory()
    x, y, z = (mem.alloc(VAR, n, align=64).v for n in "xyz")
    threads = [t0, t1]
    program = Program(2, lambda t: threads[t](x, y, z), mem.read, mem.name_of,
                      outcome=lambda memory, returns: tuple(returns))
    result = Explorer(program, MODELS["armv8"]).run()
    assert result.verdict == "verified"
    assert set(result.outcomes) == {(0, 0), (0, 1)}  # never (1, 1): a dependency cycle
