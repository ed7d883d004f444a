"""apply_paravirt against a tiny stub lock: bytes written per site, and the code that then runs there.

The stub stands for the lock instance (its native slowpath and unlock); kernel builds with the real
locks are in test_kernel_builds.py.  "The rewrite is real" is shown by instrumentation: the ops a
site yields, pv_ops reads counted through a proxy, and a poisoned pv_ops after boot.
"""

import pytest

from pvspin.kernel import paravirt as pv
from pvspin.machine import ops
from pvspin.machine.memory import Layout, Memory, Ref
from pvspin.x86 import costs, disasm, encoding

QSPINLOCK = Layout("qspinlock", 4, [("val", 0, 4), ("locked", 0, 1)], align=4)
RELEASE_STORE = (ops.STORE, "locked", 0, ops.RELEASE)


class StubLock:
    """Native functions of a lock, and where its call sites get installed."""

    def __init__(self):
        self.sites = {}

    def native_queued_spin_lock_slowpath(self, lock, val):
        yield ops.atomic_read(lock.val)

    def native_queued_spin_unlock(self, lock):
        yield ops.smp_store_release(lock.locked, 0)

    def install(self, name, code):
        self.sites[name] = code


def pv_unlock(lock):
    """Stands for __pv_queued_spin_unlock."""
    yield ops.cmpxchg_release(lock.locked, 1, 0)


def booted(patch=True, era="fixed", pv_ops=False):
    stub = StubLock()
    para = pv.Paravirt(stub.native_queued_spin_lock_slowpath, stub.native_queued_spin_unlock, stub.install, era)
    if pv_ops:  # what kvm_spinlock_init does, with stand-ins for the PV functions
        para.pv_ops.lock.queued_spin_unlock = para.PV_CALLEE_SAVE(
            "__pv_queued_spin_unlock", pv_unlock, costs.PV_UNLOCK_ASM_THUNK
        )
        para.pv_ops.lock.wait = para.define("kvm_wait", lambda ptr, val: (yield ops.pv_wait(ptr, val)))
    para.noreplace_paravirt = not patch
    para.patch_at_boot()
    return stub, para


@pytest.fixture
def lock():
    return Memory().alloc(QSPINLOCK, "lock0")


def run(gen):
    """All ops a site yields (memory ops with the ref shown by field name), and its return value."""
    out = []
    try:
        op = gen.send(None)
        while True:
            out.append(tuple(x.name.rsplit(".", 1)[-1] if isinstance(x, Ref) else x for x in op))
            op = gen.send(None)
    except StopIteration as stop:
        return out, stop.value


def site(para, name):
    return next(s for s in para.sites if s.name == name)


def test_sites_are_recorded_like_parainstructions():
    _, para = booted(patch=False)
    assert [s.name for s in para.sites] == [
        "queued_spin_lock_slowpath",
        "queued_spin_unlock",
        "pv_wait",
        "pv_kick",
        "vcpu_is_preempted",
    ]
    for s in para.sites:
        slot = pv.SYMBOLS["pv_lock_ops"] + 8 * s.instrtype
        assert s.instrtype == pv.LOCK_OPS.index(s.op)
        assert s.len == 7 and s.insn == s.original == encoding.call_indirect_abs32(slot)
        assert s.clobbers == (pv.CLBR_RET_REG if s.op in ("queued_spin_unlock", "vcpu_is_preempted") else pv.CLBR_ANY)


def test_native_patch_on_bare_metal_writes_the_kernels_bytes():
    _, para = booted()
    unlock = site(para, "queued_spin_unlock").insn
    assert unlock == b"\xc6\x07\x00" + encoding.add_nops(4)
    assert disasm.asm_text(unlock, 0) == "mov byte ptr [rdi], 0; nop dword ptr [rax]"
    assert site(para, "vcpu_is_preempted").insn == b"\x31\xc0" + encoding.add_nops(5)
    assert site(para, "pv_wait").insn == site(para, "pv_kick").insn == encoding.add_nops(7)
    slowpath = site(para, "queued_spin_lock_slowpath")
    target = pv.SYMBOLS["native_queued_spin_lock_slowpath"]
    assert slowpath.insn == encoding.call_rel32(slowpath.instr, target) + encoding.add_nops(2)
    assert disasm.instructions(slowpath.insn, slowpath.instr)[0][1:] == ("call", hex(target))


def test_unpatched_unlock_goes_through_pv_ops_and_the_thunk(lock):
    stub, _ = booted(patch=False)
    ops_run, _ = run(stub.sites["queued_spin_unlock"](lock))
    assert ops_run == [
        (ops.WORK, costs.INDIRECT_CALL, ops.WORK_CALL),
        (ops.WORK, costs.CALLEE_SAVE_THUNK, ops.WORK_CALL),
        RELEASE_STORE,
    ]


def test_patched_native_unlock_is_exactly_the_release_store(lock):
    stub, _ = booted()
    gen = stub.sites["queued_spin_unlock"](lock)
    assert gen.send(None) == ops.smp_store_release(lock.locked, 0)
    with pytest.raises(StopIteration):
        gen.send(None)


def test_patched_native_sites_run_no_call_at_all(lock):
    stub, _ = booted()
    assert run(stub.sites["vcpu_is_preempted"](1)) == ([], False)
    assert run(stub.sites["pv_wait"](lock.locked, 3)) == ([], None)
    assert run(stub.sites["pv_kick"](1)) == ([], None)
    assert run(stub.sites["queued_spin_lock_slowpath"](lock, 1))[0] == [
        (ops.WORK, costs.DIRECT_CALL, ops.WORK_CALL),
        (ops.LOAD, "val", ops.RELAXED),
    ]


class CountingLockOps:
    """Stands in for pv_ops.lock: counts slot reads and entries into callee-save thunks."""

    def __init__(self, real):
        self.reads = 0
        self.thunk_entries = 0
        self._real = real

    def __getattr__(self, slot):
        self.reads += 1
        value = getattr(self._real, slot)
        if isinstance(value, pv.paravirt_callee_save):
            counter = self

            def counted(*args):
                counter.thunk_entries += 1
                return (yield from value.func(*args))

            return pv.paravirt_callee_save(counted)
        return value


def exercise_all_sites(stub, lock):
    for name, args in [
        ("queued_spin_lock_slowpath", (lock, 1)),
        ("queued_spin_unlock", (lock,)),
        ("pv_wait", (lock.locked, 3)),
        ("pv_kick", (0,)),
        ("vcpu_is_preempted", (0,)),
    ]:
        run(stub.sites[name](*args))


@pytest.mark.parametrize("pv_ops", [False, True], ids=["native-ops", "pv-ops"])
def test_patched_sites_never_read_pv_ops(lock, pv_ops):
    stub, para = booted(pv_ops=pv_ops)
    counting = para.pv_ops.lock = CountingLockOps(para.pv_ops.lock)
    exercise_all_sites(stub, lock)
    assert (counting.reads, counting.thunk_entries) == (0, 0)


def test_noreplace_paravirt_reads_pv_ops_at_every_call(lock):
    stub, para = booted(patch=False)
    counting = para.pv_ops.lock = CountingLockOps(para.pv_ops.lock)
    exercise_all_sites(stub, lock)
    assert counting.reads == 5
    assert counting.thunk_entries == 2  # unlock and vcpu_is_preempted


class Poisoned:
    def __getattr__(self, slot):
        raise AssertionError(f"pv_ops.lock.{slot} read after boot")


def test_poisoned_pv_ops_after_boot(lock):
    stub, para = booted()
    para.pv_ops.lock = Poisoned()
    exercise_all_sites(stub, lock)  # patched: fine
    stub, para = booted(patch=False)
    para.pv_ops.lock = Poisoned()
    with pytest.raises(AssertionError, match="queued_spin_unlock read after boot"):
        run(stub.sites["queued_spin_unlock"](lock))


def test_pv_unlock_becomes_a_direct_call_to_its_thunk(lock):
    stub, para = booted(pv_ops=True)
    unlock = site(para, "queued_spin_unlock")
    thunk = pv.SYMBOLS["__raw_callee_save___pv_queued_spin_unlock"]
    assert unlock.insn == encoding.call_rel32(unlock.instr, thunk) + encoding.add_nops(2)
    assert disasm.asm_text(unlock.insn, unlock.instr, para.symbols).startswith(
        f"call {thunk:#x} <__raw_callee_save___pv_queued_spin_unlock>"
    )
    assert run(stub.sites["queued_spin_unlock"](lock))[0] == [
        (ops.WORK, costs.DIRECT_CALL, ops.WORK_CALL),
        (ops.WORK, costs.PV_UNLOCK_ASM_THUNK, ops.WORK_CALL),
        (ops.CMPXCHG, "locked", 1, 0, ops.RELEASE),
    ]
    assert not para.pv_is_native_spin_unlock()
    wait = site(para, "pv_wait")
    assert wait.insn[:1] == b"\xe8"
    assert run(stub.sites["pv_wait"](lock.locked, 3))[0][-1] == (ops.PV_WAIT, "locked", 3)


def test_4_2_era_leaves_callee_save_sites_indirect_on_guests(lock):
    stub, para = booted(pv_ops=True, era="4.2")
    unlock = site(para, "queued_spin_unlock")
    assert unlock.insn == unlock.original  # refused: CLBR_ANY target at a CLBR_RET_REG site
    assert site(para, "pv_wait").insn[:1] == b"\xe8"  # CLBR_ANY sites still patched
    counting = para.pv_ops.lock = CountingLockOps(para.pv_ops.lock)
    run(stub.sites["queued_spin_unlock"](lock))
    assert (counting.reads, counting.thunk_entries) == (1, 1)


def test_4_2_era_still_inlines_the_native_unlock():
    _, para = booted(era="4.2")
    assert site(para, "queued_spin_unlock").insn[:3] == encoding.MOVB_0_RDI


def test_site_code_comes_from_the_bytes(lock):
    stub, para = booted()
    unlock = site(para, "queued_spin_unlock")
    para.text_poke_early(unlock, encoding.add_nops(7))  # poke the text behind the patcher's back
    assert run(stub.sites["queued_spin_unlock"](lock)) == ([], None)
    with pytest.raises(ValueError, match="undecodable bytes"):  # ud2: not a form we translate
        para.text_poke_early(unlock, b"\x0f\x0b" + encoding.add_nops(5))


def test_bad_patch_era_is_refused():
    with pytest.raises(ValueError, match="'4.3'"):
        booted(era="4.3")


# ----------------------------------------------------------------------------- the later eras
def _asm(site_):
    return [(m, o) for _, m, o in disasm.instructions(site_.insn, site_.instr)]


@pytest.mark.parametrize("era", ["6.8", "newest"])
def test_later_eras_compile_rip_relative_indirect_calls(era):
    """v6.8's PARAVIRT_CALL is ``call *pv_ops+X(%rip)``: ff 15 rel32, 6 bytes, through the op's slot."""
    _, para = booted(patch=False) if era == "4.2" else (None, pv.Paravirt(None, None, lambda *a: None, era))
    for s_ in para.sites:
        if era == "newest" and s_.op in pv.STATIC_CALL_OPS:
            continue
        assert s_.original[:2] == b"\xff\x15" and s_.len == 6
        disp = int.from_bytes(s_.original[2:], "little", signed=True)
        assert s_.instr + 6 + disp == para.slot_address(s_.op)
        assert disasm.instructions(s_.original, s_.instr)[0][1:] == ("call", f"qword ptr [rip + {disp:#x}]")


def test_6_8_native_sites_are_the_alternatives_bytes():
    """Bare metal, v6.8: movb + optimized NOP (ALT_NOT(X86_FEATURE_PVUNLOCK)), xor %rax,%rax + NOP
    (ALT_NOT(X86_FEATURE_VCPUPREEMPT)), nop_func -> one 6-byte NOP, a call -> e8 rel32 + 0x90."""
    _, para = booted(era="6.8")
    assert site(para, "queued_spin_unlock").insn.hex(" ") == "c6 07 00 0f 1f 00"
    assert site(para, "vcpu_is_preempted").insn.hex(" ") == "48 31 c0 0f 1f 00"
    assert site(para, "pv_wait").insn.hex(" ") == site(para, "pv_kick").insn.hex(" ") == "66 0f 1f 44 00 00"
    slowpath = site(para, "queued_spin_lock_slowpath")
    assert slowpath.insn[0] == 0xE8 and slowpath.insn[5:] == b"\x90"
    assert _asm(slowpath) == [("call", hex(pv.SYMBOLS["native_queued_spin_lock_slowpath"])), ("nop", "")]
    assert _asm(site(para, "vcpu_is_preempted"))[0] == ("xor", "rax, rax")
    assert para.paravirt_set_cap() == frozenset()


def test_6_8_guest_sites_are_direct_calls_padded_with_one_nop(lock):
    stub, para = booted(era="6.8", pv_ops=True)
    assert para.paravirt_set_cap() == {"X86_FEATURE_PVUNLOCK"}
    unlock = site(para, "queued_spin_unlock")
    assert _asm(unlock) == [("call", hex(pv.SYMBOLS["__raw_callee_save___pv_queued_spin_unlock"])), ("nop", "")]
    assert site(para, "pv_wait").insn[0] == 0xE8 and site(para, "pv_kick").insn.hex(" ") == "66 0f 1f 44 00 00"
    assert run(stub.sites["queued_spin_unlock"](lock))[0] == [
        (ops.WORK, costs.DIRECT_CALL, ops.WORK_CALL),
        (ops.WORK, costs.PV_UNLOCK_ASM_THUNK, ops.WORK_CALL),
        (ops.CMPXCHG, "locked", 1, 0, ops.RELEASE),
    ]


def test_6_8_native_unlock_is_exactly_the_release_store(lock):
    stub, _ = booted(era="6.8")
    assert run(stub.sites["queued_spin_unlock"](lock)) == ([RELEASE_STORE], None)
    assert run(stub.sites["vcpu_is_preempted"](1)) == ([], False)


def test_newest_slowpath_and_unlock_are_static_calls(lock):
    """The newest tree: ``call __SCT__<name>`` (5 bytes), retargeted at boot to the current function --
    on bare metal the native unlock's callee-save thunk, no inline store any more."""
    stub, para = booted(era="newest")
    for name in ("queued_spin_lock_slowpath", "queued_spin_unlock"):
        s_ = site(para, name)
        assert s_.len == 5 and _asm(s_)[0][0] == "call"
        assert disasm.instructions(s_.original, s_.instr)[0][1:] == ("call", hex(pv.SYMBOLS["__SCT__" + name]))
    assert _asm(site(para, "queued_spin_unlock")) == [
        ("call", hex(pv.SYMBOLS["__raw_callee_save___native_queued_spin_unlock"]))]
    assert run(stub.sites["queued_spin_unlock"](lock)) == ([
        (ops.WORK, costs.DIRECT_CALL, ops.WORK_CALL),
        (ops.WORK, costs.CALLEE_SAVE_THUNK, ops.WORK_CALL),
        RELEASE_STORE,
    ], None)
    assert site(para, "vcpu_is_preempted").insn.hex(" ") == "48 31 c0 0f 1f 00"
    # pv_ops_lock holds wait, kick and vcpu_is_preempted only, in that order
    assert [para.slot_address(op) - para.slot_address("wait") for op in pv.NEWEST_LOCK_OPS] == [0, 8, 16]
    assert para.op_name("queued_spin_unlock") == "static_call(queued_spin_unlock)"
    assert para.op_name("kick") == "pv_ops_lock.kick"


def test_newest_static_call_follows_its_key_before_boot(lock):
    """Unpatched, a static call site calls the trampoline, which jumps to the key's current target."""
    stub = StubLock()
    para = pv.Paravirt(stub.native_queued_spin_lock_slowpath, stub.native_queued_spin_unlock, stub.install, "newest")
    para.pv_ops.lock.queued_spin_unlock = para.PV_CALLEE_SAVE("__pv_queued_spin_unlock", pv_unlock,
                                                              costs.PV_UNLOCK_ASM_THUNK)
    assert run(stub.sites["queued_spin_unlock"](lock))[0][-1] == (ops.CMPXCHG, "locked", 1, 0, ops.RELEASE)


@pytest.mark.parametrize("era", ["6.8", "newest"])
def test_alternatives_eras_have_no_noreplace_paravirt(era):
    with pytest.raises(ValueError, match="noreplace-paravirt does not exist"):
        booted(patch=False, era=era)
