"""Values that remember the reads they were computed from: address, data and control dependencies.

ARMv8 and the Linux-kernel memory model order a later access after an earlier read when
the access *depends* on the value read: its address was computed from it (addr), the
value it stores was (data), or a branch on it came first (ctrl).  Guest code is Python, so
a weak-memory driver hands each read's value back as a :class:`Dep`: an ``int`` that
carries the set of read events it derives from (a bit mask over event numbers), through
arithmetic and comparisons.

* **data**: an operation whose operands (the value stored, an RMW's operand) carry
  dependencies depends on those reads.
* **addr**: a :class:`~pvspin.machine.memory.Ref` built from a dependent value carries
  them (:meth:`Ref.depending`); :meth:`Memory.object_at` and :meth:`Memory.ref_at`
  propagate them from the pointer or address they are given, so the kernel's casts of a
  loaded pointer (``deref``) and its pointer arithmetic (``decode_tail``) keep them.
* **ctrl**: testing a dependent value for truth (``if val:``, ``while v != 0:``, the
  result of a comparison) is a branch; :data:`observer`'s ``branch(deps)`` is told, and
  every later event of the thread depends on those reads, as herd's ``ctrl`` says.

What this cannot follow: CPython uses an ``int`` subclass as a list index or a slice
bound without asking it, so an object picked from a Python list by a dependent index
carries no address dependency unless the code says so (``QSpinlock.qnode`` does, as
its kernel counterpart is pointer arithmetic).  A missed dependency can only allow more
executions than the hardware has, never fewer: it may cause a false alarm, not hide a
bug, and a weak-memory counterexample names the reordered accesses so that a reader can
see whether a dependency orders them.

Under SC and x86-TSO the drivers return plain integers, and none of this runs.
"""

from __future__ import annotations

import operator

observer = None  # the weak-memory driver while guest code runs: .branch(deps)


class Dep(int):
    """An integer with the read events it was computed from (``deps``, a bit mask)."""

    def __new__(cls, value: int, deps: int):
        obj = int.__new__(cls, value)
        obj.deps = deps
        return obj

    def __repr__(self) -> str:
        return f"{int(self)}"

    __str__ = __repr__
    __hash__ = int.__hash__

    def __bool__(self) -> bool:
        if observer is not None and self.deps:
            observer.branch(self.deps)
        return int(self) != 0

    def __int__(self) -> int:
        return int.__int__(self)

    def __reduce__(self):  # pickled with its dependencies (a result coming back from a worker process)
        return Dep, (int(self), self.deps)


def deps_of(value) -> int:
    """The read events ``value`` was computed from (0 for a plain value)."""
    return getattr(value, "deps", 0) if type(value) is Dep else 0


def with_deps(value: int, deps: int):
    """``value`` carrying ``deps`` as well as its own (a plain int when there are none)."""
    deps |= deps_of(value)
    return Dep(int(value), deps) if deps else value


def _binary(name: str):
    fn = getattr(operator, f"__{name}__")

    def forward(self, other):
        result = fn(int(self), int(other) if type(other) is Dep else other)
        if result is NotImplemented or type(result) not in (int, bool):
            return result
        return Dep(result, self.deps | deps_of(other))

    def backward(self, other):
        result = fn(other, int(self))
        if result is NotImplemented or type(result) not in (int, bool):
            return result
        return Dep(result, self.deps)

    return forward, backward


for _name in ("add", "sub", "mul", "floordiv", "mod", "and", "or", "xor", "lshift", "rshift", "pow"):
    _fwd, _bwd = _binary(_name)
    setattr(Dep, f"__{_name}__", _fwd)
    setattr(Dep, f"__r{_name}__", _bwd)

for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    # a comparison is a Dep too, so that branching on it is a control dependency
    setattr(Dep, f"__{_name}__", _binary(_name)[0])

def _unary(name: str):
    fn = getattr(operator, name)

    def apply(self):
        return Dep(fn(int(self)), self.deps)

    return apply


for _name in ("neg", "pos", "abs", "invert"):
    setattr(Dep, f"__{_name}__", _unary(_name))

del _name, _fwd, _bwd
