"""Ample sets for the exhaustive search: moves that commute with everything any CPU can do next.

A move of CPU ``c`` that touches only a per-CPU object no other CPU can reach is
independent of every move the other CPUs can make before ``c`` moves again: to touch the
object they would first need its address, and they cannot get it without ``c`` publishing
it.  Exploring such moves alone (an *ample* set: Peled's conditions, with Spin's cycle
proviso in :func:`pvspin.check.exhaustive.explore`) loses no reachable deadlock, violation
or final state.  Two kinds qualify:

* a step of ``c`` (a load, store or read-modify-write) on an unreachable per-CPU object,
  when no interrupt can come any more (an interrupt handler on ``c`` would be a second
  party, and interrupts share one budget across CPUs);
* under TSO, the flush of the oldest store in ``c``'s buffer to such an object, or to
  ``c``'s own node count, which only ``c`` ever touches (``Setup.private``).

*Reachable by another CPU* is over-approximated: from what each other CPU holds (the
values in its generators' live locals, its pending operation, its store buffer) and
from its own per-CPU objects (it can always compute their addresses), from shared memory
(the lock words, whose tails name nodes, and the PV hash table), from every store still
in a buffer, closed over the words of every object reached.  Any word whose value is the
address of a per-CPU object, or decodes as a tail naming one, is a reference.  Values the
guest keeps on its expression stack across a ``yield`` are not seen; guest code keeps its
state in locals (see :func:`pvspin.check.world.generator_key`).
"""

from __future__ import annotations

from bisect import bisect_right

from ..kernel.declarations import UNDECLARED
from ..machine import ops as o
from ..machine.memory import Ref, View
from .cache import IdentityCache

_ACCESS = frozenset({o.LOAD, o.STORE}) | o.RMW_OPS


class Ample:
    """Computes :meth:`World.ample <pvspin.check.world.World.ample>` for one world."""

    def __init__(self, world):
        self.world = world
        mem = world.setup.mem
        self.n = world.n
        # per-CPU objects (the elements of per-CPU regions), known by their base address
        self.element_size: dict[int, int] = {}
        self.own: list[list[int]] = [[] for _ in range(self.n)]  # element bases by owning CPU
        percpu_regions = set()
        for group in mem.percpu:
            for cpu, region in enumerate(group):
                percpu_regions.add(id(region))
                size = region.layout.size
                for base in range(region.base, region.end, size):
                    self.element_size[base] = size
                    self.own[cpu].append(base)
        self.starts = sorted(self.element_size)
        self.lo = self.starts[0] if self.starts else 0
        self.hi = max((b + s for b, s in self.element_size.items()), default=0)
        # shared memory, read by anyone: every region that is not per-CPU
        self.shared = [(r.base, r.end) for r in mem.regions if id(r) not in percpu_regions]
        declared = getattr(world.setup, "declared", UNDECLARED)  # litmus setups have no lock
        lock = getattr(world.setup, "lock", None)
        qspinlock = declared.word == "qspinlock"
        self.q = lock.q if qspinlock else None  # the lock-word layout, to read tails
        self.qnodes = lock.qnodes if qspinlock else None
        self._of: dict[int, int | None] = {}
        self._held_by_key = IdentityCache()  # a context's key object -> the objects it holds
        # Only a lock that declares it reaches per-CPU objects by pointer or tail alone; another
        # may index per-CPU slots by a ticket, which no reference scan would see.
        self.objects_rule = declared.per_cpu_by_reference

    # ----------------------------------------------------------------- what a value refers to
    def element(self, addr: int) -> int | None:
        """The base of the per-CPU object holding ``addr``, or None."""
        known = self._of.get(addr, -1)
        if known != -1:
            return known
        base = None
        if self.lo <= addr < self.hi:
            i = bisect_right(self.starts, addr)
            if i:
                start = self.starts[i - 1]
                if addr < start + self.element_size[start]:
                    base = start
        self._of[addr] = base
        return base

    def _refs_of_int(self, v: int, out: set) -> None:
        if not v:
            return
        base = self.element(v)
        if base is not None:
            out.add(base)
        q = self.q
        if q is not None and self.qnodes is not None:
            for w in (v, v << q._Q_TAIL_OFFSET):  # a whole lock word, or the tail halfword alone
                cpu, idx = q.decode_tail(w & q._Q_TAIL_MASK)
                if 0 <= cpu < self.n and idx < len(self.qnodes[cpu]):
                    out.add(self.qnodes[cpu][idx].addr)

    def _refs(self, v, out: set) -> None:
        t = type(v)
        if t is int:
            self._refs_of_int(v, out)
        elif t is View or t is Ref:
            base = self.element(v.addr)
            if base is not None:
                out.add(base)
        elif t is tuple or t is list:
            for x in v:
                self._refs(x, out)
        # anything else holds no reference: a predicate's captured values are locals of its maker

    def _words(self, data, start: int, end: int, out: set) -> None:
        """References in the aligned 4- and 8-byte words of ``data[start:end]`` (nonzero ones only)."""
        bits = int.from_bytes(data[start:end], "little")
        refs = self._refs_of_int
        while bits:
            byte = ((bits & -bits).bit_length() - 1) >> 3
            word4 = byte & ~3
            refs((bits >> (8 * word4)) & 0xFFFF_FFFF, out)
            if not word4 & 4:  # the 8-byte word starting here
                refs((bits >> (8 * word4)) & 0xFFFF_FFFF_FFFF_FFFF, out)
            else:  # and the one this 4-byte word ends
                refs((bits >> (8 * (word4 - 4))) & 0xFFFF_FFFF_FFFF_FFFF, out)
            bits &= ~(0xFFFF_FFFF << (8 * word4))

    def _held(self, key: tuple) -> frozenset:
        """Per-CPU objects a context holds: in its pending operation's operands and its live locals."""
        held = self._held_by_key.get(key)
        if held is None:
            found: set = set()
            self._refs(key[2][1:], found)
            for frame in key[3]:
                self._refs(frame[3], found)
            held = frozenset(found)
            self._held_by_key.put(key, held)
        return held

    def reachable_by_others(self, cpu: int, targets: set | None = None) -> set:
        """Per-CPU objects a CPU other than ``cpu`` holds or can get to (over-approximated).

        With ``targets``, the walk may stop as soon as all of them are found.
        """
        w = self.world
        data = w.data
        roots: set = set()
        for start, end in self.shared:
            self._words(data, start, end, roots)
        for other in range(self.n):
            for a, _, v in w.buffers[other]:  # a buffered store is memory anyone may soon read
                self._refs_of_int(v, roots)
                if other != cpu:
                    self._refs_of_int(a, roots)
            if other == cpu:
                continue
            roots.update(self.own[other])
            for ctx in w.ctxs[other]:
                roots |= self._held(ctx.key)
        if targets is not None and targets <= roots:
            return roots
        seen = set()
        todo = list(roots)
        while todo:
            base = todo.pop()
            if base in seen:
                continue
            seen.add(base)
            found: set = set()
            self._words(data, base, base + self.element_size[base], found)
            todo.extend(found - seen)
        return seen

    # ----------------------------------------------------------------- the ample set
    def moves(self, enabled: list[int]) -> list[int] | None:
        from .world import FLUSH, STEP  # noqa: PLC0415 -- world imports this module

        w = self.world
        quiet = w.irqs_taken >= w.irq_budget
        private = w.private
        candidates = []  # (move, the per-CPU object it touches, or None for the node count)
        for move in enabled:
            cpu, kind = move >> 3, move & 7
            if kind == FLUSH:
                addr = w.buffers[cpu][0][0]
                if private.get(addr) == cpu:
                    candidates.append((move, None))
                    continue
            elif kind == STEP and quiet and not w.halted[cpu] and w.ctxs[cpu][-1].op[0] in _ACCESS:
                addr = w.ctxs[cpu][-1].op[1].addr
            else:
                continue
            base = self.element(addr) if self.objects_rule else None
            if base is not None:
                candidates.append((move, base))
        if not candidates:
            return None
        out = []
        reach: dict[int, set] = {}
        for move, base in candidates:
            cpu = move >> 3
            if base is not None:
                if cpu not in reach:
                    targets = {b for m, b in candidates if m >> 3 == cpu and b is not None}
                    reach[cpu] = self.reachable_by_others(cpu, targets)
                if base in reach[cpu]:
                    continue
            out.append(move)
        return out or None
