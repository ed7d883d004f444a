"""Whole-word accesses for locks whose word has sub-word fields: what the graph checker runs them as.

qspinlock stores its locked byte, pending byte and 16-bit tail separately, and reads the
32-bit word whole.  The execution-graph checker has no mixed-size model (ARMv8's, with
reads-from per byte, is not implemented, and the Linux-kernel memory model has none at
all), so -- as the published verifications of qspinlock did -- it checks a variant whose
every access to a field that lies inside a bigger field of the same struct (a union
member: ``lock.locked`` inside ``lock.val``) is an access to that bigger field:

* a load of the field loads the word and keeps the field's bits;
* a store, an ``xchg`` or a ``cmpxchg`` of the field is one RMW of the word that changes
  only the field's bits (``CMPXCHG_MASKED``), with the access's ordering: an atomic byte
  store, where the kernel has a plain one;
* ``fetch_or`` / ``fetch_andnot`` of the field are the same RMW of the word with the
  operand shifted into place;
* a spin-wait on the field waits on the word for a value whose field satisfies it.

This is not the kernel's code: a byte store and a halfword ``xchg`` to other bytes of the
word are, on the hardware, accesses to different locations, which here are coherence-
ordered RMWs of one location -- stronger, so a bug that needs them unordered is not
found.  Reports name every field lowered this way.

A lowered RMW writes back the bits outside its field that it read, so the explorer gives
its write a data dependency on its read (the word-wide form of the access,
``new = (old & ~mask) | field`` as in the kernel's NR_CPUS >= 16K ``xchg_tail()``, has
one).  It must: a later read of the same thread that reads the lowered write takes the
other fields from it -- an ``rfi`` -- where the kernel's read takes them from whoever wrote
them, often another CPU (an ``rfe``).  The LKMM orders nothing after an ``rfi`` unless a
dependency leads into the write (``to-r = addr | (dep ; rfi)``), so without the dependency
the lowered lock is *weaker* than the kernel's: a queue head's acquire reading its own
lowered ``xchg_relaxed(tail)`` or ``WRITE_ONCE(pending)`` was not ordered after the unlock
that write had carried the locked byte from, and the checker reported lost updates
(pvqspinlock 2x1, qspinlock 3x1) the kernel's code does not have.  The same holds for
``fetch_or`` / ``fetch_andnot`` of a field (pvticket's ``atomic_or`` on the ticket head):
every lowered RMW's write depends on its read.
"""

from __future__ import annotations

from ...machine import ops as o
from ...machine.memory import MASKS, Memory, Ref


class FieldTest:
    """A spin-wait's condition on a field, applied to the word holding it."""

    __slots__ = ("cond", "shift", "mask")

    def __init__(self, cond, shift: int, mask: int):
        self.cond, self.shift, self.mask = cond, shift, mask

    def __call__(self, word: int) -> bool:
        return self.cond((word >> self.shift) & self.mask)

    def __eq__(self, other) -> bool:
        return (type(other) is FieldTest and getattr(self.cond, "__code__", self.cond) ==
                getattr(other.cond, "__code__", other.cond) and (self.shift, self.mask) == (other.shift, other.mask))

    def __hash__(self) -> int:
        return hash((getattr(self.cond, "__code__", self.cond), self.shift, self.mask))


class Words:
    """Which locations are fields of a bigger one: every struct field that lies inside a bigger field of its struct."""

    def __init__(self, mem: Memory):
        self.fields: dict[tuple[int, int], tuple[Ref, int, int]] = {}  # (addr, size) -> (word, shift, field mask)
        self.lowered: set[str] = set()  # what was lowered, for the report
        for view in mem._objects.values():
            refs = [getattr(view, f.name) for f in view.layout.fields]
            for ref in refs:
                words = [w for w in refs if w.size > ref.size and w.addr <= ref.addr and
                         ref.addr + ref.size <= w.addr + w.size]
                if words:
                    word = max(words, key=lambda w: w.size)
                    self.fields[(ref.addr, ref.size)] = (word, 8 * (ref.addr - word.addr), MASKS[ref.size])

    def lower(self, op: tuple, name_of) -> tuple[tuple, object]:
        """The whole-word operation standing for ``op`` and a function from its result to ``op``'s; ``(op, None)`` if none."""
        code = op[0]
        if code not in o.MEMORY_OPS:
            return op, None
        ref = op[1]
        field = self.fields.get((ref.addr, ref.size))
        if field is None:
            return op, None
        word, shift, mask = field
        word = word.depending(ref.deps)
        self.lowered.add(f"{name_of(ref.addr, ref.size)} in {name_of(word.addr, word.size)}")
        bits = mask << shift

        def part(value):
            return (value >> shift) & mask

        if code == o.LOAD:
            return (o.LOAD, word, op[2]), part
        if code == o.COND_LOAD:
            return (o.COND_LOAD, word, FieldTest(op[2], shift, mask), op[3], op[4]), part
        if code == o.STORE:
            return (o.CMPXCHG_MASKED, word, bits, None, (op[2] & mask) << shift, op, op[3]), lambda old: None
        if code == o.XCHG:
            return (o.CMPXCHG_MASKED, word, bits, None, (op[2] & mask) << shift, op, op[-1]), part
        if code in (o.CMPXCHG, o.TRY_CMPXCHG):
            expected = (op[2] & mask) << shift
            lowered = (o.CMPXCHG_MASKED, word, bits, expected, (op[3] & mask) << shift, op, op[-1])
            if code == o.CMPXCHG:
                return lowered, part
            return lowered, lambda old: (part(old) == op[2] & mask, part(old))
        if code in (o.FETCH_OR, o.FETCH_ANDNOT):
            return (code, word, (op[2] & mask) << shift, op[-1]), part
        raise Unlowerable(f"{o.describe(op)}: no whole-word form (the field is part of "
                          f"{name_of(word.addr, word.size)})")


class Unlowerable(Exception):
    """A sub-word access this module has no whole-word form for."""
