"""A kernel-build-like workload: a fixed amount of work, measured as the time it takes.

The overcommit figures of the PV spinlock literature are kernel build times (a build at 32 vs 48
vCPUs; "a 1.5x overcommitted kernel build took about 1.5x as long"), not lock throughput.  This
workload is shaped like one (its knobs: :class:`~pvspin.sim.workload.KbuildConfig`): ``tasks`` compile jobs, each mostly computing (``compute_us``), and
taking ``locks_per_task`` spinlocks briefly on the way — each one of a large pool of different
locks (the dentries, inodes, pages and per-object locks a compiler's system calls touch, hardly
ever contended), or, with probability ``contended``, the one lock all jobs share (a stand-in for
the kernel's few hot global locks).  ``jobs`` job slots (``make -j``) are guest threads
(:mod:`~pvspin.sim.guestsched`): each takes the next task when it finishes one, until none is
left; job ``i`` runs on vCPU ``i % vCPUs``.  The figure is the simulated time from boot until the
last task is done; the run ends there (or at ``duration_ms``, reported as not complete).

Handing out the next task is bookkeeping on the side, not guest code (make's jobserver token,
a pipe read in the real build, costs nothing here); a task's critical sections are the writer's
(:class:`~pvspin.sim.workload.LockTorture`): the held lock's shared lines read and written, then
a hold drawn from the workload's ``hold``.
"""

from __future__ import annotations

import random

from ..kernel.api import Spinlock
from ..machine import ops as o
from ..machine.memory import Memory
from .guestsched import COND_RESCHED, GuestRunqueue, GuestSchedConfig, GuestThread, place_threads
from .histogram import Histogram
from .workload import SHARED, LockTorture

CONTENDED = 0  # the index of the shared lock; the pool's locks follow it


class KernelBuild(LockTorture):
    """The job threads of one guest's build, the task queue, and the statistics ``metrics`` reads
    (those of :class:`LockTorture`: per job, per lock, latencies)."""

    def __init__(self, kernel: Spinlock, mem: Memory, ncpus: int, config, seed: int, freq_mhz: int):
        self.kernel = kernel
        self.config = config  # the WorkloadConfig: hold, shared_lines, interrupts' locks, guest_sched
        self.build = build = config.kbuild
        self.ncpus = ncpus
        nlocks = build.lock_pool + 1
        self.locks = [kernel.alloc_lock("contended_lock")] + [kernel.alloc_lock(f"lock{i}") for i in range(1, nlocks)]
        self.irq_locks = [kernel.alloc_lock(f"irq_lock{i}") for i in range(config.irq_locks)]
        self.data = [mem.alloc(SHARED, f"data{i}") for i in range(nlocks * config.shared_lines)]
        self.writers = build.jobs or 2 * ncpus
        self.acquisitions = [0] * self.writers  # per job
        self.threads: list[GuestThread] = []
        self.thread_cpu: list[int] = []
        self.runqueues: list[GuestRunqueue] = []
        self.irq_acquisitions = [0] * ncpus
        self.irq_baseline = 0
        self.latencies = Histogram()
        self.inside = [0] * nlocks
        self.contended = [0] * nlocks
        self.wait_total = [0] * nlocks
        self.wait_max = [0] * nlocks
        self.seed = seed
        self.freq_mhz = freq_mhz
        self.long_hold_every = 0
        self.long_hold = 0
        self.next_task = 0
        self.tasks_done = 0
        self.tasks_per_job = [0] * self.writers
        self.completed_at: int | None = None  # the cycle the last task finished
        self.on_done = None  # called once, when the last task has finished

    def lock_names(self) -> list[str]:
        return ["contended_lock"] + [f"lock{i}" for i in range(1, len(self.locks))]

    def thread_programs(self, guest_sched: GuestSchedConfig) -> list:
        """Every vCPU's program: a guest run queue of the job threads placed on it."""
        threads = [GuestThread(j) for j in range(self.writers)]
        for t in threads:
            t.code = self.job(t)
        self.threads = threads
        self.thread_cpu = [j % self.ncpus for j in range(self.writers)]
        self.runqueues = [
            GuestRunqueue(cpu, [threads[j] for j in ids], guest_sched, self.freq_mhz)
            for cpu, ids in enumerate(place_threads(self.writers, self.ncpus))
        ]
        return [rq.program() for rq in self.runqueues]  # a vCPU with no job idles at once

    def job(self, thread: GuestThread):
        """One ``make -j`` job slot: run tasks off the queue until none is left."""
        build = self.build
        rng = random.Random(f"kbuild:{self.seed}:{thread.tid}")
        hold = self.config.hold.sampler(rng, self.freq_mhz)
        segment = build.compute_us * self.freq_mhz / (build.locks_per_task + 1)  # mean cycles between two locks
        rate = 1.0 / segment
        pool = build.lock_pool
        p = build.contended
        while self.next_task < build.tasks:
            self.next_task += 1
            for _ in range(build.locks_per_task):
                yield o.work(int(rng.expovariate(rate)))
                i = CONTENDED if p and rng.random() < p else 1 + rng.randrange(pool)
                yield from self._locked(i, thread, hold)
            yield o.work(int(rng.expovariate(rate)))
            self.tasks_per_job[thread.tid] += 1
            self.tasks_done += 1
            if self.tasks_done == build.tasks:
                self.completed_at = yield o.local_clock()
                if self.on_done is not None:
                    self.on_done()
            yield COND_RESCHED  # between two tasks: the job's exit and the next one's exec

    def _locked(self, i: int, thread: GuestThread, hold):
        """``spin_lock(lock[i])``, the critical section, ``spin_unlock()``, with the writer's statistics."""
        lock = self.locks[i]
        start = yield o.local_clock()
        busy = self.inside[i]
        self.inside[i] += 1
        thread.preempt_count += 1  # spin_lock()'s preempt_disable()
        yield from self.kernel.spin_lock(lock)
        held = yield o.local_clock()
        yield o.cs_enter(i)
        lines = self.config.shared_lines
        for line in self.data[i * lines : (i + 1) * lines]:
            value = yield o.READ_ONCE(line.word)
            yield o.WRITE_ONCE(line.word, value + 1)
        yield o.work(hold(), o.WORK_CS)
        yield o.cs_exit(i)
        yield from self.kernel.spin_unlock(lock)
        thread.preempt_count -= 1  # spin_unlock()'s preempt_enable()
        self.inside[i] -= 1
        self.acquisitions[thread.tid] += 1
        waited = held - start
        self.latencies.add(waited)
        if busy:
            self.contended[i] += 1
            self.wait_total[i] += waited
            if waited > self.wait_max[i]:
                self.wait_max[i] = waited
