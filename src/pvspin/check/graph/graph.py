"""Execution graphs: events per thread in program order, reads-from, coherence order.

A thread's part of a graph is a list of *records*, one per memory operation its guest
code performed, in program order (slot ``k`` is its ``k``-th such operation).  A record
holds the events the memory model compiled the operation into -- a read, a write, a
fence, or a read and a write for an RMW (at most two) -- and the result the guest got
back.  A slot may be a *hole* (None): an operation a backward revisit deleted because it
depended on the revisited read, which the thread performs again when it is replayed; or
:class:`Forced`: the revisited read itself, to be performed again reading from one given
write.

Events are numbered ``thread * STRIDE + 2 * slot + part`` (``part`` 1 is an RMW's write or
the fence after a store), so a number names the same event across the graphs of a search,
and a set of events (the reads a value depends on) is a bit mask over those numbers.  A
store-exclusive's status is number ``part`` 1 of its slot: what branches on it depends on
whether the store succeeded, not on what it stored.
Each location's initial value is the write :data:`INIT`, coherence-before every other.
"""

from __future__ import annotations

MAX_SLOTS = 512  # memory operations per thread
STRIDE = 2 * MAX_SLOTS
INIT = -1

# event kinds
R, W, F = "R", "W", "F"

# tags
ACQ = 1  # ARMv8 A: LDAR, the read of an acquire RMW
ACQ_PC = 2  # ARMv8 Q: LDAPR
REL = 4  # ARMv8 L: STLR, the write of a release RMW
EXCL = 8  # an exclusive (LDXR / STXR): the pair is an rmw
AMO = 16  # the two halves of a single-instruction RMW (SWP, CAS, LDADD, ...; a locked x86 instruction)
AWAIT = 32  # the read of a spin-wait (smp_cond_load_*): only values its condition accepts
HV = 64  # a hypervisor event (pv_wait's halt, pv_kick): a VM exit, ordered like a full barrier
MB = 128  # LKMM Mb: the two halves of a fully ordered RMW (xchg(), cmpxchg(), atomic_add_return(), ...)
NORET = 256  # LKMM Noreturn: the read of an RMW that returns no value (atomic_add(), atomic_inc(), ...)
LOCK = 512  # LKMM's abstract spinlock: a lock read (LKR, LF, RL or RU) or a lock write (LKW)
UNLOCK = 1024  # LKMM UL: spin_unlock()'s write

TAG_NAMES = ((ACQ, "acquire"), (ACQ_PC, "acquire_pc"), (REL, "release"), (EXCL, "exclusive"), (AMO, "amo"),
             (AWAIT, "await"), (HV, "hypercall"), (MB, "mb"), (NORET, "noreturn"), (LOCK, "lock"),
             (UNLOCK, "unlock"))


def eid(thread: int, slot: int, part: int = 0) -> int:
    return thread * STRIDE + 2 * slot + part


def where(e: int) -> tuple[int, int, int]:
    """(thread, slot, part) of an event number."""
    thread, rest = divmod(e, STRIDE)
    return thread, rest >> 1, rest & 1


class Ev:
    """One event: a read, a write or a fence, with its location, value, tags and dependencies.

    ``addr_deps``, ``data_deps`` and ``ctrl_deps`` are bit masks of the read events of the
    same thread it depends on (see :mod:`pvspin.machine.deps`).  A read's ``rf`` is the
    event number of the write it reads from (:data:`INIT` for the initial value), or None
    for a spin-wait still blocked; a write's ``val`` is what it stores.
    """

    __slots__ = ("id", "kind", "loc", "size", "val", "rf", "tags", "fence", "addr_deps", "data_deps", "ctrl_deps",
                 "pair")

    def __init__(self, id: int, kind: str, loc: int = 0, size: int = 0, val: int = 0, rf: int | None = None,
                 tags: int = 0, fence: str | None = None, addr_deps: int = 0, data_deps: int = 0, ctrl_deps: int = 0,
                 pair: int | None = None):
        self.id = id
        self.kind = kind
        self.loc = loc
        self.size = size
        self.val = val
        self.rf = rf
        self.tags = tags
        self.fence = fence
        self.addr_deps = addr_deps
        self.data_deps = data_deps
        self.ctrl_deps = ctrl_deps
        self.pair = pair  # an rmw's write: its read (the same record's, or the exclusive load's)

    @property
    def deps(self) -> int:
        return self.addr_deps | self.data_deps | self.ctrl_deps

    def with_rf(self, rf: int | None, val: int) -> Ev:
        return Ev(self.id, self.kind, self.loc, self.size, val, rf, self.tags, self.fence, self.addr_deps,
                  self.data_deps, self.ctrl_deps, self.pair)

    def sig(self) -> tuple:
        return (self.kind, self.loc, self.val, self.rf, self.tags, self.fence, self.pair)

    def __repr__(self) -> str:
        t, s, p = where(self.id)
        return f"<{self.kind} t{t}.{s}{'b' if p else ''} loc={self.loc:#x} val={self.val} rf={self.rf}>"


class Rec:
    """One memory operation of a thread: its opcode and operands (to recognise it on replay), events, result.

    ``op`` is the operation as the guest yielded it (for reports and a spin-wait's
    condition); the graph's identity leaves it out.
    """

    __slots__ = ("op_sig", "events", "result", "op", "deps", "stamp", "post", "where", "_sig")

    def __init__(self, op_sig: tuple, events: tuple[Ev, ...], result, op: tuple, deps: int = 0, post=None):
        self.op_sig = op_sig
        self.events = events
        self.result = result
        self.op = op
        self.post = post  # a read's value -> the guest's result, where they differ (a lowered sub-word read)
        self.where = ("-", "")  # (kernel function, file:line) that performed it, for reports
        # what it depends on: its events', and its operands' when it has no event (a failed STXR)
        for e in events:
            deps |= e.deps
        self.deps = deps
        self.stamp = 0  # when it was added to the graph (the search's clock): revisits delete what came later
        self._sig = None

    def sig(self) -> tuple:
        if self._sig is None:  # what it is never changes once made
            self._sig = (self.op_sig, tuple(e.sig() for e in self.events), self.result)
        return self._sig


class Forced:
    """A slot to perform again with an outcome fixed: a revisited read reading from ``rf``, or a
    store-exclusive whose ``status`` later operations depend on (it must succeed, or fail, again)."""

    __slots__ = ("rf", "status", "deps", "stamp")

    def __init__(self, rf: int | None = None, status: int | None = None, deps: int = 0, stamp: int = 0):
        self.rf = rf
        self.status = status
        self.deps = deps  # the operation's own dependencies: if one of them goes, so does this
        self.stamp = stamp

    def sig(self) -> tuple:
        return ("forced", self.rf, self.status)


class Recs(list):
    """A thread's record list, never changed once a graph holds it, with what :class:`PerList`
    functions computed from it; ``base`` is the list it was made from by appending, if it was."""

    __slots__ = ("base", "memo")

    def __init__(self, items=(), base: Recs | None = None):
        super().__init__(items)
        self.base = base
        self.memo: dict = {}  # PerList -> its value for this list


class PerList:
    """A function of a thread's record list, computed once per list.

    Record lists are never changed once made, and the graphs of a search share the lists of
    the threads a step did not touch, so what is computed from one list serves them all: a
    :class:`Recs` keeps the value (it lives as long as the graphs holding the list); other
    lists are remembered by identity, the last ``limit`` of them.  Given ``extend(value,
    recs, start)``, the value for a list made by appending is its base's carried on from
    slot ``start``, which must equal ``compute(recs)``.
    """

    __slots__ = ("compute", "extend", "memo", "limit")

    def __init__(self, compute, limit: int = 1 << 12, extend=None):
        self.compute = compute
        self.extend = extend
        self.memo: dict[int, tuple] = {}  # id(list) -> (the list, its value): the list kept, so the id stays its
        self.limit = limit

    def __call__(self, recs: list):
        if type(recs) is Recs:
            value = recs.memo.get(self)
            if value is None:
                base = recs.base
                if base is not None and self.extend is not None and self in base.memo:
                    value = self.extend(base.memo[self], recs, len(base))
                else:
                    value = self.compute(recs)
                recs.memo[self] = value
            return value
        memo = self.memo
        known = memo.get(id(recs))
        if known is not None and known[0] is recs:
            return known[1]
        if len(memo) >= self.limit:
            memo.clear()
        value = self.compute(recs)
        memo[id(recs)] = (recs, value)
        return value


def _chain_hash(h: int, recs: list, start: int = 0) -> int:
    for r in recs[start:]:
        h = hash((h, None if r is None else r.sig()))
    return h


_thread_key = PerList(lambda recs: tuple(None if r is None else r.sig() for r in recs))  # a thread's content
# a thread's content, hashed record by record so that an appended list's hash goes on from its base's
_thread_hash = PerList(lambda recs: _chain_hash(0, recs), extend=_chain_hash)


class Graph:
    """Records per thread and the coherence order of each location (initial write left implicit)."""

    __slots__ = ("threads", "co", "clock", "_key", "parent", "choice")

    def __init__(self, threads: list[list], co: dict[int, tuple[int, ...]], clock: int = 0):
        self.threads = threads
        self.co = co
        self.clock = clock  # the next record's stamp
        self._key = None
        self.parent = None  # the graph it was made from, and which of its children it is: a replay path
        self.choice = 0

    def path(self) -> list[int]:
        """The children chosen from the empty graph to this one (a replay token's content)."""
        out = []
        g = self
        while g.parent is not None:
            out.append(g.choice)
            g = g.parent
        return out[::-1]

    def rec_of(self, e: int):
        """The record holding event (or slot bit) ``e``, or None."""
        t, slot, _ = where(e)
        recs = self.threads[t]
        return recs[slot] if slot < len(recs) else None

    def key(self) -> tuple:
        if self._key is None:
            self._key = (tuple(_thread_key(t) for t in self.threads), tuple(sorted(self.co.items())))
        return self._key

    def state_hash(self) -> int:
        """What the search tells its states apart by: :meth:`key` and, per record, what the search's
        future depends on of the order records were added in.

        A backward revisit of a read deletes the records added after it (:func:`.explorer._revisited`),
        so two graphs with the same content but records added in another order are different
        states of the search: merging them lost executions (6 of 462 for qspinlock 3x1 under
        armv8).  What a revisit compares is a record's stamp with a read's, so a record's
        *epoch* -- how many reads were added before it -- is all that is kept of its stamp.
        Each thread's content is hashed once for all the graphs that share its record list.
        """
        order = sorted((r.stamp, t, s) for t, recs in enumerate(self.threads) for s, r in enumerate(recs)
                       if r is not None)
        epochs = [[0] * len(recs) for recs in self.threads]
        reads = 0
        for _, t, s in order:
            epochs[t][s] = reads
            r = self.threads[t][s]
            if type(r) is Rec and r.events and r.events[0].kind == R:
                reads += 1
        return hash((tuple(map(_thread_hash, self.threads)), tuple(sorted(self.co.items())),
                     tuple(map(tuple, epochs))))

    def events(self):
        for t in self.threads:
            for r in t:
                if type(r) is Rec:
                    yield from r.events

    def event(self, e: int) -> Ev:
        t, slot, part = where(e)
        rec = self.threads[t][slot]
        for ev in rec.events:
            if ev.id == e:
                return ev
        raise KeyError(e)

    def writes_to(self, loc: int) -> tuple[int, ...]:
        return self.co.get(loc, ())
