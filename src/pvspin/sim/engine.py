"""The timed simulator: guest code on vCPUs, vCPUs on physical CPUs, time in integer cycles.

One heap of ``(time, seq, kind, target, generation)`` events drives everything.  A vCPU's
pending operation *completes* at an event: its effect is applied to guest memory then,
its result is sent back to the guest code, and the next operation is issued, its
completion time given by the cache model.  When several vCPUs complete at the same
cycle, the :class:`~pvspin.machine.scheduler.Scheduler` decides their order — the same
interface the model checker drives, so a seed picks one legal interleaving among ties.

Spinning is event-driven.  A vCPU in ``smp_cond_load_*`` whose condition is false
registers as a watcher of its cache line and schedules nothing: it is woken to re-read
the line when someone writes it.  A bounded spin schedules one timeout event; pause-loop
exiting schedules one event per window.  Host time therefore does not grow with how long
a vCPU spins — but the vCPU holds its pCPU all that while, which is the whole problem.

The hypervisor half (per-pCPU run queues, time slices, halt and kick, PLE with KVM's
directed yield, steal time) lives here too, because it is what decides *when* guest
operations run; its policy knobs are in :mod:`pvspin.sim.config`.  Interrupts push a
handler context on the vCPU (:class:`~pvspin.machine.cpu.GuestCpu`) and resume the
interrupted operation afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from heapq import heappop, heappush

from ..machine import ops as o
from ..machine.cpu import HARDIRQ, NMI, SOFTIRQ, GuestCode, GuestCpu
from ..machine.memory import Memory
from ..machine.scheduler import RandomScheduler, Scheduler
from .cache import CacheModel
from .config import HostConfig

# vCPU states
RUNNING, RUNNABLE, HALTED, DONE = range(4)
STATE_NAMES = ("running", "runnable", "halted", "done")

# event kinds
STEP, SLICE, WAKE, TIMEOUT, PLE, IRQ = range(6)

# time accounting slots, per vCPU
# T_RUN: on a pCPU (guest code, and the exits it takes in place: kicks, PLE, latched HLT);
# T_SPIN, T_CS: parts of T_RUN spent spinning / holding a lock; T_HV: the in-place exits;
# T_HOST: host work done for this vCPU off its run intervals (context switches, halt and
# preemption exits); T_HALT: halted; T_PREEMPT: runnable, waiting for a pCPU.
T_RUN, T_SPIN, T_CS, T_HV, T_HOST, T_HALT, T_PREEMPT = range(7)
ACCOUNT_NAMES = ("running", "spinning", "critical_section", "exits_in_place", "host", "halted", "runnable")

IRQ_LEVELS = {"softirq": SOFTIRQ, "hardirq": HARDIRQ, "nmi": NMI}

_RMW = o.RMW_OPS
_LOAD, _STORE, _COND, _WORK, _RELAX, _FENCE = o.LOAD, o.STORE, o.COND_LOAD, o.WORK, o.CPU_RELAX, o.FENCE
_CMPXCHG, _TRY_CMPXCHG, _XCHG = o.CMPXCHG, o.TRY_CMPXCHG, o.XCHG
_LOCAL = o.LOCAL_OPS


class SimulationError(Exception):
    """The simulated system did something the model forbids (a guest BUG(), a bad kick)."""


class VCpu:
    """A virtual CPU: guest code, hypervisor state and accounting."""

    __slots__ = (
        "id", "guest", "cpu", "gcpu", "state", "pcpu", "home", "gen", "op", "step_at", "remaining",
        "spinning", "spin_deadline", "spin_budget", "spin_since", "vruntime", "run_since", "since",
        "kick_latched", "waking", "woken", "preempted", "ple_window", "ple_exits", "kick_time", "acct", "cs_depth", "cs_since", "saved", "irq_pending",
        "ops", "kicks", "halts", "exits", "cs_entries", "rng",
    )  # fmt: skip

    def __init__(self, vid: int, guest: Guest, cpu: int):
        self.id = vid
        self.guest = guest
        self.cpu = cpu  # the guest's own CPU number (smp_processor_id)
        self.gcpu = GuestCpu(cpu)
        self.state = RUNNABLE
        self.pcpu: int | None = None
        self.home: int | None = None  # the pCPU whose run queue holds it (the host thread's CPU)
        self.gen = 0
        self.op: tuple | None = None
        self.step_at = 0
        self.remaining: int | None = None  # cycles left of an operation interrupted mid-flight
        self.spinning = False
        self.spin_deadline: int | None = None
        self.spin_budget: int | None = None
        self.spin_since = 0
        self.vruntime = 0
        self.run_since = 0
        self.since = 0
        self.kick_latched = False
        self.ple_window = 0
        self.ple_exits = 0
        self.kick_time: int | None = None
        self.waking = False
        self.woken = False
        self.preempted = False
        self.acct = [0] * 7
        self.cs_depth = 0
        self.cs_since = 0
        self.saved: list[tuple] = []
        self.irq_pending = False
        self.ops = 0
        self.kicks = 0
        self.halts = 0
        self.exits = 0
        self.cs_entries = 0
        self.rng: random.Random | None = None

    def __repr__(self) -> str:
        return f"{self.guest.name}/vcpu{self.cpu}"


class Guest:
    """One guest VM: its memory, its vCPUs, and what its kernel reported."""

    def __init__(self, index: int, name: str, mem: Memory, irq_handler, irq_rate_hz: float, irq_level: int):
        self.index = index
        self.name = name
        self.mem = mem
        self.vcpus: list[VCpu] = []
        self.irq_handler = irq_handler
        self.irq_rate_hz = irq_rate_hz
        self.irq_level = irq_level
        self.lock_events: dict[str, int] = {}
        self.warnings: list[str] = []
        self.holders: dict[object, VCpu] = {}
        self.mutex_failures = 0
        self.lock_holder_preemptions = 0
        self.line_base = index << 40
        self.last_boosted = -1  # kvm->last_boosted_vcpu: where the next directed yield search starts


class PCpu:
    """A physical CPU and its CFS run queue (``struct rq``): the vCPU it runs and those waiting."""

    __slots__ = ("id", "socket", "vcpu", "rq", "min_vruntime", "gen", "busy", "last_vcpu")

    def __init__(self, pid: int, socket: int):
        self.id = pid
        self.socket = socket
        self.vcpu: VCpu | None = None
        self.rq: list[VCpu] = []  # runnable vCPUs waiting for this pCPU
        self.min_vruntime = 0  # cfs_rq->min_vruntime: monotonic, the base for sleepers and migrations
        self.gen = 0
        self.busy = 0  # cycles spent running vCPUs (closed intervals)
        self.last_vcpu: VCpu | None = None


def _vruntime_now(v: VCpu, t: int) -> int:
    """The vruntime of a running vCPU at ``t`` (its switch-in, if still in flight, does not count)."""
    return v.vruntime + max(0, t - v.run_since)


def _leftmost(rq: list[VCpu]) -> VCpu:
    """The queued vCPU CFS picks first: least vruntime (ties by id, for determinism)."""
    return min(rq, key=lambda u: (u.vruntime, u.id))


def _nr_running(pcpu: PCpu) -> int:
    """``rq->nr_running``: the vCPUs waiting on ``pcpu`` and the one it runs."""
    return len(pcpu.rq) + (pcpu.vcpu is not None)


class Simulator:
    """Discrete-event simulation of a virtualization host running guest kernels."""

    def __init__(
        self,
        host: HostConfig,
        seed: int = 0,
        scheduler: Scheduler | None = None,
        recorder: Callable | None = None,
        tracer=None,
    ):
        self.host = host
        self.costs = host.costs
        self.seed = seed
        self.scheduler = scheduler or RandomScheduler(seed)
        self.scheduler.new_execution()
        self.rng = random.Random(seed)
        self.recorder = recorder  # called with every completed operation (determinism digests)
        self.tracer = tracer  # timeline hooks (pvspin.sim.trace.Tracer), None when not tracing
        self.now = 0
        self.heap: list[tuple] = []
        self.seq = 0
        self.events = 0
        sockets = min(host.sockets, host.pcpus)
        socket_of = [p * sockets // host.pcpus for p in range(host.pcpus)]
        self.cache = CacheModel(self.costs, self.rng, socket_of)
        self.pcpus = [PCpu(i, socket_of[i]) for i in range(host.pcpus)]
        self.idle: list[PCpu] = []  # pCPUs with nothing to run, by id
        self.guests: list[Guest] = []
        self.vcpus: list[VCpu] = []
        self.watchers: dict[int, list[VCpu]] = {}
        self.bare_metal = host.hypervisor == "baremetal"
        sched = host.scheduling
        c = self.costs
        self.sched_latency = c.us(sched.sched_latency_us)
        self.min_granularity = c.us(sched.min_granularity_us)
        self.wakeup_granularity = c.us(sched.wakeup_granularity_us)
        self.ple = sched.ple and not self.bare_metal
        self.ple_window = sched.ple_window
        self.ple_window_grow = sched.ple_window_grow
        self.ple_window_max = sched.ple_window_max
        self.spin_iteration = c.pause + c.l1_hit  # one turn of a PAUSE + load spin loop
        self.vm_exit = 0 if self.bare_metal else c.vm_exit
        self.kick_cost = c.ns(c.kick_hypercall_ns)
        self.kick_wake = c.ns(c.kick_wake_ns)
        self.spurious_hz = host.spurious_wakeup_hz
        self.started = False
        self.until = 0

    # ================================================================ set-up
    def add_guest(
        self,
        name: str,
        mem: Memory,
        programs: Iterable[GuestCode],
        irq_handler: Callable[[int], GuestCode] | None = None,
        irq_rate_hz: float = 0.0,
        irq_level: str = "hardirq",
    ) -> Guest:
        """Add a guest whose vCPU ``i`` runs ``programs[i]`` (a started-on-demand generator)."""
        if self.started:
            raise SimulationError("guests must be added before the simulation starts")
        if irq_level not in IRQ_LEVELS:
            raise ValueError(f"unknown interrupt level {irq_level!r} (softirq, hardirq or nmi)")
        guest = Guest(len(self.guests), name, mem, irq_handler, irq_rate_hz, IRQ_LEVELS[irq_level])
        programs = list(programs)
        if not programs:
            raise ValueError(f"guest {name!r} has no vCPUs")
        for cpu, program in enumerate(programs):
            v = VCpu(len(self.vcpus), guest, cpu)
            v.rng = random.Random(f"{self.seed}:{guest.index}:{cpu}")
            guest.vcpus.append(v)
            self.vcpus.append(v)
            v.op = self._settle(v, v.gcpu.start(program))
        if self.bare_metal and len(self.vcpus) > len(self.pcpus):
            raise ValueError(f"bare metal runs one CPU per pCPU: {len(self.vcpus)} CPUs on {len(self.pcpus)} pCPUs")
        self.guests.append(guest)
        return guest

    def _push(self, t: int, kind: int, target, gen: int) -> None:
        self.seq += 1
        heappush(self.heap, (t, self.seq, kind, target, gen))

    def _start(self) -> None:
        self.started = True
        for v in self.vcpus:
            if v.op is None:
                v.state = DONE
                continue
            # a new thread goes to the least loaded CPU (sched_balance_find_dst_cpu at fork)
            pcpu = min(self.pcpus, key=lambda p: (len(p.rq), p.id))
            pcpu.rq.append(v)
            v.home = pcpu.id
            if self.tracer is not None:
                self.tracer.vcpu_state(0, v, "runnable")
            if v.guest.irq_rate_hz > 0 and v.guest.irq_handler is not None:
                self._push(self._exp(v.rng, v.guest.irq_rate_hz), IRQ, v, 0)
        for pcpu in self.pcpus:
            self._dispatch(pcpu, 0)

    def _exp(self, rng: random.Random, rate_hz: float) -> int:
        return self.now + 1 + int(rng.expovariate(rate_hz) * self.costs.freq_mhz * 1_000_000)

    # ================================================================ main loop
    def run(self, cycles: int) -> None:
        """Advance simulated time by ``cycles`` (or until every program has finished)."""
        if cycles < 0:
            raise ValueError(f"cannot run for a negative time ({cycles} cycles)")
        if not self.started:
            self._start()
        until = self.until = self.now + cycles
        heap = self.heap
        complete = self._complete
        try:
            while heap:
                ev = heap[0]
                t = ev[0]
                if t > until:
                    break
                heappop(heap)
                kind = ev[2]
                v = ev[3]
                self.now = t
                self.events += 1
                if kind == STEP:
                    if ev[4] != v.gen:
                        continue
                    if heap and heap[0][0] == t and heap[0][2] == STEP:
                        v = self._tie_break(v, t)
                    complete(v, t)
                elif kind == SLICE:
                    if ev[4] == v.gen:
                        self._slice_end(v, t)
                elif kind == WAKE:
                    if ev[4] == v.gen and v.state == HALTED:
                        self._wake(v, t)
                elif kind == TIMEOUT:
                    if ev[4] == v.gen and v.spinning:
                        self._spin_timeout(v, t)
                elif kind == PLE:
                    if ev[4] == v.gen and v.spinning and v.state == RUNNING:
                        self._ple_exit(v, t)
                elif v.state == RUNNING or ev[4] == 0:
                    self._irq(v, t, ev[4] == 1)
        except o.GuestBug as bug:
            raise SimulationError(f"guest BUG at cycle {self.now}: {bug}") from None
        self.now = until  # the loop only stops at the horizon, or earlier with nothing left to do
        self._close_accounts(self.now)

    def _tie_break(self, first: VCpu, t: int) -> VCpu:
        """Several vCPUs complete at cycle ``t``: the scheduler picks who goes first."""
        heap = self.heap
        tied = [first]
        while heap and heap[0][0] == t and heap[0][2] == STEP:
            ev = heappop(heap)
            if ev[4] == ev[3].gen:
                tied.append(ev[3])
        if len(tied) == 1:
            return first
        tied.sort(key=lambda v: v.id)
        chosen_id = self.scheduler.next_cpu(tuple(v.id for v in tied), None)
        chosen = next(v for v in tied if v.id == chosen_id)
        for v in tied:
            if v is not chosen:
                self._push(t, STEP, v, v.gen)
        return chosen

    # ================================================================ guest operations
    def _complete(self, v: VCpu, t: int) -> None:
        """``v``'s pending operation completes at ``t``: apply it, advance the guest code.

        Fast lane: when the next operation completes strictly before any queued event, it
        is the next event anyway, so it runs here without a round trip through the heap.
        """
        heap = self.heap
        until = self.until
        watchers = self.watchers
        line_base = v.guest.line_base
        data = v.guest.mem.data
        cache = self.cache
        sharers = cache.sharers
        owner = cache.owner
        hit_load = cache.hit_load
        hit_store = cache.hit_store
        bit = 1 << v.pcpu
        gcpu = v.gcpu
        contexts = gcpu.contexts
        recorder = self.recorder
        while True:
            op = v.op
            code = op[0]
            # ---- apply the operation's effect
            if code == _LOAD:
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
            elif code == _STORE:
                ref = op[1]
                ref.fmt.pack_into(data, ref.addr, op[2] & ref.mask)
                result = None
                if line_base | ref.line in watchers:
                    self._notify(line_base | ref.line, t)
            elif code in _RMW:
                ref = op[1]
                new, result = o.rmw_result(code, ref.fmt.unpack_from(data, ref.addr)[0], op, ref.mask)
                if new is not None:
                    ref.fmt.pack_into(data, ref.addr, new)
                if line_base | ref.line in watchers:
                    self._notify(line_base | ref.line, t)
            elif code == o.PV_WAIT:
                v.kick_time = None  # pv_wait() entry clears this CPU's kick time stamp
                delay = self._pv_wait(v, op, t)
                if delay is None:
                    return
                t += delay
                result = None
            elif code == o.PV_KICK:
                self._pv_kick(v, op[1], t)
                result = None
            elif code == o.VCPU_IS_PREEMPTED:
                target = v.guest.vcpus[op[1]]
                result = target.state == RUNNABLE and target.preempted
            else:  # WORK, CPU_RELAX, FENCE: time only
                result = None
            if recorder is not None:
                recorder(t, v.id, code, result)
            # ---- send the result to the guest code, get its next operation (_advance and
            # _issue, inlined: this loop is the hot path of every simulation)
            self.now = t
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
                done = t + hit_load if sharers.get(key, 0) & bit else cache.read(v.pcpu, key, t)
            elif code == _STORE:
                key = line_base | nxt[1].line
                if sharers.get(key, 0) == bit:
                    owner[key] = v.pcpu
                    done = t + hit_store
                else:
                    done = cache.write(v.pcpu, key, t, False)
            else:
                done = self._cost(v, nxt, t)
            v.step_at = done
            if done > until or (heap and done >= heap[0][0]) or v.state != RUNNING:
                self.seq += 1
                heappush(heap, (done, self.seq, STEP, v, v.gen))
                return
            t = self.now = done
            self.events += 1

    def _advance(self, v: VCpu, result, t: int) -> None:
        """Send ``result`` to the guest code and issue its next shared operation at ``t``."""
        self.now = t
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
        self.seq += 1
        heappush(self.heap, (done, self.seq, STEP, v, v.gen))

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
                    self._push(self.now, IRQ, v, 1)
            elif code == o.IN_NMI:
                result = gcpu.level == NMI
            elif code == o.WARNING:
                v.guest.warnings.append(f"{v}: {op[1]}")
            elif code == o.LOCAL_CLOCK:
                result = self.now
            op = gcpu.resume(result)
        return op

    def _cs(self, v: VCpu, lock_id, delta: int) -> None:
        guest = v.guest
        t = self.now
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
        v.spin_since = t
        if self.tracer is not None:
            self.tracer.spin(t, v, True)
        bound = v.op[4]
        if v.spin_budget is None and bound is not None:
            v.spin_budget = bound * self.spin_iteration
        if v.spin_budget is not None:
            v.spin_deadline = t + v.spin_budget
            self._push(v.spin_deadline, TIMEOUT, v, v.gen)
        if self.ple:
            self._push(t + v.ple_window, PLE, v, v.gen)

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
        keep = []
        for w in watchers:
            done = read(w.pcpu, key, t)
            ref = w.op[1]
            if w.op[2](w.guest.mem.read(ref.addr, ref.size)):
                w.step_at = done
                self.seq += 1
                heappush(self.heap, (done, self.seq, STEP, w, w.gen))
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

    def _ple_exit(self, v: VCpu, t: int) -> None:
        """Pause-loop exit: the spinner traps and KVM tries a directed yield (``kvm_vcpu_on_spin``).

        The candidate is the next runnable sibling after the last one boosted, round robin
        (KVM's ``last_boosted_vcpu``); a halted sibling is skipped.  ``yield_to()`` makes
        the candidate the next buddy of *its own* run queue and reschedules that pCPU, and
        the spinner's pCPU reschedules with the spinner as skip buddy.  CFS honours either
        buddy only while it is no more than a wake-up granularity ahead of the queue's
        leftmost task (``pick_next_entity``), so a vCPU that has had its share waits; a
        rescheduled pCPU whose buddy is refused runs its leftmost task.
        """
        v.exits += 1
        v.ple_exits += 1
        # grow_ple_window(): every exit widens this vCPU's window, so a spinner that has
        # nobody to yield to soon stops exiting; shrink_ple_window() resets it at sched-in
        v.ple_window = min(v.ple_window * self.ple_window_grow, self.ple_window_max)
        if self.tracer is not None:
            self.tracer.instant(t, v, "PLE exit")
        guest = v.guest
        siblings = guest.vcpus
        n = len(siblings)
        target = None
        for k in range(1, n + 1):
            u = siblings[(guest.last_boosted + k) % n]
            if u.state == RUNNABLE:
                target = u
                break
        own = self.pcpus[v.pcpu]
        switch_to = None
        if target is not None:
            guest.last_boosted = target.cpu
            there = self.pcpus[target.home]
            if there is own:
                if self._eligible(own, target, t):
                    switch_to = target
            else:  # resched_curr(): that pCPU picks again, the buddy if CFS lets it, else its leftmost
                pick = target
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
        if switch_to is None:  # back to spinning after the exit: that time was not spent spinning
            v.acct[T_HV] += self.vm_exit
            v.acct[T_SPIN] -= self.vm_exit
            self._push(t + self.vm_exit + v.ple_window, PLE, v, v.gen)
            return
        self._switch(own, switch_to, t, exited=True)
        self._balance_idle(t)

    def _eligible(self, pcpu: PCpu, u: VCpu, t: int) -> bool:
        """``wakeup_preempt_entity(u, left) < 1``: ``u`` is within a wake-up granularity of the leftmost."""
        left = min(w.vruntime for w in pcpu.rq)
        if pcpu.vcpu is not None:
            left = min(left, _vruntime_now(pcpu.vcpu, t))
        return u.vruntime - left <= self.wakeup_granularity

    def _switch(self, pcpu: PCpu, u: VCpu, t: int, exited: bool = False) -> None:
        """Preempt what ``pcpu`` runs (``exited``: it already took its VM exit) for ``u``, queued there."""
        cur = pcpu.vcpu
        if not exited:
            cur.exits += 1
        cur.acct[T_HOST] += self.vm_exit
        self._deschedule(cur, t, RUNNABLE)
        pcpu.rq.append(cur)
        pcpu.rq.remove(u)
        self._place(pcpu, u, t + self.vm_exit)

    # ================================================================ halt and kick
    def _pv_wait(self, v: VCpu, op: tuple, t: int) -> int | None:
        """``kvm_wait``: halt if ``*ptr == val``.

        Returns None when ``v`` halted (it left its pCPU), else the cycles the call took
        beyond its read: 0 when the value already differs, a VM exit for a HLT that finds
        a latched kick (KVM's ``pv_unhalted``) and returns at once.
        """
        if v.gcpu.level == NMI:
            return 0  # pv_wait is a no-op in NMI context
        ref = op[1]
        if v.guest.mem.read(ref.addr, ref.size) != op[2]:
            return 0
        v.exits += 1
        if v.kick_latched:
            v.kick_latched = False
            v.acct[T_HV] += self.vm_exit
            return self.vm_exit
        v.halts += 1
        if self.tracer is not None:
            self.tracer.instant(t, v, "pv_wait: halt", {"on": v.op[1].name})
        self._deschedule(v, t, HALTED)
        if self.spurious_hz > 0:
            self._push(self._exp(v.rng, self.spurious_hz), WAKE, v, v.gen)
        return None

    def _pv_kick(self, v: VCpu, cpu: int, t: int) -> None:
        guest = v.guest
        if not 0 <= cpu < len(guest.vcpus):
            raise SimulationError(f"{v} kicked cpu{cpu}, which does not exist")
        target = guest.vcpus[cpu]
        v.kicks += 1
        # the kernel's qstat bookkeeping around pv_kick(): the hypercall's latency, and the
        # kick time stamped on the target so its pv_wait() can measure the wake-up latency
        kick_start = t - self.kick_cost
        target.kick_time = kick_start
        self._lockevent_add(guest, "pv_latency_kick", self.kick_cost)
        if self.tracer is not None:
            self.tracer.instant(t, v, "pv_kick", {"target": f"cpu{cpu}"})
        if target.state == HALTED:
            if not target.waking:
                target.waking = True
                self._push(t - self.kick_cost + self.kick_wake, WAKE, target, target.gen)
        else:
            target.kick_latched = True

    def _lockevent_add(self, guest: Guest, name: str, cycles: int) -> None:
        """Add a latency, in nanoseconds as sched_clock() counts them, to a qstat counter."""
        guest.lock_events[name] = guest.lock_events.get(name, 0) + cycles * 1000 // self.costs.freq_mhz

    def _wake(self, v: VCpu, t: int) -> None:
        """A halted vCPU becomes runnable (kicked, spuriously, or by an interrupt)."""
        v.waking = False
        v.kick_latched = False
        v.acct[T_HALT] += t - v.since
        if self.tracer is not None:
            self.tracer.vcpu_state(t, v, "runnable")
        v.gen += 1
        v.state = RUNNABLE
        v.preempted = False
        v.since = t
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
        v.woken = True  # its pv_wait returns once it runs again
        pcpu.rq.append(v)
        if pcpu in self.idle:
            self.idle.remove(pcpu)
            self._dispatch(pcpu, t)
        else:
            self._check_wakeup_preempt(v, pcpu, t)

    def _rq_min_vruntime(self, pcpu: PCpu, t: int) -> int:
        """``update_min_vruntime()``: the least vruntime queued or running, never moving back."""
        values = [u.vruntime for u in pcpu.rq]
        if pcpu.vcpu is not None:
            values.append(_vruntime_now(pcpu.vcpu, t))
        if values:
            pcpu.min_vruntime = max(pcpu.min_vruntime, min(values))
        return pcpu.min_vruntime

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

    def _check_wakeup_preempt(self, v: VCpu, pcpu: PCpu, t: int) -> None:
        """``check_preempt_wakeup()``: the woken vCPU preempts one more than a granularity ahead."""
        cur = pcpu.vcpu
        if cur is not None and _vruntime_now(cur, t) - v.vruntime > self.wakeup_granularity:
            self._preempt(pcpu, t)

    # ================================================================ host scheduling
    def _slice(self, pcpu: PCpu) -> int:
        """``sched_slice()``: the latency shared among the tasks of this pCPU's queue."""
        return max(self.min_granularity, self.sched_latency // max(1, _nr_running(pcpu)))

    def _dispatch(self, pcpu: PCpu, t: int) -> None:
        """Run the leftmost vCPU of ``pcpu``'s queue; an empty queue first pulls (newidle balance)."""
        rq = pcpu.rq
        if not rq and not self._pull(pcpu, t):
            self.idle.append(pcpu)
            self.idle.sort(key=lambda p: p.id)
            return
        v = _leftmost(rq)
        rq.remove(v)
        self._place(pcpu, v, t)

    def _pull(self, pcpu: PCpu, t: int) -> bool:
        """``sched_balance_newidle()``: take a waiting vCPU from the busiest queue, own socket first."""
        busiest = None
        for p in self.pcpus:
            if p.rq and (busiest is None or (p.socket == pcpu.socket, len(p.rq)) > (
                    busiest.socket == pcpu.socket, len(busiest.rq))):
                busiest = p
        if busiest is None:
            return False
        self._steal(busiest, pcpu, t)
        return True

    def _balance_idle(self, t: int) -> None:
        """An idle pCPU while vCPUs wait elsewhere: it pulls one (nohz idle balancing)."""
        while self.idle and any(p.rq for p in self.pcpus):
            self._dispatch(self.idle.pop(0), t)

    def _balance(self, pcpu: PCpu, t: int) -> None:
        """Periodic ``load_balance()`` at the tick: pull a waiting vCPU from a queue two or more longer."""
        busiest = max(self.pcpus, key=lambda p: (_nr_running(p), p.socket == pcpu.socket, -p.id))
        if busiest.rq and _nr_running(busiest) >= _nr_running(pcpu) + 2:
            self._steal(busiest, pcpu, t)

    def _place(self, pcpu: PCpu, v: VCpu, t: int) -> None:
        """Put ``v`` on ``pcpu`` (which is not in the idle list) and carry on with its work."""
        start = t
        if pcpu.last_vcpu is not None and pcpu.last_vcpu is not v and not self.bare_metal:
            start += self.costs.context_switch
            v.acct[T_HOST] += self.costs.context_switch
            v.vruntime += self.costs.context_switch  # the switch-in runs on the incoming task's clock
        pcpu.vcpu = v
        pcpu.last_vcpu = v
        v.acct[T_PREEMPT] += t - v.since  # runnable, waiting for a pCPU
        if self.tracer is not None:
            self.tracer.pcpu(t, pcpu.id, v)
            self.tracer.vcpu_state(t, v, "running")
        v.state = RUNNING
        v.preempted = False
        v.ple_window = self.ple_window  # shrink_ple_window() with KVM's default shrink of 0
        v.pcpu = pcpu.id
        v.home = pcpu.id
        v.run_since = start
        v.since = t
        if v.cs_depth:
            v.cs_since = start
        pcpu.gen += 1
        if not self.bare_metal:
            self._push(t + self._slice(pcpu), SLICE, pcpu, pcpu.gen)
        self._resume_on_cpu(v, start)

    def _resume_on_cpu(self, v: VCpu, t: int) -> None:
        """Carry on with ``v``'s pending work after it was given a pCPU at ``t``."""
        v.gen += 1
        if v.irq_pending and v.gcpu.irqs_enabled:
            v.irq_pending = False
            if v.remaining is not None:  # the handler saves what is left of the preempted operation
                v.step_at = t + v.remaining
                v.remaining = None
            self._deliver_irq(v, t)
            return
        if v.spinning:
            v.spin_since = t
            if self.tracer is not None:
                self.tracer.spin(t, v, True)
            if v.spin_budget is not None:
                v.spin_deadline = t + v.spin_budget
                self._push(v.spin_deadline, TIMEOUT, v, v.gen)
            if self.ple:
                self._push(t + v.ple_window, PLE, v, v.gen)
            self._recheck(v, t)
        elif v.woken:  # the halt is over: pv_wait returns
            v.woken = False
            if v.kick_time is not None:  # woken by a kick: pv_latency_wake, pv_kick_wake
                self._lockevent_add(v.guest, "pv_latency_wake", t - v.kick_time)
                v.guest.lock_events["pv_kick_wake"] = v.guest.lock_events.get("pv_kick_wake", 0) + 1
            self._advance(v, None, t)
        elif v.remaining is not None:
            v.step_at = t + v.remaining
            v.remaining = None
            self._push(v.step_at, STEP, v, v.gen)
        else:
            self._issue(v, v.op, t)

    def _recheck(self, v: VCpu, t: int) -> None:
        done = self.cache.read(v.pcpu, v.guest.line_base | v.op[1].line, t)
        v.step_at = done
        self._push(done, STEP, v, v.gen)

    def _deschedule(self, v: VCpu, t: int, new_state: int) -> None:
        """Take ``v`` off its pCPU at ``t``, keeping whatever it was doing for later."""
        pcpu = self.pcpus[v.pcpu]
        # taken off before its switch-in completed (a yield storm can do that), it did nothing
        upto = max(t, v.run_since)
        ran = upto - v.run_since
        v.acct[T_RUN] += ran
        pcpu.busy += ran
        v.vruntime += ran
        if v.spinning:
            self._unwatch(v)
            v.acct[T_SPIN] += upto - v.spin_since
            if self.tracer is not None:
                self.tracer.spin(t, v, False)
            if v.spin_budget is not None:
                v.spin_budget = max(0, v.spin_deadline - upto)
        elif new_state == RUNNABLE and v.step_at > upto:
            v.remaining = v.step_at - upto
        if v.cs_depth:
            v.acct[T_CS] += upto - v.cs_since
            if new_state != DONE:
                v.guest.lock_holder_preemptions += 1
        v.gen += 1
        v.state = new_state
        v.preempted = new_state == RUNNABLE
        v.since = t
        v.pcpu = None
        pcpu.vcpu = None
        pcpu.gen += 1
        if self.tracer is not None:
            self.tracer.pcpu(t, pcpu.id, None)
            self.tracer.vcpu_state(t, v, STATE_NAMES[new_state])
        if new_state != RUNNABLE:  # halting or finishing: the exit, then the next vCPU
            v.acct[T_HOST] += self.vm_exit
            self._dispatch(pcpu, t + self.vm_exit)

    def _preempt(self, pcpu: PCpu, t: int) -> None:
        v = pcpu.vcpu
        v.exits += 1
        v.acct[T_HOST] += self.vm_exit
        self._deschedule(v, t, RUNNABLE)
        pcpu.rq.append(v)
        self._dispatch(pcpu, t + self.vm_exit)
        self._balance_idle(t)

    def _slice_end(self, pcpu: PCpu, t: int) -> None:
        self._balance(pcpu, t)
        if pcpu.rq:
            self._preempt(pcpu, t)
        else:
            pcpu.gen += 1
            self._push(t + self._slice(pcpu), SLICE, pcpu, pcpu.gen)

    def _finish(self, v: VCpu, t: int) -> None:
        self._deschedule(v, t, DONE)

    # ================================================================ interrupts
    def _irq(self, v: VCpu, t: int, deferred: bool) -> None:
        """An interrupt arrives at ``v`` (``deferred``: one held back while IRQs were off)."""
        guest = v.guest
        if not deferred and v.state != DONE:
            self._push(self._exp(v.rng, guest.irq_rate_hz), IRQ, v, 0)
        if v.state == DONE or v.gcpu.level >= guest.irq_level:
            return  # handlers do not nest at their own level: this one is dropped
        if v.state == RUNNING and v.gcpu.irqs_enabled:
            v.irq_pending = False
            self._deliver_irq(v, t)
        elif v.state == HALTED and v.gcpu.irqs_enabled:
            v.irq_pending = True  # safe_halt: the interrupt ends the halt
            self._wake(v, t)
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
        self.now = t
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
            v.spin_since = t
            if self.tracer is not None:
                self.tracer.spin(t, v, True)
            if budget is not None:
                v.spin_deadline = t + budget
                self._push(v.spin_deadline, TIMEOUT, v, v.gen)
            if self.ple:
                self._push(t + v.ple_window, PLE, v, v.gen)
            self._recheck(v, t)
        elif remaining is not None:
            v.step_at = t + remaining
            self._push(v.step_at, STEP, v, v.gen)
        else:
            self._issue(v, pending, t)

    # ================================================================ accounting
    def _close_accounts(self, t: int) -> None:
        """Fold open intervals into the accounts, so metrics read at ``t`` are complete."""
        for v in self.vcpus:
            if v.state == RUNNING:
                ran = max(0, t - v.run_since)
                v.acct[T_RUN] += ran
                v.vruntime += ran
                self.pcpus[v.pcpu].busy += ran
                v.run_since = t
                if v.spinning:
                    v.acct[T_SPIN] += t - v.spin_since
                    v.spin_since = t
                if v.cs_depth:
                    v.acct[T_CS] += max(0, t - v.cs_since)
                    v.cs_since = t
            elif v.state == HALTED:
                v.acct[T_HALT] += t - v.since
                v.since = t
            elif v.state == RUNNABLE:
                v.acct[T_PREEMPT] += t - v.since
                v.since = t
