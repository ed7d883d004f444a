"""x86-TSO as an axiomatic model (Owens, Sarkar and Sewell, TPHOLs 2009; herd's x86tso.cat).

Every access is ordered after earlier ones in program order except a read after a write
(the store buffer); ``smp_mb()`` is ``MFENCE``; every RMW is a LOCK-prefixed instruction
and orders everything around it; ``smp_rmb()``, ``smp_wmb()`` and
``smp_mb__{before,after}_atomic()`` are compiler barriers on x86 and compile to nothing.
A thread reads its own buffered stores early (``rfi`` is not in the global order).
"""

from __future__ import annotations

from ....machine import ops as o
from .. import relations as rel
from ..graph import AMO
from . import common

NAME = "tso"


def compile(op: tuple):
    return common.compile_plain(op, {o.MB: "mfence"}, exclusives=False)


def ghb_relation(x):
    """The global happens-before the ``ghb`` axiom requires acyclic."""
    mem = x.M
    po = rel.restrict(mem, x.po, mem)
    ppo = rel.minus(po, rel.restrict(x.W, po, x.R))
    mfence = x.fences("mfence")
    fenced = rel.seq(rel.rng(x.po, mfence), x.po)
    locked = x.tagged(AMO)
    implied = rel.union(rel.rng(x.po, locked), rel.dom(locked, x.po))
    return rel.union(ppo, fenced, implied, x.external(x.rf), x.fr, x.co)


def _ghb(x):
    return common.cycle(ghb_relation(x))


AXIOMS = (("uniproc", common.sc_per_location), ("atomic", common.atomicity), ("ghb", _ghb))
consistent = common.axiom_check(AXIOMS)
