"""Simulated guest memory: byte-addressed, little-endian, with named allocations.

Accesses of 1, 2, 4 and 8 bytes alias exactly as on x86: a 16-bit xchg on the upper half
of a 32-bit word is seen by a later 32-bit read.  Every allocation has a name and a struct
layout, so any address prints symbolically (``lock0.locked``, ``qnodes[2][1].next``).

Guest code never handles raw addresses for its own fields: it holds :class:`Ref` objects
(address, size, cache line, symbolic name), created once at allocation time.  Pointers
*stored* in memory are plain integers; :meth:`Memory.object_at` turns one back into the
view object that was allocated there (what the kernel does with a cast).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass

from .deps import deps_of

CACHE_LINE = 64
_FORMATS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}
MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}
NULL = 0
# Address 0 is NULL; allocations start above it so that no object lives at NULL.
_BASE = 0x1000


class Ref:
    """A sized location in guest memory: what a C lvalue such as ``lock->locked`` denotes."""

    __slots__ = ("addr", "size", "line", "name", "fmt", "mask", "deps")

    def __init__(self, addr: int, size: int, name: str, deps: int = 0):
        if size not in _FORMATS:
            raise ValueError(f"access size {size} is not 1, 2, 4 or 8 bytes")
        if addr % size:
            raise ValueError(f"{name}: address {addr:#x} is not aligned to its size {size}")
        self.addr = addr
        self.size = size
        self.line = addr // CACHE_LINE
        self.name = name
        self.fmt = _FORMATS[size]  # drivers' hot paths unpack/pack with it directly
        self.mask = MASKS[size]
        self.deps = deps  # read events its address was computed from (see machine/deps.py)

    def depending(self, deps: int) -> Ref:
        """The same location, reached through an address computed from the reads in ``deps``."""
        return self if not deps else Ref(self.addr, self.size, self.name, self.deps | deps)

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int


class Layout:
    """A C struct layout: named fields (which may overlap, as union members do) and a size."""

    def __init__(self, name: str, size: int, fields: list[tuple[str, int, int]], align: int = 8):
        self.name = name
        self.size = size
        self.align = align
        self.fields = [Field(*f) for f in fields]
        for f in self.fields:
            if f.offset + f.size > size:
                raise ValueError(f"{name}.{f.name} overflows the struct")

    def field_name(self, offset: int, size: int) -> str:
        """Best symbolic name for ``size`` bytes at ``offset`` inside one instance."""
        for f in self.fields:
            if f.offset == offset and f.size == size:
                return f.name
        for f in self.fields:
            if f.offset <= offset and offset + size <= f.offset + f.size:
                return f"{f.name}+{offset - f.offset}" if offset != f.offset else f.name
        return f"+{offset}"


class View:
    """One allocated struct instance: ``view.<field>`` is a :class:`Ref`, ``view.addr`` its base."""

    def __init__(self, addr: int, layout: Layout, name: str, deps: int = 0):
        self.addr = addr
        self.layout = layout
        self.name = name
        self.deps = deps
        for f in layout.fields:
            setattr(self, f.name, Ref(addr + f.offset, f.size, f"{name}.{f.name}", deps))

    def depending(self, deps: int) -> View:
        """The same object, reached through a pointer computed from the reads in ``deps``."""
        return self if not deps else View(self.addr, self.layout, self.name, self.deps | deps)

    def __repr__(self) -> str:
        return self.name


@dataclass
class Region:
    name: str
    base: int
    end: int
    layout: Layout
    shape: tuple[int, ...]

    def element_name(self, offset: int) -> tuple[str, int]:
        """Symbolic element name (``qnodes[2][1]``) for an offset, and the offset inside it."""
        index, inner = divmod(offset, self.layout.size)
        name = self.name
        if self.shape:
            subs = []
            for dim in reversed(self.shape):
                index, sub = divmod(index, dim)
                subs.append(sub)
            name += "".join(f"[{s}]" for s in reversed(subs))
        return name, inner


class Memory:
    """The guest's physical memory plus the allocation map used to name addresses."""

    def __init__(self) -> None:
        self.data = bytearray(_BASE)
        self.regions: list[Region] = []
        self._starts: list[int] = []
        self._objects: dict[int, object] = {}
        self.percpu: list[list[Region]] = []  # per alloc_percpu(): each CPU's copy, by CPU

    # ----------------------------------------------------------------- allocation
    def alloc(self, layout: Layout, name: str, shape: tuple[int, ...] = (), align: int | None = None):
        """Allocate one struct, or an array of them with the given shape.

        Returns a :class:`View`, or nested lists of views for an array.  ``align`` defaults
        to the layout's alignment; pass ``CACHE_LINE`` to give the object a line of its own
        start (``____cacheline_aligned``).
        """
        if not name:
            raise ValueError("an allocation needs a name")
        align = align or layout.align
        count = 1
        for dim in shape:
            if dim <= 0:
                raise ValueError(f"{name}: array dimension {dim} must be positive")
            count *= dim
        base = -(-len(self.data) // align) * align
        end = base + count * layout.size
        self.data.extend(bytes(end - len(self.data)))
        region = Region(name, base, end, layout, shape)
        self.regions.append(region)
        self._starts.append(base)

        def build(prefix: str, addr: int, dims: tuple[int, ...]):
            if not dims:
                view = View(addr, layout, prefix)
                self._objects[addr] = view
                return view
            stride = layout.size
            for d in dims[1:]:
                stride *= d
            return [build(f"{prefix}[{i}]", addr + i * stride, dims[1:]) for i in range(dims[0])]

        return build(name, base, shape)

    def alloc_percpu(self, layout: Layout, name: str, ncpus: int, count: int | None = None):
        """A per-CPU variable: ``result[cpu]``, or ``result[cpu][i]`` for a per-CPU array.

        Each CPU's copy starts on a cache line of its own, as per-CPU areas do.
        """
        if ncpus <= 0:
            raise ValueError(f"{name}: ncpus must be positive, got {ncpus}")
        shape = (count,) if count else ()
        copies = [self.alloc(layout, f"{name}[{cpu}]", shape, align=CACHE_LINE) for cpu in range(ncpus)]
        self.percpu.append(self.regions[-ncpus:])
        return copies

    def object_at(self, addr: int):
        """The view allocated at ``addr`` (the guest's cast of a stored pointer).

        A pointer read under a weak memory model carries the reads it came from, and so
        does the view returned: accesses through it have an address dependency on them.
        """
        deps = deps_of(addr)
        try:
            view = self._objects[int(addr)]
        except KeyError:
            raise KeyError(f"no object allocated at {int(addr):#x}") from None
        return view.depending(deps) if deps else view

    def ref_at(self, addr: int, size: int) -> Ref:
        """A location by address (litmus tests compute them), named symbolically, with the address's dependencies."""
        plain = int(addr)
        return Ref(plain, size, self.name_of(plain, size), deps_of(addr))

    # ----------------------------------------------------------------- naming
    def name_of(self, addr: int, size: int = 1) -> str:
        """Symbolic name of ``size`` bytes at ``addr``: ``lock0.locked``, ``qnodes[2][1].next``."""
        if addr == NULL:
            return "NULL"
        i = bisect_right(self._starts, addr) - 1
        if i >= 0:
            region = self.regions[i]
            if addr < region.end:
                elem, inner = region.element_name(addr - region.base)
                return f"{elem}.{region.layout.field_name(inner, size)}"
        return f"{addr:#x}"

    def describe_value(self, value: int) -> str:
        """A stored value shown as a pointer when it is the address of an allocated object."""
        obj = self._objects.get(value) if value else None
        return f"&{obj.name}" if obj is not None else str(value)

    # ----------------------------------------------------------------- access
    def read(self, addr: int, size: int) -> int:
        return _FORMATS[size].unpack_from(self.data, addr)[0]

    def write(self, addr: int, size: int, value: int) -> None:
        _FORMATS[size].pack_into(self.data, addr, value & MASKS[size])

    def snapshot(self) -> bytes:
        return bytes(self.data)

    def restore(self, snap: bytes) -> None:
        self.data[:] = snap
