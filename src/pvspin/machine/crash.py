"""Guest code that fails as Python: how a driver tells it from its own bug, and says it in one line.

Guest code runs inside the drivers' loops (the timed simulator's, the checkers'), so a Python
error in a lock -- an exception, a method that returns no generator, a yielded value that is
not an operation, an operand that is not an address or a number, a predicate that raises --
surfaces in the driver.  The drivers do not inspect operations on their way in beyond what they
already dispatch on (that would cost on every step); they catch what fails, around a step, and
ask :func:`guest_crash` whose fault it is:

* the error passed through guest code (a file outside the drivers: the user's lock and its
  predicates, the kernel package; or the drivers' own guest code, the workloads), or
* the operation the guest yielded is malformed (:func:`operation_problem`).

Anything else is the driver's own bug and is re-raised untouched, traceback and all.
"""

from __future__ import annotations

import inspect
import os
import sysconfig
from pathlib import Path

from . import ops as o
from .memory import Ref


class GuestCrash(Exception):
    """Guest code failed as Python; ``str()`` is one line: the error and the guest function it came from.

    ``prop``: the checker's name for it, ``guest-crash``, or ``guest-hang`` for guest code that
    stopped yielding (see pvspin.machine.watchdog).
    """

    def __init__(self, message: str, prop: str = "guest-crash"):
        super().__init__(message)
        self.prop = prop


_PACKAGE = Path(__file__).resolve().parent.parent
# Driver code is the whole package but kernel/ (guest code): the checkers and the simulator, and
# what calls them (the CLI, the worker pools of pvspin.parallel); exceptions raised only there are
# the driver's.
_PACKAGE_DIR = f"{_PACKAGE}{os.sep}"
_KERNEL_DIR = f"{_PACKAGE / 'kernel'}{os.sep}"
LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib")})
# The drivers' own guest code: the checker's harness, locktorture, the CPU hogs.
_GUEST_MODULES = frozenset(str(_PACKAGE / m) for m in ("check/harness.py", "sim/workload.py", "sim/scenario.py"))


def is_guest(code) -> bool:
    """Whether a code object is guest code (see the module docstring)."""
    file = code.co_filename
    if file in _GUEST_MODULES or file.startswith(_KERNEL_DIR):
        return True
    return not file.startswith((_PACKAGE_DIR, "<frozen") + LIBRARY_DIRS)


def _place(code, line: int | None) -> str:
    return f"{code.co_qualname}, {Path(code.co_filename).name}:{line}"


def _user_first(frames: list) -> tuple | None:
    """The innermost frame outside the pvspin package, else the innermost guest frame."""
    outside = [f for f in frames if not f[0].co_filename.startswith(str(_PACKAGE))]
    return (outside or frames or [None])[-1]


def where(gen) -> str | None:
    """Where a suspended generator stands: its innermost ``yield from`` frame.

    A driver's wrapper that sends to the guest's generator itself keeps it in its local ``gen``.
    """
    frames = []
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        frames.append((gen.gi_code, gen.gi_frame.f_lineno))
        inner = gen.gi_yieldfrom
        gen = inner if inner is not None else gen.gi_frame.f_locals.get("gen")
    at = _user_first(frames)
    return _place(*at) if at else None


NOTHING = object()  # no operation yielded yet (None is a value a guest can yield)


def guest_crash(exc: BaseException, op=NOTHING, gen=None) -> GuestCrash | None:
    """A :class:`GuestCrash` if ``exc``, caught around a guest step, is the guest's doing; else None.

    ``op`` is the operation the guest had yielded, ``gen`` its generator (for where it stands).
    """
    if isinstance(exc, GuestCrash):
        return exc
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        if is_guest(tb.tb_frame.f_code):
            frames.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if frames:
        prop = "guest-hang" if type(exc).__name__ == "GuestHang" else "guest-crash"
        return GuestCrash(f"{error} (in {_place(*_user_first(frames))})", prop)
    problem = operation_problem(op) if op is not NOTHING else None
    if problem is None:
        return None
    at = where(gen)
    return GuestCrash(f"yielded {_short(op)}: {problem}" + (f" (in {at})" if at else ""))


def not_a_generator(method: str, value) -> GuestCrash | None:
    """A crash if a guest method returned something other than guest code (a generator)."""
    if inspect.isgenerator(value):
        return None
    return GuestCrash(f"{method}() returned {_short(value)}, not a generator (guest code yields its operations)")


# --------------------------------------------------------------------------- operations
ARITY = {
    o.LOAD: 3, o.STORE: 4, o.XCHG: 4, o.CMPXCHG: 5, o.TRY_CMPXCHG: 5, o.FETCH_ADD: 4, o.FETCH_OR: 4,
    o.FETCH_ANDNOT: 4, o.FENCE: 2, o.COND_LOAD: 5, o.CPU_RELAX: 1, o.WORK: 3, o.PV_WAIT: 3, o.PV_KICK: 2,
    o.VCPU_IS_PREEMPTED: 2, o.SMP_PROCESSOR_ID: 1, o.IN_NMI: 1, o.IRQS: 2, o.LOCKEVENT: 3, o.CS: 3,
    o.WARNING: 2, o.LOCAL_CLOCK: 1, o.LOAD_EX: 3, o.STORE_EX: 4, o.CMPXCHG_MASKED: 7,
}  # fmt: skip
REF_OPS = o.MEMORY_OPS | {o.PV_WAIT, o.LOAD_EX, o.STORE_EX}
# operand positions that must hold integers (values, CPU numbers, cycles), by opcode
_INT_OPERANDS = {
    o.STORE: (2,), o.XCHG: (2,), o.CMPXCHG: (2, 3), o.TRY_CMPXCHG: (2, 3), o.FETCH_ADD: (2,), o.FETCH_OR: (2,),
    o.FETCH_ANDNOT: (2,), o.PV_WAIT: (2,), o.PV_KICK: (1,), o.VCPU_IS_PREEMPTED: (1,), o.WORK: (1,),
    o.STORE_EX: (2,), o.FENCE: (1,),
}  # fmt: skip


def operation_problem(op) -> str | None:
    """What is wrong with a yielded value as an operation (see :mod:`pvspin.machine.ops`), or None."""
    if type(op) is not tuple:
        return f"not an operation (a {type(op).__name__}; operations are built by pvspin.machine.ops)"
    if not op or type(op[0]) is not int or op[0] not in ARITY:
        return "not an operation (no known opcode first)"
    name = o.OPCODE_NAMES[op[0]]
    if len(op) != ARITY[op[0]]:
        return f"{name} takes {ARITY[op[0]] - 1} operand(s), got {len(op) - 1}"
    if op[0] in REF_OPS and type(op[1]) is not Ref:
        return f"{name} of {_short(op[1])}, which is not an address (a field of a lock's memory, e.g. lock.val)"
    for i in _INT_OPERANDS.get(op[0], ()):
        if not isinstance(op[i], int):  # int subclasses too: the graph checker's values carry dependencies
            return f"{name} operand {i} is {_short(op[i])}, not an integer"
    if op[0] == o.COND_LOAD and not callable(op[2]):
        return f"COND_LOAD condition {_short(op[2])} is not callable"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
