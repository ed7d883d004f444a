"""Lock-event counter names, as in the kernel's kernel/locking/lock_events_list.h (v5.2+).

Guest code emits them with :func:`pvspin.machine.ops.lockevent_inc` / ``lockevent_add`` /
``lockevent_cond_inc`` at the places the kernel does; drivers sum them (the kernel keeps
per-CPU counters and sums them on read from debugfs ``lock_event_counts/``).

Three counters need a clock, which guest code does not have; the timed simulator
maintains them around the ``pv_kick`` / ``pv_wait`` operations (the kernel does it in the
``__pv_kick`` / ``__pv_wait`` wrappers of qspinlock_stat.h):

* ``pv_latency_kick``: total time spent inside ``pv_kick``;
* ``pv_latency_wake``: total time from a kick to the kicked vCPU running again;
* ``pv_kick_wake``: number of wake-ups that followed a kick (the divisor of ``pv_latency_wake``).

Read-out conventions (kernel ``lockevent_read``): ``pv_hash_hops`` is shown as the
average per ``pv_kick_unlock``; the latencies as averages per ``pv_kick_unlock`` and
``pv_kick_wake`` respectively.  On bare metal the kernel hides the ``pv_*`` files.
"""

from __future__ import annotations

# paravirt qspinlock (kernel/locking/qspinlock_paravirt.h)
PV_HASH_HOPS = "pv_hash_hops"  # total probes in pv_hash()
PV_KICK_UNLOCK = "pv_kick_unlock"  # kicks issued by the unlock slowpath
PV_KICK_WAKE = "pv_kick_wake"  # driver-maintained
PV_LATENCY_KICK = "pv_latency_kick"  # driver-maintained
PV_LATENCY_WAKE = "pv_latency_wake"  # driver-maintained
PV_LOCK_STEALING = "pv_lock_stealing"  # successful steals in the hybrid trylock
PV_SPURIOUS_WAKEUP = "pv_spurious_wakeup"  # queue-node wake-ups with node->locked still 0
PV_WAIT_AGAIN = "pv_wait_again"  # queue-head waits after the first
PV_WAIT_EARLY = "pv_wait_early"  # queue-node spins cut short by the previous node's state
PV_WAIT_HEAD = "pv_wait_head"  # pv_wait() calls at the queue head
PV_WAIT_NODE = "pv_wait_node"  # pv_wait() calls at a non-head queue node

# qspinlock (kernel/locking/qspinlock.c)
LOCK_PENDING = "lock_pending"  # acquisitions through the pending bit
LOCK_SLOWPATH = "lock_slowpath"  # acquisitions through the MCS queue
LOCK_USE_NODE2 = "lock_use_node2"  # slowpaths using the 2nd per-CPU node (idx 1)
LOCK_USE_NODE3 = "lock_use_node3"
LOCK_USE_NODE4 = "lock_use_node4"
LOCK_NO_NODE = "lock_no_node"  # slowpaths with idx >= MAX_NODES (no node: spin on trylock)

# Event name for node index idx (1..3); idx 0 is counted as lock_slowpath minus these.
LOCK_USE_NODE = (None, LOCK_USE_NODE2, LOCK_USE_NODE3, LOCK_USE_NODE4)

# In the order of lock_events_list.h.
LOCK_EVENTS = (
    PV_HASH_HOPS,
    PV_KICK_UNLOCK,
    PV_KICK_WAKE,
    PV_LATENCY_KICK,
    PV_LATENCY_WAKE,
    PV_LOCK_STEALING,
    PV_SPURIOUS_WAKEUP,
    PV_WAIT_AGAIN,
    PV_WAIT_EARLY,
    PV_WAIT_HEAD,
    PV_WAIT_NODE,
    LOCK_PENDING,
    LOCK_SLOWPATH,
    LOCK_USE_NODE2,
    LOCK_USE_NODE3,
    LOCK_USE_NODE4,
    LOCK_NO_NODE,
)

# The PV ticket lock's counters (pvspin.kernel.ticket_paravirt): arch/x86/kernel/kvm.c's
# CONFIG_KVM_DEBUG_FS spinlock statistics (debugfs kvm/spinlocks/), v3.12-v4.1 -- not
# lock_events_list.h, so not in LOCK_EVENTS (whose order is the sweep's columns).
TAKEN_SLOW = "taken_slow"  # kvm_lock_spinning() calls
TAKEN_SLOW_PICKUP = "taken_slow_pickup"  # ... that found the lock theirs after setting the flag
RELEASED_SLOW = "released_slow"  # unlocks that saw TICKET_SLOWPATH_FLAG
RELEASED_SLOW_KICKED = "released_slow_kicked"  # ... that found the next ticket's waiter and kicked it
KVM_SPINLOCK_STATS = (TAKEN_SLOW, TAKEN_SLOW_PICKUP, RELEASED_SLOW, RELEASED_SLOW_KICKED)

DRIVER_MAINTAINED = frozenset({PV_KICK_WAKE, PV_LATENCY_KICK, PV_LATENCY_WAKE})

# The qspinlock part of lock_events_list.h: what a kernel without PV spinlocks, or one that runs the
# native unlock, shows (lock_events.c skips the pv_* files when pv_is_native_spin_unlock()).
QSPINLOCK_EVENTS = LOCK_EVENTS[LOCK_EVENTS.index(LOCK_PENDING) :]
PV_LOCKS = frozenset({"pvqspinlock", "pvqspinlock-4.2", "pvqspinlock-5.2"})
QSPINLOCKS = frozenset({"qspinlock", "virt-tas"})


def _div_round_closest(n: int, d: int) -> int:
    return (n + d // 2) // d  # DIV_ROUND_CLOSEST_ULL


def lockevent_read(events: dict[str, int], name: str) -> int | str:
    """What reading debugfs ``lock_event_counts/NAME`` gives (qspinlock_stat.h's ``lockevent_read``).

    ``pv_hash_hops`` is the average per ``pv_kick_unlock`` as the kernel's "%llu.%02llu" text;
    the two latencies the average (ns) per ``pv_kick_unlock`` / ``pv_kick_wake``, rounded to the
    closest; with no kick to divide by, the sum itself (0).  The rest are sums.
    """
    total = events.get(name, 0)
    if name == PV_HASH_HOPS:
        kicks = events.get(PV_KICK_UNLOCK, 0)
        frac = _div_round_closest(100 * (total % kicks), kicks) if kicks else 0
        return f"{total // kicks if kicks else total}.{frac:02d}"
    divisor = {PV_LATENCY_KICK: PV_KICK_UNLOCK, PV_LATENCY_WAKE: PV_KICK_WAKE}.get(name)
    if divisor is not None and events.get(divisor, 0):
        return _div_round_closest(total, events[divisor])
    return total


def debugfs_counts(events: dict[str, int], lock: str) -> tuple[str, dict[str, int | str]]:
    """The debugfs directory a guest running ``lock`` has, and every file in it as read, in order.

    The ticket lock predates lock_event_counts (v5.2) and shows none; the PV ticket lock has KVM's
    spinlock statistics; a user's lock, the counters it emitted, if any.
    """
    if lock in PV_LOCKS:
        directory, names = "lock_event_counts", LOCK_EVENTS
    elif lock in QSPINLOCKS:
        directory, names = "lock_event_counts", QSPINLOCK_EVENTS
    elif lock == "pvticket":
        directory, names = "kvm/spinlocks", KVM_SPINLOCK_STATS
    elif lock == "ticket" or not events:  # a user's lock that counts nothing has no directory to show
        return "", {}
    else:
        directory, names = "lock_event_counts", tuple(sorted(events))
    return directory, {name: lockevent_read(events, name) for name in names}
