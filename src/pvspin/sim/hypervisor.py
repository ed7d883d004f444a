"""The hypervisor: what KVM does for and to its vCPUs, between the guest and the host's scheduler.

* **VM exits.**  Leaving guest mode costs ``vm_exit`` cycles (a round trip; 0 on bare metal,
  where there is no guest mode to leave).  An exit handled in place (a kick hypercall, a PLE
  exit that yields to nobody, a HLT that finds a kick latched) is charged to the vCPU's run
  time (``T_HV``); one that ends with the vCPU off its pCPU to the host (``T_HOST``).
* **Pause-loop exiting and directed yield** (``handle_pause`` → ``kvm_vcpu_on_spin``): a vCPU
  PAUSE-looping past its window exits; KVM picks the next runnable sibling after the last one
  boosted (``kvm->last_boosted_vcpu``, round robin) and asks the host scheduler to
  ``yield_to()`` it.  Each exit widens the vCPU's window (``grow_ple_window``), and being
  scheduled in resets it (``shrink_ple_window`` with KVM's default shrink of 0).
* **Halt and kick** (``kvm_wait`` / ``kvm_kick_cpu``, ``KVM_HC_KICK_CPU``): ``pv_wait(ptr, val)``
  halts if ``*ptr == val``; ``pv_kick(cpu)`` wakes a halted vCPU at once, as
  ``kvm_vcpu_kick()`` → ``kvm_vcpu_wake_up()`` does: it is runnable (KVM's ``ready``) when the
  hypercall returns, and when it runs is the host scheduler's answer (an idle pCPU first leaves
  idle, which is most of the published kick-to-run time; a busy one runs it when CFS says).  A
  kick to a vCPU not halted yet latches (``pv_unhalted``) so that its next HLT returns at once:
  no kick is lost.  Spurious wake-ups (a host knob) end halts without a kick.
* **Halt polling** (``kvm_vcpu_halt``): a halting vCPU that is its pCPU's only task first
  busy-waits there for a wake-up, up to its own ``halt_poll_ns``; a kick or an interrupt in
  that time ends the halt without a block, a task queued on the pCPU or the time running out
  blocks it.  The poll time adapts per vCPU (``grow_halt_poll_ns`` / ``shrink_halt_poll_ns``).
* **Kick boost** (``kvm_sched_yield`` after ``kvm_pv_kick_cpu_op``, commit 266e85a5ec91): the
  kicker then asks the host scheduler to ``yield_to()`` the vCPU it kicked, if that one is
  ``ready`` (runnable, waiting for a pCPU) and the kicker's pCPU has anyone else to run.
* **Steal time**: ``vcpu_is_preempted(cpu)`` reads the ``preempted`` byte KVM sets when it
  schedules out a vCPU that is still runnable (``kvm_sched_out`` → ``kvm_steal_time_set_preempted``)
  and clears when it schedules it in.

For ``perf kvm stat``, every exit is timed by reason from the exit to the next VM entry: an
exit handled in place takes its cost; one that leaves the pCPU (a halt, a yield, a preemption)
lasts until the vCPU runs again.

It also keeps the kernel's qstat counters that need the host's clock (``pv_latency_kick``,
``pv_latency_wake``, ``pv_kick_wake``).
"""

from __future__ import annotations

from typing import Any

from ..machine.cpu import NMI
from .config import HostConfig
from .events import EventLoop, poisson_arrival
from .hostsched import HostScheduler
from .vcpu import (
    DONE,
    EXIT_EXTINT,
    EXIT_HLT,
    EXIT_PAUSE,
    EXIT_VMCALL,
    HALTED,
    KICK_LATCHED,
    KICK_POLLED,
    KICK_WOKE,
    NO_EXIT,
    RUNNABLE,
    RUNNING,
    T_HV,
    T_SPIN,
    Guest,
    SimulationError,
    VCpu,
)

HALT_POLL_NS_GROW = 2  # KVM's halt_poll_ns_grow: a short halt doubles the vCPU's poll time
HALT_POLL_NS_GROW_START = 10_000  # halt_poll_ns_grow_start: where it grows from 0
# halt_poll_ns_shrink is 0: a halt longer than the limit resets the poll time to 0


class Hypervisor:
    """KVM's halt/kick, PLE and directed yield, steal time; the host scheduler's preempt notifiers."""

    def __init__(self, loop: EventLoop, sched: HostScheduler, host: HostConfig, tracer=None):
        c = host.costs
        bare_metal = host.hypervisor == "baremetal"
        self.bare_metal = bare_metal
        self.loop = loop
        self.sched = sched
        self.tracer = tracer
        self.guest: Any = None  # the guest CPUs (pvspin.sim.guestcpu.GuestCpus), set when assembled
        self.freq_mhz = c.freq_mhz
        self.vm_exit = 0 if bare_metal else c.vm_exit
        self.ple = host.scheduling.ple and not bare_metal
        self.ple_window = host.scheduling.ple_window
        self.ple_window_grow = host.scheduling.ple_window_grow
        self.ple_window_max = host.scheduling.ple_window_max
        self.kick_cost = c.ns(c.kick_hypercall_ns)
        self.spurious_hz = host.spurious_wakeup_hz
        self.kick_boost = host.boosts_kicks
        self.halt_poll_max = c.ns(host.halt_poll_max_ns)
        self.halt_poll_start = c.ns(HALT_POLL_NS_GROW_START)
        self.on_wake = self._wake_event  # event callbacks: one bound method each
        self.on_ple = self._ple_event
        self.on_kick_boost = self._kick_boost_event
        self.on_poll_end = self._poll_end_event
        self.on_poll_wake = self._poll_wake_event
        sched.sched_in = self.sched_in
        sched.sched_out = self.sched_out
        sched.stop_poll = self.stop_poll

    # ------------------------------------------------------------- preempt notifiers
    def sched_in(self, v: VCpu, t: int) -> None:
        """``kvm_sched_in``: ``v`` is on a pCPU again, from ``t``; its guest code carries on."""
        v.preempted = False
        v.ple_window = self.ple_window  # shrink_ple_window() with KVM's default shrink of 0
        if self.tracer is not None:
            self.tracer.exit_end(t, v)
        if v.exit_reason != NO_EXIT:  # VM entry: the exit that took it off its pCPU is over
            self.exit_done(v.guest, v.exit_reason, t - v.exit_at)
            v.exit_reason = NO_EXIT
        if v.halt_start is not None:  # back from a halt
            self._adapt_halt_poll(v, t)
        self.guest.sched_in(v, t)

    def sched_out(self, v: VCpu, t: int, state: int) -> None:
        """``kvm_sched_out``: ``v`` leaves its pCPU at ``t`` into ``state``."""
        v.preempted = state == RUNNABLE  # only a vCPU that still wants to run counts as preempted
        if v.preempted:  # kvm_arch_vcpu_put(): the guest's CPL as it was preempted
            v.preempted_in_kernel = not self.guest.in_user_mode(v)
        if v.exit_reason == NO_EXIT and state != DONE and not self.bare_metal:  # a PLE exit says so first
            v.exit_reason = EXIT_HLT if state == HALTED else EXIT_EXTINT
            v.exit_at = t
            v.guest.exit_samples[v.exit_reason] += 1
            if self.tracer is not None:
                self.tracer.exit_begin(t, v, v.exit_reason)
        self.guest.sched_out(v, t, state)

    @staticmethod
    def exit_done(guest: Guest, reason: int, cycles: int) -> None:
        """One exit of ``reason`` is over after ``cycles`` out of guest mode (``kvm_exit`` to ``kvm_entry``)."""
        guest.exit_cycles[reason] += cycles
        if guest.exit_min[reason] < 0 or cycles < guest.exit_min[reason]:
            guest.exit_min[reason] = cycles
        if cycles > guest.exit_max[reason]:
            guest.exit_max[reason] = cycles

    def exit_in_place(self, v: VCpu, reason: int, cycles: int) -> None:
        """An exit handled without leaving the pCPU: counted and timed at once."""
        v.guest.exit_samples[reason] += 1
        self.exit_done(v.guest, reason, cycles)

    def vcpu_is_preempted(self, v: VCpu) -> bool:
        """``kvm_vcpu_is_preempted``: the steal-time ``preempted`` byte of ``v``."""
        return v.state == RUNNABLE and v.preempted

    # ------------------------------------------------------------- halt and kick
    def pv_wait(self, v: VCpu, op: tuple, t: int) -> int | None:
        """``kvm_wait``: halt if ``*ptr == val``.

        Returns None when ``v`` halted (it left its pCPU), else the cycles the call took
        beyond its read: 0 when the value already differs, a VM exit for a HLT that finds
        a latched kick (KVM's ``pv_unhalted``) and returns at once.
        """
        v.kick_time = None  # pv_wait() entry clears this CPU's kick time stamp
        if v.gcpu.level == NMI:
            return 0  # pv_wait is a no-op in NMI context
        ref = op[1]
        if v.guest.mem.read(ref.addr, ref.size) != op[2]:
            return 0
        v.exits += 1
        if v.kick_latched:
            v.kick_latched = False
            v.acct[T_HV] += self.vm_exit
            self.exit_in_place(v, EXIT_HLT, self.vm_exit)
            if self.tracer is not None:
                self.tracer.exit_in_place(t, t + self.vm_exit, v, EXIT_HLT, {"kick": "latched"})
            return self.vm_exit
        v.halts += 1
        if self.tracer is not None:
            self.tracer.halt(t, v)
        v.halt_start = t
        if v.halt_poll and not self.sched.pcpus[v.pcpu].rq:  # kvm_vcpu_halt() polls while single_task_running()
            v.polling = True
            v.guest.halt_attempted_poll += 1
            v.exit_reason = EXIT_HLT
            v.exit_at = t
            v.guest.exit_samples[EXIT_HLT] += 1
            if self.tracer is not None:
                self.tracer.exit_begin(t, v, EXIT_HLT)
            self.loop.at(t + v.halt_poll, self.on_poll_end, v, v.gen)
        else:
            self._block(v, t)
        return None

    def _block(self, v: VCpu, t: int) -> None:
        """``kvm_vcpu_block()``: ``v`` leaves its pCPU, halted, until a wake-up."""
        self.sched.dequeue(v, t, HALTED)
        if self.spurious_hz > 0:
            self.loop.at(poisson_arrival(self.loop.now, v.rng, self.spurious_hz, self.freq_mhz), self.on_wake, v, v.gen)

    # ------------------------------------------------------------- halt polling
    def _poll_end_event(self, v: VCpu, gen: int, t: int) -> None:
        if gen == v.gen and v.polling:  # the poll time ran out with no wake-up
            self.stop_poll(v, t)

    def stop_poll(self, v: VCpu, t: int) -> None:
        """``v``'s poll ends without a wake-up: its time ran out, or the host scheduler queued
        another task on its pCPU (``kvm_vcpu_can_poll``: ``single_task_running()``); it blocks."""
        v.polling = False
        v.acct[T_HV] += t - v.halt_start  # its pCPU spent the poll in KVM, on v's run time
        self._block(v, t)

    def poll_wake(self, v: VCpu, t: int) -> None:
        """A kick or an interrupt reaches ``v`` while it polls: ``kvm_vcpu_check_block()`` sees it,
        and the halt ends without a block; the guest runs again after the VM entry."""
        v.polling = False
        v.woken = True
        v.guest.halt_successful_poll += 1
        v.acct[T_HV] += t + self.vm_exit - v.halt_start
        v.gen += 1  # the poll's timeout goes stale
        self.loop.at(t + self.vm_exit, self.on_poll_wake, v, v.gen)

    def _poll_wake_event(self, v: VCpu, gen: int, t: int) -> None:
        if gen != v.gen:  # preempted on the way back in: its next sched_in ends the halt
            return
        self.exit_done(v.guest, EXIT_HLT, t - v.exit_at)
        v.exit_reason = NO_EXIT
        if self.tracer is not None:
            self.tracer.exit_end(t, v)
        self._adapt_halt_poll(v, t)
        self.guest.sched_in(v, t)

    def _adapt_halt_poll(self, v: VCpu, t: int) -> None:
        """After a halt of ``v`` (from its HLT to running again): KVM's update of ``vcpu->halt_poll_ns``."""
        halted = t - v.halt_start
        v.halt_start = None
        limit = self.halt_poll_max
        if limit == 0:
            v.halt_poll = 0
        elif halted <= v.halt_poll:  # the poll was long enough
            pass
        elif v.halt_poll and halted > limit:  # a long halt: shrink_halt_poll_ns(), to 0
            v.halt_poll = 0
        elif v.halt_poll < limit and halted < limit:  # a short halt the poll missed: grow_halt_poll_ns()
            v.halt_poll = min(max(v.halt_poll * HALT_POLL_NS_GROW, self.halt_poll_start), limit)

    def pv_kick(self, v: VCpu, cpu: int, t: int) -> None:
        """``kvm_kick_cpu``: wake ``cpu`` of ``v``'s guest, or latch the kick if it is not halted."""
        guest = v.guest
        if not 0 <= cpu < len(guest.vcpus):
            raise SimulationError(f"{v} kicked cpu{cpu}, which does not exist")
        target = guest.vcpus[cpu]
        v.kicks += 1
        # the kernel's qstat bookkeeping around pv_kick(): the hypercall's latency, and the
        # kick time stamped on the target so its pv_wait() can measure the wake-up latency
        kick_start = t - self.kick_cost
        target.kick_time = kick_start
        self.lockevent_add(guest, "pv_latency_kick", self.kick_cost)
        if target.state == HALTED:
            kicked = KICK_WOKE
            if not target.waking:
                # kvm_vcpu_wake_up() inside the hypercall, as an event of this cycle so that the host
                # scheduler acts once the kick's operation is over (the wake-up may preempt the kicker)
                target.waking = True
                self.loop.at(t, self.on_wake, target, target.gen)
        elif target.polling:
            kicked = KICK_POLLED
            self.poll_wake(target, t)
        else:
            kicked = KICK_LATCHED
            target.kick_latched = True
        if self.kick_boost:
            # kvm_sched_yield() comes after the wake-up, once the kick's operation is over, so that the
            # guest code stands at its next operation, which a switch-out keeps in flight as any
            # preemption does; the kick is traced once the yield is decided
            self.loop.at(t, self.on_kick_boost, v, (target, kicked))
            return
        if self.tracer is not None:
            self.tracer.kick(kick_start, t, v, target, kicked)
        self.exit_in_place(v, EXIT_VMCALL, self.kick_cost)

    def _kick_boost_event(self, v: VCpu, what: tuple[VCpu, int], t: int) -> None:
        """``kvm_sched_yield(v, target)`` at the end of ``v``'s kick hypercall (``what``: the
        target, and what the kick did to it; a wake-up came first, in this same cycle).

        Modelled on Linux 5.14+ (the host the rest models is 6.x): ``single_task_running()`` -- a
        kicker alone on its pCPU gives nothing up, and nobody is boosted -- then
        ``target->ready``, which KVM sets when it schedules a runnable vCPU out or wakes a halted
        one and clears at sched-in: here ``RUNNABLE``.  A kicker never yields to itself: it is
        running, not ready (KVM's explicit self check, 5.13).  Then ``kvm_vcpu_yield_to(target)``:
        if the host scheduler takes ``v`` off its pCPU for it, the VMCALL exit lasts until ``v``
        runs again (``yield_to()`` calls ``schedule()`` from the hypercall's handler); else it is
        the kick's own cost, in place.
        """
        target, kicked = what
        guest = v.guest
        guest.directed_yield_attempted += 1  # KVM's stat counts before any check
        kick_start = t - self.kick_cost
        yielded = False
        # v not running: the wake-up of this same cycle preempted it
        if v.state == RUNNING and self.sched.pcpus[v.pcpu].rq and target.state == RUNNABLE:
            v.exit_reason = EXIT_VMCALL  # before yield_to(): the switch-out must not call it a preemption
            v.exit_at = kick_start
            yielded = self.sched.yield_to(v, target, t)
        if yielded:
            guest.exit_samples[EXIT_VMCALL] += 1
            guest.kick_yields += 1
        else:
            v.exit_reason = NO_EXIT
            self.exit_in_place(v, EXIT_VMCALL, self.kick_cost)
        if self.tracer is not None:
            self.tracer.kick(kick_start, t, v, target, kicked, yielded)

    def pv_wait_returns(self, v: VCpu, t: int) -> None:
        """A halted ``v`` runs again at ``t``: if a kick woke it, the kernel's pv_wait() counts the latency."""
        if v.kick_time is not None:  # woken by a kick: pv_latency_wake, pv_kick_wake
            self.lockevent_add(v.guest, "pv_latency_wake", t - v.kick_time)
            v.guest.lock_events["pv_kick_wake"] = v.guest.lock_events.get("pv_kick_wake", 0) + 1

    def lockevent_add(self, guest: Guest, name: str, cycles: int) -> None:
        """Add a latency, in nanoseconds as sched_clock() counts them, to a qstat counter."""
        guest.lock_events[name] = guest.lock_events.get(name, 0) + cycles * 1000 // self.freq_mhz

    def _wake_event(self, v: VCpu, gen: int, t: int) -> None:
        if gen == v.gen and v.state == HALTED:
            self.wake(v, t)

    def wake(self, v: VCpu, t: int) -> None:
        """A halted vCPU becomes runnable (kicked, spuriously, or by an interrupt): ``kvm_vcpu_kick``."""
        v.waking = False
        v.kick_latched = False
        v.preempted = False
        v.woken = True  # its pv_wait returns once it runs again
        self.sched.enqueue(v, t)

    # ------------------------------------------------------------- pause-loop exiting
    def arm_ple(self, v: VCpu, t: int) -> None:
        """``v`` starts PAUSE-looping at ``t``: it exits when its window runs out (if still spinning)."""
        self.loop.at(t + v.ple_window, self.on_ple, v, v.gen)

    def _ple_event(self, v: VCpu, gen: int, t: int) -> None:
        if gen == v.gen and v.spinning and v.state == RUNNING:
            self.ple_exit(v, t)

    def ple_exit(self, v: VCpu, t: int) -> None:
        """Pause-loop exit: the spinner traps and KVM tries a directed yield (``kvm_vcpu_on_spin``).

        The candidate is the next runnable sibling after the last one boosted, round robin
        (KVM's ``last_boosted_vcpu``); a halted sibling is skipped, and so is one preempted in
        guest user mode (``yield_to_kernel_mode``: VMX's ``handle_pause`` passes true, a spinner
        on a lock is in the kernel, and a vCPU preempted in user mode holds no kernel lock) unless
        an interrupt waits for it (``kvm_arch_dy_has_pending_interrupt``, with APICv: it may be
        the IPI the spinner waits on).  Modelled on Linux 6.x's ``kvm_vcpu_on_spin``; not
        modelled: ``kvm_vcpu_eligible_for_directed_yield``'s alternation for a candidate that is
        itself in a PLE exit's yield (``dy_eligible``), and trying the next candidate when
        ``yield_to()`` fails.  Whether anybody runs instead of the spinner is the host
        scheduler's answer to ``yield_to()``.
        """
        v.exits += 1
        v.ple_exits += 1
        # grow_ple_window(): every exit widens this vCPU's window, so a spinner that has
        # nobody to yield to soon stops exiting; shrink_ple_window() resets it at sched-in
        v.ple_window = min(v.ple_window * self.ple_window_grow, self.ple_window_max)
        guest = v.guest
        siblings = guest.vcpus
        n = len(siblings)
        target = None
        for k in range(1, n + 1):
            u = siblings[(guest.last_boosted + k) % n]
            if u.state == RUNNABLE and (u.preempted_in_kernel or not u.preempted or u.irq_pending):
                target = u
                break
        if target is not None:
            guest.last_boosted = target.cpu
        v.exit_reason = EXIT_PAUSE
        v.exit_at = t
        guest.exit_samples[EXIT_PAUSE] += 1
        tracer = self.tracer
        if tracer is not None:
            tracer.exit_begin(t, v, EXIT_PAUSE, {"yield_to": "-" if target is None else f"{target}"})
        if self.sched.yield_to(v, target, t):
            return
        v.exit_reason = NO_EXIT
        self.exit_done(guest, EXIT_PAUSE, self.vm_exit)
        if tracer is not None:
            tracer.exit_in_place(t, t + self.vm_exit, v, EXIT_PAUSE, {"yield_to": "-" if target is None else f"{target}"})
        # back to spinning after the exit: that time was not spent spinning
        v.acct[T_HV] += self.vm_exit
        v.acct[T_SPIN] -= self.vm_exit
        self.loop.at(t + self.vm_exit + v.ple_window, self.on_ple, v, v.gen)
