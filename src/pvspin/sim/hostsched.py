"""The host's scheduler: which vCPU thread each physical CPU runs, behind one small interface.

A policy is one subclass of :class:`HostScheduler` in a file of its own: CFS with a run queue
per pCPU (:mod:`~pvspin.sim.cfs`, what Linux/KVM hosts run) and one vCPU pinned to each pCPU
(:mod:`~pvspin.sim.pinned`, what bare metal is).  The hypervisor calls the interface; the
base class keeps the mechanism every policy shares — switching a vCPU onto and off a pCPU
(``context_switch()``), the state and time accounts that go with it, and the slice timer — so
that a policy only decides.

Interface (what the hypervisor calls):

* ``start(vcpus)`` — the guests boot: place each vCPU thread (``sched_fork``) and give every
  pCPU its first one.
* ``enqueue(v, t)`` — ``v``, halted, becomes runnable (``try_to_wake_up``); it may preempt.
* ``dequeue(v, t, state)`` — ``v``, running, blocks (``HALTED``) or exits (``DONE``) at ``t``:
  its pCPU takes the exit, then picks what runs next.
* ``pick_next(pcpu, t)`` — ``__schedule()`` on a pCPU that runs nothing: pick the next vCPU
  (``pick_next_task``) and switch to it, or idle.
* ``tick(pcpu, t)`` — ``pcpu``'s slice timer fired (``scheduler_tick`` at the slice's end).
* ``yield_to(v, target, t)`` — ``v`` took a pause-loop exit, or is in its kick hypercall, and
  KVM asks to boost ``target`` (``yield_to()``); True if ``v`` lost its pCPU.

Invariants a policy keeps (and may rely on):

* A ``RUNNING`` vCPU is on exactly one pCPU (``v.pcpu`` and ``pcpu.vcpu`` name each other); a
  ``RUNNABLE`` one waits in exactly one run queue (``pcpus[v.home].rq``); ``HALTED`` and
  ``DONE`` ones are in none.  ``v.home`` is the pCPU whose queue holds (or last held) it.
* Every switch goes through :meth:`HostScheduler.switch_in` / :meth:`switch_out`, which keep
  the state and time accounts and call the hypervisor's ``sched_in`` / ``sched_out`` hooks
  (KVM's preempt notifiers, ``kvm_sched_in`` / ``kvm_sched_out``).  A vCPU switched in at
  ``t`` starts executing at ``t`` plus any host context-switch cost (``v.run_since``).  Until
  then nothing acts on it: a policy defers a preemption asked for meanwhile to that moment (the
  switch runs with preemption off; ``need_resched`` is seen before VM entry), and an interrupt
  for the guest waits for the VM entry too.
* A vCPU halt-polling (``v.polling``: halted in the guest, still on its pCPU in KVM's poll
  loop) runs on a pCPU with an empty run queue: a policy that queues a vCPU behind it calls
  :meth:`HostScheduler.queued_behind`, and the poller blocks (KVM polls only while
  ``single_task_running()``).
* Leaving a pCPU costs ``exit_cost`` (the VM exit: 0 on bare metal) before the pCPU can run
  anything else; it is charged to the vCPU that left (``T_HOST``).  The pCPU picks what runs
  next when the exit is over (:meth:`HostScheduler.pick_after_exit`), not at its start.
* Every choice among equals breaks ties by id: same inputs, same schedule.
"""

from __future__ import annotations

from typing import Any

from .events import EventLoop
from .vcpu import RUNNABLE, RUNNING, STATE_NAMES, T_HALT, T_HOST, T_PREEMPT, T_RUN, SimulationError, VCpu


class PCpu:
    """A physical CPU and its run queue (``struct rq``): the vCPU it runs and those waiting."""

    __slots__ = ("id", "socket", "vcpu", "rq", "min_vruntime", "gen", "busy", "last_vcpu", "next")

    def __init__(self, pid: int, socket: int):
        self.id = pid
        self.socket = socket
        self.vcpu: Any = None  # the VCpu it runs, or None
        self.rq: list[VCpu] = []  # runnable vCPUs waiting for this pCPU
        self.min_vruntime = 0  # cfs_rq->min_vruntime: monotonic, the base for sleepers and migrations
        self.gen = 0  # bumped at every switch: a pending slice timer goes stale
        self.busy = 0  # cycles spent running vCPUs (closed intervals)
        self.last_vcpu: Any = None
        self.next: Any = None  # cfs_rq->next: the vCPU the coming pick prefers (a directed yield's)


class HostScheduler:
    """The interface above, and the switching mechanism every policy shares."""

    def __init__(self, loop: EventLoop, pcpus: list[PCpu], context_switch: int, exit_cost: int, tracer=None):
        self.loop = loop
        self.pcpus = pcpus
        self.context_switch = context_switch  # host switch between two vCPU threads on one pCPU
        self.exit_cost = exit_cost
        self.tracer = tracer
        self.sched_in: Any = None  # hooks, set by the hypervisor: sched_in(v, t), sched_out(v, t, state),
        self.sched_out: Any = None  # stop_poll(v, t) (a halt poll ends without a wake-up: v blocks)
        self.stop_poll: Any = None
        self.on_tick = self._tick_event  # bound methods: the slice timer's callback, the end of an exit
        self.on_exit_done = self._exit_done_event

    # ------------------------------------------------------------- the interface (policies)
    def start(self, vcpus: list[VCpu]) -> None:
        raise NotImplementedError

    def enqueue(self, v: VCpu, t: int) -> None:
        raise NotImplementedError

    def pick_next(self, pcpu: PCpu, t: int) -> None:
        raise NotImplementedError

    def tick(self, pcpu: PCpu, t: int) -> None:
        raise NotImplementedError

    def yield_to(self, v: VCpu, target: VCpu | None, t: int) -> bool:
        raise NotImplementedError

    def timeslice(self, pcpu: PCpu) -> int | None:
        """Cycles until ``pcpu``'s slice timer fires for what it just switched to (None: no timer)."""
        raise NotImplementedError

    def dequeue(self, v: VCpu, t: int, state: int) -> None:
        """``v`` blocks or exits: off its pCPU, which runs something else once the exit is over."""
        pcpu = self.switch_out(v, t, state)
        v.acct[T_HOST] += self.exit_cost
        self.pick_after_exit(pcpu, t)

    # ------------------------------------------------------------- the mechanism
    def queued_behind(self, pcpu: PCpu, t: int) -> None:
        """A vCPU was queued on ``pcpu``: if the one running there is halt-polling, it blocks now."""
        cur = pcpu.vcpu
        if cur is not None and cur.polling:
            self.stop_poll(cur, t)

    def _tick_event(self, pcpu: PCpu, gen: int, t: int) -> None:
        if gen == pcpu.gen:
            self.tick(pcpu, t)

    def pick_after_exit(self, pcpu: PCpu, t: int) -> None:
        """``pcpu``'s vCPU left it at ``t`` by a VM exit: ``__schedule()`` picks once the exit is over.

        The pick is an event at the exit's end, not a switch-in stamped ahead: a vCPU switched in
        early would look running while the exit still went on, and a directed yield or a
        wake-up in between could preempt it before it had started.  Until then the pCPU runs
        nothing and is not idle (a waking vCPU queues for the pick).
        """
        if self.exit_cost == 0:
            self.pick_next(pcpu, t)
        else:
            self.loop.at(t + self.exit_cost, self.on_exit_done, pcpu, pcpu.gen)

    def _exit_done_event(self, pcpu: PCpu, gen: int, t: int) -> None:
        if gen == pcpu.gen and pcpu.vcpu is None:
            self.pick_next(pcpu, t)

    def make_runnable(self, v: VCpu, t: int) -> None:
        """A halted ``v`` becomes runnable at ``t`` (on no queue yet: the policy places it)."""
        v.acct[T_HALT] += t - v.acct_since
        if self.tracer is not None:
            self.tracer.vcpu_state(t, v, "runnable")
        v.gen += 1
        v.state = RUNNABLE
        v.since = v.acct_since = t

    def switch_in(self, pcpu: PCpu, v: VCpu, t: int) -> None:
        """Run ``v`` (on no queue) on ``pcpu`` (which runs nothing) from ``t``, after the host's switch."""
        start = t
        if pcpu.last_vcpu is not None and pcpu.last_vcpu is not v:
            start += self.context_switch
            v.acct[T_HOST] += self.context_switch
            v.vruntime += self.context_switch  # the switch-in runs on the incoming task's clock
        pcpu.vcpu = v
        pcpu.last_vcpu = v
        v.acct[T_PREEMPT] += t - v.acct_since  # runnable, waiting for a pCPU
        if self.tracer is not None:
            self.tracer.pcpu(t, pcpu.id, v)
            self.tracer.vcpu_state(t, v, "running")
        v.state = RUNNING
        v.pcpu = pcpu.id
        v.home = pcpu.id
        v.run_since = start
        v.since = v.acct_since = t
        pcpu.gen += 1
        slice_ = self.timeslice(pcpu)
        if slice_ is not None:
            self.loop.at(t + slice_, self.on_tick, pcpu, pcpu.gen)
        self.sched_in(v, start)

    def switch_out(self, v: VCpu, t: int, state: int) -> PCpu:
        """Take ``v`` off its pCPU at ``t`` into ``state``; the pCPU, now running nothing."""
        pcpu = self.pcpus[v.pcpu]
        if t < v.run_since:  # a policy defers a preemption asked for during the switch-in (above)
            raise SimulationError(f"{v} switched out at cycle {t}, before its switch-in completed")
        ran = t - v.run_since
        v.acct[T_RUN] += ran
        pcpu.busy += ran
        v.vruntime += ran  # update_curr(): runtime charged at nice 0
        self.sched_out(v, t, state)
        v.gen += 1
        v.state = state
        v.since = v.acct_since = t
        v.pcpu = None
        pcpu.vcpu = None
        pcpu.gen += 1
        if self.tracer is not None:
            self.tracer.pcpu(t, pcpu.id, None)
            self.tracer.vcpu_state(t, v, STATE_NAMES[state])
        return pcpu
