"""``pvspin litmus``: run litmus tests under a memory model, compare with recorded verdicts.

For each test (a directory is read recursively for ``*.litmus``; tests in path order):
its reachable final states, each with its engine's count and ``*>`` where the
condition's proposition holds (litmus7's marks), ``Ok``/``No`` (the condition as written
holds or not), the condition, and herd7's ``Observation NAME Never|Sometimes|Always P N``.
With ``--expect FILE.csv`` (rows ``path,verdict``, paths relative to the CSV's folder, as
in ``../shared/litmus``) it compares the verdicts and ends with the agree / disagree /
unsupported counts, every disagreement and every unsupported test with its reason.
``--json`` prints one object instead.

``--spinlock LOCK`` (C tests only; :mod:`.spinlock`) runs ``spin_*()`` as the kernel's lock
code instead of lock.cat's abstract lock, under any model (``abstract``, the default, is
today's lock.cat).  With ``--compare-abstract`` every C test that takes a lock runs both
ways -- the lock under ``--memory-model``, the abstract lock under LKMM (the version given,
else current) -- and each test's reachable final states are compared: ``agree``,
``stronger`` (the real lock reaches fewer), ``weaker`` (it reaches a state LKMM's lock
forbids) or ``incomparable``.

Exit status: 0, or 1 when some verdict disagrees with the CSV (with ``--compare-abstract``:
when some test is weaker or incomparable); 2 for bad input (a missing path, a malformed
test or CSV, a memory model without an engine, a ``--spinlock`` that names no lock), with
one line on stderr naming the file and line or the value.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import load
from . import spinlock as spin
from .run import ARCHES, ENGINE_NAMES, ENGINES_BY_NAME, LKMM_VERSIONS, MEMORY_MODELS, judge, outcomes
from .source import Malformed, Unsupported
from .test import LitmusTest, format_state

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2



class BadInput(Exception):
    """Input the command refuses, as one line."""


@dataclass
class Outcome:
    """One test's run: its id (the path shown), and either a result or the reason it is unsupported."""

    test_id: str
    test: LitmusTest | None = None
    result: object = None
    reason: str | None = None
    expected: int | None = None
    lock_run: spin.LockRun | None = None  # with --spinlock LOCK: what the search counted


@dataclass
class Summary:
    memory_model: str
    expect: str | None
    outcomes: list[Outcome] = field(default_factory=list)
    spinlock: str | None = None  # the header's description of the lock, when --spinlock was given

    @property
    def supported(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.reason is None]

    @property
    def disagreements(self) -> list[Outcome]:
        return [o for o in self.supported if o.expected is not None and o.expected != o.result.verdict]

    @property
    def agree(self) -> int:
        return sum(1 for o in self.supported if o.expected is not None and o.expected == o.result.verdict)

    @property
    def unexpected(self) -> list[Outcome]:
        """Supported tests the CSV has no verdict for."""
        return [o for o in self.supported if o.expected is None] if self.expect else []


def collect(paths: list[str]) -> list[Path]:
    """The litmus files named: files as given, directories searched recursively, in sorted order, once each."""
    found: dict[Path, Path] = {}
    for text in paths:
        if not text:  # Path("") is the current directory: not what an empty argument meant
            raise BadInput("litmus path '': give a file or a directory")
        path = Path(text)
        if path.is_dir():
            files = sorted(path.rglob("*.litmus"))
            if not files:
                raise BadInput(f"{text}: no .litmus files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise BadInput(f"{text}: no such file or directory")
        for f in files:
            found.setdefault(f.resolve(), f)
    return sorted(found.values())


def read_expectations(text: str) -> tuple[Path, dict[Path, int]]:
    """The CSV's folder and its verdicts by resolved test path; :class:`BadInput` naming file and line."""
    path = Path(text)
    if not path.is_file():
        raise BadInput(f"--expect {text}: no such file")
    base = path.resolve().parent
    verdicts: dict[Path, int] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise BadInput(f"{text}:{number}: expected 'path,0' or 'path,1', got {','.join(row)!r}")
            verdicts[(base / row[0].strip()).resolve()] = int(row[1])
    return base, verdicts


def _test_id(path: Path, base: Path | None) -> str:
    """A test as the CSV names it (relative to its folder) when it lies below it, else the path as found."""
    if base is not None:
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def check_model(memory_model: str, engine: str | None, lkmm_version: str | None = None) -> None:
    if memory_model not in MEMORY_MODELS:
        raise BadInput(f"--memory-model {memory_model!r}: expected one of {', '.join(MEMORY_MODELS)}")
    if lkmm_version is not None and memory_model != "lkmm":
        raise BadInput(f"--lkmm-version {lkmm_version}: only with --memory-model lkmm, not {memory_model}")
    if lkmm_version is not None and lkmm_version not in LKMM_VERSIONS:
        raise BadInput(f"--lkmm-version {lkmm_version!r}: expected one of {', '.join(LKMM_VERSIONS)}")
    if engine is not None and engine not in ENGINE_NAMES:
        raise BadInput(f"--engine {engine!r}: expected one of {', '.join(ENGINE_NAMES)}")
    if engine is not None and (memory_model, engine) not in ENGINES_BY_NAME:
        raise BadInput(f"--engine {engine}: there is no {engine} engine for --memory-model {memory_model} "
                       f"({'ARMv8 is' if memory_model == 'armv8' else 'LKMM is'} not a store-buffer machine: "
                       "only the execution-graph checker runs it)")


def kernel_lock(spinlock: str | None, memory_model: str, engine: str | None) -> spin.KernelLock | None:
    """The lock ``--spinlock`` names (None: lock.cat's abstract lock); :class:`BadInput` naming the value."""
    if spinlock is None or spinlock == spin.ABSTRACT:
        return None
    try:
        lock = spin.KernelLock(spinlock, memory_model)
    except spin.BadSpinlock as exc:
        raise BadInput(str(exc)) from None
    if engine not in (None, "graph"):
        raise BadInput(f"--spinlock {spinlock} --engine {engine}: the lock's spin-waits are the execution-graph "
                       "checker's awaits (use --engine graph or leave --engine out)")
    return lock


def read_tests(summary: Summary, files: list[Path], base: Path | None, verdicts: dict, memory_model: str,
               spinlock: str | None) -> None:
    """Parse every test (a malformed one stops everything) into ``summary``; refuse tests the run cannot take."""
    for path in files:
        item = Outcome(_test_id(path, base), expected=verdicts.get(path.resolve()))
        try:
            item.test = load(path)
        except Malformed as exc:
            raise BadInput(str(exc)) from None
        except Unsupported as exc:
            item.reason = exc.reason
        if item.test is not None and spinlock is not None and item.test.arch != "C":
            raise BadInput(f"--spinlock {spinlock}: {path} is an {item.test.arch} test; the lock is what a C "
                           "test's spin_*() calls")
        if item.test is not None and item.test.arch not in ARCHES[memory_model] and (
                spinlock in (None, spin.ABSTRACT)):
            raise BadInput(f"{path}: {item.test.arch} litmus tests do not run under --memory-model {memory_model} "
                           f"(it takes {', '.join(ARCHES[memory_model])} tests)")
        summary.outcomes.append(item)


def execute(paths: list[str], memory_model: str, expect: str | None, engine: str | None = None,
            lkmm_version: str | None = None, spinlock: str | None = None, jobs: int = 1) -> Summary:
    """Parse every test first (a malformed one stops everything), then run the supported ones,
    on ``jobs`` processes (each test whole on one; the summary is the same in every case).

    A test whose front end has no memory model here (a C test under armv8 with the abstract
    lock, an AArch64 test under lkmm) is bad input: the model cannot say anything about it.
    With a real ``spinlock`` C tests run under every model.
    """
    if jobs < 1:
        raise BadInput(f"--jobs {jobs}: expected a positive number of processes")
    check_model(memory_model, engine, lkmm_version)
    lock = kernel_lock(spinlock, memory_model, engine)
    version = (lkmm_version or "current") if memory_model == "lkmm" else None
    files = collect(paths)
    base, verdicts = read_expectations(expect) if expect else (None, {})
    summary = Summary(f"{memory_model} {version}" if version else memory_model, expect)
    if spinlock is not None:
        summary.spinlock = lock.describe(memory_model) if lock else ABSTRACT_DESCRIPTION
    read_tests(summary, files, base, verdicts, memory_model, spinlock)
    todo = [item for item in summary.outcomes if item.test is not None]
    if lock is not None:  # built once: here, and in the workers forked from here
        _locks[spinlock, memory_model] = lock
    run_one = partial(_run_one, memory_model=memory_model, engine=engine, version=version,
                      spinlock=None if lock is None else spinlock)
    if jobs == 1 or len(todo) < 2:
        done = [run_one(item.test) for item in todo]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(todo))) as pool:
            done = list(pool.map(run_one, [item.test for item in todo], chunksize=4))
    for item, (result, lock_run, reason) in zip(todo, done, strict=True):
        item.result, item.lock_run, item.reason = result, lock_run, reason
    return summary


_locks: dict[tuple[str, str], spin.KernelLock] = {}  # per process: the --spinlock locks built


def _run_one(test: LitmusTest, memory_model: str, engine: str | None, version: str | None, spinlock: str | None):
    """One test's (result, lock run, reason it is unsupported); in a worker process as in the command's."""
    try:
        if spinlock is None:
            return judge(test, outcomes(test, memory_model, engine, version)), None, None
        lock = _locks.get((spinlock, memory_model))
        if lock is None:
            lock = _locks[spinlock, memory_model] = spin.KernelLock(spinlock, memory_model)
        run = spin.run(test, lock, memory_model, version)
        return judge(test, run.outcomes), run, None
    except Unsupported as exc:
        return None, None, exc.reason


ABSTRACT_DESCRIPTION = "abstract (lock.cat's LKR/LKW/UL/RL/RU events)"


# --------------------------------------------------------------------------- output
def render_test(item: Outcome) -> list[str]:
    if item.reason is not None:
        return [f"Test {item.test_id}", item.reason]
    r = item.result
    inst = item.test.instance()
    lines = [f"Test {item.test_id}: {item.test.name} ({item.test.arch})", f"States {len(r.states)}"]
    for state, count in r.states.items():
        mark = "*>" if state in r.satisfied else ":>"
        lines.append(f"{count:<6} {mark} {format_state(state, inst)}")
    lines.append("Ok" if r.verdict else "No")
    lines.append(f"Condition {item.test.condition}")
    lines.append(r.observation)
    if item.lock_run is not None:
        lines.extend(_lock_lines(item.lock_run))
    if item.expected is not None:
        lines.append("agree" if item.expected == r.verdict else f"DISAGREE: expected {item.expected}, got {r.verdict}")
    return lines


def _lock_lines(run: spin.LockRun, indent: str = "") -> list[str]:
    """What a run with a real lock counted besides executions: never dropped silently."""
    lines = [f"{indent}run: {run.note}"]
    if run.first_stuck:
        lines.append(f"{indent}stuck (a CPU spins forever; the first): {run.first_stuck}")
    if run.cut:
        lines.append(f"{indent}bounded: the final states are those of the executions within the loop bound")
    return lines


def _lowered(runs) -> str:
    """The lowered fields of every run, by field name (``locked in val``): the same for every lock of a test."""
    fields = set()
    for run in runs:
        for text in run.lowered:
            m = re.fullmatch(r"[^.\s]+\.(\S+) in [^.\s]+\.(\S+)", text)
            fields.add(f"{m.group(1)} in {m.group(2)}" if m else text)
    if not fields:
        return "checked: no sub-word access of a lock word was made"
    return "checked: the lock word's sub-word accesses as whole-word RMWs (check/graph/wholeword.py): " + \
        ", ".join(sorted(fields))


def _model(name: str) -> str:
    """``lkmm current`` as the check command's header spells a model: ``LKMM current``."""
    model, _, version = name.partition(" ")
    return f"{model.upper()} {version}".strip()


def render(summary: Summary) -> str:
    lines = []
    if summary.spinlock:
        runs = [o.lock_run for o in summary.outcomes if o.lock_run is not None]
        lines = [f"spinlock: {summary.spinlock}",
                 _lowered(runs) if not summary.spinlock.startswith(spin.ABSTRACT) else
                 "checked: lock.cat's lock, as without --spinlock", ""]
    for item in summary.outcomes:
        lines.extend(render_test(item))
        lines.append("")
    unsupported = [o for o in summary.outcomes if o.reason is not None]
    lines.append(f"{len(summary.outcomes)} tests under {summary.memory_model}: {len(summary.supported)} supported, "
                 f"{len(unsupported)} unsupported")
    if summary.expect:
        lines.append(f"against {summary.expect}: {summary.agree} agree, {len(summary.disagreements)} disagree, "
                     f"{len(unsupported)} unsupported, {len(summary.unexpected)} without a recorded verdict")
        for o in summary.disagreements:
            lines.append(f"disagree: {o.test_id}: expected {o.expected}, got {o.result.verdict}")
    for o in unsupported:
        lines.append(f"unsupported: {o.test_id}: {o.reason.removeprefix('unsupported: ')}")
    return "\n".join(lines)


def as_dict(summary: Summary) -> dict:
    results = []
    for o in summary.supported:
        inst = o.test.instance()
        results.append({
            "test": o.test_id, "name": o.test.name, "arch": o.test.arch, "verdict": o.result.verdict,
            "expected": o.expected, "observation": o.result.observation,
            "states": [{"state": format_state(s, inst), "count": n, "satisfies": s in o.result.satisfied}
                       for s, n in o.result.states.items()],
        })
        if o.lock_run is not None:
            results[-1]["spinlock_run"] = _run_dict(o.lock_run)
    extra = {"spinlock": summary.spinlock} if summary.spinlock else {}
    return {
        **extra,
        "memory_model": summary.memory_model,
        "expect": summary.expect,
        "tests": len(summary.outcomes),
        "supported": len(summary.supported),
        "agree": summary.agree,
        "disagree": len(summary.disagreements),
        "without_verdict": [o.test_id for o in summary.unexpected],
        "unsupported": [{"test": o.test_id, "reason": o.reason} for o in summary.outcomes if o.reason is not None],
        "disagreements": [{"test": o.test_id, "expected": o.expected, "got": o.result.verdict}
                          for o in summary.disagreements],
        "results": results,
    }


def _run_dict(run: spin.LockRun) -> dict:
    return {"executions": run.executions, "stuck": run.stuck, "first_stuck": run.first_stuck, "cut": run.cut,
            "graphs": run.graphs, "seconds": round(run.seconds, 3), "lowered": run.lowered}


# --------------------------------------------------------------------------- --compare-abstract
AGREE, STRONGER, WEAKER, INCOMPARABLE = "agree", "stronger", "weaker", "incomparable"


@dataclass
class Comparison:
    """One lock-taking test both ways: the abstract lock under LKMM, the real lock under the run's model."""

    test_id: str
    test: LitmusTest
    abstract: object = None  # run.Result
    real: object = None  # run.Result
    lock_run: spin.LockRun | None = None
    reason: str | None = None  # why it was not compared (which side is unsupported)

    @property
    def relation(self) -> str:
        a, b = set(self.abstract.states), set(self.real.states)
        if a == b:
            return AGREE
        return STRONGER if b < a else WEAKER if a < b else INCOMPARABLE


@dataclass
class CompareSummary:
    spinlock: str
    memory_model: str
    reference: str
    tests: int = 0  # files read
    unreadable: list[Outcome] = field(default_factory=list)  # the C front end refused them: no lock known
    no_lock: int = 0
    items: list[Comparison] = field(default_factory=list)

    @property
    def compared(self) -> list[Comparison]:
        return [c for c in self.items if c.reason is None]

    def count(self, relation: str) -> int:
        return sum(1 for c in self.compared if c.relation == relation)


def compare(paths: list[str], memory_model: str, engine: str | None, lkmm_version: str | None,
            spinlock: str | None) -> CompareSummary:
    """Every C test that takes a lock, with lock.cat's lock under LKMM and with ``spinlock`` under the model."""
    check_model(memory_model, engine, lkmm_version)
    if spinlock in (None, spin.ABSTRACT):
        raise BadInput("--compare-abstract compares a real lock with the abstract one: give --spinlock LOCK "
                       f"({', '.join(spin.NAMED)} or path/to/file.py:NAME)")
    lock = kernel_lock(spinlock, memory_model, engine)
    version = (lkmm_version or "current") if memory_model == "lkmm" else None
    reference = lkmm_version or "current"
    summary = CompareSummary(lock.describe(memory_model), f"{memory_model} {version}" if version else memory_model,
                             f"lkmm {reference}")
    holder = Summary(summary.memory_model, None)
    read_tests(holder, collect(paths), None, {}, memory_model, spinlock)
    summary.tests = len(holder.outcomes)
    for item in holder.outcomes:
        if item.test is None:
            summary.unreadable.append(item)
            continue
        if not item.test.locks:
            summary.no_lock += 1
            continue
        c = Comparison(item.test_id, item.test)
        try:
            c.abstract = judge(item.test, outcomes(item.test, "lkmm", None, reference))
        except Unsupported as exc:
            c.reason = f"abstract lock: {exc.reason.removeprefix('unsupported: ')}"
        if c.reason is None:
            try:
                c.lock_run = spin.run(item.test, lock, memory_model, version)
                c.real = judge(item.test, c.lock_run.outcomes)
            except Unsupported as exc:
                c.reason = f"{lock.name}: {exc.reason.removeprefix('unsupported: ')}"
        summary.items.append(c)
    return summary


def _verdict_word(result) -> str:
    return result.observation.split()[2]  # Never / Sometimes / Always


def render_compare(summary: CompareSummary, name: str) -> str:
    lines = [f"spinlock: {summary.spinlock}, under {_model(summary.memory_model)}",
             f"compared with: lock.cat's abstract lock under {_model(summary.reference)}",
             _lowered(c.lock_run for c in summary.compared), ""]
    for c in summary.items:
        if c.reason is not None:
            lines.append(f"Test {c.test_id}: not compared: {c.reason}")
            continue
        a, b, rel = c.abstract, c.real, c.relation
        verdicts = f"abstract {_verdict_word(a)}, {name} {_verdict_word(b)}"
        if rel == AGREE:
            lines.append(f"Test {c.test_id}: agree: {verdicts}, {len(a.states)} states "
                         f"({name}: {c.lock_run.note})")
            lines.extend(_lock_lines(c.lock_run, "  ")[1:])
            continue
        sa, sb = set(a.states), set(b.states)
        what = {STRONGER: f"{name} reaches {len(sa - sb)} final state(s) fewer",
                WEAKER: f"{name} reaches {len(sb - sa)} final state(s) the abstract lock does not",
                INCOMPARABLE: f"{len(sb - sa)} state(s) only with {name}, {len(sa - sb)} only with the abstract lock"}
        lines.append(f"Test {c.test_id}: DIFFER, {rel}: {what[rel]}; {verdicts}")
        lines.append(f"  Condition {c.test.condition}")
        inst = c.test.instance()
        for label, result, other in (("abstract", a, sb), (name, b, sa)):
            lines.append(f"  {label}: States {len(result.states)}")
            for state in result.states:
                mark = "*>" if state in result.satisfied else ":>"
                only = "" if state in other else f"   <- {label} only"
                lines.append(f"    {mark} {format_state(state, inst)}{only}")
        lines.extend(_lock_lines(c.lock_run, "  "))
    lines.append("")
    compared = summary.compared
    differ = len(compared) - summary.count(AGREE)
    lines.append(f"{summary.tests} tests: {len(summary.items)} take a lock, {summary.no_lock} take none (not run), "
                 f"{len(summary.unreadable)} unsupported by the C front end")
    lines.append(f"of the {len(summary.items)}: {summary.count(AGREE)} agree, {differ} differ ({summary.count(WEAKER)} "
                 f"weaker, {summary.count(STRONGER)} stronger, {summary.count(INCOMPARABLE)} incomparable), "
                 f"{len(summary.items) - len(compared)} not compared")
    for c in compared:
        if c.relation != AGREE:
            lines.append(f"{c.relation}: {c.test_id}: abstract {_verdict_word(c.abstract)}, "
                         f"{name} {_verdict_word(c.real)}")
    for c in summary.items:
        if c.reason is not None:
            lines.append(f"not compared: {c.test_id}: {c.reason}")
    for o in summary.unreadable:
        lines.append(f"unsupported: {o.test_id}: {o.reason.removeprefix('unsupported: ')}")
    return "\n".join(lines)


def compare_dict(summary: CompareSummary) -> dict:
    def side(result, inst, run=None) -> dict:
        states = [{"state": format_state(s, inst), "count": n, "satisfies": s in result.satisfied}
                  for s, n in result.states.items()]
        out = {"verdict": result.verdict, "observation": result.observation, "states": states}
        if run is not None:
            out.update(_run_dict(run))
        return out

    results = []
    for c in summary.items:
        inst = c.test.instance()
        entry = {"test": c.test_id, "name": c.test.name, "locks": sorted(c.test.locks)}
        if c.reason is not None:
            entry["not_compared"] = c.reason
        else:
            entry.update({"relation": c.relation, "agree": c.relation == AGREE, "abstract": side(c.abstract, inst),
                          "spinlock": side(c.real, inst, c.lock_run)})
        results.append(entry)
    compared = summary.compared
    return {
        "spinlock": summary.spinlock, "memory_model": summary.memory_model, "reference": summary.reference,
        "tests": summary.tests, "take_a_lock": len(summary.items), "no_lock": summary.no_lock,
        "agree": summary.count(AGREE), "differ": len(compared) - summary.count(AGREE),
        "weaker": summary.count(WEAKER), "stronger": summary.count(STRONGER),
        "incomparable": summary.count(INCOMPARABLE), "not_compared": len(summary.items) - len(compared),
        "unsupported": [{"test": o.test_id, "reason": o.reason} for o in summary.unreadable],
        "results": results,
    }


def main(paths: list[str], memory_model: str, expect: str | None, as_json: bool, engine: str | None = None,
         lkmm_version: str | None = None, spinlock: str | None = None, compare_abstract: bool = False,
         jobs: int = 1) -> int:
    try:
        if compare_abstract:
            if expect:
                raise BadInput("--compare-abstract compares two runs of each test; --expect compares one run with "
                               "a CSV: give one of them")
            if jobs != 1:
                raise BadInput(f"--jobs {jobs}: --compare-abstract runs on one process")
            comparison = compare(paths, memory_model, engine, lkmm_version, spinlock)
        else:
            summary = execute(paths, memory_model, expect, engine, lkmm_version, spinlock, jobs)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if compare_abstract:
        print(json.dumps(compare_dict(comparison), indent=2) if as_json else render_compare(comparison, spinlock))
        sys.stdout.flush()
        worse = comparison.count(WEAKER) + comparison.count(INCOMPARABLE)
        return EXIT_DISAGREE if worse else EXIT_OK
    if as_json:
        print(json.dumps(as_dict(summary), indent=2))
    else:
        print(render(summary))
    sys.stdout.flush()
    return EXIT_DISAGREE if summary.disagreements else EXIT_OK
