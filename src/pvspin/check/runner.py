"""One checking run from options to report: build the world, pick the strategy, explain the result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..kernel.declarations import UNDECLARED
from ..kernel.userlock import canonical_name
from . import cycles, preemption, token
from .bugs import split
from .exhaustive import explore
from .harness import BadInput, make_setup
from .pct import MAX_DEPTH, default_depth, pct
from .randomwalk import random_walks
from .report import NotEnabled, Step, trace
from .result import VIOLATION, CheckResult
from .symmetry import SymmetryError
from .world import MEMORY_MODELS, SYMMETRIES, Violation, World

STRATEGIES = ("exhaustive", "random", "pct", "bounded", "graph")
CHECK_MODELS = (*MEMORY_MODELS, "armv8", "lkmm")  # armv8 and lkmm run on the execution-graph checker only
GRAPH_ONLY = ("armv8", "lkmm")


@dataclass
class CheckOptions:
    lock: str = "qspinlock"
    cpus: int = 2
    acquisitions: int = 1
    memory_model: str = "sc"
    bugs: tuple[str, ...] = ()
    strategy: str = "exhaustive"
    runs: int = 1000
    seed: int = 0
    preemptions: int = 2  # the bounded strategy's bound
    pct_depth: int | None = None  # PCT's bug depth (None: pct.default_depth() of the configuration)
    spurious_wakeups: int = 0
    interrupts: int = 0
    workload: str = "locktorture"
    replay: str | None = None
    max_states: int | None = None
    max_seconds: float | None = None  # the command's deadline (pvspin.machine.watchdog)
    given: frozenset = frozenset()  # the options given on the command line (their flags), for conflicts
    symmetry: str = "auto"  # auto, full, start or none: reduction over CPUs running the same code (see World)
    overrides: dict = field(default_factory=dict)  # LockConfig knobs
    lkmm_version: str | None = None  # with memory_model "lkmm": v00, v01 or current (None: current)
    jobs: int = 1  # workers: local processes, or with ``ray`` Ray workers (see pvspin.check.partitioned, .swarm)
    ray: str | None = None  # a Ray cluster's address, or pvspin.parallel.LOCAL for one started for the run

    def depth(self) -> int:
        """The PCT depth this run uses: the one given, else the configuration's default."""
        return self.pct_depth if self.pct_depth is not None else default_depth(self.cpus, self.interrupts)

    def fingerprint(self) -> dict:
        # a user's lock by file name and NAME: the token replays however the path is spelled
        lock = canonical_name(self.lock) if ":" in self.lock else self.lock
        return {
            "lock": lock, "cpus": self.cpus, "acquisitions": self.acquisitions,
            "memory_model": self.memory_model, "bugs": ",".join(sorted(self.bugs)),
            "spurious": self.spurious_wakeups, "interrupts": self.interrupts, "workload": self.workload,
            "overrides": ",".join(f"{k}={v}" for k, v in sorted(self.overrides.items())),
            **({} if self.symmetry == "auto" else {"symmetry": self.symmetry}),
            **({} if self.lkmm_version is None else {"lkmm_version": self.lkmm_version}),
        }


# Small bounds for checking, for the knobs a lock declares reading: every bounded spin is one
# nondeterministic choice anyway, but guest loops written around cpu_relax() would otherwise
# unroll the kernel's 2^15.
CHECK_KNOBS = {"pending_loops": 2, "spin_threshold": 2, "pv_prev_check_mask": 1}


@dataclass
class Report:
    options: CheckOptions
    result: CheckResult
    steps: list[Step] = field(default_factory=list)
    replay: str | None = None
    preemptions: int = 0
    symmetry: str = ""  # the reduction the search used (what auto chose)
    constants: dict = field(default_factory=dict)  # the knobs the lock reads, where not the kernel's values
    declared: bool = True  # False: the lock declares nothing, so the search reduced nothing

    def as_dict(self) -> dict:
        r = self.result
        return {
            "verdict": r.verdict, "property": r.prop, "detail": r.detail, "strategy": r.strategy,
            "lock": self.options.lock, "cpus": self.options.cpus, "acquisitions": self.options.acquisitions,
            "memory_model": self.options.memory_model, "bugs": list(self.options.bugs),
            "executions": r.executions, "states": r.states, "transitions": r.transitions,
            "seconds": round(r.seconds, 3), "note": r.note, "replay": self.replay, "symmetry": self.symmetry,
            "constants": self.constants, "declared": self.declared,
            "preemptions": self.preemptions if r.verdict == VIOLATION else None,
            "cycle_start": r.cycle_start,
            "steps": [s.as_dict() for s in self.steps],
        }


# Options that mean something only beside others: (option, when it means something, what it needs).
CONFLICTS = (
    ("--runs", lambda o: o.strategy in ("random", "pct") and o.replay is None, "--strategy random or pct"),
    ("--seed", lambda o: o.strategy in ("random", "pct") and o.replay is None, "--strategy random or pct"),
    ("--preemptions", lambda o: o.strategy == "bounded" and o.replay is None, "--strategy bounded"),
    ("--pct-depth", lambda o: o.strategy == "pct" and o.replay is None, "--strategy pct"),
    # --strategy graph names the engine, which a replay needs; the others are searches
    ("--strategy", lambda o: o.replay is None or o.strategy == "graph",
     "a search (--replay re-runs one recorded execution)"),
    ("--max-states", lambda o: o.replay is None and o.strategy in ("exhaustive", "bounded", "graph"),
     "an exhaustive, bounded or graph search"),
    ("--max-seconds", lambda o: o.replay is None, "a search, not --replay"),
    ("--jobs", lambda o: o.replay is None and o.strategy != "bounded",
     "the exhaustive, random and pct searches and the execution-graph checker (the bounded search runs on one "
     "core for now)"),
    ("--ray", lambda o: o.replay is None and o.strategy != "bounded" and not uses_graphs(o),
     "the exhaustive, random and pct searches of the interleaving checker (the bounded search and the "
     "execution-graph checker run on local cores only, --jobs, for now)"),
)


def refuse_conflicts(opts: CheckOptions) -> None:
    """Options given where they mean nothing are refused, not ignored (both engines)."""
    for option, meaningful, needs in CONFLICTS:
        if option in opts.given and not meaningful(opts):
            shown = f"--strategy {opts.strategy}" if opts.replay is None else "--replay"
            raise BadInput(f"{option} means nothing with {shown}: it is for {needs}")
    if opts.max_states is not None and opts.max_states < 1:
        raise BadInput(f"--max-states {opts.max_states}: need at least 1")
    if opts.jobs < 1:
        raise BadInput(f"--jobs {opts.jobs}: need at least 1")


def validate(opts: CheckOptions) -> None:
    """Refuse values the checker cannot use, and options given where they mean nothing."""
    refuse_conflicts(opts)
    if opts.memory_model not in CHECK_MODELS:
        raise BadInput(f"--memory-model {opts.memory_model!r}: choose from {', '.join(CHECK_MODELS)}")
    if opts.lkmm_version is not None and opts.memory_model != "lkmm":
        raise BadInput(f"--lkmm-version {opts.lkmm_version}: only with --memory-model lkmm")
    if opts.strategy not in STRATEGIES:
        raise BadInput(f"--strategy {opts.strategy!r}: choose from {', '.join(STRATEGIES)}")
    if opts.preemptions < 0:
        raise BadInput(f"--preemptions {opts.preemptions}: must not be negative")
    if opts.runs < 1:
        raise BadInput(f"--runs {opts.runs}: need at least 1")
    if opts.pct_depth is not None and not 1 <= opts.pct_depth <= MAX_DEPTH:
        raise BadInput(f"--pct-depth {opts.pct_depth}: must be 1 to {MAX_DEPTH}")
    if opts.symmetry not in SYMMETRIES:
        raise BadInput(f"--symmetry {opts.symmetry!r}: choose from {', '.join(SYMMETRIES)}")
    if opts.spurious_wakeups < 0:
        raise BadInput(f"--spurious-wakeups {opts.spurious_wakeups}: must not be negative")
    try:
        split(opts.bugs)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if opts.overrides:
        from ..kernel.config import LockConfig

        try:
            LockConfig(**{**CHECK_KNOBS, **opts.overrides})
        except ValueError as exc:
            raise BadInput(f"--knob: {exc}") from None


def build_world(opts: CheckOptions) -> World:
    validate(opts)
    kernel_bugs, hv_bugs = split(opts.bugs)
    setup = make_setup(opts.lock, opts.cpus, opts.acquisitions, opts.interrupts, kernel_bugs, CHECK_KNOBS,
                       opts.workload, hv_bugs, knobs=opts.overrides)
    return World(setup, opts.memory_model, opts.spurious_wakeups, opts.interrupts,
                 kick_latch="pv-wait-no-latch" not in hv_bugs, symmetry=opts.symmetry)


def uses_graphs(opts: CheckOptions) -> bool:
    """Whether the execution-graph checker runs this: ARMv8 and the LKMM always, SC and TSO with ``--strategy graph``."""
    return opts.memory_model in GRAPH_ONLY or opts.strategy == "graph"


def run(opts: CheckOptions, progress=None) -> Report:
    try:
        return _run(opts, progress)
    except SymmetryError as exc:
        raise BadInput(f"full symmetry: {exc} (--symmetry start checks without renaming)") from None


def _run(opts: CheckOptions, progress) -> Report:
    try:
        world = build_world(opts)
    except Violation as v:  # before any move: every CPU's code runs to its first visible operation
        result = CheckResult(VIOLATION, opts.strategy, v.prop, v.detail, executions=1, states=1)
        return Report(opts, result, replay=token.encode(opts.fingerprint(), []))
    if opts.replay is not None:
        try:
            moves = token.decode(opts.fingerprint(), opts.replay)
        except token.BadToken as exc:
            raise BadInput(str(exc)) from None
        return _replay(opts, world, moves)
    parallel = opts.jobs > 1 or opts.ray is not None
    if parallel:
        result = _in_parallel(opts, progress)
    elif opts.strategy == "exhaustive":
        result = explore(world, max_states=opts.max_states, progress=progress)
    elif opts.strategy == "random":
        result = random_walks(world, opts.runs, opts.seed, progress=progress)
    elif opts.strategy == "pct":
        result = pct(world, opts.runs, opts.seed, opts.depth(), progress=progress)
    else:
        result = preemption.search(world, opts.preemptions, max_states=opts.max_states, progress=progress)
    # only the exhaustive search keys states by orbit; the others keep start order at most
    used = world.symmetry_used if opts.strategy == "exhaustive" or not world.twins else "start"
    report = Report(opts, result, symmetry=used, **_lock_facts(world))
    if result.verdict == VIOLATION:
        hang = result.prop == "guest-hang"  # each replay would wait out the watchdog again: replay once
        if result.cycle_start is None and not hang:  # a lasso is kept as found: the bounded search looks for safety only
            # the preferred one of the fewest preemptions: it does not depend on which one was found
            # first (which, in a parallel search, depends on timing)
            result.moves = preemption.fewest_preemptions(lambda: build_world(opts), result.moves)
            result.prop, result.detail = _outcome(opts, result.moves)
        report.replay = token.encode(opts.fingerprint(), result.moves)
        report.preemptions = preemption.count(build_world(opts), result.moves[:-1] if hang else result.moves)
        report.steps, _ = trace(build_world(opts), result.moves, _words(world))
    return report


def _in_parallel(opts: CheckOptions, progress) -> CheckResult:
    """The search on ``opts.jobs`` local processes, or on a Ray cluster (as many workers as it has CPUs, or --jobs)."""
    from ..machine import watchdog
    from ..parallel import RayPool, RayUnavailable, RenewablePool
    from . import partitioned, swarm

    watchdog.watch(time.monotonic_ns)  # guest code runs in the workers, each with its own watchdog, not here
    try:
        ray = RayPool(opts.ray) if opts.ray is not None else None
    except RayUnavailable as exc:
        raise BadInput(str(exc)) from None
    workers = opts.jobs if ray is None or "--jobs" in opts.given else ray.cpus()
    try:
        if opts.strategy == "exhaustive":
            return partitioned.explore(opts, workers, ray, max_states=opts.max_states, progress=progress)
        if ray is not None:
            return swarm.sample(opts, workers, ray, progress=progress)
        with RenewablePool(workers, "the check") as pool:
            return swarm.sample(opts, workers, pool, progress=progress)
    finally:
        if ray is not None:
            ray.shutdown()


def _outcome(opts: CheckOptions, moves: list[int]) -> tuple[str, str]:
    """The property a safety counterexample violates, and how (it may differ from the first one found)."""
    world = build_world(opts)
    try:
        for move in moves:
            world.execute(move)
    except Violation as v:
        return v.prop, v.detail
    v = world.terminal_violation()
    return v.prop, v.detail


def _replay(opts: CheckOptions, world: World, moves: list[int]) -> Report:
    result = CheckResult("verified", "replay", executions=1)
    steps, error = trace(world, moves, _words(world))
    if isinstance(error, NotEnabled):
        raise BadInput(f"--replay: the token does not fit this configuration ({error})")
    if error is None:
        if world.enabled():
            error, result.cycle_start = _lasso(opts, moves)
        else:
            error = world.terminal_violation()
        if error is None:
            raise BadInput("--replay: the token ends before the execution does (not a complete counterexample)")
    if error is not None:
        result.verdict, result.prop, result.detail = VIOLATION, error.prop, error.detail
    result.moves = moves
    result.transitions = len(moves)
    return Report(opts, result, steps, opts.replay, preemption.count(build_world(opts), moves), **_lock_facts(world))


def _lock_facts(world: World) -> dict:
    """What the report header says of the lock: the constants it ran with, whether it declared anything."""
    return {"constants": world.setup.constants, "declared": world.setup.declared != UNDECLARED}


def _lasso(opts: CheckOptions, moves: list[int]) -> tuple[Violation | None, int | None]:
    """A liveness counterexample ends where its cycle closes: find the cycle and judge it (check/cycles.py).

    Returns the violation and the index of the cycle's first move, or (None, None).
    """
    world = build_world(opts)
    hashes, runs, flushes, flags, unfinished = [], [], [], [], []
    for move in moves:
        hashes.append(hash(world.key()))
        run, flush = cycles.masks(world.enabled())
        runs.append(run)
        flushes.append(flush)
        unfinished.append(sum(1 << c for c in range(world.n) if world.ctxs[c]))
        world.execute(move)
        flags.append(world.progressed | world.wrote << 1)
    end = hash(world.key())
    if end not in hashes:
        return None, None
    at = hashes.index(end)
    verdict = cycles.judge(world.n, moves[at:], runs[at:], flushes[at:], flags[at:], unfinished[at])
    if verdict is None:
        return None, None
    kind, starved = verdict
    return Violation(kind, cycles.describe(kind, starved, at + 1, len(moves))), at


def _words(world: World):
    setup = world.setup
    q = setup.lock.q if setup.declared.word == "qspinlock" else None
    return [(v.name, v.val.addr, q) for v in setup.views if hasattr(v, "val") and v.val.size == 4]
