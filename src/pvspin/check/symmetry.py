"""Full symmetry reduction: states equal up to renaming the CPUs share one visited-table entry.

CPUs that run the same code from a start that treats them alike (``Setup.symmetric``) are
interchangeable: renaming them maps every execution to an execution, and every property
the checker decides (mutual exclusion, deadlock, lost wake-up, the final-state invariants)
holds of a state exactly when it holds of the renamed one.  So the search keys a state by
a canonical member of its *orbit*, the set of its renamings, and explores each orbit once.

**Renaming a state** renames every datum that names a CPU:

* per-CPU memory (:meth:`~pvspin.machine.memory.Memory.alloc_percpu`) moves to the new
  CPU's copy, so pointers into it move too;
* values that name a CPU change: a CPU number, a lock word or tail whose cpu field holds
  ``cpu + 1``, a pointer.  A per-CPU field that only ever holds its own CPU's number
  (``pv_node.cpu``) is keyed as "written yet or not", which the world tracks: the number
  alone cannot tell cpu0's node, set, from a node never used (both read 0), and storing any
  other number there is an error.  Which values those are is *declared* by the lock, per
  struct field and per local variable of its guest code
  (:class:`~pvspin.kernel.declarations.LockDeclarations`), and an operation's operands take
  the kind of the field it accesses;
* each CPU's checker state (its contexts, store buffer, halted and latched flags) goes
  with it.

Nothing is guessed: an integer local with no declared kind, or an access that covers part
of a CPU-valued field, raises :class:`SymmetryError` naming it.  A wrong declaration would
merge states that are not symmetric, and that is caught by
``tests/test_check_symmetry.py``, which checks on the full, unreduced state graph that
states sharing a key have successors sharing keys (a bisimulation), lock by lock.

**The canonical member.**  Each CPU gets a signature that renaming does not change (its
acquisition count and where its code stands, without values).  Only renamings that sort
the signatures are tried -- one, unless CPUs tie -- and of those the one giving the
smallest encoded key wins; ties are broken in a fixed order, so runs are deterministic.
The renaming is returned with the key: sleep sets, which name moves by CPU, are stored in
the canonical numbering.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import permutations, product
from types import CodeType

from ..kernel.declarations import CPU, OWNER, PLAIN, PTR, TAIL16, WORD
from ..machine import ops as o
from ..machine.memory import Ref, View
from .cache import IdentityCache, ValueCache


class SymmetryError(Exception):
    """A value the renaming cannot classify: a declaration is missing."""


# The harness's own guest code (check/harness.py); the lock's is declared with the lock.
HARNESS_LOCALS = {"Setup._acquisition": {"level": PLAIN, "count": PLAIN}}

# Operand kinds of a pending operation, after its Ref: "field" takes the accessed field's kind.
_FIELD = "field"
_OP_OPERANDS = {
    o.LOAD: (PLAIN,),
    o.COND_LOAD: (PLAIN, PLAIN, PLAIN),  # predicate, order, bound
    o.STORE: (_FIELD, PLAIN),
    o.XCHG: (_FIELD, PLAIN),
    o.CMPXCHG: (_FIELD, _FIELD, PLAIN),
    o.TRY_CMPXCHG: (_FIELD, _FIELD, PLAIN),
    o.FETCH_ADD: (PLAIN, PLAIN),  # a delta or mask, not a value of the field
    o.FETCH_OR: (PLAIN, PLAIN),
    o.FETCH_ANDNOT: (PLAIN, PLAIN),
    o.PV_WAIT: (_FIELD,),
}


# tags of encoded values: the encoding is a tuple tree of ints and strings, so keys compare
_NONE, _BOOL, _INT, _STR, _VIEW, _REF, _TUPLE, _CODE, _OBJ = range(9)
_HOLE = (-1,)  # a value that renaming may change, encoded beside the rest


class Symmetry:
    """Canonical keys of a :class:`~pvspin.check.world.World`'s states under renaming its twin CPUs."""

    def __init__(self, world, twins: int):
        setup = world.setup
        self.world = world
        self.n = world.n
        self.twins = [c for c in range(self.n) if twins >> c & 1]  # the CPUs renamed among themselves
        self.identity = tuple(range(self.n))
        mem = setup.mem
        self.first_object = world.first_object
        self.declared = setup.declared
        q = setup.lock.q if self.declared.word == "qspinlock" else None
        self.q = q
        self.tail_cpu_mask = q._Q_TAIL_CPU_MASK if q is not None else 0
        # the 16-bit tail view renames on its own only when the cpu field lies inside it
        self.tail16_ok = q is not None and q._Q_TAIL_OFFSET == 16
        # per-CPU blocks: (base of each CPU's copy, size)
        self.blocks = [([r.base for r in group], group[0].end - group[0].base) for group in mem.percpu]
        self.block_of = {}
        for bases, size in self.blocks:
            for cpu, base in enumerate(bases):
                self.block_of[base] = (bases, cpu, size)
        self._block_starts = sorted(self.block_of)
        self._blocks_by_addr: dict[int, tuple | None] = {}
        # CPU-valued fields in memory, by region: (start, end, [(addr, size, kind)], field by
        # byte offset, whether 0 names no CPU); offsets are from the first object
        self.fields = []
        self.owner_fields: dict[int, tuple[int, int]] = {}  # address -> (its bit in World.owners_set, owner)
        self.access_kinds: dict[tuple[int, int], int] = {}
        self._cpu_bytes: set[int] = set()
        self._index_fields(mem)
        self.codes: dict = {}  # code object -> its encoding
        self.objects: dict = {}  # other objects in locals (the lock, bound methods) -> first-seen number
        self.local_kinds: dict = {}  # code object -> its locals' kinds
        self._cpu_cache = ValueCache()
        self._frame_cache = ValueCache()
        self._sig_cache = IdentityCache()

    def _index_fields(self, mem) -> None:
        """Find every field instance that names a CPU, and the kind of every declared access."""
        for region in mem.regions:
            layout = region.layout
            count = (region.end - region.base) // layout.size
            found = []
            for i in range(count):
                elem = region.base + i * layout.size
                for f in layout.fields:
                    kind = self.declared.fields.get((layout.name, f.name), PLAIN)
                    addr = elem + f.offset
                    if kind == TAIL16:
                        if self.tail16_ok:
                            self.access_kinds[(addr, f.size)] = kind
                        continue
                    self.access_kinds[(addr, f.size)] = kind
                    if kind == PLAIN:
                        continue
                    if kind == OWNER:
                        self.owner_fields[addr] = (1 << len(self.owner_fields), self.owner(addr))
                    else:
                        found.append((addr, f.size, kind))
                    self._cpu_bytes.update(self._valued_bytes(addr, f.size, kind))
            if found:
                # by each byte of the region: the field holding it, to visit only nonzero fields
                start = region.base - self.first_object
                at_byte = {}
                for addr, size, kind in found:
                    for b in range(size):
                        at_byte[addr - region.base + b] = (addr - self.first_object, size, kind)
                zero_is_none = all(kind != CPU for _, _, kind in found)  # a zero CPU number is cpu0
                self.fields.append((start, region.end - self.first_object, found, at_byte, zero_is_none))

    def _valued_bytes(self, addr: int, size: int, kind: int) -> range | list:
        if kind != WORD:
            return range(addr, addr + size)
        return [addr + b for b in range(size) if (self.tail_cpu_mask >> (8 * b)) & 0xFF]

    # ----------------------------------------------------------------- renaming values
    def access_kind(self, addr: int, size: int) -> int:
        kind = self.access_kinds.get((addr, size))
        if kind is not None:
            return kind
        if any(a in self._cpu_bytes for a in range(addr, addr + size)):
            raise SymmetryError(f"an access of {size} byte(s) to {self.world.mem.name_of(addr, size)} covers part "
                                "of a value that names a CPU: cannot rename it")
        self.access_kinds[(addr, size)] = PLAIN
        return PLAIN

    def _block(self, a: int):
        """(bases of the per-CPU copies, owning CPU, size) of the per-CPU block holding ``a``, or None."""
        try:
            return self._blocks_by_addr[a]
        except KeyError:
            pass
        i = bisect_right(self._block_starts, a)  # the last block starting at or below a
        block = None
        if i:
            start = self._block_starts[i - 1]
            if a < start + self.block_of[start][2]:
                block = self.block_of[start]
        self._blocks_by_addr[a] = block  # guest code uses few distinct addresses
        return block

    def owner(self, a: int) -> int | None:
        block = self._block(a)
        return None if block is None else block[1]

    def addr(self, a: int, p: tuple) -> int:
        if a < self.first_object:
            return a
        block = self._block(a)
        if block is None:
            return a
        bases, cpu, _ = block
        return bases[p[cpu]] + (a - bases[cpu])

    def value(self, kind: int, v: int, p: tuple, at: int = 0) -> int:
        """``v`` renamed, as a value of ``kind`` stored at (or bound for) address ``at``."""
        if kind == PLAIN:
            return v
        if kind == CPU:
            return p[v] if 0 <= v < self.n else v
        if kind == OWNER:
            return self._owner_value(v, at)
        if not v:
            return v
        if kind == PTR:
            return self.addr(v, p)
        if kind == TAIL16:
            return self.value(WORD, v << 16, p) >> 16
        q = self.q
        tail = v & q._Q_TAIL_MASK
        cpu, idx = q.decode_tail(tail)
        if not 0 <= cpu < self.n:  # no queue (or no such CPU): nothing to rename
            return v
        return (v & ~q._Q_TAIL_MASK) | q.encode_tail(p[cpu], idx)

    def _owner_value(self, v: int, at: int) -> int:
        """An owner field's value in an operation or store buffer: 1 for its CPU's number, 0 for 0."""
        owner = self.owner(at)
        if v == owner:
            return 1
        if v == 0:
            return 0
        raise SymmetryError(f"{self.world.mem.name_of(at)} gets {v}, neither 0 nor its own CPU {owner}")

    def memory(self, data, p: tuple) -> bytes:
        """The memory above the first object, renamed; owner fields as 1 (written) or 0."""
        first = self.first_object
        src = bytearray(data[first:])
        written = self.world.owners_set
        for addr, (bit, _) in self.owner_fields.items():
            at = addr - first
            src[at] = 1 if written & bit else 0  # the field's other bytes hold 0 either way
        if p == self.identity:
            return bytes(src)
        out = bytearray(src)
        for bases, size in self.blocks:
            for cpu, base in enumerate(bases):
                to = bases[p[cpu]] - first
                if to != base - first:
                    out[to:to + size] = src[base - first:base - first + size]
        value = self.value
        for start, end, found, at_byte, zero_is_none in self.fields:
            if not zero_is_none:
                for addr, size, kind in found:
                    at = addr - first
                    v = int.from_bytes(out[at:at + size], "little")
                    out[at:at + size] = value(kind, v, p).to_bytes(size, "little")
                continue
            bits = int.from_bytes(out[start:end], "little")
            while bits:  # the nonzero bytes, lowest first: rename the field holding each
                byte = ((bits & -bits).bit_length() - 1) >> 3
                field = at_byte.get(byte)
                if field is None:
                    bits &= ~(0xFF << (8 * byte))
                    continue
                at, size, kind = field
                bits &= ~(((1 << (8 * size)) - 1) << (8 * (at - start)))
                v = int.from_bytes(out[at:at + size], "little")
                out[at:at + size] = value(kind, v, p).to_bytes(size, "little")
        return bytes(out)

    # ----------------------------------------------------------------- encoding the per-CPU state
    def _code(self, code) -> tuple:
        encoded = self.codes.get(code)
        if encoded is None:  # by name and place, so that keys compare alike in every world and process
            encoded = self.codes[code] = (_CODE, code.co_qualname, code.co_filename, code.co_firstlineno)
        return encoded

    def encode(self, v, kind, p: tuple, where, at: int = 0):
        t = type(v)
        if t is int:
            if kind is None:
                raise SymmetryError(f"local {where[1]!r} of {where[0]} holds an integer of undeclared kind "
                                    "(declare it in the lock's DECLARED locals, pvspin.kernel.declarations)")
            return (_INT, self.value(kind, v, p, at))
        if v is None:
            return (_NONE,)
        if t is bool:
            return (_BOOL, int(v))
        if t is str:
            return (_STR, v)
        if t is View:
            return (_VIEW, self.addr(v.addr, p))
        if t is Ref:
            return (_REF, self.addr(v.addr, p), v.size)
        if t is tuple:
            return (_TUPLE, tuple([self.encode(x, kind, p, where, at) for x in v]))
        if t is CodeType:
            return self._code(v)
        oid = self.objects.get(v)
        if oid is None:
            oid = self.objects[v] = len(self.objects)
        return (_OBJ, oid)

    def _kinds(self, code) -> dict:
        kinds = self.local_kinds.get(code)
        if kinds is None:
            qual = code.co_qualname
            kinds = self.local_kinds[code] = self.declared.locals.get(qual) or HARNESS_LOCALS.get(qual, {})
        return kinds

    def _depends(self, v, kind) -> bool:
        """Whether renaming can change ``v`` (a value of ``kind``)."""
        t = type(v)
        if t is int:
            if kind is None or kind == PLAIN or kind == OWNER:
                return False
            if kind == CPU:
                return True
            if kind == PTR:
                return v >= self.first_object and self._block(v) is not None
            return bool((v << 16 if kind == TAIL16 else v) & self.tail_cpu_mask)
        if t is View or t is Ref:
            return self._block(v.addr) is not None
        if t is tuple:
            return any(self._depends(x, kind) for x in v)
        return False

    def _part(self, v, kind, where, at, holes: list):
        """``v`` encoded, or a hole (recorded in ``holes``) where renaming may change it."""
        if self._depends(v, kind):
            holes.append((v, kind, where, at))
            return _HOLE
        return self.encode(v, kind, self.identity, where, at)

    def _frame(self, part: tuple) -> tuple:
        """A frame's encoding with holes: (encoding, holes)."""
        cached = self._frame_cache.get(part)
        if cached is not None:
            return cached
        code, lasti, names, values = part
        kinds = self._kinds(code)
        qual = code.co_qualname
        holes = []
        encoded = (self._code(code), lasti,
                   tuple([self._part(v, kinds.get(name), (qual, name), 0, holes)
                          for name, v in zip(names, values, strict=True)]))
        self._frame_cache.put(part, (encoded, holes))
        return encoded, holes

    def _op(self, op: tuple, holes: list) -> tuple:
        code = op[0]
        where = ("op", o.OPCODE_NAMES[code])
        if code == o.PV_KICK or code == o.VCPU_IS_PREEMPTED:
            return (code, self._part(op[1], CPU, where, 0, holes))
        shape = _OP_OPERANDS.get(code)
        if shape is None:  # a fence
            return (code, *[self.encode(v, PLAIN, self.identity, where) for v in op[1:]])
        ref = op[1]
        field = self.access_kind(ref.addr, ref.size)
        return (code, self._part(ref, PLAIN, where, 0, holes),
                *[self._part(v, field if k == _FIELD else k, where, ref.addr, holes)
                  for v, k in zip(op[2:], shape, strict=False)])

    def _template(self, state: tuple) -> tuple:
        """A CPU's encoding with holes where renaming may change it: (encoding, holes)."""
        cached = self._cpu_cache.get(state)
        if cached is not None:
            return cached
        k, ctx_keys, buffer, halted, latched, irqs = state
        holes = []
        ctxs = []
        for level, kind, op, frames in ctx_keys:
            encoded_frames = []
            for f in frames:
                encoded, frame_holes = self._frame(f)
                encoded_frames.append(encoded)
                holes.extend(frame_holes)
            ctxs.append((level, kind, self._op(op, holes), tuple(encoded_frames)))
        where = ("store buffer", "entry")
        buf = tuple((self._part(a, PTR, where, 0, holes), s, self._part(v, self.access_kind(a, s), where, a, holes))
                    for a, s, v in buffer)
        template = ((k, tuple(ctxs), buf, halted, latched, irqs), holes)
        self._cpu_cache.put(state, template)
        return template

    def cpu(self, cpu: int, p: tuple) -> tuple:
        """A CPU's state renamed by ``p``: its encoding with holes, and what fills them, in order."""
        w = self.world
        encoded, holes = self._template(w.cpu_keys[cpu])
        encode = self.encode
        return (encoded, tuple([encode(v, kind, p, where, at) for v, kind, where, at in holes]),
                w.unmoved >> cpu & 1)

    def signature(self, cpu: int) -> tuple:
        """What renaming leaves unchanged of a CPU: counts and code positions, no values."""
        w = self.world
        state = w.cpu_keys[cpu]
        cached = self._sig_cache.get(state)
        if cached is not None:
            return cached + (w.unmoved >> cpu & 1,)
        k, ctx_keys, buffer, halted, latched, irqs = state
        code = self._code
        sig = (k, tuple((level, kind, op[0], tuple((code(f[0]), f[1]) for f in frames))
                        for level, kind, op, frames in ctx_keys),
               len(buffer), halted, latched, irqs)
        self._sig_cache.put(state, sig)
        return sig + (w.unmoved >> cpu & 1,)

    # ----------------------------------------------------------------- the canonical key
    def candidates(self) -> list[tuple]:
        """The renamings (``p[cpu]`` = its new number) that sort the twins by signature."""
        twins = self.twins
        sigs = sorted((self.signature(c), c) for c in twins)
        groups = []
        for sig, cpu in sigs:
            if groups and groups[-1][0] == sig:
                groups[-1][1].append(cpu)
            else:
                groups.append((sig, [cpu]))
        identity = list(range(self.n))
        out = []
        for choice in product(*(permutations(g) for _, g in groups)):
            p = identity[:]
            order = [c for g in choice for c in g]
            for slot, cpu in zip(twins, order, strict=True):
                p[cpu] = slot
            out.append(tuple(p))
        return out

    def canonical(self) -> tuple[tuple, tuple]:
        """(key, renaming): the smallest encoded key over the sorting renamings, and the renaming that gives it.

        Memory is compared first, as it is cheap to rename and usually decides; the per-CPU
        encodings are built only for the renamings that tie on it.
        """
        data = self.world.data
        cands = self.candidates()
        if len(cands) == 1:
            p = cands[0]
            return self._key(p, self.memory(data, p)), p
        mems = [self.memory(data, p) for p in cands]
        low = min(mems)
        best = None
        for p, mem in zip(cands, mems, strict=True):
            if mem == low:
                key = self._key(p, mem)
                if best is None or key < best[0]:
                    best = (key, p)
        return best

    def _key(self, p: tuple, mem: bytes) -> tuple:
        w = self.world
        inverse = [0] * self.n
        for cpu, slot in enumerate(p):
            inverse[slot] = cpu
        return (mem, tuple(self.cpu(c, p) for c in inverse), w.spurious_budget, w.irqs_taken)


def rename_moves(mask: int, p: tuple) -> int:
    """A bitmask of moves (``cpu * 8 + kind``) with its CPUs renamed."""
    out = 0
    while mask:
        low = mask & -mask
        move = low.bit_length() - 1
        out |= 1 << (p[move >> 3] * 8 + (move & 7))
        mask ^= low
    return out
