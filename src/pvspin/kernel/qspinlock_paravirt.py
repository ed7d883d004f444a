"""The paravirt queued spinlock: kernel/locking/qspinlock_paravirt.h as of v5.4 and later.

That is, with pv_wait_early() testing the previous node's state only (since the revert
89340d0935c9, v5.4; read in v5.10.13 and, by the fidelity audit, v6.8) and the qspinlock.c
of :mod:`pvspin.kernel.qspinlock` (v5.2+).  v5.2-v5.3, whose pv_wait_early() also asked
vcpu_is_preempted(), is :class:`~pvspin.kernel.qspinlock_paravirt_52.PvQSpinlock52`.

Waiters halt their vCPU (``pv_wait``) instead of spinning forever, and are kicked
(``pv_kick``) by the unlocker.  A queue node halts on its own ``state``; the queue head
halts on the lock's locked byte after setting it to ``_Q_SLOW_VAL`` and publishing
``(lock, node)`` in a global hash table, so that the unlocker can find whom to kick.
The three vCPU states: ``vcpu_running`` (spinning), ``vcpu_halted`` (a queue node about
to sleep or asleep), ``vcpu_hashed`` (a hash entry for the node's lock exists and the
unlocker will kick it).

The queue head also sets the pending bit while it actively spins, which stops lock
stealers in :meth:`PvQSpinlock.pv_hybrid_queued_unfair_trylock` (the ``queued_spin_trylock``
of the PV slow path).

Spin loops of SPIN_THRESHOLD iterations are bounded ``smp_cond_load`` operations (one
operation per loop, or per PV_PREV_CHECK_MASK + 1 iterations where the kernel looks at the
previous node in between), so a driver never steps through them one load at a time.

The algorithm as v4.2 shipped it is :class:`~pvspin.kernel.qspinlock_paravirt_42.PvQSpinlock42`.
"""

from __future__ import annotations

from ..machine import ops
from ..machine.cpu import GuestCode
from ..machine.memory import CACHE_LINE, NULL, Layout, Memory, View
from ..machine.ops import (
    BUG_ON,
    READ_ONCE,
    WARN,
    WRITE_ONCE,
    atomic_cond_read_relaxed,
    atomic_or,
    atomic_read,
    atomic_try_cmpxchg_acquire,
    cmpxchg,
    cmpxchg_relaxed,
    cmpxchg_release,
    cpu_relax,
    lockevent_add,
    lockevent_cond_inc,
    lockevent_inc,
    smp_cond_load_relaxed,
    smp_mb__before_atomic,
    smp_processor_id,
    smp_rmb,
    smp_store_mb,
    smp_store_release,
    try_cmpxchg_acquire,
    xchg,
)
from .config import DEFAULT_CONFIG, LockConfig
from .declarations import CPU, OWNER, PLAIN, PTR, WORD
from .lockevents import (
    LOCK_SLOWPATH,
    PV_HASH_HOPS,
    PV_KICK_UNLOCK,
    PV_LOCK_STEALING,
    PV_SPURIOUS_WAKEUP,
    PV_WAIT_AGAIN,
    PV_WAIT_EARLY,
    PV_WAIT_HEAD,
    PV_WAIT_NODE,
)
from .qspinlock import _Q_LOCKED_MASK, _Q_LOCKED_VAL, _Q_PENDING_VAL, QSpinlock, _nonzero, _zero

_Q_SLOW_VAL = 3 << 0  # 3U << _Q_LOCKED_OFFSET: locked, and a halted head is hashed

# enum vcpu_state
vcpu_running = 0
vcpu_halted = 1  # used only in pv_wait_node
vcpu_hashed = 2  # = pv_hash'ed + vcpu_halted

# struct pv_node overlaid on a 32-byte struct qnode: { mcs; int cpu; u8 state; } (since 4.20).
PV_NODE = Layout(
    "pv_node",
    32,
    [("next", 0, 8), ("locked", 8, 4), ("count", 12, 4), ("cpu", 16, 4), ("state", 20, 1)],
)

# struct pv_hash_entry { struct qspinlock *lock; struct pv_node *node; }
PV_HASH_ENTRY = Layout("pv_hash_entry", 16, [("lock", 0, 8), ("node", 8, 8)])
PV_HE_PER_LINE = CACHE_LINE // PV_HASH_ENTRY.size  # 4 on x86-64
PV_HE_MIN = 4096 // PV_HASH_ENTRY.size  # PAGE_SIZE / sizeof(entry) = 256

GOLDEN_RATIO_64 = 0x61C8864680B583EB  # include/linux/hash.h since v4.7; 4.2 had GOLDEN_RATIO_PRIME_64
_U64 = (1 << 64) - 1


def hash_ptr(addr: int, bits: int, multiplier: int = GOLDEN_RATIO_64) -> int:
    """hash_ptr() on 64-bit: hash_64(), a multiply (mod 2**64) keeping the top ``bits`` bits.

    The multiplier is the kernel's of the modelled version (see ``PvQSpinlock.HASH_MULTIPLIER``).
    """
    return ((addr * multiplier) & _U64) >> (64 - bits)


def pv_hash_size(ncpus: int) -> int:
    """Entries of the PV lock hash for ``ncpus`` possible CPUs, as __pv_init_lock_hash() gets them.

    ALIGN(4 * ncpus, PV_HE_PER_LINE), at least PV_HE_MIN; alloc_large_system_hash() then
    keeps ``1 << ilog2(size)`` entries, i.e. rounds down to a power of two.
    """
    size = -(-4 * ncpus // PV_HE_PER_LINE) * PV_HE_PER_LINE
    size = max(size, PV_HE_MIN)
    return 1 << (size.bit_length() - 1)


class PvQSpinlock(QSpinlock):
    """pvqspinlock as in v5.4 and later kernels, with hybrid queued/unfair lock stealing.

    Constructed directly, it binds its own call sites to the PV functions and allocates
    the lock hash, so it works without a kernel build.  Hypervisor calls go through the
    ``pv_wait`` / ``pv_kick`` call sites, which a kernel build may rebind.
    """

    name = "pvqspinlock"
    qnode_layout = PV_NODE
    HASH_MULTIPLIER = GOLDEN_RATIO_64  # hash_64()'s, which picks the lock hash's bucket
    # and pv-wait-no-latch, the hypervisor's: only code that calls pv_wait() can meet it
    BUGS = QSpinlock.BUGS | {"pv-kick-node-no-barrier", "unhash-without-slow-check", "pv-wait-no-latch"}
    DECLARED = QSpinlock.DECLARED.extend(
        knobs={"spin_threshold", "pv_prev_check_mask"},
        locked=frozenset({0, _Q_LOCKED_VAL, _Q_SLOW_VAL}),
        fields={("pv_node", "next"): PTR, ("pv_node", "cpu"): OWNER, ("pv_hash_entry", "lock"): PTR,
                ("pv_hash_entry", "node"): PTR},
        locals={
            "PvQSpinlock.pv_wait": {"val": PLAIN},  # the expected node state or locked byte
            "PvQSpinlock.pv_kick": {"cpu": CPU},
            "PvQSpinlock.pv_hash": {"hopcnt": PLAIN, "old": PTR},
            "PvQSpinlock.pv_unhash": {"node": PTR},
            "PvQSpinlock.trylock_clear_pending": {"loops": PLAIN, "val": WORD, "new": WORD, "locked": PLAIN,
                                                  "_": PLAIN},
            "PvQSpinlock.pv_hybrid_queued_unfair_trylock": {"val": WORD, "_": PLAIN},
            "PvQSpinlock.pv_init_node": {"cpu": CPU},
            "PvQSpinlock.pv_wait_node": {"mask": PLAIN, "threshold": PLAIN, "loop": PLAIN, "check_at": PLAIN,
                                         "locked": PLAIN},
            "PvQSpinlock.pv_wait_head_or_lock": {"spin_threshold": PLAIN, "waitcnt": PLAIN, "val": WORD},
            "PvQSpinlock.pv_queued_spin_unlock": {"locked": PLAIN},
            "PvQSpinlock.pv_queued_spin_unlock_slowpath": {"locked": PLAIN, "val": WORD},
        },
    )

    def __init__(self, mem: Memory, ncpus: int, config: LockConfig = DEFAULT_CONFIG):
        super().__init__(mem, ncpus, config)
        self.pv_lock_hash: list[View] = []
        self.pv_lock_hash_bits = 0
        self.pv_init_lock_hash()
        self._kick_node_no_barrier = "pv-kick-node-no-barrier" in config.bugs
        self._unhash_without_slow_check = "unhash-without-slow-check" in config.bugs
        q = self.q
        lpm, tail_mask, pending_mask = q._Q_LOCKED_PENDING_MASK, q._Q_TAIL_MASK, q._Q_PENDING_MASK
        self.pv_trylock_may_succeed = lambda v: not v & lpm
        # The hybrid trylock keeps spinning only while a queue exists and its head is idle.
        self._steal_or_give_up = lambda v: not v & lpm or not v & tail_mask or v & pending_mask
        # Call sites (pv_wait / pv_kick default to the methods below).
        self.queued_spin_lock_slowpath = self.pv_queued_spin_lock_slowpath
        self.queued_spin_unlock = self.pv_queued_spin_unlock

    # ------------------------------------------------------------- hypervisor interface
    # The defaults of the pv_wait / pv_kick call sites: the bare hypercalls.  A kernel build
    # rebinds them per instance (to kvm_wait, to paravirt_nop, ...).
    def pv_wait(self, ptr: View, val: int) -> GuestCode:
        """pv_wait(ptr, val): halt while ``*ptr == val``, until kicked."""
        yield ops.pv_wait(ptr, val)

    def pv_kick(self, cpu: int) -> GuestCode:
        """pv_kick(cpu): wake ``cpu`` from pv_wait(), or make its next pv_wait() return."""
        yield ops.pv_kick(cpu)

    # ------------------------------------------------------------- hash table
    def pv_init_lock_hash(self) -> None:
        """__pv_init_lock_hash(): allocate the (lock -> node) hash, cache-line aligned and zeroed.

        Idempotent: the constructor calls it so that a standalone lock works, and the
        platform's spinlock init may call it again.
        """
        if self.pv_lock_hash:
            return
        entries = pv_hash_size(self.ncpus)
        self.pv_lock_hash = self.mem.alloc(PV_HASH_ENTRY, "pv_lock_hash", (entries,), align=CACHE_LINE)
        self.pv_lock_hash_bits = entries.bit_length() - 1

    def hash_entries(self, lock: View):
        """for_each_hash_entry(): from the start of the hash's cache line, linearly over the whole table."""
        table = self.pv_lock_hash
        mask = len(table) - 1
        start = hash_ptr(lock.addr, self.pv_lock_hash_bits, self.HASH_MULTIPLIER) & ~(PV_HE_PER_LINE - 1)
        for offset in range(len(table)):
            yield table[(start + offset) & mask]

    def pv_hash(self, lock: View, node: View) -> GuestCode:
        """pv_hash(): claim the first free entry for ``lock``, then fill in ``node``; returns ``&he->lock``."""
        hopcnt = 0
        for he in self.hash_entries(lock):
            hopcnt += 1
            old = yield cmpxchg(he.lock, NULL, lock.addr)
            if old == NULL:
                yield WRITE_ONCE(he.node, node.addr)
                yield lockevent_add(PV_HASH_HOPS, hopcnt)
                return he.lock
        # Cannot happen while every blocked lock takes one entry and the table holds 4 per CPU.
        BUG_ON(True, f"pv_hash: no free hash entry for {lock.name}")

    def pv_unhash(self, lock: View) -> GuestCode:
        """pv_unhash(): find ``lock``'s entry, free it, return the node's address."""
        for he in self.hash_entries(lock):
            if (yield READ_ONCE(he.lock)) == lock.addr:
                node = yield READ_ONCE(he.node)
                yield WRITE_ONCE(he.lock, NULL)
                return node
        # Whoever sees _Q_SLOW_VAL at unlock must find an entry.
        BUG_ON(True, f"pv_unhash: no hash entry for {lock.name}")

    # ------------------------------------------------------------- lock-word helpers (PV meaning of pending)
    def set_pending(self, lock: View) -> GuestCode:
        """set_pending(): (*,0,*) -> (*,1,*), the head announcing it is actively spinning."""
        if self.q.nr_cpus_16k:
            yield atomic_or(_Q_PENDING_VAL, lock.val)
        else:
            yield WRITE_ONCE(lock.pending, 1)

    def trylock_clear_pending(self, lock: View, loops: int) -> GuestCode:
        """The head's SPIN_THRESHOLD loop of trylock_clear_pending(): (*,1,0) -> (*,0,1).

        The kernel calls trylock_clear_pending() up to ``loops`` times; here the waits for
        the locked byte to read 0 are one bounded spin.  Returns True when the lock is ours.
        """
        if self.q.nr_cpus_16k:
            while loops > 0:
                val = yield smp_cond_load_relaxed(lock.val, _unlocked, loops)
                if val & _Q_LOCKED_MASK:
                    return False  # spun the whole budget
                while not val & _Q_LOCKED_MASK:
                    new = (val & ~self.q._Q_PENDING_MASK) | _Q_LOCKED_VAL
                    ok, val = yield atomic_try_cmpxchg_acquire(lock.val, val, new)
                    if ok:
                        return True
                loops -= 1
            return False
        while loops > 0:
            locked = yield smp_cond_load_relaxed(lock.locked, _zero, loops)
            if locked:
                return False  # spun the whole budget
            ok, _ = yield try_cmpxchg_acquire(lock.locked_pending, _Q_PENDING_VAL, _Q_LOCKED_VAL)
            if ok:
                return True
            loops -= 1
        return False

    # ------------------------------------------------------------- the PV hooks of the slow path
    def pv_queued_spin_lock_slowpath(self, lock: View, val: int) -> GuestCode:
        """__pv_queued_spin_lock_slowpath(): straight to ``pv_queue:``, no pending path."""
        yield from self.queue(lock, pv=True)

    def pv_hybrid_queued_unfair_trylock(self, lock: View) -> GuestCode:
        """pv_hybrid_queued_unfair_trylock(): the slow path's queued_spin_trylock, lock stealing.

        Steals (*,0,0) -> (*,0,1) whenever locked and pending are clear; keeps trying while
        a queue exists whose head is not actively spinning (pending clear), gives up
        when there is no queue (go and be its head) or the head spins (no stealing).
        """
        q = self.q
        while True:
            val = yield atomic_cond_read_relaxed(lock.val, self._steal_or_give_up)
            if not val & q._Q_LOCKED_PENDING_MASK:
                ok, _ = yield try_cmpxchg_acquire(lock.locked, 0, _Q_LOCKED_VAL)
                if ok:
                    yield lockevent_inc(PV_LOCK_STEALING)
                    return True
            if not val & q._Q_TAIL_MASK or val & q._Q_PENDING_MASK:
                return False
            yield cpu_relax()

    pv_queued_spin_trylock = pv_hybrid_queued_unfair_trylock

    def pv_init_node(self, node: View) -> GuestCode:
        """pv_init_node(): record our CPU for kickers; state vcpu_running."""
        cpu = yield smp_processor_id()
        yield WRITE_ONCE(node.cpu, cpu)
        yield WRITE_ONCE(node.state, vcpu_running)

    def pv_wait_early(self, prev: View) -> GuestCode:
        """pv_wait_early() as since the revert 89340d0935c9 (v5.4; 5.3.y and 4.19.y by stable):
        halt early if the previous node's vCPU is not running.  Called only where the kernel's
        ``(loop & PV_PREV_CHECK_MASK) == 0`` holds."""
        return (yield READ_ONCE(prev.state)) != vcpu_running

    def vcpu_is_preempted(self, cpu: int) -> GuestCode:
        """vcpu_is_preempted(cpu): the call site a kernel build rebinds (to the patched site); by
        default the bare steal-time read."""
        return (yield ops.vcpu_is_preempted(cpu))

    def pv_wait_node(self, node: View, prev: View) -> GuestCode:
        """pv_wait_node(): a non-head waiter spins on ``node->locked``, then halts.

        Every PV_PREV_CHECK_MASK + 1 iterations of the SPIN_THRESHOLD spin it looks at the
        previous node, and halts early if that one is not running (pv_wait_early()).
        Tolerates spurious wake-ups: after each it spins again.
        """
        mask = self.config.pv_prev_check_mask
        threshold = self.config.spin_threshold
        while True:
            wait_early = False
            loop = threshold  # the kernel counts down; the wait-early check runs when (loop & mask) == 0
            while loop:
                check_at = loop & ~mask
                if not check_at:  # no check left in this spin
                    if (yield smp_cond_load_relaxed(node.locked, _nonzero, loop)):
                        return
                    break
                if (yield smp_cond_load_relaxed(node.locked, _nonzero, loop - check_at + 1)):
                    return
                if (yield from self.pv_wait_early(prev)):
                    wait_early = True
                    break
                loop = check_at - 1

            # [S] state = halted; MB; [L] node->locked -- pairs with pv_kick_node().
            if self._kick_node_no_barrier:
                yield WRITE_ONCE(node.state, vcpu_halted)  # injected: no full barrier
            else:
                yield smp_store_mb(node.state, vcpu_halted)
            if not (yield READ_ONCE(node.locked)):
                yield lockevent_inc(PV_WAIT_NODE)
                yield lockevent_cond_inc(PV_WAIT_EARLY, wait_early)
                yield from self.pv_wait(node.state, vcpu_halted)
            # Back to running, unless pv_kick_node() made us vcpu_hashed meanwhile (keep that,
            # so that pv_wait_head_or_lock() does not hash the lock a second time).
            yield cmpxchg(node.state, vcpu_halted, vcpu_running)
            locked = yield READ_ONCE(node.locked)
            yield lockevent_cond_inc(PV_SPURIOUS_WAKEUP, not locked)

    def pv_kick_node(self, lock: View, node: View) -> GuestCode:
        """pv_kick_node(): called by the new owner after handing the queue head to ``node``.

        Does not kick: if ``node`` halted, advance it to vcpu_hashed and do its hashing for
        it (set _Q_SLOW_VAL and hash), so that our unlock kicks it.
        """
        # [S] node->locked = 1; MB; [RmW] node->state, whether the cmpxchg succeeds or not.
        if not self._kick_node_no_barrier:
            yield smp_mb__before_atomic()
        if (yield cmpxchg_relaxed(node.state, vcpu_halted, vcpu_hashed)) != vcpu_halted:
            return  # it is running and will see node->locked itself
        # We hold the lock and we will unlock it: no atomic needed. (*,*,1) -> (*,*,3)
        yield WRITE_ONCE(lock.locked, _Q_SLOW_VAL)
        yield from self.pv_hash(lock, node)

    def pv_wait_head_or_lock(self, lock: View, node: View) -> GuestCode:
        """pv_wait_head_or_lock(): the queue head spins, then halts; returns the word with the lock held."""
        spin_threshold = self.config.spin_threshold
        # Already hashed by pv_kick_node(): do not hash again.
        lp = True if (yield READ_ONCE(node.state)) == vcpu_hashed else None
        yield lockevent_inc(LOCK_SLOWPATH)
        waitcnt = 0
        while True:
            yield WRITE_ONCE(node.state, vcpu_running)  # for our successor's wait-early check
            yield from self.set_pending(lock)  # (*,0,*) -> (*,1,*): no stealing while we spin
            if (yield from self.trylock_clear_pending(lock, spin_threshold)):
                break  # (*,1,0) -> (*,0,1)
            yield from self.clear_pending(lock)  # (*,1,*) -> (*,0,*): stealing allowed again
            if lp is None:  # once per acquisition
                lp = yield from self.pv_hash(lock, node)
                # Hash before SLOW: the unlocker that sees SLOW must find the entry.
                if (yield xchg(lock.locked, _Q_SLOW_VAL)) == 0:  # (*,*,0) -> (*,*,3): it was free, it is ours
                    yield WRITE_ONCE(lock.locked, _Q_LOCKED_VAL)  # (*,*,3) -> (*,*,1)
                    yield WRITE_ONCE(lp, NULL)  # unhash
                    break
            yield WRITE_ONCE(node.state, vcpu_hashed)
            yield lockevent_inc(PV_WAIT_HEAD)
            yield lockevent_cond_inc(PV_WAIT_AGAIN, waitcnt)
            yield from self.pv_wait(lock.locked, _Q_SLOW_VAL)
            # Woken, spuriously or because the lock was freed (a stealer may have taken it
            # again): spin again.
            waitcnt += 1
        val = yield atomic_read(lock.val)
        return val | _Q_LOCKED_VAL

    # ------------------------------------------------------------- unlock
    def pv_queued_spin_unlock(self, lock: View) -> GuestCode:
        """__pv_queued_spin_unlock(): (*,*,1) -> (*,*,0) by cmpxchg_release; anything else is slow."""
        locked = yield cmpxchg_release(lock.locked, _Q_LOCKED_VAL, 0)
        if locked == _Q_LOCKED_VAL:
            return
        yield from self.pv_queued_spin_unlock_slowpath(lock, locked)

    def pv_queued_spin_unlock_slowpath(self, lock: View, locked: int) -> GuestCode:
        """__pv_queued_spin_unlock_slowpath(): unhash the halted head, release, kick it."""
        if locked != _Q_SLOW_VAL and not self._unhash_without_slow_check:
            val = yield atomic_read(lock.val)
            yield WARN(f"pvqspinlock: lock {lock.addr:#x} ({lock.name}) has corrupted value {val:#x}!")
            return
        # A failed cmpxchg orders nothing: read the hash only after seeing SLOW.
        yield smp_rmb()
        node = self.deref((yield from self.pv_unhash(lock)))
        yield smp_store_release(lock.locked, 0)  # (*,*,3) -> (*,*,0); the lock may be reused now
        yield lockevent_inc(PV_KICK_UNLOCK)
        # Unconditional: kicking a running vCPU is harmless, merely slow.
        yield from self.pv_kick((yield READ_ONCE(node.cpu)))

    def final_state_problems(self) -> list[str]:
        problems = super().final_state_problems()
        read = self.mem.read
        for he in self.pv_lock_hash:
            held = read(he.lock.addr, 8)
            if held:
                problems.append(f"{he.name}: still hashes {self.mem.describe_value(held)} at quiescence")
        return problems


def _unlocked(v: int) -> bool:
    return not v & _Q_LOCKED_MASK
