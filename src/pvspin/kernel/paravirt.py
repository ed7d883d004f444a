"""x86 paravirt lock ops, their call sites and boot-time call patching (f233f7f1581e, v4.2).

One :class:`Paravirt` per booted kernel (a simulation may run several guests), holding:

* ``pv_ops.lock`` (:class:`pv_lock_ops`): ``queued_spin_lock_slowpath``, ``queued_spin_unlock``
  (callee-save), ``wait``, ``kick``, ``vcpu_is_preempted`` (callee-save), with the native defaults
  of arch/x86/kernel/paravirt-spinlocks.c.  Platform init (:mod:`pvspin.kernel.build`) may replace
  them before patching, as ``kvm_spinlock_init`` does.
* the kernel's lock call sites, recorded as ``.parainstructions`` entries
  (:class:`paravirt_patch_site`), each holding 7 bytes of x86-64 code: ``ff 14 25 <abs32>``,
  ``call *pv_lock_ops+8*type``, as ``PVOP_VCALL*`` / ``PVOP_VCALLEE*`` emitted it in 2015.
* ``apply_paravirt``: ``native_patch`` / ``paravirt_patch_default`` / ``paravirt_patch_call``
  rewrite the bytes of every site, padded with ``add_nops``.

The bytes are the program.  The Python code that runs at a site is *translated from its current
bytes* (:meth:`Paravirt.site_code`) and installed on the lock instance's call-site attribute:

* ``call *slot`` → look the slot up in ``pv_ops.lock`` at call time (through the callee-save
  thunk for callee-save slots) and charge an indirect call;
* ``call rel32`` → call the function at that address directly, charge a direct call;
* ``movb $0,(%rdi)`` → the release store of 0 to ``lock->locked``, nothing else;
* ``xor %eax,%eax`` → return False; NOPs → nothing (0 cycles, see :mod:`pvspin.x86.costs`).

So after ``apply_paravirt`` a patched site neither reads ``pv_ops`` nor enters a thunk unless its
new bytes call one, exactly as on the machine.

``patch_era``: how the kernel of a time emitted and patched the same five call sites
(:data:`PATCH_ERAS`; ``pvspin patch --compare-eras`` shows them side by side):

* ``"4.2"`` -- the seed's ``.parainstructions`` patcher with its ``paravirt_patch_call`` check
  ``tgt_clobbers & ~site_clobbers``: ``paravirt_patch_default`` always passes CLBR_ANY as the
  target's clobbers, so every callee-save site (CLBR_RET_REG) is refused and stays an indirect call
  on guests.
* ``"fixed"`` (default) -- the same sites and patcher without that check, so callee-save sites
  become direct calls too, as since b13b271933ee (2018, CVE-2018-15594), until 5.12: 4.19-5.12.
  (The vcpu_is_preempted slot and site came in 4.11; both eras have them, to keep one site set.)
* ``"6.8"`` -- no ``.parainstructions``: each site is ``ALTERNATIVE(PARAVIRT_CALL, ALT_CALL_INSTR,
  ALT_CALL_ALWAYS)``, compiled as the RIP-relative ``call *pv_ops+X(%rip)`` (``ff 15 rel32``, 6
  bytes), which ``apply_alternatives`` / ``alt_replace_call`` turn into ``call target`` + one
  ``0x90``, or into NOPs for ``nop_func``.  The unlock site's second alternative, ``movb $0,(%rdi)``
  under ``ALT_NOT(X86_FEATURE_PVUNLOCK)``, and vcpu_is_preempted's ``xor %rax,%rax`` under
  ``ALT_NOT(X86_FEATURE_VCPUPREEMPT)`` apply unless ``paravirt_set_cap()`` set those features; the
  padding goes through ``optimize_nops``.  v6.8 is where this form is read (fidelity audit); the
  5.13-6.7 mixture (custom-code sites as alternatives, plain calls still in .parainstructions) is
  not modelled.
* ``"newest"`` -- torvalds/linux as stored here (arch/x86/kernel/paravirt-spinlocks.c @087116fe, no
  release pinned): ``queued_spin_lock_slowpath`` and ``queued_spin_unlock`` are static calls
  (``call __SCT__<name>``, 5 bytes, which ``static_call_init`` retargets to the current function,
  so the native unlock is a direct call of ``__raw_callee_save___native_queued_spin_unlock``, no
  longer the inline store), and ``wait``, ``kick`` and ``vcpu_is_preempted`` live in a separate
  ``struct pv_lock_ops pv_ops_lock``, patched as in 6.8.  The static calls' current targets are
  kept in the same ``pv_ops.lock`` slots here, which is where platform init writes them
  (``static_call_update`` in that tree).

Only the ``.parainstructions`` eras have ``noreplace-paravirt`` (``patching=False``).

``layout``: which ``struct pv_lock_ops`` the kernel has (:class:`LockOpsLayout`).  The default,
:data:`QSPINLOCK_OPS`, is the one above.  :data:`TICKETLOCK_OPS` is v4.1's, of the PV ticket lock
(:mod:`pvspin.kernel.ticket_paravirt`): ``lock_spinning`` (callee-save, native
``__PV_IS_CALLEE_SAVE(paravirt_nop)``) and ``unlock_kick`` (native ``paravirt_nop``), one site each,
no inline native patches, and the pre-2018 patcher (``patch_era="4.2"``: the clobber check predates
4.2), so on KVM the callee-save ``lock_spinning`` site stays an indirect call through the thunk and
``unlock_kick`` becomes a direct call.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from dataclasses import dataclass, field

from ..machine import ops
from ..x86 import costs, disasm, encoding

# --------------------------------------------------------------------------- clobbers (x86-64)
CLBR_RAX = 1 << 0
CLBR_RCX = 1 << 1
CLBR_RDX = 1 << 2
CLBR_RDI = 1 << 3
CLBR_RSI = 1 << 4
CLBR_R8 = 1 << 5
CLBR_R9 = 1 << 6
CLBR_R10 = 1 << 7
CLBR_R11 = 1 << 8
CLBR_ANY = CLBR_RAX | CLBR_RCX | CLBR_RDX | CLBR_RDI | CLBR_RSI | CLBR_R8 | CLBR_R9 | CLBR_R10 | CLBR_R11
CLBR_RET_REG = CLBR_RAX
CLOBBER_NAMES = {CLBR_ANY: "CLBR_ANY", CLBR_RET_REG: "CLBR_RET_REG"}

# --------------------------------------------------------------------------- pv_ops.lock
# Slot order of struct pv_lock_ops (vcpu_is_preempted appended in 4.11); the slot index is the
# site's PARAVIRT_PATCH type, and its byte offset 8*index.
LOCK_OPS = ("queued_spin_lock_slowpath", "queued_spin_unlock", "wait", "kick", "vcpu_is_preempted")
CALLEE_SAVE_OPS = frozenset({"queued_spin_unlock", "vcpu_is_preempted"})
MAX_PATCH_LEN = 254

PATCH_ERAS = ("4.2", "fixed", "6.8", "newest")
PARAINSTRUCTIONS_ERAS = ("4.2", "fixed")  # apply_paravirt(); the others patch with alternatives
STATIC_CALL_OPS = ("queued_spin_lock_slowpath", "queued_spin_unlock")  # static calls in "newest"
NEWEST_LOCK_OPS = ("wait", "kick", "vcpu_is_preempted")  # struct pv_lock_ops pv_ops_lock, newest


def PARAVIRT_PATCH(op: str) -> int:
    """The patch type of ``pv_ops.lock.<op>``: its slot index in the ops table."""
    return LOCK_OPS.index(op)


@dataclass(frozen=True)
class LockOpsLayout:
    """One era's ``struct pv_lock_ops``: its slots in order (a slot's index is its PARAVIRT_PATCH
    type), the callee-save ones, the call sites (as :data:`SITES`), whether ``native_patch`` inlines
    the native unlock and ``vcpu_is_preempted`` (4.2+), and how the slots are named in listings."""

    ops: tuple[str, ...]
    callee_save: frozenset[str]
    sites: tuple
    inline_native: bool
    prefix: str

    def PARAVIRT_PATCH(self, op: str) -> int:
        return self.ops.index(op)


class paravirt_callee_save:
    """``struct paravirt_callee_save { void *func; }``: a slot holding a register-saving thunk."""

    __slots__ = ("func",)

    def __init__(self, func: Callable):
        self.func = func


class pv_lock_ops:
    """``struct pv_lock_ops``: one attribute per slot, in :data:`LOCK_OPS` order."""

    __slots__ = LOCK_OPS


class pv_lock_ops_v41:
    """``struct pv_lock_ops`` of v3.12-v4.1 (PV ticketlocks): ``lock_spinning``, ``unlock_kick``."""

    __slots__ = ("lock_spinning", "unlock_kick")


class paravirt_patch_template:
    """``pv_ops`` (one ops structure since 2018); only its ``lock`` member is modelled.

    For a v4.1 kernel, ``lock`` stands for the separate ``pv_lock_ops`` of that time.
    """

    __slots__ = ("lock",)

    def __init__(self, lock_ops: type = pv_lock_ops) -> None:
        self.lock = lock_ops()


def PV_CALLEE_SAVE_REGS_THUNK(func: Callable, name: str, cycles: int = costs.CALLEE_SAVE_THUNK) -> Callable:
    """``__raw_callee_save_<name>``: save the caller's registers, call ``func``, restore them.

    ``cycles`` is the register save/restore and inner call (:mod:`pvspin.x86.costs`): the generic
    x86-64 thunk of ``PV_CALLEE_SAVE_REGS_THUNK`` by default, less for the hand-written ones.
    """
    if cycles:
        save_restore = ops.work(cycles, ops.WORK_CALL)

        def thunk(*args):
            yield save_restore
            return (yield from func(*args))

    else:

        def thunk(*args):
            return (yield from func(*args))

    thunk.__name__ = thunk.__qualname__ = "__raw_callee_save_" + name
    return thunk


def _paravirt_nop(*args):
    """``_paravirt_nop``: the native ``wait``/``kick``; a site calling it is patched to NOPs."""
    return None
    yield  # never reached: makes this a generator, like every op


def native_vcpu_is_preempted(cpu):
    """``__native_vcpu_is_preempted``: bare metal has no preemption of its CPUs."""
    return False
    yield  # never reached: makes this a generator, like every op


# --------------------------------------------------------------------------- kernel image layout
# Plausible x86-64 addresses (kernel text at 0xffffffff81000000, data above it), fixed so that
# the bytes shown are stable.  Not taken from a real System.map.
SYMBOLS: dict[str, int] = {
    "_raw_spin_lock": 0xFFFFFFFF81A0C4F0,
    "_raw_spin_unlock": 0xFFFFFFFF81A0C6B0,
    "available_idle_cpu": 0xFFFFFFFF810CF2E0,
    "native_queued_spin_lock_slowpath": 0xFFFFFFFF810F3A40,
    "__pv_queued_spin_lock_slowpath": 0xFFFFFFFF810F3C90,
    "__pv_queued_spin_unlock_slowpath": 0xFFFFFFFF810F40B0,
    "__pv_queued_spin_unlock": 0xFFFFFFFF810F4130,
    "__raw_callee_save___pv_queued_spin_unlock": 0xFFFFFFFF810F4160,
    "__native_queued_spin_unlock": 0xFFFFFFFF81066A00,
    "__raw_callee_save___native_queued_spin_unlock": 0xFFFFFFFF81066A10,
    "__native_vcpu_is_preempted": 0xFFFFFFFF81066A50,
    "__raw_callee_save___native_vcpu_is_preempted": 0xFFFFFFFF81066A60,
    "_paravirt_nop": 0xFFFFFFFF810668E0,
    "kvm_kick_cpu": 0xFFFFFFFF8105F750,
    "kvm_lock_spinning": 0xFFFFFFFF8105F900,  # v4.1 (PV ticketlocks)
    "__raw_callee_save_kvm_lock_spinning": 0xFFFFFFFF8105F9E0,
    "kvm_unlock_kick": 0xFFFFFFFF8105FA20,
    "kvm_wait": 0xFFFFFFFF8105F790,
    "__kvm_vcpu_is_preempted": 0xFFFFFFFF8105F880,
    "__raw_callee_save___kvm_vcpu_is_preempted": 0xFFFFFFFF8105F8C0,
    "pv_lock_ops": 0xFFFFFFFF81C152E0,  # data: the 2015 name of pv_ops.lock
    "__SCT__queued_spin_lock_slowpath": 0xFFFFFFFF81001A40,  # newest: static call trampolines
    "__SCT__queued_spin_unlock": 0xFFFFFFFF81001A48,
}
# Data symbols of the other eras, which share the lock ops' address: pv_ops (6.8; its lock member
# placed at +0x2e0 here) and pv_ops_lock (newest: wait, kick, vcpu_is_preempted only).
ERA_DATA_SYMBOLS = {
    "4.2": {"pv_lock_ops": SYMBOLS["pv_lock_ops"]},
    "fixed": {"pv_lock_ops": SYMBOLS["pv_lock_ops"]},
    "6.8": {"pv_ops": SYMBOLS["pv_lock_ops"] - 0x2E0},
    "newest": {"pv_ops_lock": SYMBOLS["pv_lock_ops"]},
}

_SYMBOL_AT = {addr: name for name, addr in SYMBOLS.items()}

# The lock call sites: (call-site wrapper = attribute it is installed on, op, function holding the
# call, offset in it, arguments in calling-convention order rdi, rsi).  One site per op: the kernel
# has several pv_wait/pv_kick call instructions, all patched alike.
SITES = (
    ("queued_spin_lock_slowpath", "queued_spin_lock_slowpath", "_raw_spin_lock", 0x1B, ("lock", "val")),
    ("queued_spin_unlock", "queued_spin_unlock", "_raw_spin_unlock", 0x8, ("lock",)),
    ("pv_wait", "wait", "__pv_queued_spin_lock_slowpath", 0x11D, ("ptr", "val")),
    ("pv_kick", "kick", "__pv_queued_spin_unlock_slowpath", 0x4A, ("cpu",)),
    ("vcpu_is_preempted", "vcpu_is_preempted", "available_idle_cpu", 0x26, ("cpu",)),
)
QSPINLOCK_OPS = LockOpsLayout(LOCK_OPS, CALLEE_SAVE_OPS, SITES, True, "pv_ops.lock.")

# v4.1: __ticket_lock_spinning() (PVOP_VCALLEE2) in the inlined arch_spin_lock()'s slow loop, and
# __ticket_unlock_kick() (PVOP_VCALL2) in the inlined arch_spin_unlock(), arguments (lock, ticket).
TICKET_SITES = (
    ("ticket_lock_spinning", "lock_spinning", "_raw_spin_lock", 0x3A, ("lock", "ticket")),
    ("ticket_unlock_kick", "unlock_kick", "_raw_spin_unlock", 0x1C, ("lock", "ticket")),
)
TICKETLOCK_OPS = LockOpsLayout(("lock_spinning", "unlock_kick"), frozenset({"lock_spinning"}), TICKET_SITES, False,
                               "pv_lock_ops.")


@dataclass
class paravirt_patch_site:
    """One ``.parainstructions`` entry (``struct paravirt_patch_site`` of 4.2) plus its bytes.

    ``instr`` is the site address, ``instrtype`` the PARAVIRT_PATCH type, ``len`` the site length,
    ``clobbers`` what the compiler let the call clobber.  ``original`` holds the bytes the compiler
    emitted, ``insn`` the current bytes, ``code`` the Python function translated from them and
    ``source`` its text.
    """

    name: str
    op: str
    caller: str
    instr: int
    instrtype: int
    len: int
    clobbers: int
    args: tuple[str, ...]
    original: bytes
    insn: bytes = b""
    code: Callable | None = None
    source: str = ""
    patched: bool = field(default=False)

    @property
    def where(self) -> str:
        return f"{self.caller}+{self.instr - SYMBOLS[self.caller]:#x}"


class Paravirt:
    """The paravirt state of one booted kernel: ``pv_ops``, its functions' addresses, its sites.

    ``native_slowpath`` and ``native_unlock`` are the lock instance's native functions;
    ``install(name, code)`` puts a site's code where the lock code calls it.
    """

    def __init__(self, native_slowpath: Callable | None, native_unlock: Callable | None, install: Callable,
                 patch_era: str = "fixed", layout: LockOpsLayout = QSPINLOCK_OPS):
        if patch_era not in PATCH_ERAS:
            raise ValueError(f"patch_era must be one of {', '.join(map(repr, PATCH_ERAS))}, got {patch_era!r}")
        if layout is TICKETLOCK_OPS and patch_era not in PARAINSTRUCTIONS_ERAS:
            raise ValueError("the v4.1 ticket lock ops are patched by apply_paravirt: patch_era '4.2' or 'fixed'")
        self.patch_era = patch_era
        self.symbols = {addr: name for name, addr in SYMBOLS.items() if name != "pv_lock_ops"}
        self.symbols.update({addr: name for name, addr in ERA_DATA_SYMBOLS[patch_era].items()})
        self.layout = layout
        self._install = install
        self._functions: dict[int, Callable] = {}  # address -> function
        self._addresses: dict[int, int] = {}  # id(function) -> address
        self.noreplace_paravirt = False

        if layout is TICKETLOCK_OPS:
            # arch/x86/kernel/paravirt-spinlocks.c of v4.1
            self.pv_ops = paravirt_patch_template(pv_lock_ops_v41)
            lock = self.pv_ops.lock
            lock.lock_spinning = paravirt_callee_save(self.define("_paravirt_nop", _paravirt_nop))  # __PV_IS_CALLEE_SAVE
            lock.unlock_kick = _paravirt_nop
        else:
            self.pv_ops = paravirt_patch_template()
            lock = self.pv_ops.lock
            lock.queued_spin_lock_slowpath = self.define("native_queued_spin_lock_slowpath", native_slowpath)
            lock.queued_spin_unlock = self.PV_CALLEE_SAVE("__native_queued_spin_unlock", native_unlock)
            lock.wait = self.define("_paravirt_nop", _paravirt_nop)
            lock.kick = lock.wait
            lock.vcpu_is_preempted = self.PV_CALLEE_SAVE("__native_vcpu_is_preempted", native_vcpu_is_preempted)
            self._native_unlock_thunk = lock.queued_spin_unlock.func
            self._native_preempted_thunk = lock.vcpu_is_preempted.func
            for op in STATIC_CALL_OPS:  # newest: the trampolines the unpatched sites call
                self.define("__SCT__" + op, self._static_call_trampoline(op))

        self.sites: list[paravirt_patch_site] = []
        for name, op, caller, offset, args in layout.sites:
            slot = layout.PARAVIRT_PATCH(op)
            instr = SYMBOLS[caller] + offset
            if patch_era in PARAINSTRUCTIONS_ERAS:
                original = encoding.call_indirect_abs32(self.slot_address(op))  # "i" operand: absolute
            elif patch_era == "newest" and op in STATIC_CALL_OPS:
                original = encoding.call_rel32(instr, SYMBOLS["__SCT__" + op])  # static_call(op)(...)
            else:
                original = encoding.call_indirect_rip(instr, self.slot_address(op))  # "m" operand: RIP-relative
            clobbers = CLBR_RET_REG if op in layout.callee_save else CLBR_ANY
            site = paravirt_patch_site(name, op, caller, instr, slot, len(original), clobbers, args, original)
            self.text_poke_early(site, original)
            self.sites.append(site)

    # ----------------------------------------------------------------- kernel text
    def define(self, name: str, func: Callable) -> Callable:
        """Place ``func`` at the address of symbol ``name`` (a function of this kernel's text)."""
        addr = SYMBOLS[name]
        self._functions[addr] = func
        self._addresses[id(func)] = addr
        return func

    def address_of(self, func: Callable) -> int:
        try:
            return self._addresses[id(func)]
        except KeyError:
            raise ValueError(f"{getattr(func, '__name__', func)!r} is not in this kernel's text") from None

    def function_at(self, addr: int) -> Callable:
        try:
            return self._functions[addr]
        except KeyError:
            raise ValueError(f"no function at {addr:#x} in this kernel's text") from None

    # ``self.symbols``: address -> name for annotating disassembly, with this era's data symbols

    def slot_address(self, op: str) -> int:
        """Where the compiled site finds ``op``'s function: its slot in ``pv_lock_ops`` (4.2),
        ``pv_ops.lock`` (2018 on) or, in the newest tree, ``pv_ops_lock``."""
        if self.patch_era == "newest":
            return SYMBOLS["pv_lock_ops"] + 8 * NEWEST_LOCK_OPS.index(op)
        return SYMBOLS["pv_lock_ops"] + 8 * self.layout.PARAVIRT_PATCH(op)

    def op_name(self, op: str) -> str:
        """How the kernel of this era names the op a site calls."""
        if self.patch_era == "newest":
            return f"static_call({op})" if op in STATIC_CALL_OPS else f"pv_ops_lock.{op}"
        if self.patch_era == "6.8":
            return f"pv_ops.lock.{op}"
        if self.patch_era == "4.2" and self.layout is QSPINLOCK_OPS:
            return f"pv_lock_ops.{op}"  # the seed's separate struct pv_lock_ops pv_lock_ops
        return f"{self.layout.prefix}{op}"  # pv_ops.lock since 4.20 (5c83511bdb98); 4.19 still had pv_lock_ops

    def _static_call_trampoline(self, op: str) -> Callable:
        """``__SCT__<op>``: the static call's trampoline, a jump to its current target (newest)."""
        def trampoline(*args):
            return (yield from self.get_call_destination(self.layout.PARAVIRT_PATCH(op))(*args))

        trampoline.__name__ = trampoline.__qualname__ = "__SCT__" + op
        return trampoline

    def PV_CALLEE_SAVE(self, name: str, func: Callable, cycles: int = costs.CALLEE_SAVE_THUNK) -> paravirt_callee_save:
        """``PV_CALLEE_SAVE(func)``: a slot value holding ``__raw_callee_save_<name>``."""
        self.define(name, func)
        return paravirt_callee_save(
            self.define("__raw_callee_save_" + name, PV_CALLEE_SAVE_REGS_THUNK(func, name, cycles))
        )

    # ----------------------------------------------------------------- native checks
    def pv_is_native_spin_unlock(self) -> bool:
        """``pv_is_native_spin_unlock``: the unlock slot still holds the native unlock's thunk."""
        return self.pv_ops.lock.queued_spin_unlock.func is self._native_unlock_thunk

    def pv_is_native_vcpu_is_preempted(self) -> bool:
        """``pv_is_native_vcpu_is_preempted``: the slot still holds the native thunk."""
        return self.pv_ops.lock.vcpu_is_preempted.func is self._native_preempted_thunk

    # ----------------------------------------------------------------- patching
    def get_call_destination(self, type_: int) -> Callable:
        """``get_call_destination``: the function a site of this type calls (a thunk for callee-save)."""
        op = self.layout.ops[type_]
        slot = getattr(self.pv_ops.lock, op)
        return slot.func if op in self.layout.callee_save else slot

    def paravirt_patch_call(
        self, buf: bytearray, target: Callable, tgt_clobbers: int, addr: int, site_clobbers: int, len_: int
    ) -> int:
        """``paravirt_patch_call``: write ``call target``; return the bytes used (``len_``: refused)."""
        if self.patch_era == "4.2" and tgt_clobbers & ~site_clobbers:
            return len_  # target would clobber too much for this site: keep the indirect call
        buf[: encoding.CALL_REL32_LEN] = encoding.call_rel32(addr, self.address_of(target))
        return encoding.CALL_REL32_LEN

    @staticmethod
    def paravirt_patch_insns(buf: bytearray, len_: int, template: bytes) -> int:
        """``paravirt_patch_insns``: copy an inline template; too long → leave the site (silently, as 4.2)."""
        if len(template) > len_:
            return len_
        buf[: len(template)] = template
        return len(template)

    def paravirt_patch_default(self, type_: int, clobbers: int, buf: bytearray, addr: int, len_: int) -> int:
        """``paravirt_patch_default``: NOPs for ``_paravirt_nop``, otherwise a direct call."""
        opfunc = self.get_call_destination(type_)
        if opfunc is _paravirt_nop:
            return 0
        return self.paravirt_patch_call(buf, opfunc, CLBR_ANY, addr, clobbers, len_)

    def native_patch(self, type_: int, clobbers: int, buf: bytearray, addr: int, len_: int) -> int:
        """``native_patch`` (``pv_init_ops.patch`` on bare metal and KVM): inline the native unlock
        and vcpu_is_preempted (4.2+; v4.1 patches no lock op inline), hand everything else to
        ``paravirt_patch_default``."""
        if not self.layout.inline_native:
            return self.paravirt_patch_default(type_, clobbers, buf, addr, len_)
        if type_ == PARAVIRT_PATCH("queued_spin_unlock") and self.pv_is_native_spin_unlock():
            return self.paravirt_patch_insns(buf, len_, encoding.MOVB_0_RDI)
        if type_ == PARAVIRT_PATCH("vcpu_is_preempted") and self.pv_is_native_vcpu_is_preempted():
            return self.paravirt_patch_insns(buf, len_, encoding.XOR_EAX_EAX)
        return self.paravirt_patch_default(type_, clobbers, buf, addr, len_)

    def patch_at_boot(self) -> None:
        """Rewrite the sites the way this era's kernel does at boot (see the module docstring)."""
        if self.patch_era in PARAINSTRUCTIONS_ERAS:
            self.apply_paravirt()
            return
        if self.noreplace_paravirt:
            raise ValueError(f"noreplace-paravirt does not exist in patch_era {self.patch_era!r} (alternatives "
                             "are always applied)")
        if self.patch_era == "newest":
            self.static_call_init()
        self.apply_alternatives()

    def paravirt_set_cap(self) -> frozenset[str]:
        """``paravirt_set_cap()`` (v6.8 on): the features that keep the call at the custom-code sites."""
        caps = set()
        if not self.pv_is_native_spin_unlock():
            caps.add("X86_FEATURE_PVUNLOCK")
        if not self.pv_is_native_vcpu_is_preempted():
            caps.add("X86_FEATURE_VCPUPREEMPT")
        return frozenset(caps)

    def apply_alternatives(self) -> None:
        """``apply_alternatives`` on the lock sites (v6.8 on): ``ALT_CALL_ALWAYS`` first -- via
        ``alt_replace_call``, the direct call of the slot's function, or nothing for a
        ``nop_func`` slot -- then the ``ALT_NOT`` custom code where its feature is clear, padded with
        0x90 and passed through ``optimize_nops``."""
        caps = self.paravirt_set_cap()
        for site in self.sites:
            if self.patch_era == "newest" and site.op in STATIC_CALL_OPS:
                continue  # a static call, not an alternative
            target = self.get_call_destination(site.instrtype)
            code = b"" if target is _paravirt_nop else encoding.call_rel32(site.instr, self.address_of(target))
            if site.op == "queued_spin_unlock" and "X86_FEATURE_PVUNLOCK" not in caps:
                code = encoding.MOVB_0_RDI  # ALT_NOT(X86_FEATURE_PVUNLOCK)
            if site.op == "vcpu_is_preempted" and "X86_FEATURE_VCPUPREEMPT" not in caps:
                code = encoding.XOR_RAX_RAX  # ALT_NOT(X86_FEATURE_VCPUPREEMPT)
            self._rewrite(site, encoding.optimize_nops(encoding.pad_0x90(code, site.len)))

    def static_call_init(self) -> None:
        """``static_call_init`` / ``static_call_update`` (newest): each static call site becomes a
        direct call of the key's current function (5 bytes, ``__static_call_transform``)."""
        for site in self.sites:
            if site.op in STATIC_CALL_OPS:
                target = self.get_call_destination(site.instrtype)
                self._rewrite(site, encoding.call_rel32(site.instr, self.address_of(target)))

    def _rewrite(self, site: paravirt_patch_site, code: bytes) -> None:
        ops.BUG_ON(len(code) != site.len, f"{site.where}: patch is not the site's length")
        site.patched = code != site.original
        self.text_poke_early(site, code)

    def apply_paravirt(self) -> None:
        """``apply_paravirt``: patch every site and install the code translated from its new bytes.

        Does nothing under ``noreplace-paravirt`` (:attr:`noreplace_paravirt`).
        """
        if self.noreplace_paravirt:
            return
        for site in self.sites:
            ops.BUG_ON(site.len > MAX_PATCH_LEN, f"{site.where}: site longer than MAX_PATCH_LEN")
            buf = bytearray(site.insn)
            used = self.native_patch(site.instrtype, site.clobbers, buf, site.instr, site.len)
            ops.BUG_ON(used > site.len, f"{site.where}: patch longer than the site")
            buf[used:] = encoding.add_nops(site.len - used)
            site.patched = bytes(buf) != site.original
            self.text_poke_early(site, bytes(buf))

    def text_poke_early(self, site: paravirt_patch_site, code: bytes) -> None:
        """``text_poke_early``: new bytes at the site, and the code they mean installed."""
        site.insn = code
        site.code, site.source = self.site_code(site)
        self._install(site.name, site.code)

    # ----------------------------------------------------------------- translation
    def site_code(self, site: paravirt_patch_site) -> tuple[Callable, str]:
        """Translate the site's current bytes into a generator function, and return it with its source."""
        args = ", ".join(site.args)
        namespace: dict[str, object] = {}
        body: list[str] = []
        yields = False
        result = None  # Python expression for %rax after the sequence
        for insn in encoding.decode(site.insn, site.instr):
            if insn.kind == encoding.CALL_INDIRECT:
                op = self._slot_at(insn.operand)
                callee = f"_pv_ops.lock.{op}" + (".func" if op in self.layout.callee_save else "")
                namespace["_pv_ops"] = self.pv_ops
                namespace["_indirect_call"] = ops.work(costs.INDIRECT_CALL, ops.WORK_CALL)
                body += [
                    f"# {insn.addr:#x}: call *{disasm.symbolize(insn.operand, self.symbols)} "
                    f"({self.op_name(op)}, read now)",
                    "yield _indirect_call",
                    f"rax = yield from {callee}({args})",
                ]
                result, yields = "rax", True
            elif insn.kind == encoding.CALL:
                target = self.function_at(insn.operand)
                ref = f"_target{len(namespace)}"
                namespace[ref] = target
                namespace["_direct_call"] = ops.work(costs.DIRECT_CALL, ops.WORK_CALL)
                body += [
                    f"# {insn.addr:#x}: call {insn.operand:#x} <{self.symbols[insn.operand]}>",
                    "yield _direct_call",
                    f"rax = yield from {ref}({args})",
                ]
                result, yields = "rax", True
            elif insn.kind == encoding.MOVB_STORE:
                # (%rdi) is the first argument, a struct qspinlock: its byte 0 is ->locked.  A plain
                # mov is a release store on x86 (TSO).
                body += [
                    f"# {insn.addr:#x}: movb $0,(%rdi)",
                    f"yield ({ops.STORE}, {site.args[0]}.locked, 0, {ops.RELEASE})  # smp_store_release",
                ]
                yields = True
            elif insn.kind == encoding.XOR_EAX:
                body.append(f"# {insn.addr:#x}: xor {'%rax,%rax' if insn.length == 3 else '%eax,%eax'}")
                result = "False"
            # NOPs: no code, no cycles
        if result is not None:
            body.append(f"return {result}")
        elif not yields:
            body.append("return None")
        if not yields:
            body.append("yield  # never reached: makes this a generator, as callers `yield from` a site")
        filename = f"<paravirt site {site.name} at {site.where}>"
        source = f"def {site.name}({args}):\n" + "".join(f"    {line}\n" for line in body)
        exec(compile(source, filename, "exec"), namespace)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = namespace[site.name]
        code.__qualname__ = f"{site.name}@{site.where}"
        return code, source

    def _slot_at(self, addr: int) -> str:
        index, rem = divmod(addr - SYMBOLS["pv_lock_ops"], 8)
        ops_ = NEWEST_LOCK_OPS if self.patch_era == "newest" else self.layout.ops
        if rem or not 0 <= index < len(ops_):
            raise ValueError(f"indirect call through {addr:#x}, which is not a pv_lock_ops slot")
        return ops_[index]
