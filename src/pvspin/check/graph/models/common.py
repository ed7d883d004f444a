"""Axioms every model here shares: coherence per location, and atomicity of read-modify-writes."""

from __future__ import annotations

from ....machine import ops as o
from .. import relations as rel
from ..execution import Execution
from ..graph import AMO, EXCL, F, R, W


def cycle(r: list[int]) -> list[int] | None:
    """None when ``r`` is acyclic, else the events of one cycle."""
    return None if rel.acyclic(r) else rel.find_cycle(r)


def sc_per_location(x) -> list[int] | None:
    """``acyclic po-loc | rf | co | fr`` (herd's ``internal`` / ``uniproc``): each location is sequentially consistent."""
    return cycle(rel.union(x.po_loc, x.rf, x.co, x.fr))


def atomicity(x) -> list[int] | None:
    """``empty rmw & (fre; coe)``: no other thread's write comes between an RMW's read and its write."""
    fre = x.external(x.fr)
    coe = x.external(x.co)
    between = rel.inter(x.rmw, rel.seq(fre, coe))
    for i, row in enumerate(between):
        if row:
            return [i, next(rel.bits(row))]
    return None


def axiom_check(axioms):
    """``consistent(graph)`` for a model's ``AXIOMS``: the graph's relations built, every axiom checked."""

    def consistent(g) -> bool:
        x = Execution(g)
        return all(check(x) is None for _, check in axioms)

    return consistent


def violated(model, x) -> tuple[str, list[int]] | None:
    """The first axiom the execution violates and its witness events, or None."""
    for name, check in model.AXIOMS:
        witness = check(x)
        if witness is not None:
            return name, witness
    return None


def compile_plain(op: tuple, fences: dict, exclusives: bool):
    """The compilation of a model without ordering tags (SC, x86-TSO): loads are reads, stores writes,
    RMWs a read and a write joined as one instruction; ``fences`` maps a fence kind to its event's
    name (a kind not in it compiles to nothing)."""
    code = op[0]
    if code in (o.LOAD, o.COND_LOAD):
        return ((R, 0, None),)
    if code == o.STORE:
        return ((W, 0, None),)
    if code in o.RMW_OPS:
        return ((R, AMO, None), (W, AMO, None))
    if code == o.FENCE:
        return ((F, 0, fences[op[1]]),) if op[1] in fences else ()
    if exclusives and code == o.LOAD_EX:
        return ((R, EXCL, None),)
    if exclusives and code == o.STORE_EX:
        return ((W, EXCL, None),)
    return None
