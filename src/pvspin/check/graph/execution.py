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
from .graph import ACQ, ACQ_PC, AMO, AWAIT, EXCL, HV, INIT, LOCK, MB, NORET, REL, STRIDE, UNLOCK, F, Graph, R, W

_TAGS = (ACQ, ACQ_PC, REL, EXCL, AMO, AWAIT, HV, MB, NORET, LOCK, UNLOCK)


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
        # one pass for the sets: kinds, tags, fence kinds, and the members of each thread and location
        kinds = {R: 0, W: (1 << base) - 1, F: 0}
        tags: dict[int, int] = {}
        fences: dict[str, int] = {}
        threads: dict[int, int] = {}
        at_loc = {loc: 1 << i for i, loc in enumerate(locs)}
        thread = [-1] * base
        for i, e in enumerate(evs):
            bit = 1 << (base + i)
            kinds[e.kind] |= bit
            t = e.id // STRIDE
            thread.append(t)
            threads[t] = threads.get(t, 0) | bit
            if e.tags:
                for tag in _TAGS:
                    if e.tags & tag:
                        tags[tag] = tags.get(tag, 0) | bit
            if e.kind == F:
                fences[e.fence] = fences.get(e.fence, 0) | bit
            else:
                at_loc[e.loc] |= bit
        self.thread = thread
        self.loc_of = list(locs) + [e.loc for e in evs]
        self.R, self.W, self.F = kinds[R], kinds[W], kinds[F]
        self.IW = (1 << base) - 1
        self.M = self.R | self.W
        self._tags = tags
        self._fences = fences
        self._threads = threads
        self._at_loc = at_loc

    # ----------------------------------------------------------------- sets
    def tagged(self, tag: int) -> int:
        return self._tags.get(tag, 0)

    @property
    def A(self) -> int:
        return self._tags.get(ACQ, 0)

    @property
    def Q(self) -> int:
        return self._tags.get(ACQ_PC, 0)

    @property
    def L(self) -> int:
        return self._tags.get(REL, 0)

    @property
    def HV(self) -> int:
        return self._tags.get(HV, 0)

    def fences(self, *kinds: str) -> int:
        out = 0
        for k in kinds:
            out |= self._fences.get(k, 0)
        return out

    # ----------------------------------------------------------------- relations
    @cached_property
    def po(self) -> list[int]:
        """Program order: within a thread, by slot (an RMW's read before its write); events are listed in that order."""
        out = [0] * self.n
        for members in self._threads.values():
            later = 0
            for i in reversed(list(rel.bits(members))):
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
        out = [0] * self.n
        for members in self._at_loc.values():
            for i in rel.bits(members):
                out[i] = members
        return out

    @cached_property
    def ext(self) -> list[int]:
        """Different threads; an initial write is external to every event."""
        everyone = (1 << self.n) - 1
        own = self._threads
        return [everyone & ~own[t] if t >= 0 else everyone & ~(1 << i) for i, t in enumerate(self.thread)]

    @cached_property
    def int(self) -> list[int]:
        own = self._threads
        return [own[t] & ~(1 << i) if t >= 0 else 0 for i, t in enumerate(self.thread)]

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

    @cached_property
    def _dependencies(self) -> tuple[list[int], list[int], list[int]]:
        """addr, data and ctrl, in one pass; from reads only: a store-exclusive's status also carries
        one (see explorer), but it is no read."""
        n = self.n
        out = ([0] * n, [0] * n, [0] * n)
        base = len(self.locs)
        index = self.index
        reads = self.R
        for i, e in enumerate(self.events):
            bit = 1 << (base + i)
            for rows, mask in zip(out, (e.addr_deps, e.data_deps, e.ctrl_deps), strict=True):
                while mask:
                    low = mask & -mask
                    mask ^= low
                    j = index.get(low.bit_length() - 1)
                    if j is not None and reads >> j & 1:
                        rows[j] |= bit
        return out

    @property
    def addr(self) -> list[int]:
        return self._dependencies[0]

    @property
    def data(self) -> list[int]:
        return self._dependencies[1]

    @property
    def ctrl(self) -> list[int]:
        return self._dependencies[2]

    @cached_property
    def po_loc(self) -> list[int]:
        return rel.inter(self.po, self.loc)

    def external(self, r: list[int]) -> list[int]:
        return rel.inter(r, self.ext)

    def internal(self, r: list[int]) -> list[int]:
        return rel.inter(r, self.int)
