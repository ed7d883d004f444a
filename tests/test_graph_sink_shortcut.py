"""A step that appends events no edge leaves is consistent when its parent is (models/common.py, appends_a_sink).

The ARMv8 check relies on it and ``tests/test_graph_armv8_direct.py`` holds it to the
relational axioms there; this file does the same for every LKMM version: every graph a
search visits is judged by the model's axioms (the search going on with that verdict, so
that each parent is consistent by the specification), and wherever the shortcut says
"consistent", the axioms must say so too.  Searches: the lowered locks (RMWs, fences,
dependencies, revisits) and samples of the kernel's C litmus tests (spin_lock's exclusive
pair, cmpxchg that fails, smp_mb__after_atomic and the like).
"""

from __future__ import annotations

import types

import pytest

from litmus_helpers import LITMUS_DIR, run_supported, sample
from pvspin.check.graph import models
from pvspin.check.graph import runner as graphs
from pvspin.check.graph.explorer import Explorer
from pvspin.check.graph.models import common, lkmm
from pvspin.check.runner import CheckOptions
from pvspin.litmus.run import graph_engine

VERSIONS = ("v00", "v01", "current")


class Judged(types.SimpleNamespace):
    """An LKMM version deciding by its axioms alone, and noting what the shortcut said of each graph."""

    def __init__(self, version: str):
        model = lkmm.model(version)
        super().__init__(NAME=model.NAME, compile=model.compile, AXIOMS=model.AXIOMS, FENCE_NAMES=model.FENCE_NAMES,
                         version=version, judged=0, consistent_ones=0, shortcut=0, wrong=[])
        self.spec = common.axiom_check(model.AXIOMS)

    def consistent(self, g) -> bool:
        spec = self.spec(g)
        self.judged += 1
        self.consistent_ones += spec
        if common.appends_a_sink(g, pairs_across_records=False):
            self.shortcut += 1
            if not spec:
                self.wrong.append(g.key())
        return spec


LOCKS = [("qspinlock-16k", 2, 1, None), ("pvqspinlock", 2, 1, None), ("qspinlock-16k", 3, 1, 3000),
         ("qspinlock", 2, 2, 3000)]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("lock,cpus,k,limit", LOCKS)
def test_lock_searches(lock, cpus, k, limit, version):
    opts = CheckOptions(lock=lock, cpus=cpus, acquisitions=k, memory_model="lkmm", lkmm_version=version)
    program, words = graphs.build(opts)
    judged = Judged(version)
    Explorer(program, judged, max_graphs=limit, lower=lambda op: words.lower(op, program.name_of)).run()
    assert judged.judged > 50 and 0 < judged.shortcut < judged.consistent_ones < judged.judged
    assert judged.wrong == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("suite", ["lkmm-catalogue", "lkmm"])
def test_c_litmus_samples(monkeypatch, suite, version):
    folder = LITMUS_DIR / suite
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set PVSPIN_LITMUS_DIR to the folder holding {suite}/)")
    judged = Judged(version)
    monkeypatch.setattr(models, "get", lambda name, version=None: judged)
    engine = graph_engine("lkmm", version)
    ran = run_supported(engine, sample(sorted(folder.rglob("*.litmus")), 60))
    assert ran > 30 and judged.shortcut > 100 and judged.consistent_ones < judged.judged
    assert judged.wrong == []
