"""Guest threads: more kernel threads than vCPUs, and the guest scheduler that switches them.

locktorture's default is ``nwriters_stress = 2 * num_online_cpus()`` (``lock_torture_init()``
in ``kernel/locking/locktorture.c``): twice as many writer kthreads as CPUs, so each CPU's
scheduler runs several writers in turn.  Here each vCPU that has more than one thread runs a
:class:`GuestRunqueue` as its task-level program: guest code that runs one thread's code at a
time and switches threads only where the kernel can.

Where the kernel can switch.  ``spin_lock()`` disables preemption before it tries the lock and
``spin_unlock()`` enables it after the release (``__raw_spin_lock()`` / ``__raw_spin_unlock()``
in ``include/linux/spinlock_api_smp.h``), so a thread that holds a spinlock, or waits for one in
its slow path — spinning, or halted in ``pv_wait()`` — is never switched out: the vCPU halts or
spins with it.  A thread's code says where it stands by its ``preempt_count`` (incremented and
decremented around ``spin_lock``..``spin_unlock``, as ``preempt_disable()``/``preempt_enable()``
do).  Outside that region a thread is switched out

* on the guest's timer tick (``scheduler_tick()`` → the fair class's tick check): at the first
  tick after the thread has run its ``slice_ms`` since it was switched in, ``need_resched`` is set
  and, with ``preemption = "full"`` (``CONFIG_PREEMPT``), the thread is preempted at once if it
  is outside a lock (a computation it is in is cut there, its rest waits for its next turn), or
  at the ``preempt_enable()`` of its ``spin_unlock()`` if it holds or waits for a lock then;
* at ``cond_resched()`` (:data:`COND_RESCHED`, yielded by thread code where the kernel's calls
  it: locktorture's ``stutter_wait()`` after each acquisition), when ``need_resched`` is set —
  the only switch point with ``preemption = "voluntary"`` (``CONFIG_PREEMPT_NONE``/``_VOLUNTARY``).

A turn is measured on the run queue's task clock, which leaves out the vCPU's steal time (the
time it waited for a pCPU on the host), as the guest's ``rq->clock_task`` does with
``CONFIG_PARAVIRT_TIME_ACCOUNTING`` (``steal_accounting``); without it a thread whose vCPU was
preempted for a host slice has its turn ended as soon as the vCPU runs again.  The run queue is
round robin in switch order (CFS with equal-weight, never-sleeping threads
degenerates to it).  A switch costs ``switch_ns`` of guest time (``schedule()`` and
``__switch_to()``).  Threads are placed on vCPUs round robin at start and stay there: the
kernel's load balancing and locktorture's ``torture_shuffle()`` (which moves its kthreads between
CPUs every ``shuffle_interval`` jiffies) are not modeled, nor is the tick's own cost.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import Field

from ..machine import ops as o
from .model import Model
from .vcpu import T_PREEMPT

# Yielded by thread code at a cond_resched() point; the run queue answers it, the driver never sees it.
COND_RESCHED = ("cond_resched",)

_WORK = o.WORK


class GuestSchedConfig(Model):
    """The guest scheduler of vCPUs that run more than one thread (``nwriters_stress`` > vCPUs)."""

    slice_ms: float = Field(
        3.0, gt=0, le=3_600_000,
        description="a thread's turn before the tick asks it to yield its vCPU (CFS's slice: 3 ms, as "
                    "sysctl_sched_latency 6 ms shared by 2 threads per CPU)")  # fmt: skip
    hz: int = Field(
        250, gt=0, le=100_000, description="the guest's CONFIG_HZ: its timer tick (the kernel's Kconfig default is 250)"
    )
    preemption: Literal["full", "voluntary"] = Field(
        "full",
        description="full: CONFIG_PREEMPT, preempted at the tick outside a lock; voluntary: only at cond_resched()",
    )
    steal_accounting: bool = Field(
        True,
        description="CONFIG_PARAVIRT_TIME_ACCOUNTING: a thread's turn is measured without the vCPU's "
        "steal time (off: a vCPU preempted on the host ends its thread's turn)",
    )
    switch_ns: float = Field(
        1000.0, ge=0, le=1e9,
        description="guest time one thread switch costs (schedule() + __switch_to() between kthreads, no mm "
                    "switch: ~1 us, an assumption)")  # fmt: skip


class GuestThread:
    """One guest thread (a ``task_struct`` as far as the guest scheduler sees it)."""

    __slots__ = ("tid", "code", "preempt_count", "pending", "switches_in", "done")

    def __init__(self, tid: int):
        self.tid = tid
        self.code = None  # its generator, given once the thread record exists (the code holds the record)
        self.preempt_count = 0  # > 0 from spin_lock() to spin_unlock(): not to be switched out
        self.pending: tuple | None = None  # the rest of a computation preempted mid-way
        self.switches_in = 0
        self.done = False

    def __repr__(self) -> str:
        return f"thread{self.tid}"


class GuestRunqueue:
    """One vCPU's run queue (``struct rq``) and the loop that runs its threads (``__schedule()``).

    :meth:`program` is the vCPU's task-level guest code.  ``on_switch``, when set, is called at
    every switch with (cycle, outgoing thread, incoming thread): tests inspect the switch points.
    """

    def __init__(self, cpu: int, threads: list[GuestThread], config: GuestSchedConfig, freq_mhz: int):
        self.cpu = cpu
        self.threads = threads
        self.queue = deque(threads)
        self.slice = max(1, int(config.slice_ms * freq_mhz * 1000))
        self.tick = max(1, int(freq_mhz * 1_000_000 // config.hz))
        self.full = config.preemption == "full"
        self.switch_cost = int(config.switch_ns * freq_mhz / 1000)
        self.steal_accounting = config.steal_accounting
        self.switches = 0
        self.on_switch = None
        self.vcpu = None
        self.steal_seen = self.steal_base = 0

    def attach(self, vcpu) -> None:
        """The vCPU this run queue is on, whose steal time its clock leaves out."""
        self.vcpu = vcpu

    def _task_clock(self, t: int) -> int:
        """``rq->clock_task`` at cycle ``t``: time since boot less the vCPU's steal time, as
        ``update_rq_clock_task()`` subtracts ``paravirt_steal_clock()`` with
        ``CONFIG_PARAVIRT_TIME_ACCOUNTING`` (off: ``t``).  Steal time is the vCPU's runnable time
        on the host; when the accounts restart (a warm-up's end) what was read before is kept."""
        if self.vcpu is None or not self.steal_accounting:
            return t
        stolen = self.vcpu.acct[T_PREEMPT]
        if stolen < self.steal_seen:
            self.steal_base += self.steal_seen
        self.steal_seen = stolen
        return t - self.steal_base - stolen

    def _resched_at(self, since: int) -> int:
        """The tick that sets ``need_resched`` for a thread switched in at task clock ``since``: the
        first at or after its slice has run out.  Ticks fall on multiples of the tick period of the
        task clock (a vCPU that is not running takes no ticks; the one due fires when it runs)."""
        expiry = since + self.slice
        return -(-expiry // self.tick) * self.tick

    def _switch(self, cur: GuestThread, t: int):
        """``__schedule()`` at cycle ``t``: put ``cur`` at the tail (unless it ended), run the head;
        returns the incoming thread and the task-clock time its turn ends at the tick."""
        if not cur.done:
            self.queue.append(cur)
        nxt = self.queue.popleft()
        self.switches += 1
        nxt.switches_in += 1
        if self.on_switch is not None:
            self.on_switch(t, cur, nxt)
        if self.switch_cost:
            yield o.work(self.switch_cost)
        start = self._task_clock((yield o.local_clock()))
        return nxt, self._resched_at(start)

    def program(self):
        """The vCPU's code: run the head thread's operations, switching where the kernel can."""
        clock = o.local_clock()
        queue = self.queue
        full = self.full
        if not queue:  # no thread placed here (fewer threads than vCPUs): the vCPU idles at once
            return
        cur = queue.popleft()
        cur.switches_in += 1
        resched = self._resched_at(self._task_clock((yield clock)))
        result = None
        while True:
            if cur.pending is not None:
                op, cur.pending = cur.pending, None
            else:
                try:
                    op = cur.code.send(result)
                except StopIteration:
                    cur.done = True
                    if not queue:
                        return
                    cur, resched = yield from self._switch(cur, (yield clock))
                    result = None
                    continue
            result = None
            if op is COND_RESCHED:  # cond_resched(): switch if need_resched is set
                if queue:
                    t = yield clock
                    if self._task_clock(t) >= resched:
                        cur, resched = yield from self._switch(cur, t)
                continue
            if full and queue and cur.preempt_count == 0:  # preemptible: has the tick asked?
                t = yield clock
                now = self._task_clock(t)
                if now >= resched:  # it came while the thread could not be preempted, or before this op
                    cur.pending = op
                    cur, resched = yield from self._switch(cur, t)
                    continue
                if op[0] == _WORK and now + op[1] > resched:  # it comes mid-computation
                    yield o.work(resched - now, op[2])
                    cur.pending = o.work(now + op[1] - resched, op[2])
                    cur, resched = yield from self._switch(cur, (yield clock))
                    continue
            result = yield op


def place_threads(nthreads: int, ncpus: int) -> list[list[int]]:
    """Thread ids per vCPU: thread ``i`` on vCPU ``i % ncpus`` (kthreads spread evenly at start)."""
    return [list(range(cpu, nthreads, ncpus)) for cpu in range(ncpus)]
