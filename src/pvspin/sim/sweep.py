"""``pvspin sweep``: one or two scenario parameters × lock kinds × seeds, run in parallel.

A sweep is a grid of *points*; a point is a complete :class:`~pvspin.sim.scenario.Scenario`
(base scenario + the lock of its line + the parameter values + a seed), identified by a hash of
that scenario and of the simulator's source (:func:`code_version`: results of an older simulator
are never mixed in).  Each finished point is appended at once to ``points.jsonl`` and ``points.csv`` in
the output directory, so an interrupted sweep re-run with the same arguments skips what is there.
At the end both files are rewritten in grid order (so the same sweep gives the same files whatever
order the processes finished in), ``summary.json`` holds mean/std over seeds, and the plots are drawn.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from pydantic import ValidationError

from ..kernel.build import LOCKS
from ..kernel.lockevents import LOCK_EVENTS
from ..kernel.userlock import UserLockError
from ..machine import watchdog
from ..output import unwritable
from ..parallel import RETRIES, RayPool, RayUnavailable, WorkersLost, local_pool
from .scenario import BadInput, Run, Scenario, describe_validation_error, merge, scenario_from
from .vcpu import SimulationError

MAX_POINTS = 100_000  # a sweep beyond it cannot be meant: at a second a point, more than a day on 1 core
EXIT_GUEST_FAILED, EXIT_BAD_INPUT = 1, 2  # 1: a point's guest crashed (its BUG, its code failing as Python)
EXIT_WORKERS_LOST = 3  # worker processes kept dying (killed, out of memory): the finished points are kept


# Named parameters: (where in the scenario, axis label with units).  Any other name must be a dotted
# scenario path (``host.costs.kick_wake_ns``, ``guests.0.workload.long_hold_every``).
NAMED_PARAMS = {
    "overcommit": (None, "overcommit (vCPUs per pCPU)"),
    "vcpus": ("guests.0.vcpus", "vCPUs"),
    "pcpus": ("host.pcpus", "physical CPUs"),
    "hold-ns": ("guests.0.workload.hold.mean_ns", "mean hold time (ns)"),
    "delay-ns": ("guests.0.workload.delay.mean_ns", "mean delay between acquisitions (ns)"),
    "lock-count": ("guests.0.workload.locks", "number of locks"),
    "hogs": ("hog_guests", "competing CPU-hog guests"),
    "hog-vcpus": ("hog_vcpus", "vCPUs per hog guest"),
    "irq-rate": ("guests.0.interrupts.rate_hz", "interrupts per second per vCPU"),
    "spurious-hz": ("host.spurious_wakeup_hz", "spurious wake-ups per second"),
    "spin-threshold": ("guests.0.knobs.spin_threshold", "SPIN_THRESHOLD (loops)"),
}

# A lock kind also picks the host that runs it (see pvspin.kernel.build): virt TAS is what a
# PARAVIRT guest runs on a KVM host without PV_UNHALT; the PV locks need PV_UNHALT.
LOCK_HOSTS = {"virt-tas": "kvm-nopv", "pvqspinlock": "kvm", "pvqspinlock-4.2": "kvm", "pvqspinlock-5.2": "kvm", "pvticket": "kvm"}

# The columns of points.csv after the lock, the parameters and the seed.
METRICS = (
    "acquisitions",
    "throughput",
    "fairness_max_over_min",
    "per_vcpu_min",
    "per_vcpu_max",
    "jain_index",
    "latency_p50_ns",
    "latency_p99_ns",
    "latency_p99.9_ns",
    "latency_max_ns",
    "halts",
    "kicks",
    "vm_exits",
    "lock_holder_preemptions",
    "fail",
    "warnings",
    "share_critical_section",
    "share_spinning",
    "share_other_guest",
    "share_hypervisor",
    "share_idle",
    "guest_operations",
    "completion_ms",
    *LOCK_EVENTS,
)


# Metrics that may be null: the spread when a vCPU never got the lock, latencies with no acquisition,
# a build's completion time when the run is no build (or the build did not finish).
NULLABLE = frozenset({"fairness_max_over_min", "latency_p50_ns", "latency_p99_ns", "latency_p99.9_ns",
                      "latency_max_ns", "jain_index", "completion_ms"})


@dataclass(frozen=True)
class Param:
    name: str
    path: str | None  # None: overcommit, resolved against the point's pCPUs
    label: str
    values: tuple[float, ...]


# The packages whose code decides a run's numbers, less the modules that only present them.
MODEL_PACKAGES = ("machine", "kernel", "x86", "sim")
PRESENTATION = frozenset({"sim/sweep.py", "sim/plots.py", "sim/command.py", "sim/trace.py"})


def code_version() -> str:
    """A hash of the simulator's source (the MODEL_PACKAGES), so stale results are recognised."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in MODEL_PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            if f"{package}/{path.name}" in PRESENTATION:
                continue
            digest.update(f"{package}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    lock: str
    values: tuple[float, ...]
    seed: int
    scenario: Scenario
    code: str

    @property
    def key(self) -> str:
        text = json.dumps(self.scenario.model_dump(mode="json"), sort_keys=True) + self.code
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sweep:
    base: Scenario
    params: tuple[Param, ...]
    locks: tuple[str, ...]
    seeds: int

    def points(self) -> list[Point]:
        """Every point of the grid, in grid order: lock, then parameter values, then seed."""
        out = []
        code = code_version()
        for lock in self.locks:
            for values in product(*(p.values for p in self.params)):
                for i in range(self.seeds):
                    out.append(Point(lock, values, self.base.seed + i, self._scenario(lock, values, i), code))
        return out

    def _scenario(self, lock: str, values: tuple[float, ...], seed_offset: int) -> Scenario:
        data = self.base.model_dump(mode="json")
        guest: dict = {"lock": lock}
        data = merge(data, {"guests": [guest], "seed": self.base.seed + seed_offset})
        if lock in LOCK_HOSTS:
            data["host"]["hypervisor"] = LOCK_HOSTS[lock]
        overcommit = None
        for param, value in zip(self.params, values, strict=True):
            if param.path is None:
                overcommit = value
            else:
                set_path(data, param.path, value)
        if overcommit is not None:
            vcpus = overcommit * data["host"]["pcpus"]
            vcpus = round(vcpus) if math.isfinite(vcpus) else vcpus  # inf: for the model to refuse
            if vcpus < 1:
                raise BadInput(f"overcommit {overcommit:g} on {data['host']['pcpus']} pCPUs leaves no vCPU")
            data["guests"][0]["vcpus"] = vcpus
        try:
            return Scenario.model_validate(data)
        except ValidationError as err:
            names = {p.path or "guests.0.vcpus": f"--param {p.name}" for p in self.params}
            raise BadInput(describe_validation_error(err, names)) from None

    @property
    def columns(self) -> list[str]:
        return ["lock", *(p.name for p in self.params), "seed", "key", "code", *METRICS]


def set_path(data: dict, path: str, value) -> None:
    """Set ``value`` at a dotted path (``guests.0.workload.locks``) of a scenario dict."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _get_path(data, path: str):
    for part in path.split("."):
        if isinstance(data, list):
            if not part.isdigit() or int(part) >= len(data):
                return KeyError
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return KeyError
    return data


_UNITS = {"ns": "ns", "us": "µs", "ms": "ms", "hz": "Hz", "mhz": "MHz"}
_WORDS = {"vcpus": "vCPUs", "pcpus": "pCPUs", "ple": "PLE", "irq": "IRQ", "cpus": "CPUs"}


def human_label(path: str) -> str:
    """An axis label for a scenario field path: its last field in words, its unit in parentheses
    (``hog_vcpus`` → "hog vCPUs", ``host.costs.kick_wake_ns`` → "kick wake (ns)")."""
    words = path.rsplit(".", 1)[-1].split("_")
    unit = _UNITS.get(words[-1]) if len(words) > 1 else None
    if unit:
        words = words[:-1]
    text = " ".join(_WORDS.get(w, w) for w in words)
    return f"{text} ({unit})" if unit else text


def parse_param(text: str, base: Scenario) -> Param:
    """``name=v1,v2,...`` → a :class:`Param` (numbers only; integral values become ints)."""
    name, sep, values_text = text.partition("=")
    name = name.strip()
    if not sep or not name or not values_text.strip():
        raise BadInput(f"--param {text!r}: expected NAME=V1,V2,... (e.g. overcommit=0.5,1,2)")
    canonical = name.replace("_", "-")
    if canonical in NAMED_PARAMS:
        path, label = NAMED_PARAMS[canonical]
        name = canonical
    else:
        path, label = name, human_label(name)
        current = _get_path(base.model_dump(mode="json"), path)
        if current is KeyError or isinstance(current, (dict, list)):
            known = ", ".join(NAMED_PARAMS)
            raise BadInput(f"--param {name!r}: not a parameter ({known}) nor a scenario field path")
    values = []
    for item in values_text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise BadInput(f"--param {name}: {item.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise BadInput(f"--param {name}: {item.strip()!r} is not a finite number")
        values.append(int(value) if value.is_integer() and name != "overcommit" else value)
    if len(set(values)) != len(values):
        raise BadInput(f"--param {name}: repeated value in {values_text!r}")
    return Param(name, path, label, tuple(values))


def parse_locks(text: str | None, base: Scenario) -> tuple[str, ...]:
    if text is None:
        return (base.guests[0].lock,)
    locks = tuple(item.strip() for item in text.split(",") if item.strip())
    for lock in locks:
        if lock not in LOCKS and ":" not in lock:
            raise BadInput(f"--locks: unknown lock {lock!r} (one of {', '.join(LOCKS)}, or path/to/file.py:NAME)")
    if not locks or len(set(locks)) != len(locks):
        raise BadInput(f"--locks {text!r}: give distinct lock names, comma-separated")
    return locks


def build_sweep(
    params: list[str],
    locks: str | None,
    seeds: int,
    scenario_file: str | None = None,
    overrides: dict | None = None,
    names: dict | None = None,
) -> Sweep:
    """The sweep the command line describes; every point is validated (and booted) up front.

    ``names``: the flags that set fields of ``overrides`` (see :func:`scenario_from`).
    """
    base = scenario_from(scenario_file, overrides, names)
    if not params:
        raise BadInput("--param: give at least one, e.g. --param overcommit=0.5,1,1.5,2")
    if len(params) > 2:
        raise BadInput(f"--param: at most two parameters, got {len(params)}")
    parsed = tuple(parse_param(p, base) for p in params)
    if len({p.name for p in parsed}) != len(parsed):
        raise BadInput("--param: the two parameters must differ")
    if seeds < 1:
        raise BadInput(f"--seeds must be at least 1, got {seeds}")
    sweep = Sweep(base, parsed, parse_locks(locks, base), seeds)
    size = len(sweep.locks) * seeds * math.prod(len(p.values) for p in parsed)
    if size > MAX_POINTS:  # refused before the grid is built: its points alone would fill memory
        grid = " x ".join(f"{len(p.values)} {p.name}" for p in parsed)
        raise BadInput(f"--param/--locks/--seeds: {size:,} points ({len(sweep.locks)} lock(s) x {grid} x {seeds} "
                       f"seed(s)), at most {MAX_POINTS:,}")
    for point in sweep.points()[:: sweep.seeds]:
        try:
            Run(point.scenario)  # boots the kernel: an impossible lock/host pairing fails here
        except (ValueError, UserLockError, SimulationError) as err:
            raise BadInput(f"{point.lock} at {describe_values(sweep, point)}: {err}") from None
    return sweep


def describe_values(sweep: Sweep, point: Point) -> str:
    return " ".join(f"{p.name}={v:g}" for p, v in zip(sweep.params, point.values, strict=True))


# ------------------------------------------------------------------------------------ running
def measure(scenario_json: str) -> dict:
    """Run one point (in a worker process) and flatten its result to the METRICS columns."""
    scenario = Scenario.model_validate_json(scenario_json)
    with watchdog.guard():
        result = Run(scenario).run()
    g = result["guests"][0]
    host = result["host"]
    lat = g["latency_ns"]
    per = g["per_vcpu"]
    row = {
        "acquisitions": g["acquisitions"],
        "throughput": g["throughput"],
        "fairness_max_over_min": g["fairness_max_over_min"],
        "per_vcpu_min": per["min"],
        "per_vcpu_max": per["max"],
        "jain_index": per["jain_index"],
        "latency_p50_ns": lat["p50"],
        "latency_p99_ns": lat["p99"],
        "latency_p99.9_ns": lat["p99.9"],
        "latency_max_ns": lat["max"],
        "halts": g["halts"],
        "kicks": g["kicks"],
        "vm_exits": g["vm_exits"],
        "lock_holder_preemptions": g["lock_holder_preemptions"],
        "fail": g["fail"],
        "warnings": g["warnings"],
        "guest_operations": host["guest_operations"],
        "completion_ms": (g.get("kbuild") or {}).get("completion_ms"),
    }
    for name, share in host["pcpu_time_share"].items():
        row[f"share_{name}"] = share
    for name in LOCK_EVENTS:
        row[name] = g["lock_events"].get(name, 0)
    return row


FILES = ("points.jsonl", "points.csv", "summary.json", "sweep.json")


def check_out(out: str | Path) -> None:
    """Refuse an output directory the sweep could not write its files into."""
    problem = unwritable("--out", str(out), folder=True)
    if problem:
        raise BadInput(problem)
    for name in FILES:
        if (Path(out) / name).is_dir():
            raise BadInput(f"--out {out}: {name} is a directory, where the sweep writes a file")


def row_digest(row: dict) -> str:
    """A checksum of a row's other fields: a row edited by hand (a value, a label) is not this sweep's."""
    body = {k: v for k, v in row.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class Results:
    """The output directory: finished points (loaded on resume), appended as they complete.

    A resumed row is used only if it is exactly what this sweep would write for one of its
    points: its key is a point's (the hash of the point's scenario and of the simulator's
    code), its lock, parameter values and seed are that point's, every metric is there with
    a number (or null where a metric may be null), and its digest matches.  Anything else is
    dropped and its point computed again (``dropped`` counts them): never mixed in.
    """

    def __init__(self, out: Path, sweep: Sweep):
        self.out = out
        self.sweep = sweep
        self.columns = sweep.columns
        self.jsonl = out / "points.jsonl"
        self.csv = out / "points.csv"
        self.done: dict[str, dict] = {}
        self.dropped = 0
        check_out(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            raw = self.jsonl.read_bytes() if self.jsonl.exists() else b""
        except OSError as err:
            raise BadInput(f"--out {out}: {err.strerror or err}") from None
        points = {p.key: p for p in sweep.points()}
        for line in raw.splitlines():
            row = self._valid(line, points)
            if row is None:
                self.dropped += 1  # torn by an interruption, edited, or another sweep's: computed again
            else:
                self.done[row["key"]] = row
        # start from clean files (an interrupted write may have left half a line)
        self._rewrite(list(self.done.values()))

    def _valid(self, line: bytes, points: dict) -> dict | None:
        try:
            row = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(row, dict) or set(row) != {*self.columns, "digest"} or row["digest"] != row_digest(row):
            return None
        point = points.get(row["key"])
        if point is None or row != self._row(point, {m: row[m] for m in METRICS}):
            return None
        numbers = all(type(row[m]) in (int, float) or (row[m] is None and m in NULLABLE) for m in METRICS)
        return row if numbers else None

    def _row(self, point: Point, metrics: dict) -> dict:
        row = {"lock": point.lock}
        row.update({p.name: v for p, v in zip(self.sweep.params, point.values, strict=True)})
        row.update(seed=point.seed, key=point.key, code=point.code)
        row.update(metrics)
        row["digest"] = row_digest(row)
        return row

    def record(self, sweep: Sweep, point: Point, metrics: dict) -> dict:
        row = self._row(point, metrics)
        self.done[point.key] = row
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(row)
        return row

    def _rewrite(self, rows: list[dict]) -> None:
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with self.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def finish(self, points: list[Point]) -> list[dict]:
        """Rewrite both files in grid order with this sweep's points only; return those rows."""
        rows = [self.done[p.key] for p in points if p.key in self.done]
        self._rewrite(rows)
        return rows


def same_arguments(recorded: dict, sweep: Sweep) -> bool:
    """Whether ``sweep.json``'s sweep is this one: parameters, locks, seeds and base scenario (the
    base as the current model reads it; a new simulator version only makes the points stale)."""
    mine = spec(sweep)
    keys = ("params", "locks", "seeds")
    try:
        base = Scenario.model_validate(recorded.get("base"))
    except ValidationError:
        return False
    return all(recorded.get(k) == mine[k] for k in keys) and base == sweep.base


def claim_out(out: Path, sweep: Sweep, force: bool) -> None:
    """Refuse an ``--out`` holding another sweep (its points would be replaced, its plots left
    stale beside them) unless ``force``, which removes that sweep's files first."""
    recorded_file = out / "sweep.json"
    if not recorded_file.is_file():
        return
    try:
        recorded = json.loads(recorded_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        recorded = {}
    if isinstance(recorded, dict) and same_arguments(recorded, sweep):
        return
    if not force:
        raise BadInput(f"--out {out}: holds a sweep with other arguments (see its sweep.json); "
                       "give another --out, or --force to replace it")
    from .plots import plot_files

    for path in [out / name for name in FILES] + plot_files(out):
        path.unlink(missing_ok=True)


def run_sweep(
    sweep: Sweep,
    out: Path,
    jobs: int | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    force: bool = False,
    ray: str | None = None,
) -> dict:
    """Run every point not yet in ``out`` (``jobs`` processes, or tasks on the Ray cluster at ``ray``), then write the summary.

    Raises :class:`~pvspin.parallel.RayUnavailable` when Ray is asked for and cannot be had.
    """
    points = sweep.points()
    claim_out(out, sweep, force)
    results = Results(out, sweep)
    (out / "sweep.json").write_text(json.dumps(spec(sweep), indent=2) + "\n")
    todo = [p for p in points if p.key not in results.done]
    if len(todo) < len(points):
        log(f"resuming: {len(points) - len(todo)} of {len(points)} points already in {out}")
    if results.dropped:
        log(f"resuming: {results.dropped} row(s) of {results.jsonl} not this sweep's or damaged: computed again")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    started = time.perf_counter()

    def measured(point: Point, get: Callable[[], dict]) -> dict:
        try:
            return get()
        except SimulationError as err:
            where = describe_values(sweep, point)
            raise SimulationError(f"point {point.lock} {where} seed={point.seed}: {err}") from None

    def finished(n: int, point: Point, metrics: dict) -> None:
        results.record(sweep, point, metrics)
        where = describe_values(sweep, point)
        log(
            f"[{n}/{len(todo)}] {point.lock} {where} seed={point.seed}: {metrics['throughput']:,.0f} acq/s, "
            f"max/min {fmt_spread(metrics['fairness_max_over_min'])} ({time.perf_counter() - started:.0f} s)"
        )

    if jobs == 1 and ray is None:
        for n, point in enumerate(todo, 1):
            finished(n, point, measured(point, lambda p=point: measure(p.scenario.model_dump_json())))
    elif ray is not None:
        # a point whose Ray worker dies is run again by Ray; a row is written only once its point returned
        with RayPool(ray) as pool:
            _run_on(pool, todo, measured, finished, 0)
    elif todo:
        # a worker process that dies breaks the whole pool: the points it had not returned are run
        # again on a fresh one, up to RETRIES times; a row is written only once its point returned
        pending, done, deaths = list(todo), 0, 0
        while pending:
            with local_pool(min(jobs, len(pending))) as pool:
                pending, done = _run_on(pool, pending, measured, finished, done)
            if pending:
                deaths += 1
                if deaths > RETRIES:
                    raise WorkersLost(f"a worker process died {deaths} times; {len(pending)} of {len(todo)} point(s) "
                                      f"unfinished (the others are in {out}: run the same command again to resume)")
                log(f"a worker process died: {len(pending)} unfinished point(s) run again "
                    f"(retry {deaths} of {RETRIES})")
    rows = results.finish(points)
    summary = {"sweep": spec(sweep), "aggregate": aggregate(sweep, rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _run_on(pool, points: list[Point], measured, finished, done: int) -> tuple[list[Point], int]:
    """Run ``points`` on ``pool``, recording each as it returns; the points lost with a broken local pool,
    and how many are done in all."""
    futures = {pool.submit(measure, p.scenario.model_dump_json()): p for p in points}
    lost = []
    try:
        for future in as_completed(futures):
            point = futures[future]
            try:
                metrics = measured(point, future.result)
            except BrokenProcessPool:  # its worker, or another one of the pool, died
                lost.append(point)
                continue
            done += 1
            finished(done, point, metrics)
    except BaseException as exc:
        # Ctrl-C: leave at once; a crashed point: let the running ones end, so that the
        # pool's threads are not torn down under the exiting interpreter
        pool.shutdown(wait=not isinstance(exc, KeyboardInterrupt), cancel_futures=True)
        raise
    lost_ids = {id(p) for p in lost}
    return [p for p in points if id(p) in lost_ids], done  # in grid order


def fmt_spread(value) -> str:
    return "inf" if value is None else f"{value:.2f}"


def spec(sweep: Sweep) -> dict:
    return {
        "params": [{"name": p.name, "label": p.label, "path": p.path, "values": list(p.values)} for p in sweep.params],
        "locks": list(sweep.locks),
        "seeds": sweep.seeds,
        "code": code_version(),
        "base": sweep.base.model_dump(mode="json"),
    }


def aggregate(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """Per lock and parameter values: mean, sample std, min and max of each metric over seeds.

    A fairness spread is infinite when some vCPU never got the lock; such seeds are counted in
    ``starved_seeds`` and left out of the spread's statistics.
    """
    groups: dict[tuple, list[dict]] = {}
    names = [p.name for p in sweep.params]
    for row in rows:
        groups.setdefault((row["lock"], *(row[n] for n in names)), []).append(row)
    out = []
    for (lock, *values), group in groups.items():
        entry = {"lock": lock, **dict(zip(names, values, strict=True)), "seeds": len(group)}
        entry["starved_seeds"] = sum(1 for r in group if r["fairness_max_over_min"] is None)
        for metric in METRICS:
            xs = [r[metric] for r in group if r.get(metric) is not None]
            if xs:
                entry[metric] = {
                    "mean": statistics.fmean(xs),
                    "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                    "min": min(xs),
                    "max": max(xs),
                }
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------ command
def main(
    params: list[str],
    locks: str | None,
    seeds: str,
    out: str | None,
    scenario_file: str | None,
    flags: dict,
    jobs: str | None,
    plots: bool,
    force: bool = False,
    ray: str | None = None,
) -> int:
    """``pvspin sweep``: exit 0 when done, 1 when a point's guest failed, 2 on bad input, 3 when worker processes
    kept dying (one line on stderr)."""
    from .command import BadInput as FlagError
    from .command import flag_fields, flag_overrides, parse_number

    try:
        if out is None:
            raise BadInput("--out: give the directory for the results (e.g. results/overcommit)")
        check_out(out)
        nseeds = parse_number("--seeds", seeds, minimum=1)
        njobs = parse_number("--jobs", jobs, minimum=1)
        if ray is not None and jobs is not None:
            raise BadInput("--jobs is for processes on this machine; with --ray the cluster's CPUs run the points")
        with watchdog.guard():  # booting every point runs the locks' setup code
            sweep = build_sweep(params, locks, nseeds, scenario_file, flag_overrides(flags), flag_fields(flags))
    except (BadInput, FlagError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        claim_out(Path(out), sweep, force)  # before anything is printed: a refusal is one line
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    points = len(sweep.points())
    print(f"sweep: {points} points ({len(sweep.locks)} lock(s) x "
          + " x ".join(f"{len(p.values)} {p.name}" for p in sweep.params)
          + f" x {sweep.seeds} seed(s)) -> {out}", file=sys.stderr)  # fmt: skip
    started = time.perf_counter()
    watchdog.sigterm_as_interrupt()  # SIGTERM stops as Ctrl-C does: finished points kept, resumable
    try:
        summary = run_sweep(sweep, Path(out), njobs, force=force, ray=ray)
    except KeyboardInterrupt:
        print(f"interrupted: finished points are in {out}; run the same command again to resume", file=sys.stderr)
        return 130
    except SimulationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_GUEST_FAILED
    except WorkersLost as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_WORKERS_LOST
    except (BadInput, RayUnavailable) as err:  # the output directory, found unusable once the sweep is known; no Ray
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    written = [Path(out) / name for name in ("points.csv", "points.jsonl", "summary.json")]
    if plots:
        from .plots import plot_sweep

        written += plot_sweep(summary, Path(out))
    print(f"done in {time.perf_counter() - started:.0f} s: " + ", ".join(str(p) for p in written))
    return 0
