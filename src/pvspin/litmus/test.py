"""A litmus test as guest code: locations, initial registers, threads, final condition.

:class:`LitmusTest` is what a front end (:mod:`.x86`, :mod:`.aarch64`) makes of a file;
it holds no memory.  :meth:`LitmusTest.instance` builds a fresh :class:`Instance`: a
:class:`~pvspin.machine.memory.Memory` with one 8-byte location per name, each on a cache
line of its own (so that no address computed from another location's lands on it), the
initial values written, and one :class:`Thread` per column whose :meth:`Thread.program`
is guest code -- a generator that yields operations of :mod:`pvspin.machine.ops`,
allocates nothing, and returns a dict of its final registers.

Values follow herd's reading of these suites: a location holds one 64-bit value (herd's
non-mixed model: every access to it is the whole location, whatever the register width),
a register initialised to a location's name (AArch64 ``0:X1=x``) holds the plain int
address of that location, and a location initialised to a name (``x=y``) holds its
address.  Tests whose accesses are narrower than their locations are mixed-size tests,
which the front ends report unsupported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..machine.memory import CACHE_LINE, Layout, Memory
from .cond import MASK64, Condition, Var
from .source import Malformed, Source, Unsupported, number

SLOT = Layout("loc", 8, [("v", 0, 8)])
LOCATION_SIZE = 8

# a final state: (location or register, value) pairs in herd's printing order
FinalState = tuple[tuple[Var, int], ...]


class ThreadCode(Protocol):
    """What a front end compiles one column into."""

    stores: int  # plain stores the code can issue at most (no loops): the TSO engine's buffer check

    def program(self, instance: Instance, tid: int) -> Iterator[tuple]:
        """Guest code over ``instance``'s memory; returns ``{register name: value}``."""

    def observe(self, registers: dict, name: str) -> int:
        """The value of register ``name`` as a final state shows it, from what :meth:`program` returned."""


@dataclass
class LitmusTest:
    """One parsed test: everything but the memory it runs in (:meth:`instance` makes that)."""

    path: Path
    arch: str  # "X86" or "AArch64"
    name: str
    locations: dict[str, int | str]  # initial value of each location: an int, or a location name (its address)
    registers: list[dict[str, int | str]]  # per thread: initial registers, canonical names
    threads: list[ThreadCode]  # per thread: the front end's compiled code
    condition: Condition
    features: dict[str, int] = field(default_factory=dict)  # construct -> first line (e.g. "exclusive")
    locks: dict[str, int] = field(default_factory=dict)  # C tests: location passed to spin_*() -> first line

    @property
    def observed(self) -> tuple[Var, ...]:
        """What each final state shows: the condition's locations and registers and ``locations [...]``."""
        return self.condition.variables()

    def instance(self, spinlock=None) -> Instance:
        return Instance(self, spinlock)


class Instance:
    """A test's memory and threads, ready to run; build a fresh one per run.

    With ``spinlock`` (a :class:`pvspin.litmus.spinlock.KernelLock`), the locations the test
    passes to ``spin_*()`` are lock words of that lock, allocated by it (``locks``: name ->
    view), beside its per-CPU nodes, one CPU per thread; they are not in ``refs``, so no
    final state or condition reads them.  Without it, a lock is a location like the others
    (lock.cat's abstract lock).
    """

    def __init__(self, test: LitmusTest, spinlock=None):
        self.test = test
        self.mem = Memory()
        self.spinlock = spinlock
        lock_names = set(test.locks) if spinlock is not None else set()
        # every name gets its slot, a lock's unused with a real lock: the test's locations keep the
        # addresses they have with the abstract lock, so that pointer values compare across the two
        self.refs = {name: self.mem.alloc(SLOT, name if name not in lock_names else f"{name}(abstract)",
                                          align=CACHE_LINE).v for name in sorted(test.locations)}
        for name in lock_names:
            del self.refs[name]
        self.lock = spinlock.build(self.mem, len(test.threads)) if spinlock is not None else None
        self.locks = {name: self.lock.alloc_lock(name) for name in sorted(lock_names)}
        self.names = {ref.addr: name for name, ref in self.refs.items()}  # location address -> name
        self.names.update({view.addr: name for name, view in self.locks.items()})
        for name, value in test.locations.items():
            if name not in lock_names:
                self.mem.write(self.refs[name].addr, LOCATION_SIZE, self.value(value))
        self.threads = [Thread(code, self, tid) for tid, code in enumerate(test.threads)]

    def value(self, v: int | str) -> int:
        """An initial value as stored: a location name is its address; an int, 64-bit two's complement."""
        return self.address(v) if isinstance(v, str) else v & MASK64

    def address(self, name: str) -> int:
        return self.locks[name].addr if name in self.locks else self.refs[name].addr

    def final_state(self, registers: Callable[[Var], int], memory: Callable[[int], int]) -> FinalState:
        """The observed part of a final state, given how to read a register and a location's memory."""
        out = []
        for var in self.test.observed:
            out.append((var, registers(var) if var.is_register else memory(self.refs[var.name].addr)))
        return tuple(out)

    def show(self, value: int) -> str:
        """A value as herd prints it: a location's address as its name, else a signed decimal."""
        name = self.names.get(value)
        if name is not None:
            return name
        return str(value - (1 << 64) if value >> 63 else value)


class Thread:
    """One column of the test, bound to an instance: :meth:`program` is its guest code."""

    def __init__(self, code, instance: Instance, tid: int):
        self.code = code
        self.instance = instance
        self.tid = tid

    def program(self) -> Iterator[tuple]:
        """The thread's guest code (a generator); its return value is a dict of its final registers."""
        return self.code.program(self.instance, self.tid)

    def register(self, registers: dict, name: str) -> int:
        """The value a final state shows for register ``name``, from the dict :meth:`program` returned."""
        return self.code.observe(registers, name)


def format_state(state: FinalState, instance: Instance) -> str:
    """``0:EAX=1; x=2;`` as herd prints a state."""
    return " ".join(f"{var}={instance.show(value)};" for var, value in state)


# --------------------------------------------------------------------------- shared parsing
_DECLARATION = re.compile(r"^(?:u?int\d*_t|int|char|short|long|unsigned|signed|uintptr_t|intptr_t)\b")
_INIT = re.compile(r"^(?:(?P<thread>P?\d+)\s*:\s*(?P<reg>[A-Za-z_]\w*)|\[?(?P<loc>[A-Za-z_]\w*)\]?)\s*=\s*"
                   r"(?P<value>-?(?:0x[0-9a-fA-F]+|\d+)|[A-Za-z_]\w*)$")


def parse_init(src: Source) -> tuple[dict[str, int | str], list[dict[str, tuple[int | str, int]]]]:
    """The initial state: location values, and per thread its registers as written ``{name: (value, line)}``.

    Typed declarations (``uint64_t x;``, the mixed-size suite's) are unsupported.
    """
    locations: dict[str, int | str] = {}
    registers: list[dict[str, tuple[int | str, int]]] = [{} for _ in src.threads]
    for item, line in src.init:
        if _DECLARATION.match(item):
            raise Unsupported(f"unsupported: typed declaration '{item}' (a mixed-size test) at line {line}")
        m = _INIT.match(item)
        if m is None:
            raise Malformed(src.path, line, f"cannot read the initial value {item!r}")
        text = m.group("value")
        value: int | str = text if text[0].isalpha() or text[0] == "_" else number(text)
        if m.group("reg"):
            tid = int(m.group("thread").lstrip("P"))
            if tid >= len(registers):
                raise Malformed(src.path, line, f"{item!r}: the test has no thread {tid}")
            registers[tid][m.group("reg")] = (value, line)
        else:
            locations[m.group("loc")] = value
    return locations, registers


def complete_locations(locations: dict[str, int | str], used: set[str], condition: Condition) -> dict[str, int | str]:
    """Every location the test names (initial state, code, condition), those not initialised at 0."""
    out = dict(locations)
    names = set(used) | condition.address_names() | {v.name for v in condition.variables() if not v.is_register}
    names |= {v for v in locations.values() if isinstance(v, str)}
    for name in names:
        out.setdefault(name, 0)
    return dict(sorted(out.items()))
