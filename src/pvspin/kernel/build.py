"""Kernel builds and their boot: which lock code a guest ends up running, and how it is called.

:func:`boot_kernel` builds one guest kernel and boots it on a host:

* ``kernel="no-paravirt"`` (``!PARAVIRT``): the native lock code is called directly; there are no
  patch sites and no ``pv_ops``.  ``vcpu_is_preempted`` is the generic ``false``.
* ``kernel="paravirt"`` (``PARAVIRT`` + ``PARAVIRT_SPINLOCKS``): the lock instance carries both slow
  paths (the kernel compiles qspinlock.c twice), its call sites go through ``pv_ops.lock``
  (:mod:`pvspin.kernel.paravirt`), and boot runs, in the kernel's order:

  1. ``native_pv_lock_init``: ``virt_spin_lock_key`` stays on only under a hypervisor;
  2. ``kvm_guest_init`` (KVM hosts): steal time → ``pv_ops.lock.vcpu_is_preempted`` =
     ``PV_CALLEE_SAVE(__kvm_vcpu_is_preempted)``;
  3. ``kvm_spinlock_init`` (KVM hosts), as in v5.x-6.x: no ``PV_UNHALT`` → keep native ops and the
     key (virt_spin_lock's test-and-set); ``KVM_HINTS_REALTIME``, one vCPU or ``nopvspin`` → native
     ops, key off; otherwise ``__pv_init_lock_hash`` and the PV ops
     (``__pv_queued_spin_lock_slowpath``, ``PV_CALLEE_SAVE(__pv_queued_spin_unlock)``, ``kvm_wait``,
     ``kvm_kick_cpu``), key off;
  4. the era's patching (``patch_era``, :mod:`pvspin.kernel.paravirt`): ``apply_paravirt``
     (skipped with ``patching=False``, the ``noreplace-paravirt`` parameter), or from v6.8 on
     ``apply_alternatives`` (and, newest, ``static_call_init``), which no parameter skips.

Hosts: ``baremetal``; ``kvm`` (KVM_FEATURE_PV_UNHALT and KVM_FEATURE_STEAL_TIME); ``kvm-nopv`` (a KVM
host without PV_UNHALT; steal time still offered).

Lock names and the builds that run them (``lock=None`` accepts whatever the build runs; a name is
checked against the booted result, and a mismatch is a ValueError naming it):

=====================  ===========================================================================
lock                   build
=====================  ===========================================================================
``qspinlock``          ``no-paravirt`` on any host; ``paravirt`` on ``baremetal``; ``paravirt`` on
                       ``kvm`` with ``nopvspin`` (implied when this lock is asked for on ``kvm``) or
                       ``kvm_hints_realtime``.  Not ``paravirt`` on ``kvm-nopv``, which runs virt-tas.
``pvqspinlock``        ``paravirt`` on ``kvm``, more than one vCPU, no nopvspin / realtime hint
                       (the PV code of v5.4 and later).
``pvqspinlock-4.2``    the same, with the seed's v4.2 PV algorithm (and its generic unlock thunk).
``pvqspinlock-5.2``    the same, with v5.2-v5.3's ``pv_wait_early()`` (it also asks
                       ``vcpu_is_preempted()``, through the patched call site).
``virt-tas``           ``paravirt`` on ``kvm-nopv``: native qspinlock whose slow path starts with
                       ``virt_spin_lock``'s test-and-set.
``ticket``             ``no-paravirt`` only: the pre-2015 x86 ticket lock, the baseline, with no
                       paravirt sites at all.
``pvticket``           ``paravirt`` on ``kvm`` only: another kernel, v4.1 (the last with PV
                       ticketlocks), booted by :func:`kvm_spinlock_init_v41` and ``apply_paravirt``
                       with v4.1's ``pv_lock_ops`` (``lock_spinning``, ``unlock_kick``;
                       :data:`~pvspin.kernel.paravirt.TICKETLOCK_OPS`), no ``vcpu_is_preempted``
                       (v4.11).  ``nopvspin`` and ``kvm_hints_realtime`` (later kernels) and
                       ``patch_era`` (v4.1 patches as 4.2 did) are refused.
=====================  ===========================================================================
"""

from __future__ import annotations

from ..machine import ops
from ..machine.memory import Memory
from ..x86 import costs, disasm
from .config import DEFAULT_CONFIG, LockConfig
from .paravirt import CLOBBER_NAMES, PATCH_ERAS, TICKETLOCK_OPS, Paravirt, paravirt_patch_template
from .qspinlock import QSpinlock
from .qspinlock_paravirt import PvQSpinlock
from .qspinlock_paravirt_42 import PvQSpinlock42
from .qspinlock_paravirt_52 import PvQSpinlock52
from .ticket import TicketSpinlock
from .ticket_paravirt import PvTicketSpinlock
from .ticket_paravirt import kvm_kick_cpu as kvm_kick_cpu_v41

KERNELS = ("paravirt", "no-paravirt")
HOSTS = {
    "baremetal": frozenset(),
    "kvm": frozenset({"KVM_FEATURE_PV_UNHALT", "KVM_FEATURE_STEAL_TIME"}),
    "kvm-nopv": frozenset({"KVM_FEATURE_STEAL_TIME"}),
}
LOCKS = ("qspinlock", "pvqspinlock", "pvqspinlock-4.2", "pvqspinlock-5.2", "virt-tas", "ticket", "pvticket")
PV_LOCK_CLASSES = {"pvqspinlock": PvQSpinlock, "pvqspinlock-4.2": PvQSpinlock42, "pvqspinlock-5.2": PvQSpinlock52}
_LOCK_NEEDS = {
    "qspinlock": "kernel='no-paravirt', or kernel='paravirt' on host 'baremetal' or 'kvm'",
    "pvqspinlock": "kernel='paravirt' on host 'kvm' with ncpus > 1 and neither nopvspin nor kvm_hints_realtime",
    "virt-tas": "kernel='paravirt' on host 'kvm-nopv'",
    "pvticket": "kernel='paravirt' on host 'kvm' (a v4.1 kernel with KVM_FEATURE_PV_UNHALT)",
}
_LOCK_NEEDS["pvqspinlock-4.2"] = _LOCK_NEEDS["pvqspinlock-5.2"] = _LOCK_NEEDS["pvqspinlock"]


# --------------------------------------------------------------------------- KVM guest functions
def kvm_wait(ptr, val):
    """``kvm_wait`` (arch/x86/kernel/kvm.c): halt while ``*ptr == val``; not from NMI context.

    The halt is the machine's PV_WAIT, which checks ``*ptr == val`` and latches a kick as KVM's
    ``pv_unhalted`` does; the IRQ-flag handling around ``safe_halt`` is not modelled.
    """
    if (yield ops.in_nmi()):
        return
    yield ops.pv_wait(ptr, val)


def kvm_kick_cpu(cpu):
    """``kvm_kick_cpu``: the KVM_HC_KICK_CPU hypercall to wake ``cpu``."""
    yield ops.pv_kick(cpu)


def kvm_vcpu_is_preempted(cpu):
    """``__kvm_vcpu_is_preempted``: the ``preempted`` byte of ``cpu``'s steal-time area."""
    return (yield ops.vcpu_is_preempted(cpu))


def generic_vcpu_is_preempted(cpu):
    """``vcpu_is_preempted`` of include/linux/sched.h without an arch override (!PARAVIRT): false."""
    return False
    yield  # never reached: makes this a generator, as callers `yield from` it


# --------------------------------------------------------------------------- the booted kernel
class GuestKernel:
    """A booted guest kernel: its spinlock (the :class:`~pvspin.kernel.api.Spinlock` protocol),
    ``vcpu_is_preempted(cpu)``, and for PARAVIRT builds ``pv_ops`` and the patch sites.

    ``spin_lock`` / ``spin_unlock`` / ``spin_trylock`` are the lock instance's own methods (no
    wrapper frame); ``boot_log`` holds the messages the kernel would print at boot.
    """

    def __init__(self, kernel: str, host: str, impl, paravirt: Paravirt | None):
        self.kernel = kernel
        self.host = host
        self.impl = impl
        self.paravirt = paravirt
        self.name = impl.name
        self.boot_log: list[str] = []
        self.alloc_lock = impl.alloc_lock
        self.spin_lock = impl.spin_lock
        self.spin_unlock = impl.spin_unlock
        self.spin_trylock = impl.spin_trylock
        self.final_state_problems = impl.final_state_problems
        self.vcpu_is_preempted = generic_vcpu_is_preempted

    @property
    def pv_ops(self) -> paravirt_patch_template | None:
        return self.paravirt.pv_ops if self.paravirt else None

    @property
    def patch_sites(self) -> list:
        return self.paravirt.sites if self.paravirt else []

    def patch_table(self) -> list[dict]:
        """Per site: where it is, its op, and its bytes and instructions before and after boot."""
        symbols = self.paravirt.symbols if self.paravirt else {}
        return [
            {
                "site": site.name,
                "where": site.where,
                "address": f"{site.instr:#x}",
                "op": self.paravirt.op_name(site.op),
                "type": site.instrtype,
                "len": site.len,
                "clobbers": CLOBBER_NAMES[site.clobbers],
                "before": site.original.hex(" "),
                "after": site.insn.hex(" "),
                "before_asm": disasm.asm_text(site.original, site.instr, symbols),
                "after_asm": disasm.asm_text(site.insn, site.instr, symbols),
                "patched": site.patched,
            }
            for site in self.patch_sites
        ]


def _install(kernel: GuestKernel):
    def install(name: str, code) -> None:
        setattr(kernel.impl, name, code)
        if name == "vcpu_is_preempted":  # available_idle_cpu()'s, and the PV lock's (pvqspinlock-5.2)
            kernel.vcpu_is_preempted = code

    return install


# --------------------------------------------------------------------------- platform init
def native_pv_lock_init(kernel: GuestKernel) -> None:
    """``native_pv_lock_init``: ``virt_spin_lock_key`` is disabled unless running under a hypervisor."""
    kernel.impl.virt_spin_lock_key = kernel.host != "baremetal"


def kvm_guest_init(kernel: GuestKernel) -> None:
    """``kvm_guest_init``, its lock part: steal time gives a real ``vcpu_is_preempted``."""
    pv = kernel.paravirt
    if "KVM_FEATURE_STEAL_TIME" in HOSTS[kernel.host]:
        pv.pv_ops.lock.vcpu_is_preempted = pv.PV_CALLEE_SAVE(
            "__kvm_vcpu_is_preempted", kvm_vcpu_is_preempted, costs.KVM_PREEMPTED_ASM_THUNK
        )


def kvm_spinlock_init(kernel: GuestKernel, ncpus: int, nopvspin: bool, kvm_hints_realtime: bool) -> None:
    """``kvm_spinlock_init``: choose the lock ops before ``apply_paravirt`` (v5.x-6.x order of checks)."""
    log = kernel.boot_log.append
    if "KVM_FEATURE_PV_UNHALT" not in HOSTS[kernel.host]:
        log("kvm-guest: PV spinlocks disabled, no host support")
        return  # virt_spin_lock_key stays on: test-and-set beats a fair lock under preemption
    if kvm_hints_realtime:
        log("kvm-guest: PV spinlocks disabled with KVM_HINTS_REALTIME hints")
    elif ncpus == 1:
        log("kvm-guest: PV spinlocks disabled, single CPU")
    elif nopvspin:
        log('kvm-guest: PV spinlocks disabled, forced by "nopvspin" parameter')
    else:
        log("kvm-guest: PV spinlocks enabled")
        impl, pv = kernel.impl, kernel.paravirt
        impl.pv_init_lock_hash()
        lock_ops = pv.pv_ops.lock
        lock_ops.queued_spin_lock_slowpath = pv.define(
            "__pv_queued_spin_lock_slowpath", impl.pv_queued_spin_lock_slowpath
        )
        # v4.5+ x86-64 uses a hand-written unlock thunk; the seed's v4.2 the generic one.
        thunk = costs.CALLEE_SAVE_THUNK if isinstance(impl, PvQSpinlock42) else costs.PV_UNLOCK_ASM_THUNK
        lock_ops.queued_spin_unlock = pv.PV_CALLEE_SAVE("__pv_queued_spin_unlock", impl.pv_queued_spin_unlock, thunk)
        lock_ops.wait = pv.define("kvm_wait", kvm_wait)
        lock_ops.kick = pv.define("kvm_kick_cpu", kvm_kick_cpu)
    kernel.impl.virt_spin_lock_key = False


def kvm_spinlock_init_v41(kernel: GuestKernel) -> None:
    """``kvm_spinlock_init`` and ``kvm_spinlock_init_jump`` of v4.1 (PV ticketlocks), on a PV_UNHALT host.

    ``pv_lock_ops.lock_spinning = PV_CALLEE_SAVE(kvm_lock_spinning)``, ``pv_lock_ops.unlock_kick =
    kvm_unlock_kick``, and the ``paravirt_ticketlocks_enabled`` static key on (the unlock's slow-path
    test).  No single-CPU, nopvspin or realtime-hint checks existed yet.
    """
    impl, pv = kernel.impl, kernel.paravirt
    pv.pv_ops.lock.lock_spinning = pv.PV_CALLEE_SAVE("kvm_lock_spinning", impl.kvm_lock_spinning)
    pv.pv_ops.lock.unlock_kick = pv.define("kvm_unlock_kick", impl.kvm_unlock_kick)
    impl.kick_cpu = kvm_kick_cpu_v41  # called directly by kvm_unlock_kick, not a pv op
    kernel.boot_log.append("KVM setup paravirtual spinlock")


def _boot_pvticket(mem: Memory, ncpus: int, kernel: str, host: str, config: LockConfig, refused: dict,
                   patching: bool) -> GuestKernel:
    """The v4.1 PARAVIRT_SPINLOCKS kernel on KVM, running the PV ticket lock."""
    if kernel != "paravirt" or host != "kvm":
        raise ValueError(f"lock 'pvticket' needs {_LOCK_NEEDS['pvticket']}, not kernel={kernel!r} on host {host!r}")
    for option, given in refused.items():
        if given:
            raise ValueError(f"{option} does not apply to lock 'pvticket' (a v4.1 kernel, whose patcher keeps "
                             "callee-save sites indirect as 4.2's did)")
    guest = GuestKernel(kernel, host, PvTicketSpinlock(mem, ncpus, config), None)
    # the v4.1 patcher has the clobber check that 2018 removed: the "4.2" era
    guest.paravirt = Paravirt(None, None, _install(guest), "4.2", TICKETLOCK_OPS)
    kvm_spinlock_init_v41(guest)
    guest.paravirt.noreplace_paravirt = not patching
    guest.paravirt.apply_paravirt()
    return guest


# --------------------------------------------------------------------------- entry point
def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r} (choose from {', '.join(map(repr, choices))})")


def boot_kernel(
    mem: Memory,
    ncpus: int,
    *,
    kernel: str = "paravirt",
    host: str = "baremetal",
    lock: str | None = None,
    config: LockConfig = DEFAULT_CONFIG,
    nopvspin: bool = False,
    kvm_hints_realtime: bool = False,
    patching: bool = True,
    patch_era: str = "fixed",
) -> GuestKernel:
    """Build a kernel, boot it on ``host`` with ``ncpus`` vCPUs in ``mem``, and return it.

    ``nopvspin`` and ``patching=False`` (``noreplace-paravirt``) are kernel parameters of a PARAVIRT
    kernel; ``kvm_hints_realtime`` is a KVM host hint; ``patch_era`` is the patcher's behaviour
    (see :mod:`pvspin.kernel.paravirt`).  Contradictory choices raise one-line ValueErrors.
    """
    _check_choice("kernel", kernel, KERNELS)
    _check_choice("host", host, tuple(HOSTS))
    if lock is not None:
        _check_choice("lock", lock, LOCKS)
    _check_choice("patch_era", patch_era, PATCH_ERAS)
    if kvm_hints_realtime and not host.startswith("kvm"):
        raise ValueError(f"kvm_hints_realtime is a KVM hint: host {host!r} cannot give it")

    if lock == "pvticket":
        return _boot_pvticket(mem, ncpus, kernel, host, config, {
            "nopvspin": nopvspin, "kvm_hints_realtime": kvm_hints_realtime, "patch_era": patch_era != "fixed"},
            patching)  # fmt: skip
    if kernel == "no-paravirt":
        for option, given in (
            ("nopvspin", nopvspin),
            ("patching=False", not patching),
            ("patch_era", patch_era != "fixed"),
        ):
            if given:
                raise ValueError(f"{option} applies to kernel='paravirt' only, not kernel='no-paravirt'")
        if lock not in (None, "qspinlock", "ticket"):
            raise ValueError(f"lock {lock!r} needs {_LOCK_NEEDS[lock]}, not kernel='no-paravirt'")
        impl = TicketSpinlock(mem, ncpus) if lock == "ticket" else QSpinlock(mem, ncpus, config)
        return GuestKernel(kernel, host, impl, None)

    if lock == "ticket":
        raise ValueError("lock 'ticket' is the !PARAVIRT baseline: use kernel='no-paravirt'")
    if lock == "qspinlock" and host == "kvm":
        nopvspin = True  # native qspinlock on a PV-capable host: what nopvspin gives
    impl = PV_LOCK_CLASSES.get(lock, PvQSpinlock)(mem, ncpus, config)
    guest = GuestKernel(kernel, host, impl, None)
    guest.paravirt = Paravirt(
        impl.native_queued_spin_lock_slowpath, impl.native_queued_spin_unlock, _install(guest), patch_era
    )
    native_pv_lock_init(guest)
    if host.startswith("kvm"):
        kvm_guest_init(guest)
        kvm_spinlock_init(guest, ncpus, nopvspin, kvm_hints_realtime)
    guest.paravirt.noreplace_paravirt = not patching
    guest.paravirt.patch_at_boot()

    guest.name = _running_lock(guest)
    if lock is not None and lock != guest.name:
        raise ValueError(f"lock {lock!r} needs {_LOCK_NEEDS[lock]}: this build runs {guest.name!r} "
                         f"(kernel={kernel!r} on host {host!r})")
    return guest


def _running_lock(guest: GuestKernel) -> str:
    """The lock a booted PARAVIRT kernel runs, read from its ops and key."""
    if guest.paravirt.pv_ops.lock.queued_spin_lock_slowpath == guest.impl.pv_queued_spin_lock_slowpath:
        return guest.impl.name
    return "virt-tas" if guest.impl.virt_spin_lock_key else "qspinlock"
