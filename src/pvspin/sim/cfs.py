"""CFS as a KVM host runs vCPU threads: one run queue per pCPU, ordered by virtual runtime.

What is modelled, each piece named for the kernel function it mirrors: the leftmost task runs
(``pick_next_entity``), a slice is the latency shared among a queue's tasks (``sched_slice``),
a waking task is placed no further back than half a latency behind its queue
(``place_entity``) on its previous pCPU if idle, else an idle one sharing its last-level
cache, else any idle one (``select_task_rq_fair``), and preempts the running task if more than
a wake-up granularity ahead (``check_preempt_wakeup``); a new thread goes to the least loaded
pCPU (``sched_balance_find_dst_cpu`` at fork); an empty queue pulls from the busiest
(``sched_balance_newidle``), an idle pCPU pulls while others wait (nohz idle balancing; both only
from a pCPU with two or more tasks), a wake-up on an idle pCPU runs once that pCPU is out of
idle (the published kick-to-run time, less the kick hypercall), and at
every slice end a queue two or more shorter than the longest pulls one (``load_balance``).
vCPUs otherwise stay where they are.  Knobs: :class:`~pvspin.sim.config.Scheduling`.
"""

from __future__ import annotations

from .config import Costs, Scheduling
from .events import EventLoop
from .hostsched import HostScheduler, PCpu
from .vcpu import RUNNABLE, T_HOST, VCpu


def _vruntime_now(v: VCpu, t: int) -> int:
    """The vruntime of a running vCPU at ``t`` (its switch-in, if still in flight, does not count)."""
    return v.vruntime + max(0, t - v.run_since)


def _leftmost(rq: list[VCpu]) -> VCpu:
    """The queued vCPU CFS picks first: least vruntime (ties by id, for determinism)."""
    return min(rq, key=lambda u: (u.vruntime, u.id))


def _nr_running(pcpu: PCpu) -> int:
    """``rq->nr_running``: the vCPUs waiting on ``pcpu`` and the one it runs."""
    return len(pcpu.rq) + (pcpu.vcpu is not None)


class CfsScheduler(HostScheduler):
    """The host scheduler of a KVM host (see the module docstring)."""

    def __init__(self, loop: EventLoop, pcpus: list[PCpu], sched: Scheduling, costs: Costs, exit_cost: int,
                 tracer=None):  # fmt: skip
        super().__init__(loop, pcpus, costs.context_switch, exit_cost, tracer)
        self.idle: list[PCpu] = []  # pCPUs with nothing to run, by id
        self.sched_latency = costs.us(sched.sched_latency_us)
        self.min_granularity = costs.us(sched.min_granularity_us)
        self.wakeup_granularity = costs.us(sched.wakeup_granularity_us)
        # An idle pCPU a wake-up lands on runs the woken vCPU this much later: leaving idle, the
        # wake-up path and VM entry.  The published kick-to-run time (an unloaded host, where the
        # kicked vCPU's pCPU is idle) is that plus the kick hypercall, after which it starts.
        self.idle_wake = max(0, costs.ns(costs.kick_wake_ns - costs.kick_hypercall_ns))
        self.on_resched = self._resched_event

    # ------------------------------------------------------------- the interface
    def start(self, vcpus: list[VCpu]) -> None:
        for v in vcpus:
            # a new thread goes to the least loaded CPU (sched_balance_find_dst_cpu at fork)
            pcpu = min(self.pcpus, key=lambda p: (len(p.rq), p.id))
            pcpu.rq.append(v)
            v.home = pcpu.id
            if self.tracer is not None:
                self.tracer.vcpu_state(0, v, "runnable")
        for pcpu in self.pcpus:
            self.pick_next(pcpu, 0)

    def enqueue(self, v: VCpu, t: int) -> None:
        """``try_to_wake_up()``: choose a pCPU, place the vruntime, queue; an idle pCPU runs it once out of idle."""
        self.make_runnable(v, t)
        # select_task_rq_fair(): its previous pCPU if idle, else an idle one sharing its
        # last-level cache, else any idle one (an idle pCPU pulls it at once), else previous
        prev = self.pcpus[v.home]
        pcpu = prev
        if prev not in self.idle and self.idle:
            near = [p for p in self.idle if p.socket == prev.socket]
            pcpu = near[0] if near else self.idle[0]
        if pcpu is not prev:
            self._migrate(v, prev, pcpu, t)  # halted: on no queue
        # CFS places a waking task no further back than half a latency behind its queue
        floor = self._rq_min_vruntime(pcpu, t) - self.sched_latency // 2
        if v.vruntime < floor:
            v.vruntime = floor
        pcpu.rq.append(v)
        if pcpu in self.idle:  # no longer idle: nr_running is 1, and other wake-ups queue behind this one
            self.idle.remove(pcpu)
            if self.idle_wake == 0:
                self.pick_next(pcpu, t)
            else:  # the pick when it is out of idle, as at the end of an exit
                self.loop.at(t + self.idle_wake, self.on_exit_done, pcpu, pcpu.gen)
        else:
            self.queued_behind(pcpu, t)
            self._check_wakeup_preempt(v, pcpu, t)

    def pick_next(self, pcpu: PCpu, t: int) -> None:
        """Run the leftmost vCPU of ``pcpu``'s queue, or the buddy a directed yield asked for
        (``pcpu.next``) if still queued; an empty queue first pulls (newidle balance)."""
        rq = pcpu.rq
        buddy = pcpu.next
        pcpu.next = None
        if buddy is not None and buddy in rq:  # chosen when the pCPU was rescheduled for it
            v = buddy
        elif not rq and not self._pull(pcpu, t):
            self.idle.append(pcpu)
            self.idle.sort(key=lambda p: p.id)
            return
        else:
            v = _leftmost(rq)
        rq.remove(v)
        self.switch_in(pcpu, v, t)

    def tick(self, pcpu: PCpu, t: int) -> None:
        """The slice ended: balance, then preempt if anyone waits here, else start another slice."""
        cur = pcpu.vcpu
        if t < cur.run_since:  # the host switches with interrupts off: the timer is taken after
            self.loop.at(cur.run_since, self.on_tick, pcpu, pcpu.gen)
            return
        self._balance(pcpu, t)
        if pcpu.vcpu is not cur:  # it was halt-polling, and blocked for the vCPU pulled here
            return
        if pcpu.rq:
            self._preempt(pcpu, t)
        else:
            pcpu.gen += 1
            self.loop.at(t + self.timeslice(pcpu), self.on_tick, pcpu, pcpu.gen)

    def timeslice(self, pcpu: PCpu) -> int:
        """``sched_slice()``: the latency shared among the tasks of this pCPU's queue."""
        nr_running = len(pcpu.rq) + (pcpu.vcpu is not None)  # _nr_running(), inlined: at every switch
        return max(self.min_granularity, self.sched_latency // max(1, nr_running))

    def yield_to(self, v: VCpu, target: VCpu | None, t: int) -> bool:
        """``yield_to()``: ``target`` becomes the next buddy of *its own* run queue, whose pCPU
        reschedules, and the yielder's pCPU (a spinner's, a kicker's) reschedules with it as skip buddy.

        CFS honours either buddy only while it is no more than a wake-up granularity ahead of
        the queue's leftmost task (``pick_next_entity``), so a vCPU that has had its share
        waits; a rescheduled pCPU whose buddy is refused runs its leftmost task.
        """
        own = self.pcpus[v.pcpu]
        switch_to = None
        if target is not None:
            there = self.pcpus[target.home]
            if there is own:
                if self._eligible(own, target, t):
                    switch_to = target
            elif there.vcpu is None:  # in an exit: the pick at its end takes the buddy CFS lets run
                if self._eligible(there, target, t):
                    there.next = target
            else:  # resched_curr(): that pCPU picks again, the buddy if CFS lets it, else its leftmost
                pick: VCpu | None = target
                if not self._eligible(there, target, t):
                    pick = _leftmost(there.rq)
                    if pick.vruntime >= _vruntime_now(there.vcpu, t):
                        pick = None  # what runs there is still the leftmost: it carries on
                if pick is not None:
                    self._switch(there, pick, t)
        if switch_to is None and own.rq:  # the skip buddy: the next task in line, if not too far ahead
            second = _leftmost(own.rq)
            if self._eligible(own, second, t):
                switch_to = second
        if switch_to is None:
            return False
        self._switch(own, switch_to, t, exited=True)
        self._balance_idle(t)
        return True

    # ------------------------------------------------------------- vruntime
    def _rq_min_vruntime(self, pcpu: PCpu, t: int) -> int:
        """``update_min_vruntime()``: the least vruntime queued or running, never moving back."""
        values = [u.vruntime for u in pcpu.rq]
        if pcpu.vcpu is not None:
            values.append(_vruntime_now(pcpu.vcpu, t))
        if values:
            pcpu.min_vruntime = max(pcpu.min_vruntime, min(values))
        return pcpu.min_vruntime

    def _eligible(self, pcpu: PCpu, u: VCpu, t: int) -> bool:
        """``wakeup_preempt_entity(u, left) < 1``: ``u`` is within a wake-up granularity of the leftmost."""
        left = min([w.vruntime for w in pcpu.rq])
        cur = pcpu.vcpu
        if cur is not None:
            now = cur.vruntime + max(0, t - cur.run_since)  # _vruntime_now(), inlined
            if now < left:
                left = now
        return u.vruntime - left <= self.wakeup_granularity

    def _check_wakeup_preempt(self, v: VCpu, pcpu: PCpu, t: int) -> None:
        """``check_preempt_wakeup()``: the woken vCPU preempts one more than a granularity ahead."""
        cur = pcpu.vcpu
        if cur is not None and _vruntime_now(cur, t) - v.vruntime > self.wakeup_granularity:
            self._preempt(pcpu, t)

    # ------------------------------------------------------------- preemption
    def _preempt(self, pcpu: PCpu, t: int) -> None:
        """Preempt what ``pcpu`` runs: a VM exit (the host's timer or IPI), then the leftmost runs."""
        v = pcpu.vcpu
        if self._switching_in(pcpu, t):
            return
        v.exits += 1
        v.acct[T_HOST] += self.exit_cost
        self.switch_out(v, t, RUNNABLE)
        pcpu.rq.append(v)
        self.pick_after_exit(pcpu, t)
        self._balance_idle(t)

    def _switch(self, pcpu: PCpu, u: VCpu, t: int, exited: bool = False) -> None:
        """Preempt what ``pcpu`` runs (``exited``: it already took its VM exit) for ``u``, queued there."""
        cur = pcpu.vcpu
        if self._switching_in(pcpu, t):
            pcpu.next = u
            return
        if not exited:
            cur.exits += 1
        cur.acct[T_HOST] += self.exit_cost
        self.switch_out(cur, t, RUNNABLE)
        pcpu.rq.append(cur)
        pcpu.next = u
        self.pick_after_exit(pcpu, t)

    def _switching_in(self, pcpu: PCpu, t: int) -> bool:
        """What ``pcpu`` runs is still in its host switch-in at ``t``: the preemption waits for its end.

        The switch runs with preemption off; the resched it was asked for (``need_resched``) is
        seen before VM entry, when the vCPU has done nothing yet.  Preempting it at ``t`` would
        take it off before it ever ran, stamped before the guest code it had been given.
        """
        start = pcpu.vcpu.run_since
        if t >= start:
            return False
        self.loop.at(start, self.on_resched, pcpu, pcpu.gen)
        return True

    def _resched_event(self, pcpu: PCpu, gen: int, t: int) -> None:
        if gen == pcpu.gen:
            self._preempt(pcpu, t)  # the pick takes the buddy asked for (pcpu.next), if still queued

    # ------------------------------------------------------------- balancing
    def _migrate(self, v: VCpu, src: PCpu, dst: PCpu, t: int) -> None:
        """Rehome ``v`` (on no queue) from ``src`` to ``dst``; vruntime keeps its lag behind the queue's minimum."""
        v.vruntime += self._rq_min_vruntime(dst, t) - self._rq_min_vruntime(src, t)
        v.home = dst.id

    def _steal(self, src: PCpu, dst: PCpu, t: int) -> None:
        """Move the vCPU waiting longest on ``src``'s queue to ``dst``'s (``detach_tasks``)."""
        v = min(src.rq, key=lambda u: (u.since, u.id))
        src.rq.remove(v)
        self._migrate(v, src, dst, t)
        dst.rq.append(v)
        self.queued_behind(dst, t)

    def _pull(self, pcpu: PCpu, t: int) -> bool:
        """``sched_balance_newidle()``: take a waiting vCPU from the busiest queue, own socket first.

        Only from a pCPU with two or more tasks (``load_balance()`` detaches from a busiest
        queue with ``nr_running > 1``): one whose only task waits for it to come out of idle, or
        out of a VM exit, keeps it.
        """
        busiest = None
        for p in self.pcpus:
            if _nr_running(p) > 1 and (busiest is None or (p.socket == pcpu.socket, len(p.rq)) > (
                    busiest.socket == pcpu.socket, len(busiest.rq))):
                busiest = p
        if busiest is None:
            return False
        self._steal(busiest, pcpu, t)
        return True

    def _balance_idle(self, t: int) -> None:
        """An idle pCPU while a pCPU has vCPUs waiting behind another: it pulls one (nohz idle balancing)."""
        while self.idle and any(_nr_running(p) > 1 for p in self.pcpus):
            self.pick_next(self.idle.pop(0), t)

    def _balance(self, pcpu: PCpu, t: int) -> None:
        """Periodic ``load_balance()`` at the tick: pull a waiting vCPU from a queue two or more longer."""
        busiest = max(self.pcpus, key=lambda p: (_nr_running(p), p.socket == pcpu.socket, -p.id))
        if busiest.rq and _nr_running(busiest) >= _nr_running(pcpu) + 2:
            self._steal(busiest, pcpu, t)
