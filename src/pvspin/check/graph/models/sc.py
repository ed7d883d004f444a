"""Sequential consistency as an axiomatic model: ``acyclic po | rf | co | fr`` (Lamport; herd's sc.cat).

For validation: the graph checker under SC must find exactly what the interleaving
checker finds.  Fences compile to nothing (every access is already ordered).
"""

from __future__ import annotations

from .. import relations as rel
from . import common

NAME = "sc"


def compile(op: tuple):
    return common.compile_plain(op, {}, exclusives=True)


def _sc(x):
    return common.cycle(rel.union(x.po, x.rf, x.co, x.fr))


AXIOMS = (("sc", _sc), ("atomic", common.atomicity))
consistent = common.axiom_check(AXIOMS)
