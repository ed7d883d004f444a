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
from ..kernel.declarations import LockDeclarations, declared_by
from ..machine import ops as o
from ..machine.cpu import NMI
from ..machine.memory import Layout, Memory

CS_DATA = Layout("cs_data", 8, [("count", 0, 4)])


class BadInput(ValueError):
    """A user-supplied value the checker cannot use; its message names the value."""


@dataclass(frozen=True)
class LockSpec:
    """How to build a lock; what the checker may assume of it, its class declares (``DECLARED``)."""

    name: str
    description: str
    build: object  # (mem, ncpus, config) -> Spinlock; config None for a lock that takes none
    takes_config: bool = True  # built with a LockConfig (the named locks; a user's that declares knobs)
    nr_cpus_16k: bool = False  # the LockConfig's layout


def _qspinlock(mem, ncpus, config):
    from ..kernel.config import LKMM_ORDERINGS
    from ..kernel.qspinlock import QSpinlock

    if config.bugs & LKMM_ORDERINGS.keys():
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
        elif version == "5.2":
            from ..kernel.qspinlock_paravirt_52 import PvQSpinlock52 as cls
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
        LockSpec("qspinlock", "native queued spinlock, NR_CPUS < 16K layout", _qspinlock),
        LockSpec("qspinlock-16k", "native queued spinlock, NR_CPUS >= 16K layout", _qspinlock, nr_cpus_16k=True),
        LockSpec("pvqspinlock", "paravirt queued spinlock, v5.4 on", _pv("modern")),
        LockSpec("pvqspinlock-16k", "paravirt queued spinlock, v5.4 on, NR_CPUS >= 16K layout", _pv("modern"),
                 nr_cpus_16k=True),
        LockSpec("pvqspinlock-4.2", "paravirt queued spinlock as merged in v4.2", _pv("4.2")),
        LockSpec("pvqspinlock-5.2", "paravirt queued spinlock of v5.2-v5.3 (wait early for a preempted vCPU)",
                 _pv("5.2")),
        LockSpec("virt-tas", "qspinlock with virt_spin_lock_key set (test-and-set)", _virt_tas),
        LockSpec("ticket", "pre-2015 x86 ticket spinlock", _ticket),
        LockSpec("pvticket", "paravirt ticket spinlock on KVM, v4.0-v4.1 (TICKET_SLOWPATH_FLAG in the head)",
                 _pvticket),
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
    return LockSpec(spec, f"user lock {attr} from {path}", build, takes_config=bool(factory.declared.knobs))


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
        if config is None and self.spec.takes_config:
            from ..kernel.config import LockConfig

            config = LockConfig(nr_cpus_16k=self.spec.nr_cpus_16k)
            self.config = config
        self.lock = self.spec.build(self.mem, self.ncpus, config)
        # what the checker may assume of the lock's code: a user's lock, what its NAME declares
        lock = self.lock
        self.declared: LockDeclarations = (lock.declared if isinstance(lock, userlock.CheckedLock)
                                           else declared_by(type(lock)).for_class(type(lock)))
        if self.declared.word == "qspinlock" and not (hasattr(lock, "q") and hasattr(lock, "qnodes")):
            raise BadInput(f"--lock {self.spec.name}: declares word='qspinlock' but has no q (QspinlockTypes) "
                           "and qnodes (the nodes its tail names)")
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
        if self.declared.locked is not None:
            self.watch = [(v.locked.addr, self.declared.locked) for v in self.views]

    @property
    def constants(self) -> dict:
        """The knobs the lock reads, where the check runs them with other values than the kernel's."""
        from ..kernel.config import DEFAULT_CONFIG, KNOBS

        if self.config is None:
            return {}
        return {k: getattr(self.config, k) for k in KNOBS
                if k in self.declared.knobs and getattr(self.config, k) != getattr(DEFAULT_CONFIG, k)}

    @property
    def symmetric(self) -> int:
        """Bitmask of the CPUs that run the same code from a start that treats them alike.

        Only a lock that declares it (``symmetric``) has any: an undeclared one may single a
        CPU out from the start or by number.  With ``unlock-unheld``, cpu0 runs other code.
        """
        if not self.declared.symmetric:
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
               hypervisor_bugs: frozenset = frozenset(), knobs: dict | None = None) -> Setup:
    """Validate the user's numbers and build a :class:`Setup`.

    ``config_overrides`` are the LockConfig values the checker runs with (its shrunk
    constants); ``knobs``, the user's ``--knob`` values, go over them.  Every injected bug
    (kernel or hypervisor) must be one the lock's code reads (its class's ``BUGS``), and
    every knob one it declares reading: otherwise the check would run the unchanged lock.
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
    from ..kernel.config import LKMM_ORDERINGS

    changes = sorted(set(bugs) & LKMM_ORDERINGS.keys())
    if changes and lock != "qspinlock-16k":
        raise BadInput(f"--bug {changes[0]}: an ordering change to the whole-word build of qspinlock "
                       "(the LKMM has no mixed-size accesses): use --lock qspinlock-16k")
    config = None
    if spec.takes_config:
        from ..kernel.config import LockConfig

        config = LockConfig(nr_cpus_16k=spec.nr_cpus_16k, bugs=frozenset(bugs),
                            **{**(config_overrides or {}), **(knobs or {})})
    elif bugs:
        raise BadInput(f"--bug {sorted(bugs)[0]}: the {lock} lock has no injectable bugs")
    elif knobs:
        raise BadInput(f"--knob {sorted(knobs)[0]}: the {lock} lock takes no LockConfig (it declares no knobs: "
                       "README, Your own lock)")
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
    for knob in sorted(knobs or ()):
        if knob not in setup.declared.knobs:
            reads = ", ".join(sorted(setup.declared.knobs)) or "none"
            raise BadInput(f"--knob {knob}: the {lock} lock does not read it (it reads: {reads})")
    return setup
