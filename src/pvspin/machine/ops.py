"""The operation vocabulary of guest code, named after the kernel's primitives.

Guest code is a generator: every shared-memory access, atomic, barrier, spin-wait and
hypercall is *yielded* as an operation, and the driver (timed simulator or model checker)
sends the result back::

    def queued_spin_trylock(lock):
        val = yield atomic_read(lock.val)
        if val:
            return False
        ok, _ = yield atomic_try_cmpxchg_acquire(lock.val, 0, _Q_LOCKED_VAL)
        return ok

An operation is a plain tuple whose first item is its opcode (tuples are the cheapest
object Python builds, and the drivers' hot loops dispatch on ``op[0]``).  Layouts:

======================  ====================================================  ==================
opcode                  tuple                                                 result
======================  ====================================================  ==================
LOAD                    (LOAD, ref, order)                                    value
STORE                   (STORE, ref, value, order)                            None
XCHG                    (XCHG, ref, new, order)                               old value
CMPXCHG                 (CMPXCHG, ref, expected, new, order)                  old value
TRY_CMPXCHG             (TRY_CMPXCHG, ref, expected, new, order)              (succeeded, old)
FETCH_ADD/OR/ANDNOT     (FETCH_*, ref, operand, order)                        old value
FENCE                   (FENCE, MB | RMB | WMB)                               None
COND_LOAD               (COND_LOAD, ref, predicate, order, bound)             value
CPU_RELAX               (CPU_RELAX,)                                          None
WORK                    (WORK, cycles, account)                               None
PV_WAIT                 (PV_WAIT, ref, value)                                 None
PV_KICK                 (PV_KICK, cpu)                                        None
VCPU_IS_PREEMPTED       (VCPU_IS_PREEMPTED, cpu)                              bool
SMP_PROCESSOR_ID        (SMP_PROCESSOR_ID,)                                   cpu number
IN_NMI                  (IN_NMI,)                                             bool
IRQS                    (IRQS, enable)                                        previous state
LOCKEVENT               (LOCKEVENT, name, amount)                             None
CS                      (CS, lock_id, +1 entering / -1 leaving)               None
WARNING                 (WARNING, message)                                    None
LOCAL_CLOCK             (LOCAL_CLOCK,)                                        driver's time
LOAD_EX                 (LOAD_EX, ref, order)                                 value
STORE_EX                (STORE_EX, ref, value, order)                         0 stored, 1 failed
CMPXCHG_MASKED          (CMPXCHG_MASKED, ref, mask, expected, new, op, order) old value
======================  ====================================================  ==================

``order`` is one of RELAXED, ACQUIRE, RELEASE, FULL, and ACQUIRE_PC (ARMv8's ``LDAPR``).
LOAD_EX and STORE_EX are ARMv8's exclusive pair (``LDXR``/``STXR``), which AArch64 litmus
tests use and kernel code, compiled with LSE atomics, does not; only the execution-graph
checker runs them.  CMPXCHG_MASKED is an RMW of some bits of a word (those in ``mask``: they
become ``new`` if ``expected`` is None or they equal it); it is what a sub-word access
becomes when a checker runs a lock with whole-word accesses (:mod:`pvspin.check.wholeword`),
and ``op`` is the access it stands for.  A *footprint* (:func:`footprint`)
gives the location touched, the kind of access and the ordering; the timed simulator uses
it for costs and the checker for partial-order reduction.

LOCAL opcodes (SMP_PROCESSOR_ID, IN_NMI, IRQS, LOCKEVENT, CS, WARNING, LOCAL_CLOCK) touch no shared state:
drivers answer them at once, at no cost, and they are never scheduling points.
"""

from __future__ import annotations

from collections.abc import Callable

from .memory import Ref

# --------------------------------------------------------------------------- opcodes
LOAD = 0
STORE = 1
XCHG = 2
CMPXCHG = 3
TRY_CMPXCHG = 4
FETCH_ADD = 5
FETCH_OR = 6
FETCH_ANDNOT = 7
FENCE = 8
COND_LOAD = 9
CPU_RELAX = 10
WORK = 11
PV_WAIT = 12
PV_KICK = 13
VCPU_IS_PREEMPTED = 14
SMP_PROCESSOR_ID = 15
IN_NMI = 16
IRQS = 17
LOCKEVENT = 18
CS = 19
WARNING = 20  # the opcode; WARN() below is the kernel macro that yields it
LOCAL_CLOCK = 21
LOAD_EX = 22
STORE_EX = 23
CMPXCHG_MASKED = 24

OPCODE_NAMES = (
    "LOAD STORE XCHG CMPXCHG TRY_CMPXCHG FETCH_ADD FETCH_OR FETCH_ANDNOT FENCE COND_LOAD "
    "CPU_RELAX WORK PV_WAIT PV_KICK VCPU_IS_PREEMPTED SMP_PROCESSOR_ID IN_NMI IRQS LOCKEVENT CS WARNING LOCAL_CLOCK "
    "LOAD_EX STORE_EX CMPXCHG_MASKED"
).split()

RMW_OPS = frozenset({XCHG, CMPXCHG, TRY_CMPXCHG, FETCH_ADD, FETCH_OR, FETCH_ANDNOT, CMPXCHG_MASKED})
MEMORY_OPS = frozenset({LOAD, STORE, COND_LOAD}) | RMW_OPS
LOCAL_OPS = frozenset({SMP_PROCESSOR_ID, IN_NMI, IRQS, LOCKEVENT, CS, WARNING, LOCAL_CLOCK})

# --------------------------------------------------------------------------- orderings
RELAXED = 0
ACQUIRE = 1
RELEASE = 2
FULL = 3
ACQUIRE_PC = 4  # ARMv8.3 LDAPR: acquire, but not ordered after an earlier STLR (RCpc)
STORE_MB = 5  # an XCHG that is smp_store_mb(): a locked xchg on x86, WRITE_ONCE then smp_mb() on arm64
NORETURN = 6  # an RMW whose result the caller discards (atomic_add, atomic_or, ...): relaxed, and LKMM's Noreturn
LOCK = 7  # LKMM's abstract spinlock (litmus tests' spin_lock): its read (LKR/LF/RL/RU) and its LKW
UNLOCK = 8  # LKMM's spin_unlock (UL): a release store of 0 to the lock
ORDER_NAMES = ("relaxed", "acquire", "release", "full", "acquire_pc", "store_mb", "noreturn", "lock", "unlock")

# fences
MB = 0
RMB = 1
WMB = 2
MB_BEFORE_ATOMIC = 3  # the full-barrier guarantee rides on the locked RMW that follows (x86)
MB_AFTER_ATOMIC = 4
ISB = 5  # ARMv8 instruction barrier: with a control dependency, orders later reads
MB_AFTER_SPINLOCK = 6  # smp_mb__after_spinlock(): full ordering after the spin_lock() before it
MB_AFTER_UNLOCK_LOCK = 7  # smp_mb__after_unlock_lock(): an UNLOCK+LOCK pair before it becomes a full barrier
FENCE_NAMES = ("smp_mb", "smp_rmb", "smp_wmb", "smp_mb__before_atomic", "smp_mb__after_atomic", "isb",
               "smp_mb__after_spinlock", "smp_mb__after_unlock_lock")

# footprint access kinds
READ = "R"
WRITE = "W"
RMW = "RMW"

# WORK accounting classes
WORK_CS = "cs"  # inside a critical section
WORK_GUEST = "guest"  # other guest work
WORK_CALL = "call"  # call-site overhead charged by patched/unpatched pv_ops sites
WORK_USER = "user"  # in guest user mode (CPL 3): KVM's directed yield skips a vCPU preempted there


# --------------------------------------------------------------------------- plain accesses
def READ_ONCE(p: Ref):
    """``READ_ONCE(*p)``: a single, untorn, unordered load."""
    return (LOAD, p, RELAXED)


def WRITE_ONCE(p: Ref, value: int):
    """``WRITE_ONCE(*p, v)``: a single, untorn, unordered store."""
    return (STORE, p, value, RELAXED)


def smp_load_acquire(p: Ref):
    return (LOAD, p, ACQUIRE)


def smp_store_release(p: Ref, value: int):
    return (STORE, p, value, RELEASE)


def smp_store_mb(p: Ref, value: int):
    """``smp_store_mb(var, v)``: store then full barrier.

    On x86 it is an ``xchg`` (so drivers of x86 treat it as a fully ordered XCHG); on arm64
    the generic form, ``WRITE_ONCE`` followed by ``smp_mb()``, which does not order earlier
    accesses before the store.  The order STORE_MB lets an ARMv8 driver tell them apart.
    """
    return (XCHG, p, value, STORE_MB)


# --------------------------------------------------------------------------- barriers
def smp_mb():
    return (FENCE, MB)


def smp_rmb():
    return (FENCE, RMB)


def smp_wmb():
    return (FENCE, WMB)


def isb():
    """ARMv8 ``ISB``: a context synchronisation; after a branch on a read, later reads wait for it."""
    return (FENCE, ISB)


def smp_mb__before_atomic():
    """Full ordering around the atomic RMW that follows.

    On x86 it is only a compiler barrier: the RMW is a LOCK-prefixed instruction, itself a
    full fence.  Drivers therefore charge it nothing and give it no store-buffer effect.
    """
    return (FENCE, MB_BEFORE_ATOMIC)


def smp_mb__after_atomic():
    """Full ordering after the preceding atomic RMW: a compiler barrier on x86, as above."""
    return (FENCE, MB_AFTER_ATOMIC)


def smp_mb__after_spinlock():
    """Full ordering after the lock acquisition before it (``smp_mb()`` on arm64, nothing on x86)."""
    return (FENCE, MB_AFTER_SPINLOCK)


def smp_mb__after_unlock_lock():
    """An UNLOCK followed by a LOCK, then this: a full barrier (``smp_mb()`` on powerpc only, else nothing)."""
    return (FENCE, MB_AFTER_UNLOCK_LOCK)


# --------------------------------------------------------------------------- xchg / cmpxchg
def _rmw_family(opcode: int):
    def full(p, *args):
        return (opcode, p, *args, FULL)

    def acquire(p, *args):
        return (opcode, p, *args, ACQUIRE)

    def release(p, *args):
        return (opcode, p, *args, RELEASE)

    def relaxed(p, *args):
        return (opcode, p, *args, RELAXED)

    return full, acquire, release, relaxed


xchg, xchg_acquire, xchg_release, xchg_relaxed = _rmw_family(XCHG)
cmpxchg, cmpxchg_acquire, cmpxchg_release, cmpxchg_relaxed = _rmw_family(CMPXCHG)
try_cmpxchg, try_cmpxchg_acquire, try_cmpxchg_release, try_cmpxchg_relaxed = _rmw_family(TRY_CMPXCHG)

# --------------------------------------------------------------------------- atomic_t family
(
    atomic_cmpxchg,
    atomic_cmpxchg_acquire,
    atomic_cmpxchg_release,
    atomic_cmpxchg_relaxed,
) = _rmw_family(CMPXCHG)
(
    atomic_try_cmpxchg,
    atomic_try_cmpxchg_acquire,
    atomic_try_cmpxchg_release,
    atomic_try_cmpxchg_relaxed,
) = _rmw_family(TRY_CMPXCHG)
atomic_xchg, atomic_xchg_acquire, atomic_xchg_release, atomic_xchg_relaxed = _rmw_family(XCHG)
(
    atomic_fetch_add,
    atomic_fetch_add_acquire,
    atomic_fetch_add_release,
    atomic_fetch_add_relaxed,
) = _rmw_family(FETCH_ADD)
(
    atomic_fetch_or,
    atomic_fetch_or_acquire,
    atomic_fetch_or_release,
    atomic_fetch_or_relaxed,
) = _rmw_family(FETCH_OR)
(
    atomic_fetch_andnot,
    atomic_fetch_andnot_acquire,
    atomic_fetch_andnot_release,
    atomic_fetch_andnot_relaxed,
) = _rmw_family(FETCH_ANDNOT)


def atomic_read(p: Ref):
    return (LOAD, p, RELAXED)


def atomic_read_acquire(p: Ref):
    return (LOAD, p, ACQUIRE)


def atomic_set(p: Ref, value: int):
    return (STORE, p, value, RELAXED)


def atomic_set_release(p: Ref, value: int):
    return (STORE, p, value, RELEASE)


def atomic_add(delta: int, p: Ref):
    """``atomic_add(i, v)`` (kernel argument order); a locked ``add`` on x86.

    The atomics that return nothing are relaxed; their order NORETURN tells LKMM, whose
    ``smp_rmb()`` does not order their reads (``R4rmb = R \\ Noreturn``), from the relaxed
    value-returning ones.
    """
    return (FETCH_ADD, p, delta, NORETURN)


def atomic_sub(delta: int, p: Ref):
    return (FETCH_ADD, p, -delta, NORETURN)


def atomic_or(mask: int, p: Ref):
    return (FETCH_OR, p, mask, NORETURN)


def atomic_andnot(mask: int, p: Ref):
    return (FETCH_ANDNOT, p, mask, NORETURN)


# --------------------------------------------------------------------------- ARMv8 exclusives
def load_exclusive(p: Ref, order: int = RELAXED):
    """``LDXR`` (``LDAXR`` with ACQUIRE): a load that opens an exclusive pair."""
    return (LOAD_EX, p, order)


def store_exclusive(p: Ref, value: int, order: int = RELAXED):
    """``STXR`` (``STLXR`` with RELEASE): stores only if no other write came between; 0 if it did."""
    return (STORE_EX, p, value, order)


# --------------------------------------------------------------------------- spin-waits
Predicate = Callable[[int], bool]


def smp_cond_load_relaxed(p: Ref, cond: Predicate, bound: int | None = None):
    """Spin until ``cond(*p)`` holds and return the value that satisfied it (``VAL``).

    With ``bound`` the spin evaluates ``cond`` at most ``bound`` times -- ``bound`` loads of
    ``*p``, the first at once, each later one after a ``cpu_relax()`` -- and then gives up
    (``SPIN_THRESHOLD``, ``_Q_PENDING_LOOPS``), returning the last value read, for which
    ``cond`` is false: the caller tells a timeout by re-testing the value, as kernel callers
    do.  A kernel loop is translated by counting its condition's evaluations: ``for (loop =
    N; loop; loop--) if (cond) ...`` is ``bound=N``.
    """
    return (COND_LOAD, p, cond, RELAXED, bound)


def smp_cond_load_acquire(p: Ref, cond: Predicate, bound: int | None = None):
    return (COND_LOAD, p, cond, ACQUIRE, bound)


atomic_cond_read_relaxed = smp_cond_load_relaxed
atomic_cond_read_acquire = smp_cond_load_acquire


def cpu_relax():
    """One PAUSE instruction: the body of a spin loop that is not a plain wait on one word."""
    return (CPU_RELAX,)


def work(cycles: int, account: str = WORK_GUEST):
    """Local computation of ``cycles`` cycles, invisible to other CPUs."""
    return (WORK, cycles, account)


# --------------------------------------------------------------------------- hypervisor interface
def pv_wait(p: Ref, value: int):
    """Halt this vCPU if ``*p == value``, until kicked (a kick sent before the halt is latched)."""
    return (PV_WAIT, p, value)


def pv_kick(cpu: int):
    """Hypercall: wake vCPU ``cpu`` from ``pv_wait``, or make its next ``pv_wait`` return."""
    return (PV_KICK, cpu)


def vcpu_is_preempted(cpu: int):
    return (VCPU_IS_PREEMPTED, cpu)


# --------------------------------------------------------------------------- local operations
def smp_processor_id():
    return (SMP_PROCESSOR_ID,)


def in_nmi():
    return (IN_NMI,)


def local_irq_disable():
    return (IRQS, False)


def local_irq_enable():
    return (IRQS, True)


def local_irq_restore(enabled: bool):
    return (IRQS, enabled)


def lockevent_inc(name: str):
    return (LOCKEVENT, name, 1)


def lockevent_add(name: str, amount: int):
    return (LOCKEVENT, name, amount)


def lockevent_cond_inc(name: str, cond: bool):
    return (LOCKEVENT, name, 1 if cond else 0)


def cs_enter(lock_id: int):
    """Marks entry to a critical section: the driver checks mutual exclusion here."""
    return (CS, lock_id, 1)


def cs_exit(lock_id: int):
    return (CS, lock_id, -1)


def local_clock():
    """``local_clock()``: the driver's notion of now (cycles in the simulator, steps in the checker)."""
    return (LOCAL_CLOCK,)


def WARN(message: str):
    """``WARN(1, ...)``: counted and reported by the driver, execution continues."""
    return (WARNING, message)


class GuestBug(Exception):
    """``BUG()`` in guest code: the driver stops and reports it."""


def BUG_ON(condition: bool, message: str = "BUG") -> None:
    if condition:
        raise GuestBug(message)


# --------------------------------------------------------------------------- footprints
def footprint(op: tuple) -> tuple[Ref | None, str | None, int]:
    """``(location, access, ordering)`` of an operation.

    ``access`` is READ, WRITE or RMW, or None for operations touching no guest memory
    (barriers report their ordering only).  PV_WAIT reads its location.
    """
    code = op[0]
    if code == LOAD:
        return op[1], READ, op[2]
    if code == STORE:
        return op[1], WRITE, op[3]
    if code in RMW_OPS:
        return op[1], RMW, op[-1]
    if code == COND_LOAD:
        return op[1], READ, op[3]
    if code == PV_WAIT:
        return op[1], READ, RELAXED
    if code == FENCE:
        return None, None, FULL
    return None, None, RELAXED


# --------------------------------------------------------------------------- semantics
def rmw_result(code: int, old: int, op: tuple, mask: int) -> tuple[int | None, object]:
    """Value to store (None: no store) and result to return, for a read-modify-write."""
    if code == XCHG:
        return op[2] & mask, old
    if code == CMPXCHG:
        return (op[3] & mask if old == op[2] else None), old
    if code == TRY_CMPXCHG:
        ok = old == op[2]
        return (op[3] & mask if ok else None), (ok, old)
    if code == FETCH_ADD:
        return (old + op[2]) & mask, old
    if code == FETCH_OR:
        return (old | op[2]) & mask, old
    if code == FETCH_ANDNOT:
        return old & ~op[2] & mask, old
    if code == CMPXCHG_MASKED:
        bits, expected, new = op[2], op[3], op[4]
        if expected is not None and old & bits != expected:
            return None, old
        return ((old & ~bits) | new) & mask, old
    raise ValueError(f"not a read-modify-write: {OPCODE_NAMES[code]}")


_KERNEL_NAMES = {
    (LOAD, RELAXED): "READ_ONCE",
    (LOAD, ACQUIRE): "smp_load_acquire",
    (LOAD, ACQUIRE_PC): "ldapr",
    (STORE, RELAXED): "WRITE_ONCE",
    (STORE, RELEASE): "smp_store_release",
    (COND_LOAD, RELAXED): "smp_cond_load_relaxed",
    (COND_LOAD, ACQUIRE): "smp_cond_load_acquire",
    (COND_LOAD, LOCK): "spin_lock",
    (LOAD, LOCK): "spin_is_locked",
    (STORE, UNLOCK): "spin_unlock",
}
_RMW_NAMES = {
    XCHG: "xchg",
    CMPXCHG: "cmpxchg",
    TRY_CMPXCHG: "try_cmpxchg",
    FETCH_ADD: "atomic_fetch_add",
    FETCH_OR: "atomic_fetch_or",
    FETCH_ANDNOT: "atomic_fetch_andnot",
}


_NORETURN_NAMES = {FETCH_ADD: "atomic_add", FETCH_OR: "atomic_or", FETCH_ANDNOT: "atomic_andnot"}


def _arg(value) -> str:
    return hex(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def describe(op: tuple, name_of: Callable[[Ref], str] | None = None,
             show: Callable[[Ref, int], str | None] | None = None) -> str:  # fmt: skip
    """An operation as kernel code would spell it: ``xchg_relaxed(lock0.tail, 0x4)``.

    ``show(ref, value)``, if given, spells the values an access stores or compares at ``ref``
    (a pointer as ``&qnodes[2][0]``, a lock word decoded), None leaving one in hex.
    """
    code = op[0]
    if code in MEMORY_OPS or code == PV_WAIT:
        loc = name_of(op[1]) if name_of else op[1].name
        arg = _arg
        if show is not None:
            ref = op[1]

            def arg(value):
                shown = show(ref, value) if isinstance(value, int) and not isinstance(value, bool) else None
                return _arg(value) if shown is None else shown
        if code == XCHG and op[-1] == STORE_MB:
            return f"smp_store_mb({loc}, {arg(op[2])})"
        if code == CMPXCHG_MASKED:
            return f"{describe(op[5], name_of, show)} [an RMW of {loc}]"
        if code in RMW_OPS and op[-1] == NORETURN and code in _NORETURN_NAMES:
            return f"{_NORETURN_NAMES[code]}({arg(op[2])}, {loc})"
        if code in RMW_OPS:
            order = op[-1]
            suffix = "" if order == FULL else "_" + ORDER_NAMES[order]
            return f"{_RMW_NAMES[code]}{suffix}({', '.join([loc, *map(arg, op[2:-1])])})"
        if code == PV_WAIT:
            return f"pv_wait({loc}, {op[2]:#x})"
        if code == COND_LOAD:
            bound = f", bound={op[4]}" if op[4] is not None else ""
            return f"{_KERNEL_NAMES[(code, op[3])]}({loc}{bound})"
        if code == LOAD:
            return f"{_KERNEL_NAMES.get((code, op[2]), 'load')}({loc})"
        return f"{_KERNEL_NAMES.get((code, op[3]), 'store')}({loc}, {arg(op[2])})"
    if code == FENCE:
        return FENCE_NAMES[op[1]] + "()"
    if code in (LOAD_EX, STORE_EX):
        loc = name_of(op[1]) if name_of else op[1].name
        order = op[-1]
        if order == LOCK:  # LKMM's abstract lock: spin_trylock()'s read, a lock's LKW
            return f"{'spin_trylock' if code == LOAD_EX else 'spin_lock [LKW]'}({loc})"
        insn = ("ldaxr" if order == ACQUIRE else "ldxr") if code == LOAD_EX else ("stlxr" if order == RELEASE else "stxr")
        return f"{insn}({', '.join([loc, *map(_arg, op[2:-1])])})"
    if code == WORK:
        return f"work({op[1]} cycles)"
    return f"{OPCODE_NAMES[code].lower()}({', '.join(map(_arg, op[1:]))})"
