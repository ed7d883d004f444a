"""An execution graph seen as the sets and relations memory models are written in.

The events are numbered ``0 .. n-1`` here: first one initial write per location, then
every event of the graph.  Sets (``R``, ``W``, ``F``, ``IW``, tags, fence kinds) are bit
masks, relations lists of rows (:mod:`.relations`), named as herd's cat models name
them: ``po``, ``rf``, ``co``, ``fr``, ``loc``, ``ext``, ``int``, ``rmw``, ``amo``,
``addr``, ``data``, ``ctrl``.  Each is computed the first time a model asks for it.
"""

from __future__ import annotations

from functools import cached_property

from . import relations as rel
from .graph import ACQ, ACQ_PC, AMO, EXCL, HV, INIT, REL, F, Graph, R, W, where


class Execution:
    def __init__(self, graph: Graph):
        evs = list(graph.events())
        locs = sorted({e.loc for e in evs if e.kind != F} | set(graph.co))
        self.graph = graph
        self.locs = locs
        self.init_index = {loc: i for i, loc in enumerate(locs)}
        self.events = evs
        base = len(locs)
        self.n = base + len(evs)
        self.index = {e.id: base + i for i, e in enumerate(evs)}
        self.thread = [-1] * base + [where(e.id)[0] for e in evs]
        self.loc_of = list(locs) + [e.loc for e in evs]

    # ----------------------------------------------------------------- sets
    def _mask(self, test) -> int:
        out = 0
        base = len(self.locs)
        for i, e in enumerate(self.events):
            if test(e):
                out |= 1 << (base + i)
        return out

    @cached_property
    def IW(self) -> int:
        return (1 << len(self.locs)) - 1

    @cached_property
    def R(self) -> int:
        return self._mask(lambda e: e.kind == R)

    @cached_property
    def W(self) -> int:
        return self._mask(lambda e: e.kind == W) | self.IW

    @cached_property
    def F(self) -> int:
        return self._mask(lambda e: e.kind == F)

    @cached_property
    def M(self) -> int:
        return self.R | self.W

    def tagged(self, tag: int) -> int:
        return self._mask(lambda e: e.tags & tag)

    @cached_property
    def A(self) -> int:
        return self.tagged(ACQ)

    @cached_property
    def Q(self) -> int:
        return self.tagged(ACQ_PC)

    @cached_property
    def L(self) -> int:
        return self.tagged(REL)

    @cached_property
    def HV(self) -> int:
        return self.tagged(HV)

    def fences(self, *kinds: str) -> int:
        return self._mask(lambda e: e.kind == F and e.fence in kinds)

    # ----------------------------------------------------------------- relations
    @cached_property
    def po(self) -> list[int]:
        """Program order: within a thread, by slot (an RMW's read before its write)."""
        out = [0] * self.n
        base = len(self.locs)
        by_thread: dict[int, list[int]] = {}
        for i in range(len(self.events)):
            by_thread.setdefault(self.thread[base + i], []).append(base + i)
        for members in by_thread.values():
            members.sort(key=lambda i: self.events[i - base].id)
            later = 0
            for i in reversed(members):
                out[i] = later
                later |= 1 << i
        return out

    @cached_property
    def rf(self) -> list[int]:
        out = [0] * self.n
        base = len(self.locs)
        for i, e in enumerate(self.events):
            if e.kind == R and e.rf is not None:
                src = self.init_index[e.loc] if e.rf == INIT else self.index[e.rf]
                out[src] |= 1 << (base + i)
        return out

    @cached_property
    def co(self) -> list[int]:
        """Coherence: per location, the initial write first, then the graph's order (transitive)."""
        out = [0] * self.n
        for loc, order in self.graph.co.items():
            chain = [self.init_index[loc]] + [self.index[w] for w in order]
            later = 0
            for i in reversed(chain):
                out[i] = later
                later |= 1 << i
        return out

    @cached_property
    def fr(self) -> list[int]:
        """From-read: ``rf^-1 ; co``, an RMW's read not to its own write excepted (it is co-after its source)."""
        out = [0] * self.n
        co = self.co
        for w, readers in enumerate(self.rf):
            if not readers:
                continue
            after = co[w]
            for r in rel.bits(readers):
                out[r] = after & ~(1 << r)
        return out

    @cached_property
    def loc(self) -> list[int]:
        """Same location (memory events only)."""
        groups: dict[int, int] = {}
        mem = self.M
        for i in rel.bits(mem):
            groups[self.loc_of[i]] = groups.get(self.loc_of[i], 0) | 1 << i
        out = [0] * self.n
        for i in rel.bits(mem):
            out[i] = groups[self.loc_of[i]]
        return out

    @cached_property
    def ext(self) -> list[int]:
        """Different threads; an initial write is external to every event."""
        groups: dict[int, int] = {}
        for i, t in enumerate(self.thread):
            if t >= 0:
                groups[t] = groups.get(t, 0) | 1 << i
        everyone = (1 << self.n) - 1
        return [everyone & ~groups[t] if t >= 0 else everyone & ~(1 << i) for i, t in enumerate(self.thread)]

    @cached_property
    def int(self) -> list[int]:
        return [~row & ((1 << self.n) - 1) & ~(1 << i) if self.thread[i] >= 0 else 0
                for i, row in enumerate(self.ext)]

    @cached_property
    def rmw(self) -> list[int]:
        """Read to write of every read-modify-write: single instructions (amo) and exclusive pairs."""
        out = [0] * self.n
        for i, e in enumerate(self.events):
            if e.kind == W and e.pair is not None and e.pair in self.index:  # its load may be being redone
                out[self.index[e.pair]] |= 1 << (len(self.locs) + i)
        return out

    @cached_property
    def amo(self) -> list[int]:
        return rel.restrict(self.tagged(AMO), self.rmw, self.tagged(AMO))

    @cached_property
    def lxsx(self) -> list[int]:
        return rel.restrict(self.tagged(EXCL), self.rmw, self.tagged(EXCL))

    def _deps(self, field: str) -> list[int]:
        """Dependencies from reads: a store-exclusive's status also carries one (see explorer), but it is no read."""
        out = [0] * self.n
        base = len(self.locs)
        reads = self.R
        for i, e in enumerate(self.events):
            mask = getattr(e, field)
            if mask:
                for src in rel.bits(mask):
                    j = self.index.get(src)
                    if j is not None and reads >> j & 1:
                        out[j] |= 1 << (base + i)
        return out

    @cached_property
    def addr(self) -> list[int]:
        return self._deps("addr_deps")

    @cached_property
    def data(self) -> list[int]:
        return self._deps("data_deps")

    @cached_property
    def ctrl(self) -> list[int]:
        return self._deps("ctrl_deps")

    @cached_property
    def po_loc(self) -> list[int]:
        return rel.inter(self.po, self.loc)

    def external(self, r: list[int]) -> list[int]:
        return rel.inter(r, self.ext)

    def internal(self, r: list[int]) -> list[int]:
        return rel.inter(r, self.int)
