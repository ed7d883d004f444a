"""Workloads in the style of locktorture: writer threads hammering a set of spinlocks.

Each vCPU runs one writer (``lock_torture_writer``): pick one of the ``locks``, take it,
touch the critical section's shared cache lines, hold it for a drawn time (now and then
a long hold, as locktorture's ``longdelay`` does to force contention), release it, wait
a drawn delay (a share of it in user mode, if ``user_fraction`` says so), repeat.  Interrupt handlers, if enabled, take a lock of their own one
nesting level up, which is what exercises qspinlock's per-CPU MCS nodes 1..3.

The writer is guest code like the lock it drives; its bookkeeping (acquisition counts and
latencies) is plain Python on the side, the way locktorture keeps its statistics in
per-thread structures the lock never sees.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from ..kernel.api import Spinlock
from ..machine import ops as o
from ..machine.memory import CACHE_LINE, Layout, Memory
from .histogram import Histogram
from .model import Model


class Distribution(Model):
    """A duration in nanoseconds: ``fixed`` at ``mean_ns``, or ``uniform`` / ``exponential`` around it."""

    kind: Literal["fixed", "uniform", "exponential"] = "exponential"
    mean_ns: float = Field(400.0, ge=0)

    def sampler(self, rng: random.Random, freq_mhz: int):
        mean = self.mean_ns * freq_mhz / 1000.0
        if self.kind == "fixed" or mean == 0:
            cycles = max(0, int(mean))
            return lambda: cycles
        if self.kind == "uniform":
            return lambda: int(rng.random() * 2 * mean)
        rate = 1.0 / mean
        return lambda: int(rng.expovariate(rate))


class WorkloadConfig(Model):
    """What each writer does; defaults are short holds (most spinlocks are held < 2^12 cycles)."""

    locks: int = Field(1, gt=0, le=65536, description="number of locks; each acquisition picks one at random")
    hold: Distribution = Distribution(kind="exponential", mean_ns=400.0)
    delay: Distribution = Distribution(kind="exponential", mean_ns=2000.0)
    user_fraction: float = Field(
        0.0, ge=0, le=1,
        description="share of each delay a writer spends in guest user mode, where a vCPU preempted is no "
                    "directed-yield candidate for a kernel-mode spinner (kvm_vcpu_on_spin); 0: all in the "
                    "kernel, as locktorture's writers, kernel threads, are")  # fmt: skip
    shared_lines: int = Field(
        1, ge=0, description="cache lines of shared data read and written in each critical section"
    )
    nwriters_stress: int | None = Field(
        None, gt=0, le=16384,
        description="locktorture's nwriters_stress: writers, one per vCPU from vCPU 0, at most the guest's vCPUs "
                    "(default: one on every vCPU; the kernel's default, 2 x CPUs, needs guest threads)")  # fmt: skip
    long_hold: int | None = Field(
        None, ge=0, le=3_600_000,
        description="locktorture's long_hold (ms): one acquisition in nwriters_stress x 2000 x long_hold holds the "
                    "lock that long, as the kernel draws it; 0 never (the kernel's default is 100)")  # fmt: skip
    long_hold_every: int = Field(0, ge=0, description="one acquisition in N holds for long_hold_us (0: never)")
    long_hold_us: float = Field(100.0, ge=0)
    irq_locks: int = Field(1, gt=0, le=65536, description="locks taken by interrupt handlers (separate from the writers')")
    irq_hold: Distribution = Distribution(kind="fixed", mean_ns=200.0)


SHARED = Layout("shared_data", CACHE_LINE, [("word", 0, 8)], align=CACHE_LINE)


class LockTorture:
    """Builds the writer programs and interrupt handler for one guest, and keeps the statistics."""

    def __init__(self, kernel: Spinlock, mem: Memory, ncpus: int, config: WorkloadConfig, seed: int, freq_mhz: int):
        self.kernel = kernel
        self.config = config
        self.ncpus = ncpus
        self.locks = [kernel.alloc_lock(f"lock{i}") for i in range(config.locks)]
        self.irq_locks = [kernel.alloc_lock(f"irq_lock{i}") for i in range(config.irq_locks)]
        self.data = [mem.alloc(SHARED, f"data{i}") for i in range(config.locks * config.shared_lines)]
        self.writers = config.nwriters_stress or ncpus
        self.acquisitions = [0] * self.writers  # locktorture's n_lock_acquired, per writer
        self.irq_acquisitions = [0] * ncpus
        self.irq_baseline = 0  # handler acquisitions before the measurement (the warm-up)
        self.latencies = Histogram()  # cycles from spin_lock called to lock held
        # per lock, for `perf lock contention`: writers inside spin_lock..spin_unlock now, and the
        # acquisitions that found another writer there (holding or waiting) with their waits
        self.inside = [0] * config.locks
        self.contended = [0] * config.locks
        self.wait_total = [0] * config.locks
        self.wait_max = [0] * config.locks
        self.seed = seed
        self.freq_mhz = freq_mhz
        if config.long_hold is not None:  # the kernel's odds: torture_spin_lock_write_delay()
            self.long_hold_every = self.writers * 2000 * config.long_hold
            self.long_hold = config.long_hold * 1000 * freq_mhz
        else:
            self.long_hold_every = config.long_hold_every
            self.long_hold = int(config.long_hold_us * freq_mhz)

    def writer(self, cpu: int, rounds: int | None = None):
        """``lock_torture_writer`` on ``cpu``: ``rounds`` acquisitions, or until the simulation stops."""
        cfg = self.config
        rng = random.Random(f"writer:{self.seed}:{cpu}")
        hold = cfg.hold.sampler(rng, self.freq_mhz)
        delay = cfg.delay.sampler(rng, self.freq_mhz)
        user_fraction = cfg.user_fraction
        kernel = self.kernel
        locks = self.locks
        nlocks = len(locks)
        lines = cfg.shared_lines
        data = self.data
        long_every = self.long_hold_every
        acquisitions = self.acquisitions
        latencies = self.latencies
        inside, contended, wait_total, wait_max = self.inside, self.contended, self.wait_total, self.wait_max
        clock = o.local_clock()
        while rounds is None or acquisitions[cpu] < rounds:
            i = rng.randrange(nlocks) if nlocks > 1 else 0
            lock = locks[i]
            start = yield clock
            busy = inside[i]
            inside[i] += 1
            yield from kernel.spin_lock(lock)
            held = yield clock
            yield o.cs_enter(i)
            for line in data[i * lines : (i + 1) * lines]:
                value = yield o.READ_ONCE(line.word)
                yield o.WRITE_ONCE(line.word, value + 1)
            if long_every and rng.randrange(long_every) == 0:
                yield o.work(self.long_hold, o.WORK_CS)
            else:
                yield o.work(hold(), o.WORK_CS)
            yield o.cs_exit(i)
            yield from kernel.spin_unlock(lock)
            inside[i] -= 1
            acquisitions[cpu] += 1
            latencies.add(held - start)
            if busy:
                contended[i] += 1
                wait_total[i] += held - start
                if held - start > wait_max[i]:
                    wait_max[i] = held - start
            if user_fraction:  # back to user mode after the unlock, into the kernel again before the next lock
                cycles = delay()
                user = int(cycles * user_fraction)
                yield o.work(user, o.WORK_USER)
                if cycles > user:
                    yield o.work(cycles - user)
            else:
                yield o.work(delay())

    def reset(self) -> None:
        """Forget what the writers counted so far (the warm-up), in place: they hold these lists.

        The handlers' counts go on (each seeds the handler's next draw): a baseline is kept instead.
        """
        for counts in (self.acquisitions, self.contended, self.wait_total, self.wait_max):
            counts[:] = [0] * len(counts)
        self.latencies.clear()
        self.irq_baseline = sum(self.irq_acquisitions)

    def irq_handler(self, cpu: int):
        """A handler body: take one of the interrupt locks briefly (``spin_lock`` in hardirq)."""
        rng = random.Random(f"irq:{self.seed}:{cpu}:{self.irq_acquisitions[cpu]}")
        i = rng.randrange(len(self.irq_locks))
        lock = self.irq_locks[i]
        yield from self.kernel.spin_lock(lock)
        yield o.cs_enter(("irq", i))
        yield o.work(max(1, int(self.config.irq_hold.mean_ns * self.freq_mhz / 1000)), o.WORK_CS)
        yield o.cs_exit(("irq", i))
        yield from self.kernel.spin_unlock(lock)
        self.irq_acquisitions[cpu] += 1
