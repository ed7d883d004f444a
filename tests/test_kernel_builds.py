"""boot_kernel: which lock each build runs on each host, the refusals, and the booted locks at work."""

import pytest

from pvspin.kernel import paravirt as pv
from pvspin.kernel.build import boot_kernel
from pvspin.kernel.config import LockConfig
from pvspin.kernel.qspinlock_paravirt_42 import PvQSpinlock42
from pvspin.machine import ops
from pvspin.machine.executor import Executor
from pvspin.machine.memory import MASKS, Memory
from pvspin.machine.scheduler import RandomScheduler
from pvspin.x86 import costs

SMALL = LockConfig(spin_threshold=2, pending_loops=2, pv_prev_check_mask=1)


def boot(ncpus=3, **kw):
    mem = Memory()
    return mem, boot_kernel(mem, ncpus, config=SMALL, **kw)


@pytest.mark.parametrize(
    "kw,name,key,log",
    [
        (dict(kernel="no-paravirt", host="baremetal"), "qspinlock", False, []),
        (dict(kernel="no-paravirt", host="kvm"), "qspinlock", False, []),
        (dict(kernel="no-paravirt", host="kvm", lock="ticket"), "ticket", None, []),
        (dict(host="baremetal"), "qspinlock", False, []),
        (dict(host="kvm"), "pvqspinlock", False, ["kvm-guest: PV spinlocks enabled"]),
        (dict(host="kvm", lock="pvqspinlock-4.2"), "pvqspinlock-4.2", False, ["kvm-guest: PV spinlocks enabled"]),
        (dict(host="kvm", lock="pvqspinlock-5.2"), "pvqspinlock-5.2", False, ["kvm-guest: PV spinlocks enabled"]),
        (
            dict(host="kvm", nopvspin=True),
            "qspinlock",
            False,
            ['kvm-guest: PV spinlocks disabled, forced by "nopvspin" parameter'],
        ),
        (
            dict(host="kvm", lock="qspinlock"),
            "qspinlock",
            False,
            ['kvm-guest: PV spinlocks disabled, forced by "nopvspin" parameter'],
        ),
        (
            dict(host="kvm", kvm_hints_realtime=True),
            "qspinlock",
            False,
            ["kvm-guest: PV spinlocks disabled with KVM_HINTS_REALTIME hints"],
        ),
        (dict(host="kvm", ncpus=1), "qspinlock", False, ["kvm-guest: PV spinlocks disabled, single CPU"]),
        (dict(host="kvm-nopv"), "virt-tas", True, ["kvm-guest: PV spinlocks disabled, no host support"]),
        (dict(host="kvm-nopv", nopvspin=True), "virt-tas", True, ["kvm-guest: PV spinlocks disabled, no host support"]),
    ],
)
def test_each_build_runs_the_documented_lock(kw, name, key, log):
    ncpus = kw.pop("ncpus", 3)
    _, k = boot(ncpus, **kw)
    assert k.name == name
    assert k.boot_log == log
    if key is not None:
        assert k.impl.virt_spin_lock_key is key
    if kw.get("kernel") == "no-paravirt":
        assert k.pv_ops is None and k.patch_sites == [] and k.patch_table() == []
    else:
        assert len(k.patch_sites) == 5
    if name.startswith("pvqspinlock"):
        assert isinstance(k.impl, PvQSpinlock42) == name.endswith("4.2")


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(kernel="xen"), "unknown kernel 'xen'"),
        (dict(host="hyperv"), "unknown host 'hyperv'"),
        (dict(lock="mcs"), "unknown lock 'mcs'"),
        (dict(patch_era="4.3"), "unknown patch_era '4.3'"),
        (dict(lock="pvqspinlock"), "lock 'pvqspinlock' needs .* this build runs 'qspinlock'"),
        (dict(host="kvm", lock="pvqspinlock", nopvspin=True), "lock 'pvqspinlock' needs .*nopvspin"),
        (dict(host="kvm", lock="virt-tas"), "lock 'virt-tas' needs kernel='paravirt' on host 'kvm-nopv'"),
        (dict(host="kvm-nopv", lock="qspinlock"), "lock 'qspinlock' needs .* this build runs 'virt-tas'"),
        (dict(lock="ticket"), "lock 'ticket' is the !PARAVIRT baseline"),
        (dict(kernel="no-paravirt", lock="pvqspinlock"), "lock 'pvqspinlock' needs .*not kernel='no-paravirt'"),
        (dict(kernel="no-paravirt", nopvspin=True), "nopvspin applies to kernel='paravirt' only"),
        (dict(kernel="no-paravirt", patching=False), "patching=False applies to kernel='paravirt' only"),
        (dict(kvm_hints_realtime=True), "kvm_hints_realtime is a KVM hint: host 'baremetal'"),
    ],
)
def test_contradictions_are_refused_in_one_line(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        boot(**kw)
    assert "\n" not in str(err.value)


BUILDS = [
    dict(kernel="no-paravirt"),
    dict(kernel="no-paravirt", lock="ticket"),
    dict(host="baremetal"),
    dict(host="baremetal", patching=False),
    dict(host="kvm"),
    dict(host="kvm", patching=False),
    dict(host="kvm", patch_era="4.2"),
    dict(host="kvm", lock="pvqspinlock-4.2"),
    dict(host="kvm", nopvspin=True),
    dict(host="kvm-nopv"),
]


def contended(k, lk, rounds=3):
    def prog(cpu):
        for _ in range(rounds):
            yield from k.spin_lock(lk)
            yield ops.cs_enter(0)
            yield ops.cs_exit(0)
            yield from k.spin_unlock(lk)

    return prog


@pytest.mark.parametrize("kw", BUILDS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_booted_locks_exclude_and_end_clean(kw):
    for seed in range(15):
        mem, k = boot(**kw)
        lk = k.alloc_lock("lock0")
        prog = contended(k, lk)
        out = Executor(mem, [prog(c) for c in range(3)], RandomScheduler(seed), spurious_wakeups=seed % 3).run()
        assert (out.verdict, out.finished) == ("ok", True), (seed, out.detail)
        assert k.final_state_problems() == []


class Poisoned:
    def __getattr__(self, slot):
        raise AssertionError(f"pv_ops.lock.{slot} read after boot")


@pytest.mark.parametrize("host", ["baremetal", "kvm", "kvm-nopv"])
def test_patched_kernel_runs_with_pv_ops_poisoned(host):
    for seed in range(10):
        mem, k = boot(host=host)
        k.pv_ops.lock = Poisoned()
        lk = k.alloc_lock("lock0")
        prog = contended(k, lk)
        progs = [prog(c) for c in range(3)]
        out = Executor(mem, progs, RandomScheduler(seed), spurious_wakeups=1).run()
        assert out.verdict == "ok" and k.final_state_problems() == []
        assert run_site(k.vcpu_is_preempted(1))[1] in (True, False)


@pytest.mark.parametrize("host", ["baremetal", "kvm", "kvm-nopv"])
def test_unpatched_kernel_reads_pv_ops_at_each_call(host):
    mem, k = boot(host=host, patching=False)
    k.pv_ops.lock = Poisoned()
    lk = k.alloc_lock("lock0")
    with pytest.raises(AssertionError, match="read after boot"):
        Executor(mem, [contended(k, lk)(0)], RandomScheduler(0)).run()


def run_site(gen, mem=None):
    """Run guest code alone on one CPU: its ops applied to ``mem``, vCPUs never preempted."""
    out = []
    try:
        op = gen.send(None)
        while True:
            out.append(op)
            result = None
            if op[0] in (ops.LOAD, ops.COND_LOAD):
                result = mem.read(op[1].addr, op[1].size)
            elif op[0] == ops.STORE:
                mem.write(op[1].addr, op[1].size, op[2])
            elif op[0] in ops.RMW_OPS:
                new, result = ops.rmw_result(op[0], mem.read(op[1].addr, op[1].size), op, MASKS[op[1].size])
                if new is not None:
                    mem.write(op[1].addr, op[1].size, new)
            elif op[0] == ops.VCPU_IS_PREEMPTED:
                result = False
            op = gen.send(result)
    except StopIteration as stop:
        return out, stop.value


def frames(gen) -> int:
    """Generator frames active once the first op is yielded (the yield-from chain)."""
    gen.send(None)
    depth = 1
    while gen.gi_yieldfrom is not None:
        gen, depth = gen.gi_yieldfrom, depth + 1
    return depth


def test_patched_native_unlock_costs_what_no_paravirt_costs():
    _, native = boot(kernel="no-paravirt")
    _, patched = boot(host="baremetal")
    a, b = native.alloc_lock("a"), patched.alloc_lock("b")
    assert run_site(patched.spin_unlock(b), patched.impl.mem)[0] == [ops.smp_store_release(b.locked, 0)]
    assert run_site(native.spin_unlock(a), native.impl.mem)[0] == [ops.smp_store_release(a.locked, 0)]
    assert frames(patched.spin_unlock(b)) == frames(native.spin_unlock(a)) == 1


def test_call_overheads_charged_per_build():
    def unlock_work(**kw):
        mem, k = boot(**kw)
        lk = k.alloc_lock("l")
        mem.write(lk.locked.addr, 1, 1)
        return [op[1] for op in run_site(k.spin_unlock(lk), mem)[0] if op[0] == ops.WORK]

    assert unlock_work(host="baremetal") == []
    assert unlock_work(host="baremetal", patching=False) == [costs.INDIRECT_CALL, costs.CALLEE_SAVE_THUNK]
    assert unlock_work(host="kvm") == [costs.DIRECT_CALL, costs.PV_UNLOCK_ASM_THUNK]
    assert unlock_work(host="kvm", patch_era="4.2") == [costs.INDIRECT_CALL, costs.PV_UNLOCK_ASM_THUNK]
    assert unlock_work(host="kvm", lock="pvqspinlock-4.2") == [costs.DIRECT_CALL, costs.CALLEE_SAVE_THUNK]


def test_vcpu_is_preempted_site_per_build():
    assert run_site(boot(kernel="no-paravirt")[1].vcpu_is_preempted(1)) == ([], False)
    assert run_site(boot(host="baremetal")[1].vcpu_is_preempted(1)) == ([], False)
    for host in ("kvm", "kvm-nopv"):
        k = boot(host=host)[1]
        assert not k.paravirt.pv_is_native_vcpu_is_preempted()
        work, preempted = run_site(k.vcpu_is_preempted(2))
        assert preempted is False
        assert work == [ops.work(costs.DIRECT_CALL, ops.WORK_CALL), ops.vcpu_is_preempted(2)]


def test_patch_table_rows():
    _, k = boot(host="kvm", patch_era="4.2")
    rows = {r["site"]: r for r in k.patch_table()}
    unlock = rows["queued_spin_unlock"]
    assert unlock["op"] == "pv_lock_ops.queued_spin_unlock"  # the seed's struct pv_lock_ops pv_lock_ops
    assert unlock["clobbers"] == "CLBR_RET_REG"
    assert unlock["before"] == unlock["after"] == "ff 14 25 e8 52 c1 81" and not unlock["patched"]
    assert unlock["after_asm"] == "call qword ptr [0xffffffff81c152e8] <pv_lock_ops+0x8>"
    wait = rows["pv_wait"]
    assert wait["patched"] and wait["after_asm"].startswith(f"call {pv.SYMBOLS['kvm_wait']:#x} <kvm_wait>")


def test_boot_is_deterministic():
    assert boot(host="kvm")[1].patch_table() == boot(host="kvm")[1].patch_table()


def test_each_booted_kernel_has_its_own_pv_ops():
    _, bare = boot(host="baremetal")
    _, kvm = boot(host="kvm")
    assert bare.pv_ops is not kvm.pv_ops
    assert bare.paravirt.pv_is_native_spin_unlock() and not kvm.paravirt.pv_is_native_spin_unlock()
    unlock = {k.host: k.patch_table()[1]["after"][:2] for k in (bare, kvm)}
    assert unlock == {"baremetal": "c6", "kvm": "e8"}


def test_the_52_lock_asks_vcpu_is_preempted_through_the_patched_site():
    """pvqspinlock-5.2's pv_wait_early() calls vcpu_is_preempted(): the site apply_paravirt patched,
    a direct call to KVM's steal-time thunk on a steal-time host."""
    from pvspin.kernel.qspinlock_paravirt_52 import PvQSpinlock52

    _, k = boot(3, host="kvm", lock="pvqspinlock-5.2")
    assert type(k.impl) is PvQSpinlock52
    site = next(s for s in k.patch_sites if s.op == "vcpu_is_preempted")
    assert k.impl.vcpu_is_preempted is site.code is k.vcpu_is_preempted
    assert "__raw_callee_save___kvm_vcpu_is_preempted" in k.patch_table()[4]["after_asm"]
