"""A scenario — host, guests, workload, duration, seed — and the run that measures it.

A scenario is data (a pydantic model, loadable from TOML), so that a run is reproduced by
its scenario alone: same scenario, same seed, same numbers.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from ..kernel.build import LOCKS, boot_kernel
from ..kernel.config import LockConfig
from ..kernel.userlock import load_user_lock
from ..machine import ops as o
from ..machine.memory import Memory
from .config import HostConfig, Interrupts
from .engine import Simulator
from .kbuild import KernelBuild
from .metrics import guest_metrics, host_metrics
from .model import Model
from .vcpu import NO_EXIT, SimulationError
from .workload import LockTorture, WorkloadConfig

KernelName = Literal["paravirt", "no-paravirt"]
MAX_THREADS_PER_VCPU = 64  # guest threads per vCPU (locktorture's default is 2)


class LockKnobs(Model):
    """The kernel's lock constants, as knobs (defaults are the x86 kernel's)."""

    spin_threshold: int = Field(1 << 15, gt=0, description="SPIN_THRESHOLD")
    pending_loops: int = Field(1 << 9, gt=0, description="_Q_PENDING_LOOPS")
    nr_cpus_16k: bool = Field(False, description="NR_CPUS >= 16K lock-word layout")

    def lock_config(self) -> LockConfig:
        return LockConfig(
            spin_threshold=self.spin_threshold, pending_loops=self.pending_loops, nr_cpus_16k=self.nr_cpus_16k
        )


class GuestSpec(Model):
    """One guest running locktorture on its spinlock."""

    name: str = "guest0"
    vcpus: int = Field(4, gt=0, le=16384, description="at most NR_CPUS of the 16K lock-word layout")
    kernel: KernelName | None = Field(None, description="default: no-paravirt for ticket, paravirt otherwise")
    lock: str | None = Field(
        None, description="default: what the kernel boots to on the host: pvqspinlock on kvm, qspinlock on "
                          "baremetal or with one vCPU, virt-tas on kvm-nopv")  # fmt: skip
    patching: bool = Field(True, description="False: boot with noreplace-paravirt")
    knobs: LockKnobs = LockKnobs()
    workload: WorkloadConfig = WorkloadConfig()
    interrupts: Interrupts = Interrupts()

    @model_validator(mode="after")
    def _known_lock(self) -> GuestSpec:
        if self.lock is None:  # the host could not boot a kernel to tell: its own error says why
            raise ValueError("no lock given, and none the host runs")
        if self.lock not in LOCKS and ":" not in self.lock:
            raise ValueError(f"unknown lock {self.lock!r}: one of {', '.join(LOCKS)}, or path/to/file.py:NAME")
        return self

    @model_validator(mode="after")
    def _writers_fit(self) -> GuestSpec:
        w = self.workload
        if w.nwriters_stress is not None and w.nwriters_stress > self.vcpus * MAX_THREADS_PER_VCPU:
            raise ValueError(
                f"nwriters_stress {w.nwriters_stress}: at most {MAX_THREADS_PER_VCPU} writer threads "
                f"per vCPU ({self.vcpus} vCPUs)"
            )
        if w.kind == "kbuild" and w.nwriters_stress is not None:
            raise ValueError("nwriters_stress is locktorture's: a kbuild's threads are its kbuild.jobs")
        if w.kbuild.jobs is not None and w.kbuild.jobs > self.vcpus * MAX_THREADS_PER_VCPU:
            raise ValueError(f"kbuild.jobs {w.kbuild.jobs}: at most {MAX_THREADS_PER_VCPU} job threads "
                             f"per vCPU ({self.vcpus} vCPUs)")  # fmt: skip
        if w.long_hold is not None and w.long_hold_every:
            raise ValueError("long_hold (locktorture's, ms) and long_hold_every: give one of them")
        return self

    @property
    def kernel_build(self) -> str:
        if self.kernel is not None:
            return self.kernel
        return "no-paravirt" if self.lock == "ticket" else "paravirt"


class Scenario(Model):
    host: HostConfig = HostConfig()
    guests: list[GuestSpec] = Field(default_factory=lambda: [GuestSpec()], min_length=1)
    hog_guests: int = Field(0, ge=0, le=1024, description="competing guests whose vCPUs only burn CPU")
    hog_vcpus: int = Field(1, gt=0, le=4096, description="vCPUs per hog guest")
    duration_ms: float = Field(20.0, gt=0, le=3_600_000, description="simulated time measured (at most an hour)")
    warmup_ms: float = Field(
        0.0, ge=0, le=3_600_000,
        description="simulated time run before the measurement, its counts then reset (locktorture's Fail is kept)")
    stat_interval_ms: float = Field(
        0.0, ge=0, le=3_600_000,
        description="locktorture's stat_interval, in simulated ms (the kernel's is in s): a Writes line each "
                    "interval of the measurement; 0 none")  # fmt: skip
    seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _lock_the_host_runs(cls, data):
        """A guest given no lock runs what its kernel boots to on the host (``boot_kernel`` decides)."""
        if not isinstance(data, dict):
            return data
        host = data.get("host", {})
        hypervisor = host.get("hypervisor", HostConfig().hypervisor) if isinstance(host, dict) else None
        guests = data.get("guests", [{}])
        if not isinstance(guests, list):
            return data
        return {**data, "guests": [_with_lock(g, hypervisor) for g in guests]}

    @model_validator(mode="after")
    def _builds_from_boot(self) -> Scenario:
        if self.warmup_ms and any(g.workload.kind == "kbuild" for g in self.guests):
            raise ValueError("warmup_ms: a kbuild is timed from boot, it has no warm-up")
        return self

    @model_validator(mode="after")
    def _distinct_names(self) -> Scenario:
        names = [g.name for g in self.guests]
        if len(set(names)) != len(names):
            raise ValueError(f"guest names must differ: {names}")
        return self


def _with_lock(guest, hypervisor):
    if not isinstance(guest, dict) or guest.get("lock") is not None:
        return guest
    vcpus = guest.get("vcpus", GuestSpec.model_fields["vcpus"].default)
    try:
        lock = boot_kernel(Memory(), vcpus, kernel=guest.get("kernel") or "paravirt", host=hypervisor).name
    except (ValueError, TypeError):  # a bad host, kernel or vCPU count: validation names it
        return guest
    return {**guest, "lock": lock}


class BadInput(ValueError):
    """A user's value pvspin cannot use; the message names it."""


def scenario_from(scenario_file: str | None, overrides: dict | None = None, names: dict | None = None) -> Scenario:
    """The scenario of a TOML file (or the defaults) with ``overrides`` on top; BadInput if invalid.

    ``names`` maps field paths to the flags that set them, so that an error names the flag.
    """
    try:
        if scenario_file is not None:
            if not scenario_file:
                raise BadInput("--scenario '': give the path of a TOML file")
            if not Path(scenario_file).is_file():
                raise BadInput(f"--scenario: no such file {scenario_file}")
            return load_scenario(scenario_file, overrides)
        return Scenario.model_validate(overrides or {})
    except ValidationError as err:
        message = describe_validation_error(err, names)
        if scenario_file and not message.startswith("--"):  # the file's value, not a flag's
            message = f"--scenario {scenario_file}: {message}"
        raise BadInput(message) from None
    except OSError as err:  # unreadable: permissions, a FIFO, ...
        raise BadInput(f"--scenario {scenario_file}: {err.strerror or err}") from None
    except ValueError as err:  # TOML syntax
        if isinstance(err, BadInput):
            raise
        raise BadInput(f"--scenario {scenario_file}: {err}") from None


def load_scenario(path: str | Path, overrides: dict | None = None) -> Scenario:
    """A scenario from a TOML file, with ``overrides`` (from command-line flags) on top."""
    data = tomllib.loads(Path(path).read_text())
    return Scenario.model_validate(merge(data, overrides or {}))


def merge(base: dict, top: dict) -> dict:
    """Deep-merge ``top`` into ``base`` (lists of guests merge element-wise)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list) and all(isinstance(v, dict) for v in value):
            old = out[key]
            # a malformed base element (not a table) is kept, for the model to refuse it
            out[key] = [(merge(old[i], v) if isinstance(old[i], dict) else old[i]) if i < len(old) else v
                        for i, v in enumerate(value)] + old[len(value) :]
        else:
            out[key] = value
    return out


def idle(cpu: int):
    """A vCPU with no writer (``nwriters_stress`` below the vCPUs): it ends at once."""
    yield from ()


def to_toml(data: dict, table: str = "") -> str:
    """A scenario dump as TOML that ``--scenario`` reads back: scalars first, then tables and arrays
    of tables; None (a default chosen at run time) is left out."""
    lines, tables = [], []
    for key, value in data.items():
        name = f"{table}.{key}" if table else key
        if isinstance(value, dict):
            tables.append(f"\n[{name}]\n" + to_toml(value, name))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [f"\n[[{name}]]\n" + to_toml(v, name) for v in value]
        elif value is not None:
            lines.append(f"{key} = {json.dumps(value)}\n")  # JSON's strings, numbers and booleans are TOML's
    return "".join(lines) + "".join(tables)


def hog(cpu: int):
    """A CPU-hog vCPU: never takes a lock, never halts, always wants its pCPU."""
    chunk = o.work(1_000_000)
    while True:
        yield chunk


class Run:
    """A scenario set up on a simulator, ready to run; :meth:`result` reads its metrics.

    A guest's crash (its BUG, its code failing as Python) is a :class:`SimulationError`
    that names the guest's lock.
    """

    def __init__(self, scenario: Scenario, tracer=None):
        try:
            self._setup(scenario, tracer)
        except SimulationError as err:
            raise self._named(err) from None

    def _named(self, err: SimulationError) -> SimulationError:
        locks = {spec.name: spec.lock for spec in self.scenario.guests}
        if err.guest not in locks:
            return err
        return SimulationError(f"lock {locks[err.guest]} crashed in {err}", err.guest)

    def _setup(self, scenario: Scenario, tracer) -> None:
        self.scenario = scenario
        host = scenario.host
        self.sim = Simulator(host, seed=scenario.seed, tracer=tracer)
        self.tortures: list[tuple] = []
        self.stats: list[list[tuple]] = [[] for _ in scenario.guests]  # (cycle, total, max, min, fails)
        self.measure_from = 0  # the cycle the measurement starts at (the warm-up's end)
        self.builds: list[KernelBuild] = []  # the guests' kbuilds: the run ends when all are done
        for spec in scenario.guests:
            mem = Memory()
            kernel = self._boot(spec, mem, host.hypervisor)
            kind = KernelBuild if spec.workload.kind == "kbuild" else LockTorture
            torture = kind(kernel, mem, spec.vcpus, spec.workload, scenario.seed, host.costs.freq_mhz)
            irq_rate = spec.interrupts.rate_hz
            if kind is KernelBuild:
                torture.on_done = self._build_done
                self.builds.append(torture)
            if kind is KernelBuild or torture.writers > spec.vcpus:  # guest threads: a run queue per vCPU
                programs = torture.thread_programs(spec.workload.guest_sched)
            else:
                programs = [torture.writer(cpu) if cpu < torture.writers else idle(cpu) for cpu in range(spec.vcpus)]
            guest = self.sim.add_guest(
                spec.name,
                mem,
                programs,
                irq_handler=torture.irq_handler if irq_rate > 0 else None,
                irq_rate_hz=irq_rate,
                irq_level=spec.interrupts.level,
            )
            for rq in torture.runqueues:
                rq.attach(guest.vcpus[rq.cpu])
            if tracer is not None:
                tracer.watch_locks(guest, kernel)
            self.tortures.append((guest, torture, kernel))
        for i in range(scenario.hog_guests):
            self.sim.add_guest(f"hog{i}", Memory(), [hog(cpu) for cpu in range(scenario.hog_vcpus)])

    @staticmethod
    def _boot(spec: GuestSpec, mem: Memory, hypervisor: str):
        config = spec.knobs.lock_config()
        if ":" in spec.lock:
            return load_user_lock(spec.lock)(mem, spec.vcpus, config)
        return boot_kernel(
            mem, spec.vcpus, kernel=spec.kernel_build, host=hypervisor, lock=spec.lock, config=config,
            patching=spec.patching,
        )  # fmt: skip

    def run(self, progress: Callable[[float], None] | None = None, chunks: int = 50) -> dict:
        """Run the warm-up and the measured duration, in ``chunks`` steps reporting the fraction done,
        stopping also at the warm-up's end and at each statistics interval (a result does not
        depend on where a run stops: ``tests/test_sim_chunks.py``).  With kbuild guests the run
        ends, earlier, at the cycle their last task is done."""
        sim = self.sim
        scenario = self.scenario
        cycles_per_ms = sim.costs.freq_mhz * 1000
        warmup = int(scenario.warmup_ms * cycles_per_ms)
        end = warmup + int(scenario.duration_ms * cycles_per_ms)
        interval = int(scenario.stat_interval_ms * cycles_per_ms)
        stats = set(range(warmup + interval, end, interval)) if interval else set()
        stops = sorted(({end * i // chunks for i in range(1, chunks + 1)} | {warmup} | stats) - {0})
        started = time.perf_counter()
        for target in stops:
            try:
                sim.run(target - sim.now)
            except SimulationError as err:
                raise self._named(err) from None
            if target == warmup:
                self._start_measuring()
            if target in stats:
                self._stat()
            if progress:
                progress(target / end)
            if self.builds and self._built():
                break
        self._stat()  # the last statistics, as lock_torture_cleanup() prints them
        return self.result(time.perf_counter() - started)

    def _built(self) -> bool:
        return all(build.completed_at is not None for build in self.builds)

    def _build_done(self) -> None:
        """A guest's build finished its last task: once every build has, the run ends there."""
        if self._built():
            self.sim.loop.stop()

    def _start_measuring(self) -> None:
        """The warm-up is over: every counter starts again (mutual-exclusion failures are kept)."""
        sim = self.sim
        t = sim.now
        self.measure_from = t
        for v in sim.vcpus:
            v.acct[:] = [0] * len(v.acct)
            v.exits = v.kicks = v.halts = v.ple_exits = 0
            v.exit_reason = NO_EXIT  # an exit taken in the warm-up is not measured, like its count
        for guest in sim.guests:
            guest.lock_events.clear()
            guest.lock_holder_preemptions = guest.waiter_preemptions = 0
            guest.directed_yield_attempted = guest.kick_yields = 0
            guest.halt_attempted_poll = guest.halt_successful_poll = 0
            n = len(guest.exit_samples)
            guest.exit_samples[:], guest.exit_cycles[:] = [0] * n, [0] * n
            guest.exit_min[:], guest.exit_max[:] = [-1] * n, [0] * n
        for _guest, torture, _kernel in self.tortures:
            torture.reset()

    def _stat(self) -> None:
        """``lock_torture_stats_print()``: each guest's writer totals now."""
        for guest, torture, _kernel in self.tortures:
            per = torture.acquisitions
            self.stats[guest.index].append((self.sim.now, sum(per), max(per), min(per), guest.mutex_failures))

    def result(self, host_seconds: float) -> dict:
        guests = []
        for guest, torture, kernel in self.tortures:
            lock = getattr(kernel, "name", self.scenario.guests[guest.index].lock)
            metrics = guest_metrics(self.sim, guest, torture, lock, self.measure_from, self.stats[guest.index])
            metrics["lock"] = lock
            guests.append(metrics)
        host = host_metrics(self.sim, self.measure_from)
        host["host_seconds"] = round(host_seconds, 3)
        host["guest_operations_per_host_second"] = (
            round(host["guest_operations"] / host_seconds) if host_seconds else None
        )
        return {"scenario": self.scenario.model_dump(mode="json"), "guests": guests, "host": host}


def run_scenario(scenario: Scenario, progress=None, tracer=None) -> dict:
    return Run(scenario, tracer=tracer).run(progress)


def describe_validation_error(err: ValidationError, names: dict | None = None) -> str:
    """One line naming the first bad value of a scenario (by its flag, when ``names`` has the field)."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "scenario"
    value = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    text = f"{value:g}" if type(value) in (int, float) and abs(value) >= 1e16 else repr(value)
    if names and where in names:
        return f"{names[where]} {text}: {message}"
    shown = "" if isinstance(value, dict) else f" (got {text})"
    return f"{where}: {message}{shown}"
