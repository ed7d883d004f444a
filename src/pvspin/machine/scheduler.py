"""Who runs next: the one decision both drivers delegate.

Modelled on shuttle's three-method ``Scheduler``.  The timed simulator consults it
whenever several vCPUs are ready at the same cycle (its tie-breaks decide who wins a
race, so a different seed gives a different but equally legal schedule); the model
checker's strategies implement it to enumerate or sample interleavings.

Invariants a scheduler may rely on, and must keep:

* ``next_cpu`` is called only with a non-empty, ascending tuple of CPU numbers, and
  returns one of them (returning None abandons the execution).
* ``current`` is the CPU that took the previous step, or None; it is a hint (for
  preemption bounding, PCT), not a constraint.
* ``next_choice(n)`` returns an integer in ``[0, n)``; it resolves nondeterminism that is
  not a CPU choice (a bounded spin timing out, a spurious wake-up, a preempted answer).
* Within one execution the answers depend only on the history of questions asked, so a
  recorded list of answers replays the execution exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class Scheduler(Protocol):
    def new_execution(self) -> bool:
        """Prepare the next execution; False when there is none left to run."""

    def next_cpu(self, runnable: Sequence[int], current: int | None) -> int | None:
        """Pick the CPU that performs the next step."""

    def next_choice(self, n: int) -> int:
        """Pick an outcome of a nondeterministic choice among ``n``."""


class RandomScheduler:
    """Uniformly random choices from a seeded generator: same seed, same schedule."""

    def __init__(self, seed: int = 0, executions: int = 1):
        self.rng = random.Random(seed)
        self.remaining = executions

    def new_execution(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def next_cpu(self, runnable: Sequence[int], current: int | None) -> int | None:
        if len(runnable) == 1:
            return runnable[0]
        return runnable[self.rng.randrange(len(runnable))]

    def next_choice(self, n: int) -> int:
        return self.rng.randrange(n) if n > 1 else 0


class ReplayScheduler:
    """Replays a recorded list of answers (CPU numbers and choices, in the order asked)."""

    def __init__(self, answers: Sequence[int]):
        self.answers = list(answers)
        self.pos = 0
        self.started = False

    def new_execution(self) -> bool:
        if self.started:
            return False
        self.started = True
        return True

    def _next(self) -> int:
        if self.pos >= len(self.answers):
            raise IndexError("replay schedule exhausted")
        answer = self.answers[self.pos]
        self.pos += 1
        return answer

    def next_cpu(self, runnable: Sequence[int], current: int | None) -> int | None:
        cpu = self._next()
        if cpu not in runnable:
            raise ValueError(f"replay schedule names cpu{cpu}, which cannot run now (runnable: {list(runnable)})")
        return cpu

    def next_choice(self, n: int) -> int:
        answer = self._next()
        if not 0 <= answer < n:
            raise ValueError(f"replay schedule answers {answer} to a choice among {n}")
        return answer


class RecordingScheduler:
    """Wraps a scheduler and records every answer, for replay tokens."""

    def __init__(self, inner: Scheduler):
        self.inner = inner
        self.answers: list[int] = []

    def new_execution(self) -> bool:
        self.answers = []
        return self.inner.new_execution()

    def next_cpu(self, runnable: Sequence[int], current: int | None) -> int | None:
        cpu = self.inner.next_cpu(runnable, current)
        if cpu is not None:
            self.answers.append(cpu)
        return cpu

    def next_choice(self, n: int) -> int:
        answer = self.inner.next_choice(n)
        self.answers.append(answer)
        return answer
