"""The native queued spinlock: include/asm-generic/qspinlock{,_types}.h and kernel/locking/qspinlock.c.

The form of v5.2 and later -- the lockevent_*() counter names are v5.2's, the MAX_NODES
fallback v5.1's (d682b596d993); read against v6.8 (shared/reference/fidelity-audit.md, §4) --
with, as x86 has them: bounded wait for a pending->locked hand-over, the
pending bit taken with a fetch-or that undoes only its own bit, the MCS queue over four
per-CPU nodes (task, softirq, hardirq, NMI) with the ``idx >= MAX_NODES`` fallback, and the
head's claim by one cmpxchg or ``set_locked``.  The x86 ``virt_spin_lock()`` test-and-set
fallback sits at the start of the slow path.

The slow path's queueing half is written once and shared with the paravirt variant, as in
the kernel, where qspinlock.c is compiled a second time with the ``pv_*`` hooks enabled:
:meth:`QSpinlock.queue` takes ``pv`` to say which pass it is.

Comments give the lock word as the triple ``(tail, pending, locked)``, as the kernel's do.
"""

from __future__ import annotations

from functools import cache

from ..machine.cpu import GuestCode
from ..machine.deps import deps_of
from ..machine.memory import CACHE_LINE, NULL, Layout, Memory, View
from ..machine.ops import (
    READ_ONCE,
    WRITE_ONCE,
    GuestBug,
    atomic_add,
    atomic_andnot,
    atomic_cond_read_acquire,
    atomic_cond_read_relaxed,
    atomic_fetch_or_acquire,
    atomic_read,
    atomic_try_cmpxchg,
    atomic_try_cmpxchg_acquire,
    atomic_try_cmpxchg_relaxed,
    cpu_relax,
    lockevent_inc,
    smp_cond_load_acquire,
    smp_cond_load_relaxed,
    smp_processor_id,
    smp_store_release,
    smp_wmb,
    xchg_relaxed,
    xchg_release,
)
from .config import DEFAULT_CONFIG, LockConfig
from .declarations import CPU, PLAIN, PTR, TAIL16, WORD, LockDeclarations
from .lockevents import LOCK_NO_NODE, LOCK_PENDING, LOCK_SLOWPATH, LOCK_USE_NODE

# ----------------------------------------------------------------- include/asm-generic/qspinlock_types.h
_Q_LOCKED_OFFSET = 0
_Q_LOCKED_BITS = 8
_Q_LOCKED_MASK = ((1 << _Q_LOCKED_BITS) - 1) << _Q_LOCKED_OFFSET
_Q_LOCKED_VAL = 1 << _Q_LOCKED_OFFSET
_Q_PENDING_OFFSET = _Q_LOCKED_OFFSET + _Q_LOCKED_BITS
_Q_PENDING_VAL = 1 << _Q_PENDING_OFFSET
_Q_TAIL_IDX_BITS = 2


class QspinlockTypes:
    """The layout-dependent ``_Q_*`` constants for one NR_CPUS choice, computed as the kernel's macros do.

    NR_CPUS < 16K: 8-bit pending byte, so the 16-bit tail can be exchanged on its own.
    NR_CPUS >= 16K: 1-bit pending, and the tail shares its halfword with pending, so
    xchg_tail / clear_pending / clear_pending_set_locked become atomics on the whole word.
    """

    def __init__(self, nr_cpus_16k: bool):
        self.nr_cpus_16k = nr_cpus_16k
        self._Q_PENDING_BITS = 1 if nr_cpus_16k else 8
        self._Q_PENDING_MASK = ((1 << self._Q_PENDING_BITS) - 1) << _Q_PENDING_OFFSET
        self._Q_TAIL_IDX_OFFSET = _Q_PENDING_OFFSET + self._Q_PENDING_BITS
        self._Q_TAIL_IDX_MASK = ((1 << _Q_TAIL_IDX_BITS) - 1) << self._Q_TAIL_IDX_OFFSET
        self._Q_TAIL_CPU_OFFSET = self._Q_TAIL_IDX_OFFSET + _Q_TAIL_IDX_BITS
        self._Q_TAIL_CPU_BITS = 32 - self._Q_TAIL_CPU_OFFSET
        self._Q_TAIL_CPU_MASK = ((1 << self._Q_TAIL_CPU_BITS) - 1) << self._Q_TAIL_CPU_OFFSET
        self._Q_TAIL_OFFSET = self._Q_TAIL_IDX_OFFSET
        self._Q_TAIL_MASK = self._Q_TAIL_IDX_MASK | self._Q_TAIL_CPU_MASK
        self._Q_LOCKED_PENDING_MASK = _Q_LOCKED_MASK | self._Q_PENDING_MASK

    def encode_tail(self, cpu: int, idx: int) -> int:
        """encode_tail(): cpu + 1, so that a tail of 0 means "no queue"."""
        return ((cpu + 1) << self._Q_TAIL_CPU_OFFSET) | (idx << self._Q_TAIL_IDX_OFFSET)

    def decode_tail(self, tail: int) -> tuple[int, int]:
        """The (cpu, idx) that :meth:`encode_tail` packed."""
        cpu = (tail >> self._Q_TAIL_CPU_OFFSET) - 1
        idx = (tail & self._Q_TAIL_IDX_MASK) >> self._Q_TAIL_IDX_OFFSET
        return cpu, idx


@cache
def qspinlock_types(nr_cpus_16k: bool) -> QspinlockTypes:
    return QspinlockTypes(nr_cpus_16k)


# struct qspinlock: a union of the 32-bit word with its byte and halfword views (little-endian).
QSPINLOCK = Layout(
    "qspinlock",
    4,
    [("val", 0, 4), ("locked", 0, 1), ("pending", 1, 1), ("locked_pending", 0, 2), ("tail", 2, 2)],
    align=4,
)

# struct mcs_spinlock { struct mcs_spinlock *next; int locked; int count; }: a native qnode.
MCS_SPINLOCK = Layout("mcs_spinlock", 16, [("next", 0, 8), ("locked", 8, 4), ("count", 12, 4)])


def _zero(v: int) -> bool:
    return v == 0


def _nonzero(v: int) -> bool:
    return v != 0


class QSpinlock:
    """Native qspinlock (implements :class:`~pvspin.kernel.api.Spinlock`).

    Call sites that a kernel build rebinds at boot (paravirt patching plugs in there):
    ``queued_spin_lock_slowpath``, ``queued_spin_unlock`` and ``virt_spin_lock_key``.
    """

    name = "qspinlock"
    qnode_layout = MCS_SPINLOCK

    # The corpus bugs this code reads (pvspin check refuses to inject others: they would change nothing).
    BUGS = frozenset({"unbounded-pending-wait", "pending-after-tail", "count-after-init", "no-max-nodes-fallback",
                      "xchg-tail-release", "link-release"})

    # What the model checker may assume of this code (pvspin.kernel.declarations); subclasses inherit it.
    DECLARED = LockDeclarations(
        knobs={"pending_loops", "max_nodes"},
        word="qspinlock",
        locked=frozenset({0, _Q_LOCKED_VAL}),
        symmetric=True,
        per_cpu_by_reference=True,  # nodes are reached through the tail and ->next
        # the tail halfword is a view of the word: renamed when accessed on its own, not in memory
        fields={("qspinlock", "val"): WORD, ("qspinlock", "tail"): TAIL16, ("mcs_spinlock", "next"): PTR},
        locals={
            "QSpinlock.queued_spin_lock": {"val": WORD},
            "QSpinlock.queued_spin_trylock": {"val": WORD, "_": WORD},
            "QSpinlock.virt_spin_lock": {"_": WORD},
            "QSpinlock.xchg_tail": {"tail": WORD, "old": WORD, "seen": WORD, "lpm": PLAIN},
            "QSpinlock.queued_fetch_set_pending_acquire": {"old": WORD, "val": WORD},
            "QSpinlock.native_queued_spin_lock_slowpath": {"val": WORD, "contended": WORD},
            "QSpinlock.queue": {"cpu": CPU, "idx": PLAIN, "tail": WORD, "old": WORD, "next_addr": PTR, "val": WORD,
                                "_": WORD, "count": PLAIN},
        },
    )

    def __init__(self, mem: Memory, ncpus: int, config: LockConfig = DEFAULT_CONFIG):
        q = qspinlock_types(config.nr_cpus_16k)
        if not isinstance(ncpus, int) or ncpus < 1:
            raise ValueError(f"ncpus must be a positive integer, got {ncpus!r}")
        if ncpus >= 1 << q._Q_TAIL_CPU_BITS:  # BUILD_BUG_ON(CONFIG_NR_CPUS >= (1U << _Q_TAIL_CPU_BITS))
            raise ValueError(f"ncpus {ncpus} does not fit the tail's {q._Q_TAIL_CPU_BITS}-bit cpu field")
        self.mem = mem
        self.ncpus = ncpus
        self.config = config
        self.q = q
        self.qnodes: list[list[View]] = mem.alloc_percpu(self.qnode_layout, "qnodes", ncpus, config.max_nodes)
        self.locks: list[View] = []
        bugs = config.bugs
        # atomic_cond_read_relaxed(&lock->val, (VAL != _Q_PENDING_VAL) || !cnt--) with cnt starting
        # at _Q_PENDING_LOOPS: evaluations 1.._Q_PENDING_LOOPS see cnt > 0 and go on, evaluation
        # _Q_PENDING_LOOPS + 1 sees cnt == 0 and stops, whatever VAL is.  So that many loads.
        self._pending_bound = None if "unbounded-pending-wait" in bugs else config.pending_loops + 1
        self._pending_after_tail = "pending-after-tail" in bugs
        self._count_after_init = "count-after-init" in bugs
        self._no_max_nodes_fallback = "no-max-nodes-fallback" in bugs
        self._xchg_tail_release = "xchg-tail-release" in bugs
        self._link_release = "link-release" in bugs
        lpm = q._Q_LOCKED_PENDING_MASK
        self._no_locked_pending = lambda v: not v & lpm
        # Call sites (see class docstring).
        self.queued_spin_lock_slowpath = self.native_queued_spin_lock_slowpath
        self.queued_spin_unlock = self.native_queued_spin_unlock
        self.virt_spin_lock_key = False

    # ------------------------------------------------------------- Spinlock protocol
    def alloc_lock(self, name: str) -> View:
        """DEFINE_SPINLOCK: one lock word on a cache line of its own."""
        lock = self.mem.alloc(QSPINLOCK, name, align=CACHE_LINE)
        self.locks.append(lock)
        return lock

    def spin_unlock(self, lock: View) -> GuestCode:
        return self.queued_spin_unlock(lock)

    def final_state_problems(self) -> list[str]:
        read = self.mem.read
        problems = []
        for lock in self.locks:
            val = read(lock.val.addr, 4)
            if val:
                problems.append(f"{lock.name}: lock word is {self.describe_val(val)} at quiescence, not (0,0,0)")
        for cpu, nodes in enumerate(self.qnodes):
            count = read(nodes[0].count.addr, 4)
            if count:
                problems.append(f"{nodes[0].count.name}: per-CPU node count of cpu{cpu} is {count}, not 0")
        return problems

    def describe_val(self, val: int) -> str:
        """The lock word as the kernel's (tail, pending, locked) triple, tail as cpu:idx."""
        q = self.q
        tail = val & q._Q_TAIL_MASK
        tail_s = "0" if not tail else "{}:{}".format(*q.decode_tail(tail))
        pending = (val & q._Q_PENDING_MASK) >> _Q_PENDING_OFFSET
        return f"({tail_s},{pending},{val & _Q_LOCKED_MASK})"

    # ------------------------------------------------------------- fast path, trylock, unlock
    def queued_spin_lock(self, lock: View) -> GuestCode:
        """queued_spin_lock(): (0,0,0) -> (0,0,1) by one acquire cmpxchg, else the slow path."""
        ok, val = yield atomic_try_cmpxchg_acquire(lock.val, 0, _Q_LOCKED_VAL)
        if ok:
            return
        yield from self.queued_spin_lock_slowpath(lock, val)

    spin_lock = queued_spin_lock

    def queued_spin_trylock(self, lock: View) -> GuestCode:
        """queued_spin_trylock(): read the word; only if it is (0,0,0) try (0,0,0) -> (0,0,1)."""
        val = yield atomic_read(lock.val)
        if val:
            return False
        ok, _ = yield atomic_try_cmpxchg_acquire(lock.val, 0, _Q_LOCKED_VAL)
        return ok

    spin_trylock = queued_spin_trylock

    def queued_spin_is_locked(self, lock: View) -> GuestCode:
        """queued_spin_is_locked(): the word, read once; any non-zero state counts as locked, even if
        ``_Q_LOCKED_VAL`` is not yet observable (a pending or queued waiter about to take it)."""
        return (yield atomic_read(lock.val))

    spin_is_locked = queued_spin_is_locked

    def native_queued_spin_unlock(self, lock: View) -> GuestCode:
        """native_queued_spin_unlock(): (*,*,1) -> (*,*,0), a release store to the locked byte."""
        yield smp_store_release(lock.locked, 0)

    def virt_spin_lock(self, lock: View) -> GuestCode:
        """virt_spin_lock() (arch/x86/include/asm/qspinlock.h): test-and-set under a hypervisor without PV.

        Returns False at once when ``virt_spin_lock_key`` is off, and always on arm64,
        whose kernel has only the generic stub.  Spins on a plain load until the word reads
        0 and only then tries the cmpxchg (43b3f02899f7), so waiters do not bounce the line
        with locked operations.
        """
        if not self.virt_spin_lock_key or self.config.arch != "x86":
            return False
        while True:
            yield atomic_cond_read_relaxed(lock.val, _zero)  # (*,*,*) -> (0,0,0), seen by a load
            ok, _ = yield atomic_try_cmpxchg(lock.val, 0, _Q_LOCKED_VAL)  # (0,0,0) -> (0,0,1)
            if ok:
                return True
            yield cpu_relax()

    # ------------------------------------------------------------- lock-word helpers
    def clear_pending(self, lock: View) -> GuestCode:
        """clear_pending(): (*,1,*) -> (*,0,*)."""
        if self.q.nr_cpus_16k:
            yield atomic_andnot(_Q_PENDING_VAL, lock.val)
        else:
            yield WRITE_ONCE(lock.pending, 0)

    def clear_pending_set_locked(self, lock: View) -> GuestCode:
        """clear_pending_set_locked(): (*,1,0) -> (*,0,1)."""
        if self.q.nr_cpus_16k:
            yield atomic_add(-_Q_PENDING_VAL + _Q_LOCKED_VAL, lock.val)
        else:
            yield WRITE_ONCE(lock.locked_pending, _Q_LOCKED_VAL)

    # the whole-word xchg_tail()'s cmpxchg: relaxed, as the kernel's (a variant may order it)
    tail_cmpxchg = staticmethod(atomic_try_cmpxchg_relaxed)

    def xchg_tail(self, lock: View, tail: int) -> GuestCode:
        """xchg_tail(): (p,*,*) -> (n,*,*); returns the previous word (only its tail is exact for < 16K)."""
        q = self.q
        if not q.nr_cpus_16k:
            xchg = xchg_release if self._xchg_tail_release else xchg_relaxed  # injected: v4.5's release
            old = yield xchg(lock.tail, tail >> q._Q_TAIL_OFFSET)
            return old << q._Q_TAIL_OFFSET
        lpm = q._Q_LOCKED_PENDING_MASK
        old = yield atomic_read(lock.val)
        while True:
            ok, seen = yield self.tail_cmpxchg(lock.val, old, (old & lpm) | tail)
            if ok:
                return old
            old = seen

    def queued_fetch_set_pending_acquire(self, lock: View) -> GuestCode:
        """queued_fetch_set_pending_acquire(): (*,*,*) -> (*,1,*), returning the word as it was.

        The generic form (kernel/locking/qspinlock.c, what arm64 runs) is one
        ``atomic_fetch_or_acquire()``.  x86 has no fetch-or returning the word, so its
        kernel (7aa54be29765) sets the bit with ``lock btsl`` (its old value is all it
        learns) and reads the rest of the word afterwards.
        """
        if self.config.arch != "x86":
            return (yield atomic_fetch_or_acquire(lock.val, _Q_PENDING_VAL))
        old = yield atomic_fetch_or_acquire(lock.val, _Q_PENDING_VAL)
        val = yield atomic_read(lock.val)
        return (old & _Q_PENDING_VAL) | (val & ~self.q._Q_PENDING_MASK)

    def decode_tail(self, tail: int) -> View:
        """decode_tail(): the queue node a tail names (``per_cpu_ptr(&qnodes[idx].mcs, cpu)``)."""
        cpu, idx = self.q.decode_tail(tail)
        if not 0 <= cpu < self.ncpus:
            raise GuestBug(f"decode_tail({tail:#x}): cpu {cpu} is not a possible CPU")
        return self.qnode(cpu, idx)

    def deref(self, addr: int) -> View:
        """The object a stored pointer points at; a pointer to none (NULL) is an oops, reported as a BUG."""
        try:
            return self.mem.object_at(addr)
        except KeyError:
            raise GuestBug(f"dereference of {addr:#x}, which points at no object") from None

    def qnode(self, cpu: int, idx: int) -> View:
        """grab_mcs_node(): node ``idx`` of ``cpu``, by address arithmetic as in the kernel.

        The arithmetic is what gives an access through the node an address dependency on
        the reads ``cpu`` and ``idx`` came from (``decode_tail()`` of a loaded tail), which
        indexing a Python list would lose: the view carries them (machine/deps.py).
        """
        nodes = self.qnodes[cpu]
        if idx < len(nodes):
            return nodes[idx].depending(deps_of(cpu) | deps_of(idx))
        # Only an injected MAX_NODES overflow gets here; the kernel would scribble on whatever lies there.
        addr = nodes[0].addr + idx * self.qnode_layout.size
        try:
            node = self.mem.object_at(addr)
        except KeyError:
            node = None
        if node is None or node.layout is not self.qnode_layout:
            where = node.name if node is not None else "no object"
            raise GuestBug(f"qnodes[{cpu}][{idx}] overflows the per-CPU qnodes: {addr:#x} is {where}")
        return node

    # ------------------------------------------------------------- slow path
    def native_queued_spin_lock_slowpath(self, lock: View, val: int) -> GuestCode:
        """native_queued_spin_lock_slowpath() (kernel/locking/qspinlock.c), ``val`` as the fast path saw it."""
        q = self.q
        if (yield from self.virt_spin_lock(lock)):
            return
        # Wait, boundedly, for an in-progress pending->locked hand-over: (0,1,0) -> (0,0,1),
        # reading the word at most _Q_PENDING_LOOPS + 1 times (see _pending_bound).
        if val == _Q_PENDING_VAL:
            val = yield atomic_cond_read_relaxed(lock.val, _not_pending_handover, self._pending_bound)
        # Any contention (a pending owner or a queue): go queue.
        if not val & ~_Q_LOCKED_MASK:
            # trylock || pending: (0,0,*) -> (0,1,*)
            val = yield from self.queued_fetch_set_pending_acquire(lock)
            contended = val & ~_Q_LOCKED_MASK
            if contended and self._pending_after_tail and not val & q._Q_PENDING_MASK:
                contended = 0  # injected: a tail was seen, but carry on as pending owner
            if not contended:
                # We own pending; wait for the owner to go: (*,1,1) -> (*,1,0).
                if val & _Q_LOCKED_MASK:
                    yield smp_cond_load_acquire(lock.locked, _zero)
                # Take ownership: (*,1,0) -> (*,0,1).
                yield from self.clear_pending_set_locked(lock)
                yield lockevent_inc(LOCK_PENDING)
                return
            # Someone queued or pended meanwhile; a queue head may now be waiting for a
            # successor because our bit made its (n,0,0) -> (0,0,1) fail.  Undo only a
            # bit we set ourselves: (n,1,*) -> (n,0,*).
            if not val & q._Q_PENDING_MASK:
                yield from self.clear_pending(lock)
        yield lockevent_inc(LOCK_SLOWPATH)
        yield from self.queue(lock, pv=False)

    def queue(self, lock: View, pv: bool) -> GuestCode:
        """The ``queue:`` (native) / ``pv_queue:`` (paravirt) half of queued_spin_lock_slowpath().

        Takes a per-CPU MCS node, publishes it as the new tail, waits to become the queue
        head, then waits for the owner and pending to go and claims the lock.  With ``pv``
        (the PV pass of qspinlock.c) it calls the ``pv_*`` hooks and the PV trylock, which
        only :class:`~pvspin.kernel.qspinlock_paravirt.PvQSpinlock` provides.
        """
        q = self.q
        cpu = yield smp_processor_id()
        base = self.qnodes[cpu][0]
        # node->count++: a plain increment, which an interrupt can split (it then uses idx + 1
        # itself and puts the count back before we resume).
        idx = yield READ_ONCE(base.count)
        if not self._count_after_init:
            yield WRITE_ONCE(base.count, idx + 1)
        tail = q.encode_tail(cpu, idx)
        if pv:
            trylock, trylock_may_succeed = self.pv_queued_spin_trylock, self.pv_trylock_may_succeed
        else:
            trylock, trylock_may_succeed = self.queued_spin_trylock, _zero

        if idx >= self.config.max_nodes and not self._no_max_nodes_fallback:
            # More nesting levels than nodes: no queueing, spin on trylock.  The kernel's
            # trylock-and-cpu_relax() loop is one wait for a word the trylock can take.
            yield lockevent_inc(LOCK_NO_NODE)
            while True:
                yield atomic_cond_read_relaxed(lock.val, trylock_may_succeed)
                if (yield from trylock(lock)):
                    break
        else:
            node = self.qnode(cpu, idx)
            if 0 < idx < len(LOCK_USE_NODE):
                yield lockevent_inc(LOCK_USE_NODE[idx])
            # barrier(): the count store above precedes the node's initialisation.
            yield WRITE_ONCE(node.locked, 0)
            yield WRITE_ONCE(node.next, NULL)
            if pv:
                yield from self.pv_init_node(node)
            if self._count_after_init:
                yield WRITE_ONCE(base.count, idx + 1)  # injected: sunk below the node init
            # We touched a cold per-CPU line: try once more before queueing.
            if not (yield from trylock(lock)):
                # Node initialisation is visible before the node is published.
                if not self._xchg_tail_release:  # injected: v4.5 relied on the release xchg_tail instead
                    yield smp_wmb()
                # Publish the new tail: (p,*,*) -> (n,*,*).
                old = yield from self.xchg_tail(lock, tail)
                next_addr = NULL
                if old & q._Q_TAIL_MASK:
                    prev = self.decode_tail(old)
                    link = smp_store_release if self._link_release else WRITE_ONCE  # the fix 95bcade33a8a
                    yield link(prev.next, node.addr)  # link into the queue
                    if pv:
                        yield from self.pv_wait_node(node, prev)
                    yield smp_cond_load_acquire(node.locked, _nonzero)  # arch_mcs_spin_lock_contended()
                    next_addr = yield READ_ONCE(node.next)  # early read of a successor, if any

                # We are the queue head: wait for owner and pending to go, (*,x,y) -> (*,0,0).
                # pv_wait_head_or_lock() returns non-zero with the lock already taken.
                val = (yield from self.pv_wait_head_or_lock(lock, node)) if pv else 0
                if not val:
                    val = yield atomic_cond_read_acquire(lock.val, self._no_locked_pending)

                # Claim: (n,0,0) -> (0,0,1) when we are the last in the queue (PV, lock already
                # taken: (n,0,1) -> (0,0,1)); a concurrent pending setter makes this fail.
                claimed = False
                if val & q._Q_TAIL_MASK == tail:
                    claimed, _ = yield atomic_try_cmpxchg_relaxed(lock.val, val, _Q_LOCKED_VAL)
                if not claimed:
                    # Others queued behind us, or a pending setter will: (*,*,0) -> (*,*,1), tail kept.
                    yield WRITE_ONCE(lock.locked, _Q_LOCKED_VAL)  # set_locked()
                    if not next_addr:
                        next_addr = yield smp_cond_load_relaxed(node.next, _nonzero)
                    next_node = self.deref(next_addr)
                    yield smp_store_release(next_node.locked, 1)  # arch_mcs_spin_unlock_contended()
                    if pv:
                        yield from self.pv_kick_node(lock, next_node)
        # release: __this_cpu_dec(qnodes[0].mcs.count)
        count = yield READ_ONCE(base.count)
        yield WRITE_ONCE(base.count, count - 1)


def _not_pending_handover(v: int) -> bool:
    """The word has left (0,1,0): the pending owner has taken the lock, or more happened."""
    return v != _Q_PENDING_VAL
