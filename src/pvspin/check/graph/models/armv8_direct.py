"""ARMv8 consistency decided on the graph itself, without building relations: what the search calls.

:mod:`.armv8` states the model as relations (its ``AXIOMS``, which reports use to show a
violating cycle); this module decides the same three axioms faster, and
``tests/test_graph_armv8_direct.py`` holds the two equal on every graph of several searches.

* **lob depends on one thread alone** (program order, locations, tags, fences,
  dependencies), so it is computed per thread, in one pass in program order, as each
  memory event's set of lob-predecessors, and kept for the thread's record list: lists are
  never changed once made, and the graphs of a search share the threads a step did not
  touch.  Fences are no nodes: every ``lob`` edge into a fence comes from an event ordered
  before everything after some point before the fence, so a path through it has a direct
  edge.  Initial writes are no nodes either: nothing is ordered before them, so they lie on
  no cycle.
* **internal** (coherence per location) holds exactly when no thread's accesses to a
  location go back in coherence order: a write must come after, a read at or after, the
  position of the thread's previous access there (a read's position is its write's) --
  the coWW, coWR, coRW and coRR patterns, which with a total coherence order are every
  cycle of ``po-loc | rf | co | fr``.
* **atomic**: no other thread's write lies in coherence order between an RMW's source and
  its write.
* **external**: ``obs | lob`` acyclic, decided on predecessor rows (a relation is acyclic
  when its inverse is).
"""

from __future__ import annotations

from ..graph import ACQ, ACQ_PC, AMO, INIT, REL, STRIDE, F, PerList, Rec, W
from ..relations import acyclic
from . import common


class _Thread:
    """A thread's memory events in program order and, per event, its lob-predecessors (thread-local bits).

    Built in one pass over the records, whose running state it keeps, so that a list made by
    appending to another goes on from the other's (:meth:`extended`).
    """

    __slots__ = ("events", "preds", "local", "ids", "coherence", "reads", "_state", "_at_loc", "_last_write",
                 "_write_deps")

    def __init__(self, recs: list | None = None):
        self.events: list = []
        self.preds: list[int] = []
        self.local: dict[int, int] = {}  # event number -> index here
        self.ids: list[int] = []
        # what the coherence check looks at, in program order: (write?, its write or the write read,
        # location, an RMW write's source or None); reads still blocked without a write are left out
        self.coherence: list[tuple] = []
        self.reads: list[tuple] = []  # (index here, the write read, location)
        # the pass's running masks: before, full, ld, st, acquires, releases, reads, writes, rmw_writes,
        # addr_before, isb (see _add)
        self._state = (0,) * 11
        self._at_loc: dict[int, int] = {}  # location -> events so far there
        self._last_write: dict[int, int] = {}  # location -> index of the latest write there
        self._write_deps: dict[int, int] = {}  # a write's index -> the reads it depends on by address or data
        if recs is not None:
            self._add(recs, 0)

    def extended(self, recs: list, start: int) -> _Thread:
        """This thread's pass carried on over ``recs[start:]``: equal to ``_Thread(recs)``."""
        new = _Thread.__new__(_Thread)
        new.events, new.preds, new.local, new.ids = list(self.events), list(self.preds), dict(self.local), list(self.ids)
        new.coherence, new.reads, new._state = list(self.coherence), list(self.reads), self._state
        new._at_loc, new._last_write, new._write_deps = dict(self._at_loc), dict(self._last_write), dict(self._write_deps)
        new._add(recs, start)
        return new

    def _add(self, recs: list, start: int) -> None:
        events, preds, local, ids = self.events, self.preds, self.local, self.ids
        at_loc, last_write, write_deps = self._at_loc, self._last_write, self._write_deps
        # before: every event so far; full: events before the latest DMB ISH or A-amo-L RMW, before
        # everything after it; ld / st: reads before the latest DMB ISHLD / writes before the latest
        # DMB ISHST; acquires: A and Q reads, before everything after them; releases: L writes, before
        # every later A read; rmw_writes: writes of RMWs whose read is here; addr_before: reads an
        # event so far depends on by address ("addr; po"); isb: reads ordered by an ISB before every
        # later read ("(ctrl | addr; po); [ISB]")
        before, full, ld, st, acquires, releases, reads, writes, rmw_writes, addr_before, isb = self._state

        def own(mask: int) -> int:
            out = 0
            while mask:
                low = mask & -mask
                mask ^= low
                j = local.get(low.bit_length() - 1)
                if j is not None and not (writes >> j & 1):  # dependencies come from reads
                    out |= 1 << j
            return out

        for slot in range(start, len(recs)):
            rec = recs[slot]
            if type(rec) is not Rec:
                continue
            for ev in rec.events:
                kind = ev.kind
                if kind == F:
                    fence = ev.fence
                    if fence == "dmb.full":
                        full = before
                    elif fence == "dmb.ld":
                        ld = reads
                    elif fence == "dmb.st":
                        st = writes
                    elif fence == "isb":
                        isb |= own(ev.ctrl_deps) | addr_before
                    continue
                i = len(events)
                bit = 1 << i
                addr = own(ev.addr_deps) if ev.addr_deps else 0
                data = own(ev.data_deps) if ev.data_deps else 0
                p = full | ld | acquires | addr | data  # bob (fences, [A|Q]; po), dob (addr | data)
                tags = ev.tags
                loc = ev.loc
                if kind == W:
                    p |= st | addr_before | at_loc.get(loc, 0)  # bob ([W]; po; [dmb.st]; po; [W]), dob, lws
                    if ev.ctrl_deps:
                        p |= own(ev.ctrl_deps)  # dob: ctrl; [W]
                    if tags & REL:
                        p |= before  # bob: po; [L]
                    pair = local.get(ev.pair) if ev.pair is not None else None
                    if pair is not None:
                        p |= 1 << pair  # aob: rmw
                        rmw_writes |= bit
                        if tags & REL and tags & AMO and events[pair].tags & ACQ and events[pair].tags & AMO:
                            full = before & ~(1 << pair)  # bob: po; ([A]; amo; [L]); po
                    write_deps[i] = addr | data
                    last_write[loc] = i
                    writes |= bit
                    if tags & REL:
                        releases |= bit
                    self.coherence.append((True, ev.id, loc, None if pair is None else events[pair].rf))
                else:
                    p |= isb  # dob: (ctrl | addr; po); [ISB]; po; [R]
                    if tags & ACQ:
                        p |= releases  # bob: [L]; po; [A]
                    w = last_write.get(loc)
                    if w is not None:  # lrs: the latest write to the location before it
                        p |= write_deps[w]  # dob: (addr | data); lrs
                        if tags & (ACQ | ACQ_PC) and rmw_writes >> w & 1:
                            p |= 1 << w  # aob: [range(rmw)]; lrs; [A | Q]
                    reads |= bit
                    if tags & (ACQ | ACQ_PC):
                        acquires |= bit
                    if ev.rf is not None:
                        self.coherence.append((False, ev.rf, loc, None))
                        self.reads.append((i, ev.rf, loc))
                local[ev.id] = i
                events.append(ev)
                ids.append(ev.id)
                preds.append(p)
                before |= bit
                at_loc[loc] = at_loc.get(loc, 0) | bit
                addr_before |= addr
        self._state = (before, full, ld, st, acquires, releases, reads, writes, rmw_writes, addr_before, isb)


_thread = PerList(_Thread, extend=_Thread.extended)


def consistent(g) -> bool:
    """internal, atomic and external of ARMv8 on graph ``g`` (see the module's docstring)."""
    if common.appends_a_sink(g):
        return True
    threads = [_thread(recs) for recs in g.threads]
    co = g.co
    # coherence positions: a write's index in its location's order, the initial write -1
    position = {w: k for order in co.values() for k, w in enumerate(order)}
    position[INIT] = -1
    # internal, and atomic, thread by thread
    for t, th in enumerate(threads):
        last: dict[int, int] = {}  # location -> position of the thread's latest access there
        for is_write, e, loc, source in th.coherence:
            q = position[e]
            prev = last.get(loc)
            if prev is not None and (q <= prev if is_write else q < prev):
                return False
            last[loc] = q
            if source is not None:  # an RMW's write: nobody else's write between it and its source
                for w in co[loc][position[source] + 1:q]:
                    if w // STRIDE != t:
                        return False
    # external: ob = rfe | fre | coe | lob, as predecessor rows over every thread's events
    rows: list[int] = []
    index = {}
    offsets = []
    masks = []
    for th in threads:
        off = len(rows)
        offsets.append(off)
        n = len(th.preds)
        masks.append(((1 << n) - 1) << off)
        if off:
            rows.extend([p << off for p in th.preds])
        else:
            rows.extend(th.preds)
        index.update(zip(th.ids, range(off, off + n), strict=True))
    readers: dict[int, int] = {}  # a write (the initial one as -1 - location) -> the reads of it
    for t, th in enumerate(threads):
        off = offsets[t]
        for i, src, loc in th.reads:
            bit = 1 << (off + i)
            if src == INIT:
                key = -1 - loc
            else:
                key = src
                if src // STRIDE != t:
                    rows[off + i] |= 1 << index[src]  # rfe
            readers[key] = readers.get(key, 0) | bit
    for loc, order in co.items():
        earlier = readers.get(-1 - loc, 0)  # reads and writes coherence-before the next write
        for w in order:
            i = index[w]
            rows[i] |= earlier & ~masks[w // STRIDE]  # fre, coe
            earlier |= readers.get(w, 0) | 1 << i
    return acyclic(rows)
