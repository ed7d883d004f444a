"""Random strategy: independent uniformly random walks, each replayable from the seed.

For configurations too big to exhaust.  Each run starts from the initial state and picks
uniformly among the enabled moves until no move is left (or ``max_steps``, for guest code
that can spin forever, counted as truncated).  :func:`sample` is the loop shared with PCT.
"""

from __future__ import annotations

import random
import time

from ..machine.watchdog import stopped
from .result import INCOMPLETE, VERIFIED, VIOLATION, CheckResult
from .world import Violation, World

MAX_STEPS = 20_000  # a run longer than this is cut (guest code that can spin forever)


def sample(world: World, chooser_for_run, runs: int, strategy: str, *, first: int = 0, max_steps: int = MAX_STEPS,
           progress=None) -> CheckResult:
    """Run executions ``first`` to ``runs - 1``; ``chooser_for_run(run)`` returns ``choose(moves, step, again) -> move``.

    ``again`` tells the chooser that the current state already occurred in this run: the
    schedule is going round a spin loop (PCT then demotes the spinning CPU).
    """
    result = CheckResult(VERIFIED, strategy)
    started = time.perf_counter()
    next_report = started + 1.0
    initial = world.snapshot()
    truncated = 0
    try:
        for run in range(first, runs):
            world.restore(initial)
            choose = chooser_for_run(run)
            moves_taken: list[int] = []
            seen_states: set[int] = set()
            violation = None
            for step in range(max_steps):
                moves = world.enabled()
                if not moves:
                    violation = world.terminal_violation()
                    break
                h = hash(world.key())
                again = h in seen_states
                seen_states.add(h)
                move = choose(moves, step, again)
                moves_taken.append(move)
                result.transitions += 1
                try:
                    world.execute(move)
                except Violation as v:
                    violation = v
                    break
            else:
                truncated += 1
            result.executions = run + 1 - first
            if violation is not None:
                result.verdict = VIOLATION
                result.prop, result.detail, result.moves = violation.prop, violation.detail, moves_taken
                break
            if progress is not None and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + 1.0
                result.seconds = time.perf_counter() - started
                progress(result)
    except KeyboardInterrupt as stop:
        result.verdict = INCOMPLETE
        result.note = stopped(stop)
    result.truncated = truncated
    if result.verdict == VERIFIED:
        result.verdict = INCOMPLETE  # sampling never proves absence
        result.note = sampled(result.executions, truncated, max_steps)
    result.seconds = time.perf_counter() - started
    return result


def sampled(runs: int, truncated: int, max_steps: int = MAX_STEPS) -> str:
    """Why a sampling run that found nothing is incomplete."""
    return f"no violation in {runs} sampled runs" + (f" ({truncated} truncated at {max_steps} steps)" if truncated else "")


def random_walks(world: World, runs: int, seed: int, *, first: int = 0, progress=None) -> CheckResult:
    def chooser_for_run(run: int):
        rng = random.Random(f"{seed}:{run}")
        return lambda moves, step, again: moves[rng.randrange(len(moves))]

    return sample(world, chooser_for_run, runs, "random", first=first, progress=progress)
