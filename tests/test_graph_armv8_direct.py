"""ARMv8 consistency decided on the graph (models/armv8_direct.py) equals the relational axioms (models/armv8.py).

Every graph a search visits is judged both ways, the search going on with the relational
verdict, so that the graphs judged are those of the specification's own search: lock
searches (fences, acquire/release RMWs, dependencies through pointers, blocked waits,
revisited graphs with holes) and a sample of the AArch64 litmus suite (ISB, DMB ISHLD and
ISHST, exclusives, address, data and control dependencies).
"""

from __future__ import annotations

import types

import pytest

from litmus_helpers import parse, run_supported, sample, suite
from pvspin.check.graph import models
from pvspin.check.graph import runner as graphs
from pvspin.check.graph.explorer import Explorer
from pvspin.check.graph.models import armv8, armv8_direct, common
from pvspin.check.runner import CheckOptions
from pvspin.litmus import aarch64
from pvspin.litmus.run import graph_engine

relational = common.axiom_check(armv8.AXIOMS)


class Both(types.SimpleNamespace):
    """The ARMv8 model, deciding every graph both ways and recording where they differ."""

    def __init__(self):
        super().__init__(NAME=armv8.NAME, compile=armv8.compile, AXIOMS=armv8.AXIOMS, FENCE_NAMES=armv8.FENCE_NAMES,
                         judged=0, consistent_ones=0, shortcut=0, differ=[])

    def consistent(self, g) -> bool:
        spec = relational(g)
        self.judged += 1
        self.consistent_ones += spec
        self.shortcut += common.appends_a_sink(g)
        if armv8_direct.consistent(g) != spec:
            self.differ.append((spec, g.key()))
        return spec


LOCKS = [("qspinlock", 2, 1, (), None), ("ticket", 3, 1, (), None), ("pvqspinlock", 2, 1, (), None),
         ("qspinlock", 2, 2, (), 4000), ("qspinlock", 3, 1, ("xchg-tail-release",), 4000),
         ("qspinlock", 3, 1, ("pending-after-tail",), 3000)]


@pytest.mark.parametrize("lock,cpus,k,bugs,limit", LOCKS)
def test_lock_searches_agree(lock, cpus, k, bugs, limit):
    opts = CheckOptions(lock=lock, cpus=cpus, acquisitions=k, memory_model="armv8", bugs=bugs)
    program, words = graphs.build(opts)
    both = Both()
    Explorer(program, both, max_graphs=limit, lower=lambda op: words.lower(op, program.name_of)).run()
    assert both.judged > 50 and 0 < both.consistent_ones < both.judged  # both verdicts were exercised
    assert 0 < both.shortcut < both.consistent_ones  # and both ways of deciding a consistent graph
    assert both.differ == []


def test_aarch64_litmus_sample_agrees(monkeypatch):
    both = Both()
    monkeypatch.setattr(models, "get", lambda name, version=None: both)
    engine = graph_engine("armv8")
    ran = run_supported(engine, sample(suite("aarch64"), 150))
    assert ran > 100 and both.judged > 1000 and both.consistent_ones < both.judged
    assert both.differ == []


SB_SWPAL = r"""AArch64 SB+swpal+dmb.sy
{
0:X1=x; 0:X3=y; 0:X5=z;
1:X1=y; 1:X3=x;
}
 P0               | P1          ;
 MOV W0,#1        | MOV W0,#1   ;
 STR W0,[X1]      | STR W0,[X1] ;
 MOV W2,#1        | DMB SY      ;
 SWPAL W2,W4,[X5] | LDR W2,[X3] ;
 LDR W6,[X3]      |             ;
exists (0:X6=0 /\ 1:X2=0)
"""


def test_fully_ordered_rmw_orders_like_a_barrier(monkeypatch):
    """``po; ([A]; amo; [L]); po``: the peers' suite has no LSE atomics, so this one is written here."""
    both = Both()
    monkeypatch.setattr(models, "get", lambda name, version=None: both)
    states = graph_engine("armv8")(parse(aarch64, SB_SWPAL))
    assert both.judged > 10 and both.differ == []
    assert len(states) == 3  # of the four, store buffering's (0, 0) is forbidden
