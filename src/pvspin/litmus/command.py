"""``pvspin litmus``: run litmus tests under a memory model, compare with recorded verdicts.

For each test (a directory is read recursively for ``*.litmus``; tests in path order):
its reachable final states, each with its engine's count and ``*>`` where the
condition's proposition holds (litmus7's marks), ``Ok``/``No`` (the condition as written
holds or not), the condition, and herd7's ``Observation NAME Never|Sometimes|Always P N``.
With ``--expect FILE.csv`` (rows ``path,verdict``, paths relative to the CSV's folder, as
in ``../shared/litmus``) it compares the verdicts and ends with the agree / disagree /
unsupported counts, every disagreement and every unsupported test with its reason.
``--json`` prints one object instead.

Exit status: 0, or 1 when some verdict disagrees with the CSV; 2 for bad input (a
missing path, a malformed test or CSV, a memory model without an engine), with one line
on stderr naming the file and line.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import load
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


@dataclass
class Summary:
    memory_model: str
    expect: str | None
    outcomes: list[Outcome] = field(default_factory=list)

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


def execute(paths: list[str], memory_model: str, expect: str | None, engine: str | None = None,
            lkmm_version: str | None = None) -> Summary:
    """Parse every test first (a malformed one stops everything), then run the supported ones.

    A test whose front end has no memory model here (a C test under armv8, an AArch64 test
    under lkmm) is bad input: the model cannot say anything about it.
    """
    check_model(memory_model, engine, lkmm_version)
    version = (lkmm_version or "current") if memory_model == "lkmm" else None
    files = collect(paths)
    base, verdicts = read_expectations(expect) if expect else (None, {})
    summary = Summary(f"{memory_model} {version}" if version else memory_model, expect)
    for path in files:
        item = Outcome(_test_id(path, base), expected=verdicts.get(path.resolve()))
        try:
            item.test = load(path)
        except Malformed as exc:
            raise BadInput(str(exc)) from None
        except Unsupported as exc:
            item.reason = exc.reason
        if item.test is not None and item.test.arch not in ARCHES[memory_model]:
            raise BadInput(f"{path}: {item.test.arch} litmus tests do not run under --memory-model {memory_model} "
                           f"(it takes {', '.join(ARCHES[memory_model])} tests)")
        summary.outcomes.append(item)
    for item in summary.outcomes:
        if item.test is None:
            continue
        try:
            item.result = judge(item.test, outcomes(item.test, memory_model, engine, version))
        except Unsupported as exc:
            item.reason = exc.reason
    return summary


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
    if item.expected is not None:
        lines.append("agree" if item.expected == r.verdict else f"DISAGREE: expected {item.expected}, got {r.verdict}")
    return lines


def render(summary: Summary) -> str:
    lines = []
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
    return {
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


def main(paths: list[str], memory_model: str, expect: str | None, as_json: bool, engine: str | None = None,
         lkmm_version: str | None = None) -> int:
    try:
        summary = execute(paths, memory_model, expect, engine, lkmm_version)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if as_json:
        print(json.dumps(as_dict(summary), indent=2))
    else:
        print(render(summary))
    sys.stdout.flush()
    return EXIT_DISAGREE if summary.disagreements else EXIT_OK
