"""The records the simulated host's parts share: a vCPU, a guest, and where a vCPU's time went.

A vCPU is three things at once, as in Linux: a host task (``task_struct``: state, run queue,
vruntime), a KVM vCPU (``struct kvm_vcpu``: exits, the PLE window, the kick latch, the
steal-time ``preempted`` flag) and a guest CPU (the code it runs and the operation in flight).
One record holds all three, its fields grouped by the part that owns them
(:mod:`~pvspin.sim.hostsched`, :mod:`~pvspin.sim.hypervisor`, :mod:`~pvspin.sim.guestcpu`);
the others only read them.
"""

from __future__ import annotations

from typing import Any

from ..machine.cpu import GuestCpu
from ..machine.memory import Memory

# vCPU states (the host task's)
RUNNING, RUNNABLE, HALTED, DONE = range(4)
STATE_NAMES = ("running", "runnable", "halted", "done")

# time accounting slots, per vCPU
# T_RUN: on a pCPU (guest code, and the exits it takes in place: kicks, PLE, latched HLT);
# T_SPIN, T_CS: parts of T_RUN spent spinning / holding a lock; T_HV: the in-place exits;
# T_HOST: host work done for this vCPU off its run intervals (context switches, halt and
# preemption exits); T_HALT: halted; T_PREEMPT: runnable, waiting for a pCPU.
T_RUN, T_SPIN, T_CS, T_HV, T_HOST, T_HALT, T_PREEMPT = range(7)
ACCOUNT_NAMES = ("running", "spinning", "critical_section", "exits_in_place", "host", "halted", "runnable")

# VM exit reasons, by VMX's names as `perf kvm stat` prints them.  EXTERNAL_INTERRUPT: the host's
# timer or IPI preempting a vCPU; VMCALL: the kick hypercall.
EXIT_EXTINT, EXIT_HLT, EXIT_PAUSE, EXIT_VMCALL = range(4)
EXIT_REASONS = ("EXTERNAL_INTERRUPT", "HLT", "PAUSE_INSTRUCTION", "VMCALL")
NO_EXIT = -1
# what a kick did to its target: woke it from its halt, ended its halt poll, or latched for its next HLT
KICK_WOKE, KICK_POLLED, KICK_LATCHED = range(3)


class SimulationError(Exception):
    """The simulated system did something the model forbids (a guest BUG(), a bad kick, a crash).

    ``guest``: the name of the guest at fault, when one is.
    """

    def __init__(self, message: str, guest: str | None = None):
        super().__init__(message)
        self.guest = guest


class VCpu:
    """A virtual CPU: host task, KVM vCPU and guest CPU in one record."""

    __slots__ = (
        "id", "guest", "cpu", "gen", "acct", "rng",
        # host scheduler
        "state", "pcpu", "home", "vruntime", "run_since", "since", "acct_since",
        # hypervisor
        "kick_latched", "waking", "woken", "preempted", "preempted_in_kernel", "ple_window", "ple_exits", "kick_time", "exits", "kicks",
        "halts", "exit_reason", "exit_at", "polling", "halt_poll", "halt_start",
        # guest CPU
        "gcpu", "op", "step_at", "remaining", "spinning", "spin_deadline", "spin_budget", "spin_since", "cs_depth",
        "cs_since", "saved", "irq_pending", "ops", "cs_entries",
    )  # fmt: skip

    def __init__(self, vid: int, guest: Guest, cpu: int):
        self.id = vid
        self.guest = guest
        self.cpu = cpu  # the guest's own CPU number (smp_processor_id)
        self.gen = 0  # bumped whenever the vCPU's plans change: its pending events go stale
        self.acct = [0] * 7
        self.rng: Any = None  # random.Random, given when the guest is added
        # host scheduler
        self.state = RUNNABLE
        self.pcpu: Any = None  # the pCPU running it, or None
        self.home: Any = None  # the pCPU whose run queue holds it (the host thread's CPU)
        self.vruntime = 0
        self.run_since = 0
        self.since = 0  # when it entered its state (the scheduler reads it: who waited longest)
        self.acct_since = 0  # halted or runnable: the start of what the accounts do not hold yet
        # hypervisor
        self.kick_latched = False
        self.waking = False
        self.woken = False
        self.preempted = False
        self.preempted_in_kernel = False  # vcpu->arch.preempted_in_kernel: meaningful while preempted
        self.ple_window = 0
        self.ple_exits = 0
        self.kick_time: Any = None
        self.exits = 0
        self.kicks = 0
        self.halts = 0
        self.exit_reason = NO_EXIT  # the exit it is out of guest mode for, until it runs again
        self.exit_at = 0
        self.polling = False  # halt-polling: halted in the guest, still on its pCPU in KVM's poll loop
        self.halt_poll = 0  # vcpu->halt_poll_ns, in cycles: how long its next halt polls
        self.halt_start: Any = None  # when its current halt began (None: not halted)
        # guest CPU
        self.gcpu = GuestCpu(cpu)
        self.op: Any = None  # the pending operation (a tuple), None when the program ended
        self.step_at = 0
        self.remaining: Any = None  # cycles left of an operation interrupted mid-flight
        self.spinning = False
        self.spin_deadline: Any = None
        self.spin_budget: Any = None
        self.spin_since = 0
        self.cs_depth = 0
        self.cs_since = 0
        self.saved: list[tuple] = []
        self.irq_pending = False
        self.ops = 0
        self.cs_entries = 0

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
        self.waiter_preemptions = 0  # preempted while spinning in a lock's wait
        self.directed_yield_attempted = 0  # KVM's stat: kvm_sched_yield() calls (a kick with the boost on)
        self.kick_yields = 0  # kicks whose boost took the kicker off its pCPU for another vCPU
        self.halt_attempted_poll = 0  # KVM's stats: halts that polled, and those a wake-up ended while polling
        self.halt_successful_poll = 0
        # per exit reason: samples, cycles out of guest mode, the shortest and the longest exit
        self.exit_samples = [0] * len(EXIT_REASONS)
        self.exit_cycles = [0] * len(EXIT_REASONS)
        self.exit_min = [-1] * len(EXIT_REASONS)  # -1: none yet
        self.exit_max = [0] * len(EXIT_REASONS)
        self.line_base = index << 40
        self.last_boosted = -1  # kvm->last_boosted_vcpu: where the next directed yield search starts


def close_accounts(vcpus: list[VCpu], pcpus: list, t: int) -> None:
    """Fold open intervals into the accounts, so metrics read at ``t`` are complete."""
    for v in vcpus:
        if v.state == RUNNING:
            if t <= v.run_since:  # still in the host's switch-in: its run starts later
                continue
            ran = t - v.run_since
            v.acct[T_RUN] += ran
            v.vruntime += ran
            pcpus[v.pcpu].busy += ran
            v.run_since = t
            if v.spinning:
                v.acct[T_SPIN] += t - v.spin_since
                v.spin_since = t
            if v.cs_depth:
                v.acct[T_CS] += max(0, t - v.cs_since)
                v.cs_since = t
        elif v.state == HALTED:  # v.since stays: it is a clock the scheduler reads, not an account
            v.acct[T_HALT] += t - v.acct_since
            v.acct_since = t
        elif v.state == RUNNABLE:
            v.acct[T_PREEMPT] += t - v.acct_since
            v.acct_since = t
