"""Axioms every model here shares: coherence per location, and atomicity of read-modify-writes."""

from __future__ import annotations

from ....machine import ops as o
from .. import relations as rel
from ..execution import Execution
from ..graph import AMO, EXCL, INIT, F, R, Rec, Recs, W


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


def appends_a_sink(g, pairs_across_records: bool = True) -> bool:
    """Whether ``g`` is its parent with one record appended whose events no ``ob`` edge leaves.

    The search extends only graphs it found consistent, and a cycle that is new must pass
    through a new event.  An event last in its thread's program order has no ``lob``
    successor; a write just placed has no reader; a write placed last in coherence has no
    ``coe`` successor, and a read of the coherence-latest write no ``fre`` one.  Coherence per
    location cannot break either (such a read or write is at or after everything else), nor
    atomicity (nothing lies between an RMW's source and its write when the source was last).
    So such a graph is consistent when its parent is: the common case of a step.  That holds
    for a model whose relations are built from ``po``, ``rf``, ``co``, ``fr``, ``rmw`` and the
    dependencies (all of them edges forward in program order or out of a write) by union,
    sequence, closure, intersection and restriction to sets of events, and whose sets an
    appended event does not change for the others.  A store-exclusive pairing with an earlier
    load changes the load's sets (LKMM's FailedRMW, lock.cat's LKR): unless
    ``pairs_across_records``, such a step is left to the full check.
    """
    parent = g.parent
    if parent is None:
        return False
    t = -1
    for i, (mine, theirs) in enumerate(zip(g.threads, parent.threads, strict=True)):
        if mine is not theirs:
            if t >= 0:
                return False
            t = i
    if t < 0:
        return False
    recs = g.threads[t]
    if type(recs) is not Recs or recs.base is not parent.threads[t] or len(recs) != len(recs.base) + 1:
        return False
    rec = recs[-1]
    if type(rec) is not Rec:
        return False
    co, before = g.co, parent.co
    written = None
    for ev in rec.events:
        kind = ev.kind
        if kind == F or (kind == R and ev.rf is None):  # a fence, or a wait still blocked: no node, no edge
            continue
        order = before.get(ev.loc, ())
        last = order[-1] if order else INIT
        if kind == R:
            if ev.rf != last:
                return False
            continue
        if written is not None or co.get(ev.loc) != (*order, ev.id):
            return False
        written = ev.loc
        if ev.pair is not None:  # an RMW's write (or a store-exclusive's): its read read what it follows
            if not pairs_across_records and not any(e.id == ev.pair for e in rec.events):
                return False
            source = g.rec_of(ev.pair)
            if type(source) is not Rec or g.event(ev.pair).rf != last:
                return False
    if written is None:
        return co is before
    return len(co) - len(before) in (0, 1) and all(co[loc] is order for loc, order in before.items() if loc != written)


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
