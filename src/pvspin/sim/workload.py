"""Workloads in the style of locktorture: writer threads hammering a set of spinlocks.

Each vCPU runs one writer (``lock_torture_writer``): pick one of the ``locks``, take it,
touch the critical section's shared cache lines, hold it for a drawn time (now and then
a long hold, as locktorture's ``longdelay`` does to force contention), release it, wait
a drawn delay (a share of it in user mode, if ``user_fraction`` says so), repeat.  Interrupt handlers, if enabled, take a lock of their own one
nesting level up, which is what exercises qspinlock's per-CPU MCS nodes 1..3.

With ``nwriters_stress`` above the vCPUs, each vCPU runs several writer threads in turn
(:mod:`~pvspin.sim.guestsched`).  The writer is guest code like the lock it drives; its
bookkeeping (acquisition counts and latencies) is plain Python on the side, the way
locktorture keeps its statistics in per-thread structures the lock never sees.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from ..kernel.api import Spinlock
from ..machine import ops as o
from ..machine.memory import CACHE_LINE, Layout, Memory
from .guestsched import COND_RESCHED, GuestRunqueue, GuestSchedConfig, GuestThread, place_threads
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


class KbuildConfig(Model):
    """A kernel-build-like workload (``kind = "kbuild"``, :mod:`~pvspin.sim.kbuild`): how much work,
    in how many tasks, with which locks."""

    tasks: int = Field(200, gt=0, le=1_000_000, description="compile jobs to run (the build's fixed amount of work)")
    jobs: int | None = Field(
        None, gt=0, le=16384, description="make -j: job slots, each a guest thread (default: 2 x vCPUs)"
    )
    compute_us: float = Field(
        100.0, gt=0, le=3_600_000_000, description="mean computation of one task, spread between its lock acquisitions"
    )
    locks_per_task: int = Field(20, gt=0, le=1_000_000, description="spinlock acquisitions of one task")
    lock_pool: int = Field(
        1024, gt=0, le=65536, description="different locks an acquisition picks from (hardly ever contended)"
    )
    contended: float = Field(
        0.02, ge=0, le=1, description="probability that an acquisition takes the one lock every job shares instead"
    )


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
        description="locktorture's nwriters_stress: writer threads; up to the vCPUs one per vCPU from vCPU 0, "
                    "beyond them guest threads, writer i on vCPU i % vCPUs, switched by guest_sched "
                    "(default: one on every vCPU; the kernel's is 2 x CPUs)")  # fmt: skip
    long_hold: int | None = Field(
        None, ge=0, le=3_600_000,
        description="locktorture's long_hold (ms): one acquisition in nwriters_stress x 2000 x long_hold holds the "
                    "lock that long, as the kernel draws it; 0 never (the kernel's default is 100)")  # fmt: skip
    long_hold_every: int = Field(0, ge=0, description="one acquisition in N holds for long_hold_us (0: never)")
    long_hold_us: float = Field(100.0, ge=0)
    irq_locks: int = Field(1, gt=0, le=65536, description="locks taken by interrupt handlers (separate from the writers')")
    irq_hold: Distribution = Distribution(kind="fixed", mean_ns=200.0)
    kind: Literal["locktorture", "kbuild"] = Field(
        "locktorture", description="locktorture: writers for duration_ms; kbuild: a fixed build, timed to its end"
    )
    kbuild: KbuildConfig = Field(KbuildConfig(), description="the build, with kind = kbuild")
    guest_sched: GuestSchedConfig = Field(
        GuestSchedConfig(), description="the guest scheduler of vCPUs running several threads (nwriters_stress > vCPUs)"
    )

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo):
        """Knobs added after results were pinned are left out of a dump while at their defaults, so
        that a scenario that does not use them dumps (and digests) as it did before them."""
        data = handler(self)
        if isinstance(data, dict):
            for name in ADDED_LATER:
                if name in data and getattr(self, name) == type(self).model_fields[name].default:
                    del data[name]
        return data


ADDED_LATER = ("kind", "kbuild", "guest_sched")


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
        self.threads: list[GuestThread] = []  # guest threads and their run queues, when writers > vCPUs
        self.thread_cpu: list[int] = []
        self.runqueues: list[GuestRunqueue] = []
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

    def writer(self, cpu: int, rounds: int | None = None, thread: GuestThread | None = None):
        """``lock_torture_writer`` number ``cpu``: ``rounds`` acquisitions, or until the simulation stops.

        As a guest ``thread`` (one of several on its vCPU) it keeps the thread's ``preempt_count``
        from ``spin_lock`` to ``spin_unlock`` and passes ``stutter_wait()``'s ``cond_resched()``
        between two rounds; alone on its vCPU it yields exactly the operations it always did.
        """
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
            if thread is not None:  # the previous round's stutter_wait(): cond_resched_tasks_rcu_qs()
                yield COND_RESCHED
            i = rng.randrange(nlocks) if nlocks > 1 else 0
            lock = locks[i]
            start = yield clock
            busy = inside[i]
            inside[i] += 1
            if thread is not None:
                thread.preempt_count += 1  # spin_lock()'s preempt_disable()
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
            if thread is not None:
                thread.preempt_count -= 1  # spin_unlock()'s preempt_enable()
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

    def thread_programs(self, guest_sched: GuestSchedConfig) -> list:
        """The vCPUs' programs when there are more writers than vCPUs: each a guest run queue
        (:class:`~pvspin.sim.guestsched.GuestRunqueue`) of the writer threads placed on it."""
        threads = [GuestThread(w) for w in range(self.writers)]
        for t in threads:
            t.code = self.writer(t.tid, thread=t)
        self.threads = threads
        self.thread_cpu = [w % self.ncpus for w in range(self.writers)]
        self.runqueues = [GuestRunqueue(cpu, [threads[w] for w in ids], guest_sched, self.freq_mhz)
                          for cpu, ids in enumerate(place_threads(self.writers, self.ncpus))]  # fmt: skip
        return [rq.program() for rq in self.runqueues]
