"""What the checker runs: a lock, N CPUs taking it K times, interrupt handlers one level up.

Each CPU's task context runs K *acquisitions*, one generator each (so a rebuilt CPU
replays only the current acquisition): ``spin_lock``, a critical section that increments
a shared counter (READ_ONCE then WRITE_ONCE, so a broken lock loses an update even when
the markers do not catch it), ``spin_unlock``.  An interrupt at nesting level L runs one
acquisition of ``lock{L}``: a lock only ever taken at its own level, as the kernel's
IRQ-safe locks are, so nesting itself cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel import userlock
from ..machine import ops as o
from ..machine.cpu import NMI
from ..machine.memory import Layout, Memory

CS_DATA = Layout("cs_data", 8, [("count", 0, 4)])

NATIVE_LOCKED = frozenset({0, 1})
PV_LOCKED = frozenset({0, 1, 3})  # _Q_SLOW_VAL = 3


class BadInput(ValueError):
    """A user-supplied value the checker cannot use; its message names the value."""


@dataclass(frozen=True)
class LockSpec:
    """How to build one of the named locks and what its lock word means."""

    name: str
    description: str
    build: object  # (mem, ncpus, config) -> Spinlock
    locked_domain: frozenset | None  # allowed values of lock.locked, None: no such byte
    word: str | None  # "q" (NR_CPUS < 16K layout), "q16k", or None: not a qspinlock word
    # False: renaming CPUs does not map executions to executions (the code itself singles CPUs
    # out by number), so no symmetry reduction, not even start symmetry, applies
    symmetric: bool = True


def _qspinlock(mem, ncpus, config):
    from ..kernel.config import LKMM_CHANGES
    from ..kernel.qspinlock import QSpinlock

    if config.bugs & LKMM_CHANGES.keys():
        from ..kernel.qspinlock_lkmm import QSpinlockLkmmOrdered

        return QSpinlockLkmmOrdered(mem, ncpus, config)
    return QSpinlock(mem, ncpus, config)


def _virt_tas(mem, ncpus, config):
    from ..kernel.qspinlock import QSpinlock

    lock = QSpinlock(mem, ncpus, config)
    lock.virt_spin_lock_key = True  # what platform init sets on a hypervisor without PV spinlocks
    return lock


def _pv(version):
    def build(mem, ncpus, config):
        if version == "4.2":
            from ..kernel.qspinlock_paravirt_42 import PvQSpinlock42 as cls
        else:
            from ..kernel.qspinlock_paravirt import PvQSpinlock as cls
        lock = cls(mem, ncpus, config)
        lock.pv_init_lock_hash()  # platform init: what kvm_spinlock_init() does at boot
        return lock

    return build


def _ticket(mem, ncpus, config):
    from ..kernel.ticket import TicketSpinlock

    return TicketSpinlock(mem, ncpus, config)


def _pvticket(mem, ncpus, config):
    from ..kernel.ticket_paravirt import PvTicketSpinlock

    return PvTicketSpinlock(mem, ncpus, config)  # bound to KVM's lock_spinning / unlock_kick, as kvm_spinlock_init does


LOCKS = {
    s.name: s
    for s in (
        LockSpec("qspinlock", "native queued spinlock, NR_CPUS < 16K layout", _qspinlock, NATIVE_LOCKED, "q"),
        LockSpec("qspinlock-16k", "native queued spinlock, NR_CPUS >= 16K layout", _qspinlock, NATIVE_LOCKED, "q16k"),
        LockSpec("pvqspinlock", "paravirt queued spinlock (modern)", _pv("modern"), PV_LOCKED, "q"),
        LockSpec("pvqspinlock-4.2", "paravirt queued spinlock as merged in v4.2", _pv("4.2"), PV_LOCKED, "q"),
        LockSpec("virt-tas", "qspinlock with virt_spin_lock_key set (test-and-set)", _virt_tas, NATIVE_LOCKED, "q"),
        LockSpec("ticket", "pre-2015 x86 ticket spinlock", _ticket, None, None),
        # kvm_unlock_kick() scans waiting_cpus in CPU order: which waiter a racing scan still
        # finds depends on CPU numbers, so CPUs are not interchangeable
        LockSpec("pvticket", "paravirt ticket spinlock on KVM, v4.0-v4.1 (TICKET_SLOWPATH_FLAG in the head)",
                 _pvticket, None, None, symmetric=False),
    )
}


def load_user_lock(spec: str) -> LockSpec:
    """``path/to/file.py:NAME`` (see :mod:`pvspin.kernel.userlock`), as a checkable lock."""
    if ":" not in spec or not spec.rpartition(":")[0].endswith(".py"):
        raise BadInput(f"--lock {spec!r}: not a lock name ({', '.join(LOCKS)}) nor path/to/file.py:NAME")
    try:
        factory = userlock.load_user_lock(spec)
    except userlock.UserLockError as err:
        raise BadInput(f"--{err}") from None

    def build(mem, ncpus, config):
        try:
            return factory(mem, ncpus, config)
        except userlock.UserLockError as err:
            raise BadInput(f"--{err}") from None

    path, _, attr = spec.rpartition(":")
    return LockSpec(spec, f"user lock {attr} from {path}", build, None, None)


def lock_spec(name: str) -> LockSpec:
    if name in LOCKS:
        return LOCKS[name]
    if ":" in name:
        return load_user_lock(name)
    raise BadInput(f"--lock {name!r}: unknown lock (choose from {', '.join(LOCKS)}, or path/to/file.py:NAME)")


@dataclass(eq=False)
class Setup:
    """Memory, lock and programs of one checking configuration (fresh for every world)."""

    spec: LockSpec
    ncpus: int
    acquisitions: int
    levels: int  # lock instances: one for the task level, one per interrupt level used
    config: object = None
    workload: str = "locktorture"
    mem: Memory = field(init=False)

    def __post_init__(self):
        self.mem = Memory()
        config = self.config
        if config is None and self.spec.word is not None:
            from ..kernel.config import LockConfig

            config = LockConfig(nr_cpus_16k=self.spec.word == "q16k")
            self.config = config
        self.lock = self.spec.build(self.mem, self.ncpus, config)
        self.views = [self.lock.alloc_lock(f"lock{level}") for level in range(self.levels)]
        self.cs_data = [self.mem.alloc(CS_DATA, f"cs_data{level}") for level in range(self.levels)]
        # locking-selftest unlocks an unheld lock on purpose and runs with debug_locks_silent
        self.warn_ok = self.workload == "unlock-unheld"
        self.forever = self.workload == "forever"
        # Per-CPU data only its CPU touches: the node nesting count (slot 0 of qnodes).  The
        # world folds those accesses and reports any other CPU's access as a violation.
        qnodes = getattr(self.lock, "qnodes", None)
        self.private = {nodes[0].count.addr: cpu for cpu, nodes in enumerate(qnodes)} if qnodes else {}
        # The critical section's counter, by lock: under SC only the lock's holder touches it
        # without a mutual-exclusion violation first (see World._advance).
        self.guarded = {d.count.addr: v.name for d, v in zip(self.cs_data, self.views, strict=True)}
        self.watch = []
        if self.spec.locked_domain is not None:
            self.watch = [(v.locked.addr, self.spec.locked_domain) for v in self.views]

    @property
    def symmetric(self) -> int:
        """Bitmask of the CPUs that run the same code from a start that treats them alike.

        The named locks start with every CPU's data zeroed; a user's lock may single a CPU
        out from the start, so it gets none, and so does a named lock whose code does
        (``LockSpec.symmetric``).  With ``unlock-unheld``, cpu0 runs other code.
        """
        if self.spec.name not in LOCKS or not self.spec.symmetric:
            return 0
        mask = (1 << self.ncpus) - 1
        return mask & ~1 if self.warn_ok else mask

    def program(self, program: tuple):
        """A fresh generator for ``("task", cpu, k)`` or ``("irq", cpu, level, n)``."""
        level = 0 if program[0] == "task" else program[2]
        if self.warn_ok and program[0] == "task" and program[1] == 0 and program[2] == 0:
            return self._unlock_unheld_then_acquire()
        return self._acquisition(level)

    def _unlock_unheld_then_acquire(self):
        yield from self.lock.spin_unlock(self.views[0])
        yield from self._acquisition(0)

    def _acquisition(self, level: int):
        lock, view, data = self.lock, self.views[level], self.cs_data[level]
        yield from lock.spin_lock(view)
        yield o.cs_enter(view.name)
        count = yield o.READ_ONCE(data.count)
        # without end (liveness runs) the counter toggles, so that the state space stays finite
        yield o.WRITE_ONCE(data.count, count ^ 1 if self.forever else count + 1)
        yield o.cs_exit(view.name)
        yield from lock.spin_unlock(view)

    def final_problems(self, world) -> list[str]:
        problems = []
        done = sum(self.mem.read(d.count.addr, 4) for d in self.cs_data)
        expected = self.ncpus * self.acquisitions + world.irqs_taken
        if done != expected:
            problems.append(f"critical sections counted {done} increments, expected {expected} (lost update)")
        final = getattr(self.lock, "final_state_problems", None)
        if final is not None:
            problems.extend(final())
        return problems


WORKLOADS = ("locktorture", "unlock-unheld", "forever")
# Bounds on what a check can mean: a random walk over 1024 CPUs is already long; no search ends
# beyond them, and the world's per-CPU tables would fill memory first.
MAX_CPUS = 1024
MAX_ACQUISITIONS = 1_000_000


def make_setup(lock: str, ncpus: int, acquisitions: int, interrupts: int = 0, bugs: frozenset = frozenset(),
               config_overrides: dict | None = None, workload: str = "locktorture",
               hypervisor_bugs: frozenset = frozenset()) -> Setup:
    """Validate the user's numbers and build a :class:`Setup`.

    Every injected bug (kernel or hypervisor) must be one the lock's code reads (its class's
    ``BUGS``): otherwise the check would report the unchanged lock VERIFIED.
    """
    if ncpus < 1:
        raise BadInput(f"--cpus {ncpus}: need at least 1 CPU")
    if ncpus > MAX_CPUS:
        raise BadInput(f"--cpus {ncpus}: at most {MAX_CPUS} (states grow exponentially with CPUs)")
    if acquisitions > MAX_ACQUISITIONS:
        raise BadInput(f"--acquisitions {acquisitions}: at most {MAX_ACQUISITIONS} per CPU")
    if acquisitions < 1:
        raise BadInput(f"--acquisitions {acquisitions}: need at least 1")
    if workload not in WORKLOADS:
        raise BadInput(f"workload {workload!r}: choose from {', '.join(WORKLOADS)}")
    if interrupts < 0:
        raise BadInput(f"--interrupts {interrupts}: must not be negative")
    spec = lock_spec(lock)
    from ..kernel.config import LKMM_CHANGES

    changes = sorted(set(bugs) & LKMM_CHANGES.keys())
    if changes and lock != "qspinlock-16k":
        raise BadInput(f"--bug {changes[0]}: an ordering change to the whole-word build of qspinlock "
                       "(the LKMM has no mixed-size accesses): use --lock qspinlock-16k")
    config = None
    if spec.word is not None:
        from ..kernel.config import LockConfig

        config = LockConfig(nr_cpus_16k=spec.word == "q16k", bugs=frozenset(bugs), **(config_overrides or {}))
    elif bugs:
        raise BadInput(f"--bug {sorted(bugs)[0]}: the {lock} lock has no injectable bugs")
    levels = 1 + min(interrupts, NMI)
    try:
        setup = Setup(spec, ncpus, acquisitions, levels, config, workload)
    except userlock.UserLockError as err:  # the user's alloc_lock
        raise BadInput(f"--{err}") from None
    except BadInput:
        raise
    except ValueError as err:  # what the named lock cannot be built with (e.g. more CPUs than its tail holds)
        raise BadInput(f"--lock {lock} --cpus {ncpus}: {err}") from None
    for bug in sorted(set(bugs) | set(hypervisor_bugs)):
        if bug not in getattr(setup.lock, "BUGS", ()):
            from .bugs import EXPOSURES

            where = f"it is exposed on {EXPOSURES[bug].lock}" if bug in EXPOSURES else "a fix to another lock"
            raise BadInput(f"--bug {bug}: not in the code the {lock} lock runs ({where}): the check would "
                           "verify the unchanged lock")
    return setup
