"""What a checking run returns."""

from __future__ import annotations

from dataclasses import dataclass, field

VERIFIED = "verified"
VIOLATION = "violation"
INCOMPLETE = "incomplete"
BOUNDED = "bounded"  # no violation within a preemption bound: not a verification


@dataclass
class CheckResult:
    verdict: str  # verified | violation | incomplete | bounded
    strategy: str
    prop: str | None = None  # the violated property
    detail: str = ""
    moves: list[int] = field(default_factory=list)  # the counterexample, as World moves
    executions: int = 0  # maximal paths explored (exhaustive) or runs (sampling)
    states: int = 0  # distinct states stored (exhaustive)
    transitions: int = 0
    seconds: float = 0.0
    note: str = ""  # why a run is incomplete
    cycle_start: int | None = None  # a liveness lasso: moves[cycle_start:] repeat forever
    truncated: int = 0  # sampling: runs cut at their step limit
