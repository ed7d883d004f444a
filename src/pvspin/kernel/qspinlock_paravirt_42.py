"""pvqspinlock as the seed shipped it: kernel/locking/qspinlock_paravirt.h of Linux v4.2 (see :class:`PvQSpinlock42`)."""

from __future__ import annotations

from ..machine.cpu import GuestCode
from ..machine.memory import NULL, Memory, View
from ..machine.ops import (
    READ_ONCE,
    WARN,
    WRITE_ONCE,
    atomic_read,
    atomic_try_cmpxchg,
    cmpxchg,
    cpu_relax,
    lockevent_inc,
    smp_cond_load_relaxed,
    smp_store_mb,
    smp_store_release,
    xchg,
)
from .config import DEFAULT_CONFIG, LockConfig
from .declarations import PLAIN, WORD
from .lockevents import LOCK_SLOWPATH, PV_KICK_UNLOCK, PV_WAIT_HEAD, PV_WAIT_NODE
from .qspinlock import _Q_LOCKED_VAL, QSpinlock, _nonzero, _zero
from .qspinlock_paravirt import _Q_SLOW_VAL, PvQSpinlock, vcpu_halted, vcpu_running

# include/linux/hash.h of v4.2: hash_64() multiplies by this "prime" (2^63 + 2^61 - 2^57 + 2^54 -
# 2^51 - 2^18 + 1), with a multiply instruction or, without a fast multiplier, the equivalent
# shifts and adds.  v4.7 replaced it by GOLDEN_RATIO_64.
GOLDEN_RATIO_PRIME_64 = 0x9E37FFFFFFFC0001


class PvQSpinlock42(PvQSpinlock):
    """pvqspinlock as the seed shipped it: kernel/locking/qspinlock_paravirt.h of Linux v4.2.

    Differences from the v5.4+ code (:class:`PvQSpinlock`):

    * two vCPU states only (vcpu_running, vcpu_halted);
    * no pending bit and no lock stealing: the PV slow path goes straight to the queue and
      its trylock is the plain ``queued_spin_trylock``;
    * the queue head only waits (``pv_wait_head``): it hashes itself, turns the locked byte
      from _Q_LOCKED_VAL to _Q_SLOW_VAL with a cmpxchg and halts on it; the generic code
      then waits for (*,0,0) and claims the lock;
    * ``pv_kick_node`` wakes a halted successor at once (xchg of its state to running);
    * the unlock is a full cmpxchg, has no smp_rmb() before the unhash (3b3fdf10a8ad came in
      v4.3) and kicks only if the node's state reads vcpu_halted.

    Simplifications, all invisible under SC and x86-TSO: 4.2 had eight ``mcs_nodes`` per CPU
    with the PV fields of node ``idx`` in slot ``idx + 4``; here the node layout and count are
    the modern ones (four 32-byte nodes).  The generic queue code is the modern one
    (:meth:`QSpinlock.queue`): 4.2 published the tail with a full ``xchg`` where modern
    kernels use ``smp_wmb()`` + ``xchg_relaxed``, and 4.2 claimed with a cmpxchg loop where
    modern kernels try one cmpxchg and fall back to ``set_locked`` -- without a pending bit
    both take the same transitions.  4.2 had no lock-event counters; this variant emits the
    ones v4.5 added at the corresponding places.

    Also of 4.2: the lock hash's ``hash_64()`` multiplier (:data:`GOLDEN_RATIO_PRIME_64`), and the
    x86 fallback under the name and in the form the seed's ``asm/qspinlock.h`` has,
    :meth:`virt_queued_spin_lock`.
    """

    name = "pvqspinlock-4.2"
    HASH_MULTIPLIER = GOLDEN_RATIO_PRIME_64
    DECLARED = PvQSpinlock.DECLARED.extend(locals={
        "PvQSpinlock42.pv_wait_node": {"threshold": PLAIN},
        "PvQSpinlock42.pv_queued_spin_unlock": {"locked": PLAIN, "val": WORD},
        "PvQSpinlock42.virt_queued_spin_lock": {"_": WORD},
    })
    pv_queued_spin_trylock = QSpinlock.queued_spin_trylock

    def virt_queued_spin_lock(self, lock: View) -> GuestCode:
        """virt_queued_spin_lock() (arch/x86/include/asm/qspinlock.h as of the seed, v4.2; later
        renamed virt_spin_lock()): under a hypervisor, a test-and-set lock by cmpxchg alone.

        4.2 gated it on ``static_cpu_has(X86_FEATURE_HYPERVISOR)``, for which
        ``virt_spin_lock_key`` stands here, and retried ``atomic_cmpxchg(&lock->val, 0,
        _Q_LOCKED_VAL)`` with ``cpu_relax()`` in between: every retry a locked operation on the
        line (the read-first loop came with 43b3f02899f7).  Only the native slow path calls it,
        which a booted pvqspinlock-4.2 never runs, so the loop stays a loop of cmpxchg.
        """
        if not self.virt_spin_lock_key or self.config.arch != "x86":
            return False
        while True:
            ok, _ = yield atomic_try_cmpxchg(lock.val, 0, _Q_LOCKED_VAL)  # (0,0,0) -> (0,0,1)
            if ok:
                return True
            yield cpu_relax()

    virt_spin_lock = virt_queued_spin_lock  # where the shared native slow path calls the fallback

    def __init__(self, mem: Memory, ncpus: int, config: LockConfig = DEFAULT_CONFIG):
        super().__init__(mem, ncpus, config)
        self.pv_trylock_may_succeed = _zero

    def pv_wait_node(self, node: View, prev: View) -> GuestCode:
        """pv_wait_node() of 4.2: spin SPIN_THRESHOLD times on ``node->locked``, then halt (``prev`` unused)."""
        threshold = self.config.spin_threshold
        while True:
            if (yield smp_cond_load_relaxed(node.locked, _nonzero, threshold)):
                return
            # [S] state = halted; MB; [L] node->locked -- pairs with pv_kick_node()'s xchg.
            if self._kick_node_no_barrier:
                yield WRITE_ONCE(node.state, vcpu_halted)  # injected: no full barrier
            else:
                yield smp_store_mb(node.state, vcpu_halted)
            if not (yield READ_ONCE(node.locked)):
                yield lockevent_inc(PV_WAIT_NODE)
                yield from self.pv_wait(node.state, vcpu_halted)
            yield WRITE_ONCE(node.state, vcpu_running)  # spurious wake-ups just spin again

    def pv_kick_node(self, lock: View, node: View) -> GuestCode:
        """pv_kick_node() of 4.2: if the new queue head had halted, wake it now."""
        if (yield xchg(node.state, vcpu_running)) == vcpu_halted:
            yield from self.pv_kick((yield READ_ONCE(node.cpu)))

    def pv_wait_head(self, lock: View, node: View) -> GuestCode:
        """pv_wait_head(): the queue head waits for the locked byte to read 0, halting after a spin."""
        lp = None
        while True:
            if not (yield smp_cond_load_relaxed(lock.locked, _zero, self.config.spin_threshold)):
                return  # (*,0,0): the generic code claims it
            yield WRITE_ONCE(node.state, vcpu_halted)
            if lp is None:  # once
                lp = yield from self.pv_hash(lock, node)
                # Hash before SLOW, so that an unlocker seeing SLOW finds the entry.
                if (yield cmpxchg(lock.locked, _Q_LOCKED_VAL, _Q_SLOW_VAL)) == 0:  # (*,*,1) -> (*,*,3)
                    yield WRITE_ONCE(lp, NULL)  # it was free: SLOW never set, unhash
                    return
            yield lockevent_inc(PV_WAIT_HEAD)
            yield from self.pv_wait(lock.locked, _Q_SLOW_VAL)

    def pv_wait_head_or_lock(self, lock: View, node: View) -> GuestCode:
        """4.2's hook in the same place: pv_wait_head(), then 0 (lock not taken) for the generic claim."""
        yield lockevent_inc(LOCK_SLOWPATH)
        yield from self.pv_wait_head(lock, node)
        return 0

    def pv_queued_spin_unlock(self, lock: View) -> GuestCode:
        """__pv_queued_spin_unlock() of 4.2: full cmpxchg 1 -> 0, else unhash, release, kick if halted."""
        locked = yield cmpxchg(lock.locked, _Q_LOCKED_VAL, 0)
        if locked == _Q_LOCKED_VAL:
            return
        if locked != _Q_SLOW_VAL and not self._unhash_without_slow_check:
            val = yield atomic_read(lock.val)
            yield WARN(f"pvqspinlock: lock {lock.addr:#x} ({lock.name}) has corrupted value {val:#x}!")
            return
        node = self.deref((yield from self.pv_unhash(lock)))
        yield smp_store_release(lock.locked, 0)  # (*,*,3) -> (*,*,0)
        if (yield READ_ONCE(node.state)) == vcpu_halted:
            yield lockevent_inc(PV_KICK_UNLOCK)
            yield from self.pv_kick((yield READ_ONCE(node.cpu)))
