"""The guest CPUs: executing guest operations in time, spin waits on cache lines, interrupts.

A vCPU's pending operation *completes* at an event: its effect is applied to guest memory
then, its result is sent back to the guest code, and the next operation is issued, its
completion time given by the cache model (:mod:`~pvspin.sim.cache`).  When several vCPUs
complete at the same cycle, the :class:`~pvspin.machine.scheduler.Scheduler` decides their
order — the same interface the model checker drives, so a seed picks one legal interleaving
among ties.  Memory order is sequential consistency: effects land in time order.

Spinning is event-driven.  A vCPU in ``smp_cond_load_*`` whose condition is false registers
as a watcher of its cache line and schedules nothing: it is woken to re-read the line when
someone writes it.  A bounded spin (``SPIN_THRESHOLD``, ``_Q_PENDING_LOOPS``) schedules one
timeout event; pause-loop exiting (the hypervisor's) one event per window.  Host time
therefore does not grow with how long a vCPU spins — but the vCPU holds its pCPU all that
while, which is the whole problem.

Interrupts push a handler context on the vCPU (:class:`~pvspin.machine.cpu.GuestCpu`) and
resume the interrupted operation afterwards, as the kernel's task → softirq → hardirq → NMI
nesting does.  The host switches a vCPU in and out through :meth:`GuestCpus.sched_in` and
:meth:`GuestCpus.sched_out`: what was in flight is kept and carried on.
"""

from __future__ import annotations

from heapq import heappop, heappush
from operator import attrgetter

from ..machine import ops as o
from ..machine.cpu import HARDIRQ, NMI, SOFTIRQ
from ..machine.scheduler import Scheduler
from .cache import CacheModel
from .config import Costs
from .events import EventLoop, poisson_arrival
from .hostsched import HostScheduler
from .hypervisor import Hypervisor
from .vcpu import DONE, HALTED, RUNNABLE, RUNNING, T_CS, T_HV, T_SPIN, SimulationError, VCpu

IRQ_LEVELS = {"softirq": SOFTIRQ, "hardirq": HARDIRQ, "nmi": NMI}

_RMW = o.RMW_OPS
_LOAD, _STORE, _COND, _WORK, _RELAX, _FENCE = o.LOAD, o.STORE, o.COND_LOAD, o.WORK, o.CPU_RELAX, o.FENCE
_LOCAL = o.LOCAL_OPS
_by_id = attrgetter("id")


class GuestCpus:
    """The guest side of every vCPU: its code, the operation in flight, its spin waits and interrupts."""

    def __init__(self, loop: EventLoop, cache: CacheModel, hv: Hypervisor, sched: HostScheduler,
                 scheduler: Scheduler, costs: Costs, recorder=None, tracer=None):  # fmt: skip
        self.loop = loop
        self.cache = cache
        self.hv = hv
        self.sched = sched
        self.scheduler = scheduler  # who goes first among simultaneous completions
        self.costs = costs
        self.recorder = recorder  # called with every completed operation (determinism digests)
        self.tracer = tracer
        self.watchers: dict[int, list[VCpu]] = {}  # cache line -> vCPUs spinning on it
        self.spin_iteration = costs.pause + costs.l1_hit  # one turn of a PAUSE + load spin loop
        self.ple = hv.ple
        self.kick_cost = hv.kick_cost
        self.on_step = self._step_event  # event callbacks: one bound method each
        self.on_ties = self._ties_event
        self.on_timeout = self._timeout_event
        self.on_irq = self._irq_event
        hv.guest = self

    # ================================================================ events
    def _step_event(self, v: VCpu, gen: int, t: int) -> None:
        """``v``'s pending operation completes at ``t`` (if it is still the one pending)."""
        if gen != v.gen:
            return
        heap = self.loop.heap
        if heap and heap[0][0] == t and (heap[0][2] is self.on_step or heap[0][2] is self.on_ties):  # _more_at()
            v = self._tie_break(v, t, ())
        self._complete(v, t)

    def _more_at(self, t: int) -> bool:
        """Another completion (or a block of them) heads the queue at cycle ``t``."""
        heap = self.loop.heap
        return bool(heap) and heap[0][0] == t and (heap[0][2] is self.on_step or heap[0][2] is self.on_ties)

    def _ties_event(self, block: list, _arg, t: int) -> None:
        """The completions a tie-break deferred, in id order: one event standing for as many.

        They fire as the events they stand for would, one after the other (nothing can come
        between them): the event loop counted the first; each stale one is passed over and the
        next counted in its turn, until one is current — which then ties with those behind it.
        """
        n = len(block)
        i = 0
        while True:
            v, gen = block[i]
            i += 1
            if gen == v.gen:
                break
            if i == n:
                return
            self.loop.events += 1
        if i < n:
            v = self._tie_break(v, t, block[i:])
        elif self._more_at(t):
            v = self._tie_break(v, t, ())
        self._complete(v, t)

    def _tie_break(self, first: VCpu, t: int, ahead) -> VCpu:
        """Several vCPUs complete at cycle ``t``: the scheduler picks who goes first.

        The contenders are ``first``, the deferred completions ``ahead`` of the queue, and the
        run of completions at ``t`` at the queue's head.  The others are deferred as one event
        (a block, not one event each: with k contenders, k rounds of k heap operations each
        were a third of the events at 64-128 vCPUs); they keep their place and their order.
        """
        tied = [first]
        for u, gen in ahead:
            if gen == u.gen:
                tied.append(u)
        heap = self.loop.heap
        on_step = self.on_step
        on_ties = self.on_ties
        while heap and heap[0][0] == t:
            callback = heap[0][2]
            if callback is on_step:
                ev = heappop(heap)
                if ev[4] == ev[3].gen:
                    tied.append(ev[3])
            elif callback is on_ties:
                for u, gen in heappop(heap)[3]:
                    if gen == u.gen:
                        tied.append(u)
            else:
                break
        if len(tied) == 1:
            return first
        tied.sort(key=_by_id)
        ids = tuple([u.id for u in tied])
        chosen = tied[ids.index(self.scheduler.next_cpu(ids, None))]
        rest = [(u, u.gen) for u in tied if u is not chosen]
        if len(rest) == 1:
            self.loop.at(t, on_step, rest[0][0], rest[0][1])
        else:
            self.loop.at(t, on_ties, rest, None)
        return chosen

    def _timeout_event(self, v: VCpu, gen: int, t: int) -> None:
        if gen == v.gen and v.spinning:
            self._spin_timeout(v, t)

    def _irq_event(self, v: VCpu, deferred: int, t: int) -> None:
        if v.state == RUNNING or deferred == 0:
            self._irq(v, t, deferred == 1)

    # ================================================================ start and the host's switches
    def boot(self, v: VCpu, program) -> None:
        """Install ``program`` on ``v`` and run it to its first shared operation."""
        v.op = self._settle(v, v.gcpu.start(program))

    def arm_interrupts(self, v: VCpu) -> None:
        """The first interrupt of a guest that has a handler and a rate."""
        guest = v.guest
        if guest.irq_rate_hz > 0 and guest.irq_handler is not None:
            at = poisson_arrival(self.loop.now, v.rng, guest.irq_rate_hz, self.costs.freq_mhz)
            self.loop.at(at, self.on_irq, v, 0)

    def sched_in(self, v: VCpu, t: int) -> None:
        """Carry on with ``v``'s pending work after it was given a pCPU at ``t``."""
        if v.cs_depth:
            v.cs_since = t
        v.gen += 1
        if v.irq_pending and v.gcpu.irqs_enabled:
            v.irq_pending = False
            if v.remaining is not None:  # the handler saves what is left of the preempted operation
                v.step_at = t + v.remaining
                v.remaining = None
            if v.spinning:  # the wait resumes at t and is interrupted at once: its clocks start here
                v.spin_since = t
                if v.spin_budget is not None:
                    v.spin_deadline = t + v.spin_budget
            self._deliver_irq(v, t)
            return
        if v.spinning:
            self._resume_spin(v, t)
        elif v.woken:  # the halt is over: pv_wait returns
            v.woken = False
            self.hv.pv_wait_returns(v, t)
            self._advance(v, None, t)
        elif v.remaining is not None:
            v.step_at = t + v.remaining
            v.remaining = None
            self.loop.at(v.step_at, self.on_step, v, v.gen)
        else:
            self._issue(v, v.op, t)

    @staticmethod
    def in_user_mode(v: VCpu) -> bool:
        """``v``'s guest runs in user mode (CPL 3): its pending operation is user-mode work.

        An interrupt handler's operation is the pending one while it runs, so a vCPU interrupted
        in user mode is in the kernel until the handler returns.
        """
        op = v.op
        return op is not None and op[0] == _WORK and op[2] == o.WORK_USER

    def sched_out(self, v: VCpu, t: int, state: int) -> None:
        """``v`` leaves its pCPU at ``t`` into ``state``: keep what it was doing."""
        if v.spinning:
            self._unwatch(v)
            v.acct[T_SPIN] += t - v.spin_since
            if self.tracer is not None:
                self.tracer.spin(t, v, False)
            if v.spin_budget is not None:
                v.spin_budget = max(0, v.spin_deadline - t)
            if state == RUNNABLE:
                v.guest.waiter_preemptions += 1
        elif state == RUNNABLE and v.step_at > t:
            v.remaining = v.step_at - t
        if v.cs_depth:
            v.acct[T_CS] += t - v.cs_since
            if state != DONE:
                v.guest.lock_holder_preemptions += 1

    # ================================================================ guest operations
    def _complete(self, v: VCpu, t: int) -> None:
        """``v``'s pending operation completes at ``t``: apply it, advance the guest code.

        Fast lane: when the next operation completes strictly before any queued event, it
        is the next event anyway, so it runs here without a round trip through the heap.
        """
        loop = self.loop  # hoisted: what most operations need (a spin loop runs many here)
        guest = v.guest
        line_base = guest.line_base
        data = guest.mem.data
        cache = self.cache
        sharers = cache.sharers
        bit = 1 << v.pcpu
        gcpu = v.gcpu
        contexts = gcpu.contexts
        recorder = self.recorder
        tracer = self.tracer
        nxt: tuple | None
        while True:
            op = v.op
            code = op[0]
            # ---- apply the operation's effect (the most frequent kinds first)
            if code == _STORE:
                ref = op[1]
                ref.fmt.pack_into(data, ref.addr, op[2] & ref.mask)
                result = None
                if tracer is not None:
                    tracer.wrote(t, v, ref)
                if line_base | ref.line in self.watchers:
                    self._notify(line_base | ref.line, t)
            elif code == _WORK:
                result = None
            elif code == _LOAD:
                ref = op[1]
                result = ref.fmt.unpack_from(data, ref.addr)[0]
            elif code == _COND:
                ref = op[1]
                result = ref.fmt.unpack_from(data, ref.addr)[0]
                if not op[2](result):
                    self._spin(v, t)
                    return
                if v.spinning:
                    self._spin_stop(v, t)
            elif code in _RMW:
                ref = op[1]
                new, result = o.rmw_result(code, ref.fmt.unpack_from(data, ref.addr)[0], op, ref.mask)
                if new is not None:
                    ref.fmt.pack_into(data, ref.addr, new)
                    if tracer is not None:
                        tracer.wrote(t, v, ref)
                if line_base | ref.line in self.watchers:
                    self._notify(line_base | ref.line, t)
            elif code == o.PV_WAIT:
                delay = self.hv.pv_wait(v, op, t)
                if delay is None:
                    return
                t += delay
                loop.now = t
                result = None
            elif code == o.PV_KICK:
                self.hv.pv_kick(v, op[1], t)
                result = None
            elif code == o.VCPU_IS_PREEMPTED:
                result = self.hv.vcpu_is_preempted(v.guest.vcpus[op[1]])
            else:  # CPU_RELAX, FENCE: time only
                result = None
            if recorder is not None:
                recorder(t, v.id, code, result)
            # ---- send the result to the guest code, get its next operation (_advance and
            # _issue, inlined: this loop is the hot path of every simulation); the clock
            # already stands at t (set by the event, the lane below, or a PV_WAIT's exit)
            v.gen += 1
            v.ops += 1
            interrupted = v.saved
            depth = len(contexts)
            ctx = contexts[-1]
            try:
                nxt = ctx.gen.send(result)
                ctx.op = nxt
            except StopIteration:
                nxt = gcpu.context_returned()
            if nxt is not None and nxt[0] in _LOCAL:
                nxt = self._settle(v, nxt)
            if interrupted and len(contexts) < depth:
                self._irq_return(v, t)
                return
            v.op = nxt
            if nxt is None:
                self._finish(v, t)
                return
            # ---- issue it: when does it complete? (cache hits inline, the rest in _cost)
            code = nxt[0]
            if code == _WORK:
                done = t + nxt[1]
            elif code == _LOAD or code == _COND:
                key = line_base | nxt[1].line
                if sharers.get(key, 0) & bit:
                    done = t + cache.hit_load
                else:
                    done = cache.read(v.pcpu, key, t)
            elif code == _STORE:
                key = line_base | nxt[1].line
                if sharers.get(key, 0) == bit:
                    cache.owner[key] = v.pcpu
                    done = t + cache.hit_store
                else:
                    done = cache.write(v.pcpu, key, t, False)
            else:
                done = self._cost(v, nxt, t)
            v.step_at = done
            heap = loop.heap
            if done > loop.until or (heap and done >= heap[0][0]) or v.state != RUNNING:
                loop.seq += 1  # EventLoop.at(), inlined
                heappush(heap, (done, loop.seq, self.on_step, v, v.gen))
                return
            t = loop.now = done
            loop.events += 1

    def _advance(self, v: VCpu, result, t: int) -> None:
        """Send ``result`` to the guest code and issue its next shared operation at ``t``."""
        self.loop.now = t
        v.gen += 1
        v.ops += 1
        gcpu = v.gcpu
        depth = len(gcpu.contexts)
        nxt = gcpu.resume(result)
        if nxt is not None and nxt[0] in _LOCAL:
            nxt = self._settle(v, nxt)
        if len(gcpu.contexts) < depth and v.saved:
            self._irq_return(v, t)
            return
        self._issue(v, nxt, t)

    def _issue(self, v: VCpu, op: tuple | None, t: int) -> None:
        """Start ``op`` on ``v`` at ``t``: schedule its completion."""
        v.op = op
        if op is None:
            self._finish(v, t)
            return
        v.step_at = done = self._cost(v, op, t)
        self.loop.at(done, self.on_step, v, v.gen)

    def _finish(self, v: VCpu, t: int) -> None:
        """The task-level program returned: the vCPU is done and leaves its pCPU."""
        if v.gcpu.contexts:  # no: its code yielded None, which is no operation
            raise ValueError("yielded None")  # named by Simulator._crashed()
        self.sched.dequeue(v, t, DONE)

    def _cost(self, v: VCpu, op: tuple, t: int) -> int:
        """When ``op``, issued by ``v`` at ``t``, completes: the cost model's answer."""
        code = op[0]
        if code == _LOAD or code == _COND or code == o.PV_WAIT:
            return self.cache.read(v.pcpu, v.guest.line_base | op[1].line, t)
        if code == _STORE:
            return self.cache.write(v.pcpu, v.guest.line_base | op[1].line, t, False)
        if code in _RMW:
            return self.cache.write(v.pcpu, v.guest.line_base | op[1].line, t, True)
        if code == _WORK:
            return t + op[1]
        if code == _RELAX:
            return t + self.costs.pause
        if code == _FENCE:
            return t + (self.costs.mfence if op[1] == o.MB else 0)
        if code == o.PV_KICK:
            v.acct[T_HV] += self.kick_cost
            return t + self.kick_cost
        if code == o.VCPU_IS_PREEMPTED:
            return t + self.costs.steal_time_read
        raise SimulationError(f"unknown operation {op!r}")

    def _settle(self, v: VCpu, op: tuple | None) -> tuple | None:
        """Answer local operations (no time, no scheduling point) until a shared one."""
        gcpu = v.gcpu
        contexts = gcpu.contexts
        while op is not None and op[0] in _LOCAL:
            code = op[0]
            result = None
            if code == o.LOCKEVENT:
                if op[2]:
                    events = v.guest.lock_events
                    events[op[1]] = events.get(op[1], 0) + op[2]
            elif code == o.CS:
                self._cs(v, op[1], op[2])
            elif code == o.SMP_PROCESSOR_ID:
                result = v.cpu
            elif code == o.IRQS:
                result = gcpu.irqs_enabled
                gcpu.irqs_enabled = op[1]
                if op[1] and v.irq_pending:  # deliver what arrived while they were off
                    self.loop.at(self.loop.now, self.on_irq, v, 1)
            elif code == o.IN_NMI:
                result = gcpu.level == NMI
            elif code == o.WARNING:
                v.guest.warnings.append(f"{v}: {op[1]}")
            elif code == o.LOCAL_CLOCK:
                result = self.loop.now
            ctx = contexts[-1]  # GuestCpu.resume(), inlined
            try:
                op = ctx.gen.send(result)
                ctx.op = op
            except StopIteration:
                op = gcpu.context_returned()
        return op

    def _cs(self, v: VCpu, lock_id, delta: int) -> None:
        """The workload enters (``delta`` > 0) or leaves a critical section: mutual exclusion, accounting."""
        guest = v.guest
        t = self.loop.now
        if delta > 0:
            holder = guest.holders.get(lock_id)
            if holder is not None:
                guest.mutex_failures += 1
            guest.holders[lock_id] = v
            v.cs_entries += 1
            if self.tracer is not None:
                self.tracer.critical_section(t, v, lock_id, True)
            if v.cs_depth == 0:
                v.cs_since = t
            v.cs_depth += 1
        else:
            if guest.holders.get(lock_id) is v:
                del guest.holders[lock_id]
            if self.tracer is not None:
                self.tracer.critical_section(t, v, lock_id, False)
            v.cs_depth -= 1
            if v.cs_depth == 0:
                v.acct[T_CS] += t - v.cs_since

    # ================================================================ spinning
    def _spin(self, v: VCpu, t: int) -> None:
        """The condition of ``v``'s wait is false: watch the line, arm timeout and PLE."""
        key = v.guest.line_base | v.op[1].line
        watchers = self.watchers.get(key)
        if watchers is None:
            self.watchers[key] = [v]
        else:
            watchers.append(v)
        if v.spinning:
            return  # a re-check that failed: timeout and PLE events stay armed
        v.spinning = True
        bound = v.op[4]
        if v.spin_budget is None and bound is not None:
            # The load that just failed was the first of ``bound`` evaluations; one PAUSE + load
            # turn for each of the others.
            v.spin_budget = (bound - 1) * self.spin_iteration
        self._arm_spin(v, t)

    def _arm_spin(self, v: VCpu, t: int) -> None:
        """``v`` (spinning) starts or resumes its PAUSE loop at ``t``: arm its timeout and PLE."""
        v.spin_since = t
        if self.tracer is not None:
            self.tracer.spin(t, v, True)
        if v.spin_budget is not None:
            v.spin_deadline = t + v.spin_budget
            self.loop.at(v.spin_deadline, self.on_timeout, v, v.gen)
        if self.ple:
            self.hv.arm_ple(v, t)

    def _resume_spin(self, v: VCpu, t: int) -> None:
        """A spin wait carries on at ``t`` after a switch or an interrupt: re-read the line first."""
        self._arm_spin(v, t)
        done = self.cache.read(v.pcpu, v.guest.line_base | v.op[1].line, t)
        v.step_at = done
        self.loop.at(done, self.on_step, v, v.gen)

    def _spin_stop(self, v: VCpu, t: int) -> None:
        if self.tracer is not None:
            self.tracer.spin(t, v, False)
        v.spinning = False
        v.acct[T_SPIN] += t - v.spin_since
        v.spin_budget = None
        v.spin_deadline = None

    def _unwatch(self, v: VCpu) -> None:
        key = v.guest.line_base | v.op[1].line
        watchers = self.watchers.get(key)
        if watchers and v in watchers:
            watchers.remove(v)
            if not watchers:
                del self.watchers[key]

    def _notify(self, key: int, t: int) -> None:
        """A write to line ``key`` completed: every watcher re-reads the line.

        Each re-read is a real transfer (the cache model sees it), but only a watcher whose
        condition now holds gets an event; the others keep watching, and a later write
        notifies them again, so no wake-up is missed.
        """
        watchers = self.watchers[key]
        read = self.cache.read
        loop = self.loop
        heap = loop.heap
        on_step = self.on_step
        keep = []
        for w in watchers:
            done = read(w.pcpu, key, t)
            op = w.op
            ref = op[1]
            if op[2](w.guest.mem.read(ref.addr, ref.size)):
                w.step_at = done
                loop.seq += 1  # EventLoop.at(), inlined
                heappush(heap, (done, loop.seq, on_step, w, w.gen))
            else:
                keep.append(w)
        if keep:
            self.watchers[key] = keep
        else:
            del self.watchers[key]

    def _spin_timeout(self, v: VCpu, t: int) -> None:
        """A bounded spin ran out of iterations: the wait returns the last value read."""
        self._unwatch(v)
        self._spin_stop(v, t)
        ref = v.op[1]
        self._advance(v, v.guest.mem.read(ref.addr, ref.size), t)

    # ================================================================ interrupts
    def _irq(self, v: VCpu, t: int, deferred: bool) -> None:
        """An interrupt arrives at ``v`` (``deferred``: one held back while IRQs were off)."""
        guest = v.guest
        if not deferred and v.state != DONE:
            at = poisson_arrival(self.loop.now, v.rng, guest.irq_rate_hz, self.costs.freq_mhz)
            self.loop.at(at, self.on_irq, v, 0)
        if v.state == DONE or v.gcpu.level >= guest.irq_level:
            return  # handlers do not nest at their own level: this one is dropped
        if v.polling:  # halted in KVM's poll loop: the interrupt ends the halt if the guest takes it
            v.irq_pending = True
            if v.gcpu.irqs_enabled:
                self.hv.poll_wake(v, t)
        elif v.state == RUNNING and t < v.run_since:  # still in the host's switch-in: injected at VM entry
            v.irq_pending = True
            self.loop.at(v.run_since, self.on_irq, v, 1)
        elif v.state == RUNNING and v.gcpu.irqs_enabled:
            v.irq_pending = False
            self._deliver_irq(v, t)
        elif v.state == HALTED and v.gcpu.irqs_enabled:
            v.irq_pending = True  # safe_halt: the interrupt ends the halt
            self.hv.wake(v, t)
        else:
            v.irq_pending = True

    def _deliver_irq(self, v: VCpu, t: int) -> None:
        """Push the guest's handler on ``v``, saving what the interrupted context was doing."""
        remaining = None
        budget = None
        spinning = v.spinning
        if spinning:
            self._unwatch(v)
            v.acct[T_SPIN] += t - v.spin_since
            if self.tracer is not None:
                self.tracer.spin(t, v, False)
            budget = None if v.spin_budget is None else max(0, v.spin_deadline - t)
            v.spinning = False
            v.spin_budget = None
        elif not v.woken and v.step_at > t:
            remaining = v.step_at - t
        v.saved.append((v.op, remaining, spinning, budget, v.woken))
        v.woken = False
        v.gen += 1
        self.loop.now = t
        guest = v.guest
        op = self._settle(v, v.gcpu.interrupt(guest.irq_handler(v.cpu), guest.irq_level))
        if len(v.gcpu.contexts) <= len(v.saved):  # the handler ended without a shared operation
            self._irq_return(v, t)
            return
        self._issue(v, op, t)

    def _irq_return(self, v: VCpu, t: int) -> None:
        """A handler finished: the interrupted context carries on where it stood."""
        pending, remaining, spinning, budget, woken = v.saved.pop()
        v.op = pending
        v.gen += 1
        if woken:  # interrupted right after its halt ended: pv_wait returns now
            self._advance(v, None, t)
        elif spinning:
            v.spin_budget = budget
            v.spinning = True
            self._resume_spin(v, t)
        elif remaining is not None:
            v.step_at = t + remaining
            self.loop.at(v.step_at, self.on_step, v, v.gen)
        else:
            self._issue(v, pending, t)
