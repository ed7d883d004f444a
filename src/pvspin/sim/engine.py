"""The timed simulator: guest code on vCPUs, vCPUs on physical CPUs, time in integer cycles.

The host is assembled from its parts, each in a module of its own:

* :mod:`~pvspin.sim.events` — the event core: the clock, a heap of events, the run loop;
* :mod:`~pvspin.sim.guestcpu` — the guest CPUs: operations in time, spin waits, interrupts;
* :mod:`~pvspin.sim.cache` — what each memory access costs (cache coherence);
* :mod:`~pvspin.sim.hypervisor` — KVM: VM exits, PLE and directed yield, halt/kick, steal time;
* :mod:`~pvspin.sim.hostsched` — the host's scheduler interface, with its policies
  :mod:`~pvspin.sim.cfs` (a KVM host) and :mod:`~pvspin.sim.pinned` (bare metal);
* :mod:`~pvspin.sim.vcpu` — the vCPU and guest records they share, and the time accounts
  that :mod:`~pvspin.sim.metrics` reads.

Policy knobs are in :mod:`pvspin.sim.config`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from ..machine import ops as o
from ..machine import watchdog
from ..machine.cpu import GuestCode
from ..machine.crash import guest_crash, operation_problem
from ..machine.memory import Memory
from ..machine.scheduler import RandomScheduler, Scheduler
from .cache import CacheModel
from .cfs import CfsScheduler
from .config import HostConfig
from .events import EventLoop
from .guestcpu import IRQ_LEVELS, GuestCpus
from .hostsched import PCpu
from .hypervisor import Hypervisor
from .pinned import PinnedScheduler
from .vcpu import DONE, Guest, SimulationError, VCpu, close_accounts


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
        self.tracer = tracer  # timeline hooks (pvspin.sim.trace.Tracer), None when not tracing
        self.loop = EventLoop()
        watchdog.watch(lambda: self.loop.events)  # guest code that stops yielding stops the events
        sockets = min(host.sockets, host.pcpus)
        socket_of = [p * sockets // host.pcpus for p in range(host.pcpus)]
        self.cache = CacheModel(self.costs, self.rng, socket_of)
        self.pcpus = [PCpu(i, socket_of[i]) for i in range(host.pcpus)]
        self.guests: list[Guest] = []
        self.vcpus: list[VCpu] = []
        self.bare_metal = host.hypervisor == "baremetal"
        if self.bare_metal:
            self.sched = PinnedScheduler(self.loop, self.pcpus, tracer=tracer)
        else:
            self.sched = CfsScheduler(self.loop, self.pcpus, host.scheduling, self.costs, self.costs.vm_exit, tracer)
        self.hv = Hypervisor(self.loop, self.sched, host, tracer)
        self.guest_cpus = GuestCpus(self.loop, self.cache, self.hv, self.sched, self.scheduler, self.costs,
                                    recorder, tracer)  # fmt: skip
        self.started = False

    @property
    def now(self) -> int:
        """The simulated cycle."""
        return self.loop.now

    @property
    def events(self) -> int:
        """Engine events fired so far."""
        return self.loop.events

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
            try:
                self.guest_cpus.boot(v, program)
            except (Exception, SystemExit) as exc:
                raise self._crashed(exc) from None
        if self.bare_metal and len(self.vcpus) > len(self.pcpus):
            raise ValueError(f"bare metal runs one CPU per pCPU: {len(self.vcpus)} CPUs on {len(self.pcpus)} pCPUs")
        self.guests.append(guest)
        return guest

    def _start(self) -> None:
        self.started = True
        runnable = []
        for v in self.vcpus:
            if v.op is None:  # its program ended before its first shared operation
                if v.gcpu.contexts:  # no: it yielded None, which is no operation
                    raise ValueError("yielded None")  # named by _crashed()
                v.state = DONE
                continue
            runnable.append(v)
            self.guest_cpus.arm_interrupts(v)
        self.sched.start(runnable)

    def _crashed(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc``, caught around guest steps: the guest's crash, or ``exc`` itself.

        The engine keeps no "current vCPU" (that would cost on every event): the culprit is the
        vCPU whose code the traceback passes through, or whose pending operation is malformed.
        """
        codes = set()
        tb = exc.__traceback__
        while tb is not None:
            codes.add(tb.tb_frame.f_code)
            tb = tb.tb_next
        culprit = None
        for v in self.vcpus:
            contexts = v.gcpu.contexts
            ctx = contexts[-1] if contexts else None
            # a generator that raised is closed; one that yielded a malformed operation holds it;
            # a wait condition that raised is in the traceback
            if ctx is not None and (getattr(ctx.gen, "gi_frame", 0) is None or operation_problem(ctx.op)
                                    or any(getattr(x, "__code__", None) in codes for x in ctx.op)):
                culprit = v, ctx
                break
        crash = guest_crash(exc, culprit[1].op, culprit[1].gen) if culprit else guest_crash(exc)
        if crash is None:
            return exc
        who = f"{culprit[0]}: " if culprit else ""
        return SimulationError(f"{who}{crash} at cycle {self.loop.now}", culprit[0].guest.name if culprit else None)

    def run(self, cycles: int) -> None:
        """Advance simulated time by ``cycles`` (or until every program has finished)."""
        if cycles < 0:
            raise ValueError(f"cannot run for a negative time ({cycles} cycles)")
        try:
            if not self.started:
                self._start()
            self.loop.run(self.loop.now + cycles)
        except o.GuestBug as bug:
            raise SimulationError(f"guest BUG at cycle {self.loop.now}: {bug}") from None
        except (Exception, SystemExit) as exc:
            raise self._crashed(exc) from None
        close_accounts(self.vcpus, self.pcpus, self.loop.now)
