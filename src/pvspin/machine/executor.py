"""Untimed execution of guest code under sequential consistency, one operation per step.

The simplest driver of the operation vocabulary: no costs, no hypervisor time, the
interleaving chosen entirely by a :class:`~pvspin.machine.scheduler.Scheduler`.  It is the
reference semantics the timed simulator must agree with, a quick way to exercise a lock
under random interleavings, and the base the model checker's explorer builds on.

Blocking follows the design: a CPU in ``smp_cond_load_*`` whose condition is false is
not runnable (unless the wait is bounded: then stepping it *is* the timeout); a CPU in
``pv_wait`` is halted until kicked, and a kick sent earlier is latched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import ops as o
from .cpu import GuestCode, GuestCpu
from .memory import MASKS, Memory
from .scheduler import Scheduler


@dataclass
class Outcome:
    steps: int = 0
    finished: bool = False
    verdict: str = "ok"  # ok | mutex | deadlock | bug | step-limit
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    lock_events: dict[str, int] = field(default_factory=dict)


class Executor:
    """Runs one program per CPU to completion (or to a violation) under SC."""

    def __init__(self, memory: Memory, programs: Iterable[GuestCode], scheduler: Scheduler, spurious_wakeups: int = 0):
        self.mem = memory
        self.scheduler = scheduler
        self.programs = list(programs)
        self.cpus = [GuestCpu(i) for i in range(len(self.programs))]
        self.halted = [False] * len(self.cpus)
        self.kick_latched = [False] * len(self.cpus)
        self.spurious_budget = spurious_wakeups
        self.holders: dict[int, int] = {}
        self.outcome = Outcome()

    # ----------------------------------------------------------------- scheduling
    def runnable(self) -> list[int]:
        out = []
        read = self.mem.read
        for cpu in self.cpus:
            op = cpu.op
            if op is None:
                continue
            if self.halted[cpu.id]:
                if self.spurious_budget > 0:
                    out.append(cpu.id)
                continue
            if op[0] == o.COND_LOAD and op[4] is None:
                ref = op[1]
                if not op[2](read(ref.addr, ref.size)):
                    continue
            out.append(cpu.id)
        return out

    def run(self, max_steps: int = 1_000_000) -> Outcome:
        out = self.outcome
        for cpu, gen in zip(self.cpus, self.programs, strict=False):
            self._settle(cpu, cpu.start(gen))
        current = None
        try:
            while out.verdict == "ok":
                if all(c.finished for c in self.cpus):
                    out.finished = True
                    break
                runnable = self.runnable()
                if not runnable:
                    out.verdict = "deadlock"
                    out.detail = self._blocked_report()
                    break
                if out.steps >= max_steps:
                    out.verdict = "step-limit"
                    break
                cpu_id = self.scheduler.next_cpu(runnable, current)
                if cpu_id is None:
                    break
                current = cpu_id
                self.step(self.cpus[cpu_id])
        except o.GuestBug as bug:
            out.verdict = "bug"
            out.detail = str(bug)
        return out

    def _blocked_report(self) -> str:
        parts = []
        for cpu in self.cpus:
            if cpu.finished:
                continue
            if self.halted[cpu.id]:
                parts.append(f"cpu{cpu.id} halted in {o.describe(cpu.op)} with no kick pending")
            else:
                parts.append(f"cpu{cpu.id} waits forever in {o.describe(cpu.op)}")
        return "; ".join(parts)

    # ----------------------------------------------------------------- semantics
    def step(self, cpu: GuestCpu) -> None:
        """Perform ``cpu``'s pending operation and advance it to its next shared operation."""
        self.outcome.steps += 1
        if self.halted[cpu.id]:  # chosen while halted: a spurious wake-up
            self.spurious_budget -= 1
            self.halted[cpu.id] = False
            self._settle(cpu, cpu.resume(None))
            return
        result = self.perform(cpu, cpu.op)
        if self.halted[cpu.id]:
            return
        self._settle(cpu, cpu.resume(result))

    def perform(self, cpu: GuestCpu, op: tuple):
        mem = self.mem
        code = op[0]
        if code == o.LOAD:
            return mem.read(op[1].addr, op[1].size)
        if code == o.STORE:
            mem.write(op[1].addr, op[1].size, op[2])
            return None
        if code in o.RMW_OPS:
            ref = op[1]
            old = mem.read(ref.addr, ref.size)
            new, result = o.rmw_result(code, old, op, MASKS[ref.size])
            if new is not None:
                mem.write(ref.addr, ref.size, new)
            return result
        if code == o.COND_LOAD:
            return mem.read(op[1].addr, op[1].size)
        if code == o.PV_WAIT:
            if self.kick_latched[cpu.id]:
                self.kick_latched[cpu.id] = False
                return None
            if mem.read(op[1].addr, op[1].size) == op[2]:
                self.halted[cpu.id] = True
            return None
        if code == o.PV_KICK:
            target = op[1]
            if self.halted[target]:
                self.halted[target] = False
                self._settle(self.cpus[target], self.cpus[target].resume(None))
            else:
                self.kick_latched[target] = True
            return None
        if code == o.VCPU_IS_PREEMPTED:
            return bool(self.scheduler.next_choice(2))
        # FENCE, CPU_RELAX, WORK: no effect under SC without time
        return None

    def _settle(self, cpu: GuestCpu, op: tuple | None) -> None:
        """Answer local operations at once, so that only shared operations are steps."""
        while op is not None and op[0] in o.LOCAL_OPS:
            op = cpu.resume(self._local(cpu, op))

    def _local(self, cpu: GuestCpu, op: tuple):
        code = op[0]
        if code == o.SMP_PROCESSOR_ID:
            return cpu.id
        if code == o.IN_NMI:
            return cpu.level == 3
        if code == o.IRQS:
            previous = cpu.irqs_enabled
            cpu.irqs_enabled = op[1]
            return previous
        if code == o.LOCKEVENT:
            if op[2]:
                events = self.outcome.lock_events
                events[op[1]] = events.get(op[1], 0) + op[2]
            return None
        if code == o.CS:
            lock_id = op[1]
            if op[2] > 0:
                holder = self.holders.get(lock_id)
                if holder is not None:
                    self.outcome.verdict = "mutex"
                    self.outcome.detail = (
                        f"cpu{cpu.id} entered the critical section of lock {lock_id} held by cpu{holder}"
                    )
                self.holders[lock_id] = cpu.id
            else:
                self.holders.pop(lock_id, None)
            return None
        if code == o.WARNING:
            self.outcome.warnings.append(f"cpu{cpu.id}: {op[1]}")
            return None
        if code == o.LOCAL_CLOCK:
            return self.outcome.steps
        raise AssertionError(code)
