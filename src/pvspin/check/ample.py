"""Ample sets for the exhaustive search: moves that commute with everything any CPU can do next.

A move of CPU ``c`` that touches only a per-CPU object no other CPU can reach is
independent of every move the other CPUs can make before ``c`` moves again: to touch the
object they would first need its address, and they cannot get it without ``c`` publishing
it.  Exploring such moves alone (an *ample* set: Peled's conditions, with the cycle
proviso below) loses no reachable deadlock, violation or final state.  Two kinds qualify:

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

The cycle proviso: every cycle of the reduced state graph must pass through a state that
explores all its moves, or a move left out there could be postponed for good.  Spin checks
for a cycle closed on the depth-first stack, which depends on the order the search meets the
states in, and a search partitioned across workers has no such stack.  Here it is a property
of the state and the states its ample moves reach, in every search the same: a state keeps
its ample set only if each of its ample moves, by CPU ``c``,

* takes ``c`` further (:meth:`World.progress <pvspin.check.world.World.progress>`: more
  acquisitions completed, else a later instruction in its contexts' code, else fewer stores
  buffered -- compared as tuples), or
* leaves ``c`` where its next move, the flush of its oldest store or its pending operation,
  can never be in an ample set (no access to a per-CPU object, no store to a private word).

Why that is enough: on a cycle through reduced states only, every move is an ample move; a
CPU ``c`` that moves on it comes back to where it was, and only its own moves change its
progress, so one of them does not take it further; by the second rule ``c``'s next move on
the cycle is then not ample, a contradiction.  (Under full symmetry a cycle of orbits
unrolls, repeated under the renaming, into a cycle of states, and both rules are invariant
under renaming.)  On the locks here the moves that fail both rules are rare: the queue-node
initialisation runs straight ahead, and a loop back leaves the CPU at an access to the lock
word.
"""

from __future__ import annotations

from bisect import bisect_right

from ..kernel.declarations import PLAIN, PTR, TAIL16, UNDECLARED, WORD
from ..machine import ops as o
from ..machine.memory import Ref, View
from .cache import IdentityCache
from .symmetry import _OP_OPERANDS as _OPERANDS

_ACCESS = frozenset({o.LOAD, o.STORE}) | o.RMW_OPS
FOUND_MEMO = 1 << 16  # memory ranges' contents whose references Ample._range_refs remembers


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
        # Under full symmetry the states of an orbit must get renamings of one ample set, or the
        # reduction would depend on which member the search met first (the parallel search meets
        # others than the sequential one).  A value read as a reference whatever it is breaks that:
        # a counter of 4 in shared memory reads as a tail naming cpu0's first node, and renaming
        # does not change it.  So there values are read by their declared kinds, which the renaming
        # trusts already: pointers, lock words and tails refer, the rest (PLAIN) does not.
        self.symmetry = world.symmetry
        self._fields: dict[tuple[int, int], list] = {}  # a range -> its referring fields (addr, size, kind)
        self._found: dict[tuple[int, bytes], tuple] = {}  # (range start, its bytes) -> what they refer to
        self._walk = self._words if self.symmetry is None else self._kinded_words  # what _range_refs remembers

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

    def _refs_of_kind(self, v, kind, out: set) -> None:
        """References in ``v``, a value of the declared ``kind`` (None: undeclared, read as anything)."""
        t = type(v)
        if t is int:
            if not v:
                return
            if kind is None:
                self._refs_of_int(v, out)
            elif kind == PTR:
                base = self.element(v)
                if base is not None:
                    out.add(base)
            elif kind == WORD:
                self._tail_refs(v, out)
            elif kind == TAIL16:
                self._tail_refs(v << self.q._Q_TAIL_OFFSET, out)
            # PLAIN, CPU numbers and OWNER fields refer to nothing
        elif t is tuple or t is list:
            for x in v:
                self._refs_of_kind(x, kind, out)
        else:
            self._refs(v, out)

    def _tail_refs(self, word: int, out: set) -> None:
        q = self.q
        if q is not None and self.qnodes is not None:
            cpu, idx = q.decode_tail(word & q._Q_TAIL_MASK)
            if 0 <= cpu < self.n and idx < len(self.qnodes[cpu]):
                out.add(self.qnodes[cpu][idx].addr)

    def _kinded_words(self, data, start: int, end: int, out: set) -> None:
        """:meth:`_words` by declared kinds: the referring fields of ``[start, end)`` only."""
        fields = self._fields.get((start, end))
        if fields is None:
            kinds = self.symmetry.access_kinds
            fields = self._fields[(start, end)] = sorted(
                (a, size, kind) for (a, size), kind in kinds.items()
                if start <= a < end and kind in (WORD, TAIL16, PTR))
        for a, size, kind in fields:
            v = int.from_bytes(data[a:a + size], "little")
            if v:
                self._refs_of_kind(v, kind, out)

    def _range_refs(self, data, start: int, end: int, out: set) -> None:
        """What ``data[start:end]`` refers to (:meth:`_kinded_words` under symmetry, else :meth:`_words`).

        That depends on the bytes alone, and a per-CPU object takes few distinct contents
        over a search: they are remembered, the last ``FOUND_MEMO`` of them (the field walk
        was 29% of pvqspinlock 3 x 2's time).
        """
        key = (start, bytes(data[start:end]))
        found = self._found.get(key)
        if found is None:
            refs: set = set()
            self._walk(data, start, end, refs)
            found = tuple(refs)
            if len(self._found) >= FOUND_MEMO:
                self._found.clear()
            self._found[key] = found
        out.update(found)

    def _held(self, key: tuple) -> frozenset:
        """Per-CPU objects a context holds: in its pending operation's operands and its live locals."""
        held = self._held_by_key.get(key)
        if held is None:
            found: set = set()
            sym = self.symmetry
            if sym is None:
                self._refs(key[2][1:], found)
                for frame in key[3]:
                    self._refs(frame[3], found)
            else:
                op = key[2]
                field = None
                if len(op) > 1 and type(op[1]) is Ref:
                    field = sym.access_kind(op[1].addr, op[1].size)
                    self._refs(op[1], found)
                    shape = _OPERANDS.get(op[0], ())
                    for v, k in zip(op[2:], shape, strict=False):
                        self._refs_of_kind(v, field if k == "field" else k, found)
                else:  # a CPU number (pv_kick, vcpu_is_preempted) or a fence's kind
                    self._refs_of_kind(op[1:], PLAIN, found)
                for code, _, names, values in key[3]:
                    kinds = sym._kinds(code)
                    for name, v in zip(names, values, strict=True):
                        self._refs_of_kind(v, kinds.get(name), found)
            held = frozenset(found)
            self._held_by_key.put(key, held)
        return held

    def reachable_by_others(self, cpu: int, targets: set | None = None) -> set:
        """Per-CPU objects a CPU other than ``cpu`` holds or can get to (over-approximated).

        With ``targets``, the walk may stop as soon as all of them are found.
        """
        w = self.world
        data = w.data
        words = self._range_refs
        roots: set = set()
        for start, end in self.shared:
            words(data, start, end, roots)
        for other in range(self.n):
            for a, size, v in w.buffers[other]:  # a buffered store is memory anyone may soon read
                if self.symmetry is None:
                    self._refs_of_int(v, roots)
                else:
                    self._refs_of_kind(v, self.symmetry.access_kind(a, size), roots)
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
            words(data, base, base + self.element_size[base], found)
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

    # ----------------------------------------------------------------- the cycle proviso
    def may_keep(self, cpu: int, before: tuple) -> bool:
        """After a move of ``cpu`` from a reduced state, in which its progress was ``before``: may that state keep its ample set?

        Yes when the move took the CPU further (:meth:`World.progress
        <pvspin.check.world.World.progress>`), or when the CPU's next move can never be
        in an ample set (see the module docstring).
        """
        return self.world.progress(cpu) > before or not self.may_move_alone(cpu)

    def may_move_alone(self, cpu: int) -> bool:
        """Whether the CPU's next move (a flush of its oldest store, or its pending operation) could be in an ample set."""
        w = self.world
        buf = w.buffers[cpu]
        if buf:
            addr = buf[0][0]
            if w.private.get(addr) == cpu or (self.objects_rule and self.element(addr) is not None):
                return True
        ctxs = w.ctxs[cpu]
        if ctxs and self.objects_rule:
            op = ctxs[-1].op
            if op[0] in _ACCESS and self.element(op[1].addr) is not None:
                return True
        return False


def expand(moves: list[int], enabled: list[int]) -> list[int]:
    """The cycle proviso gave up a state's ample set: its moves, then the rest of the enabled ones."""
    return moves + [m for m in enabled if m not in moves]
