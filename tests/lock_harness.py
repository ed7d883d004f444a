"""Shared helpers for the kernel-lock tests: workers, a scripted scheduler, an interrupting executor."""

from __future__ import annotations

import random

from pvspin.machine import ops as o
from pvspin.machine.cpu import NMI
from pvspin.machine.executor import Executor
from pvspin.machine.memory import Layout, Memory
from pvspin.machine.scheduler import RandomScheduler

COUNTER = Layout("counter", 8, [("value", 0, 8)])


def locker(impl, lock, lock_id, counter, iterations):
    """Take ``lock`` ``iterations`` times; inside, a non-atomic increment that a second owner would break."""
    for _ in range(iterations):
        yield from impl.spin_lock(lock)
        yield o.cs_enter(lock_id)
        value = yield o.READ_ONCE(counter.value)
        yield o.WRITE_ONCE(counter.value, value + 1)
        yield o.cs_exit(lock_id)
        yield from impl.spin_unlock(lock)


def run_stress(cls, ncpus, iterations, seed, config, spurious_wakeups=0, max_steps=200_000):
    """All CPUs hammer one lock; returns (outcome, counter value, final-state problems)."""
    mem = Memory()
    impl = cls(mem, ncpus, config)
    lock = impl.alloc_lock("lock0")
    counter = mem.alloc(COUNTER, "counter")
    programs = [locker(impl, lock, 0, counter, iterations) for _ in range(ncpus)]
    outcome = Executor(mem, programs, RandomScheduler(seed), spurious_wakeups=spurious_wakeups).run(max_steps)
    return outcome, mem.read(counter.value.addr, 8), impl.final_state_problems()


def lock_then_unlock(impl, mem, lock):
    """One CPU takes ``lock`` once and releases it; the run must end well."""

    def program():
        yield from impl.spin_lock(lock)
        yield from impl.spin_unlock(lock)

    outcome = Executor(mem, [program()], RandomScheduler(0)).run()
    assert outcome.verdict == "ok", outcome.detail


def trylock_twice_then_unlock(impl, mem, lock):
    """One CPU: ``spin_trylock`` twice, then ``spin_unlock``; returns the two trylock results."""
    results = []

    def program():
        results.append((yield from impl.spin_trylock(lock)))
        results.append((yield from impl.spin_trylock(lock)))
        yield from impl.spin_unlock(lock)

    outcome = Executor(mem, [program()], RandomScheduler(0)).run()
    assert outcome.verdict == "ok", outcome.detail
    return results


class InterruptingExecutor(Executor):
    """The SC executor plus interrupts: before a step, a CPU may take an interrupt at a higher level.

    A level-k handler takes lock k (so no CPU ever waits for a lock its own interrupted
    context holds).  The Executor has no interrupt support of its own; this drives
    :meth:`GuestCpu.interrupt` directly.
    """

    def __init__(self, mem, programs, scheduler, handler, seed, rate=0.05, budget=50, spurious_wakeups=0, trigger=None):
        super().__init__(mem, programs, scheduler, spurious_wakeups)
        self.handler = handler  # level -> guest generator
        self.rng = random.Random(seed)
        self.rate = rate
        self.budget = budget
        self.interrupts = 0
        # trigger(cpu) -> bool: interrupt exactly there instead of at random.
        self.trigger = trigger or (lambda cpu: self.rng.random() < self.rate)

    def step(self, cpu):
        if self.budget and not self.halted[cpu.id] and cpu.level < NMI and cpu.irqs_enabled and self.trigger(cpu):
            self.budget -= 1
            self.interrupts += 1
            level = self.rng.randint(cpu.level + 1, NMI)
            self._settle(cpu, cpu.interrupt(self.handler(level), level))
            return
        super().step(cpu)


def run_with_interrupts(cls, ncpus, iterations, seed, config, rate=0.05, spurious_wakeups=0):
    """Task level takes lock0; an interrupt at level k takes lock k once.  Returns (outcome, problems, counts)."""
    mem = Memory()
    impl = cls(mem, ncpus, config)
    locks = [impl.alloc_lock(f"lock{level}") for level in range(NMI + 1)]
    counters = [mem.alloc(COUNTER, f"counter{level}") for level in range(NMI + 1)]

    def handler(level):
        return locker(impl, locks[level], level, counters[level], 1)

    programs = [locker(impl, locks[0], 0, counters[0], iterations) for _ in range(ncpus)]
    ex = InterruptingExecutor(mem, programs, RandomScheduler(seed), handler, seed, rate, spurious_wakeups=spurious_wakeups)
    outcome = ex.run(200_000)
    handled = ex.interrupts
    counts = [mem.read(c.value.addr, 8) for c in counters]
    return outcome, impl.final_state_problems(), counts, handled


class ScriptScheduler:
    """Runs a script of phases ``(cpu, done)``: ``cpu`` steps until ``done(executor)`` holds.

    Before every step it records the lock word (as ``describe``) when it changed, so a test
    can compare the lock-word history with the kernel's documented transitions.
    """

    def __init__(self, phases, read_word, describe):
        self.phases = list(phases)
        self.read_word = read_word
        self.describe = describe
        self.executor = None
        self.history: list[str] = []
        self.started = False

    def record(self):
        word = self.describe(self.read_word())
        if not self.history or self.history[-1] != word:
            self.history.append(word)

    def new_execution(self):
        if self.started:
            return False
        self.started = True
        return True

    def next_cpu(self, runnable, current):
        self.record()
        while self.phases and self.phases[0][1](self.executor):
            self.phases.pop(0)
        if not self.phases:
            raise AssertionError(f"script exhausted with cpus {list(runnable)} still runnable")
        cpu = self.phases[0][0]
        if cpu not in runnable:
            raise AssertionError(f"script wants cpu{cpu}, runnable are {list(runnable)}; history {self.history}")
        return cpu

    def next_choice(self, n):
        return 0


def in_cs(cpu):
    return lambda ex: ex.holders.get(0) == cpu


def finished(cpu):
    return lambda ex: ex.cpus[cpu].finished


def waits_on(cpu, ref):
    """The CPU's pending operation is a spin on ``ref``."""
    return lambda ex: ex.cpus[cpu].op is not None and ex.cpus[cpu].op[0] == o.COND_LOAD and ex.cpus[cpu].op[1] is ref


def halted(cpu):
    return lambda ex: ex.halted[cpu]


def scripted_history(impl, mem, lock, phases, ncpus, describe):
    """Run one ``locker`` iteration per CPU under ``phases``; return the lock-word history and the outcome."""
    counter = mem.alloc(COUNTER, "counter")
    word = lock.layout.fields[0]  # the whole 32-bit word comes first in both lock layouts
    sched = ScriptScheduler(phases, lambda: mem.read(lock.addr + word.offset, word.size), describe)
    ex = Executor(mem, [locker(impl, lock, 0, counter, 1) for _ in range(ncpus)], sched)
    sched.executor = ex
    outcome = ex.run(10_000)
    sched.record()
    return sched.history, outcome
