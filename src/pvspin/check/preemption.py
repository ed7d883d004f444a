"""Preemption bounding: the counterexample with the fewest preemptions.

A *preemption* is a switch away from a CPU that could have continued: the next move
belongs to another CPU while the last CPU to move still has a step of its own enabled
(``STEP`` or ``ALT``).  Switching away from a CPU that is finished, blocked in a spin
whose condition is false or halted is free, and so are store-buffer flushes (the buffer
drains on its own; under TSO a flush is not a decision of any CPU).  Interrupts and
spurious wake-ups count like steps of the CPU they land on.

Most concurrency bugs need only a few preemptions to show (Musuvathi & Qadeer,
PLDI 2007), and a counterexample with few is one a kernel engineer can follow.
:func:`search` is the ``bounded`` strategy: every execution with at most B preemptions,
for configurations whose full state space is out of reach (a bug needing few
preemptions shows there; finding none proves nothing beyond the bound).  Once any
strategy has found a violation, :func:`fewest_preemptions` searches again with bound
0, 1, 2, ... up to the count of the one found; the first bound that yields a violation
gives the minimum, and that bound's search is finished to report the counterexample a
kernel engineer wants among those (:data:`PREFERENCE`): the property nearest the cause,
then the fewest steps.  Both are a depth-first search that caches each state with the
preemptions and last CPU it was explored with, and revisits it only when it can now
reach more within the bound.  No sleep sets here: their pruning assumes every
interleaving remains available, which a bound takes away.

Only safety violations (a property failing during a move, or a state with no move left)
are searched for; a liveness lasso is reported as found.
"""

from __future__ import annotations

import time

from ..machine.watchdog import stopped
from .result import BOUNDED, INCOMPLETE, VIOLATION, CheckResult
from .world import ALT, FLUSH, STEP, Violation, World

_OWN = (STEP, ALT)

# Which counterexample to report among those with the fewest preemptions, best first.  A
# property that fails at the step that does the harm (a second owner entering the critical
# section, an access outside its object) names the cause; the guest's own checks (BUG(),
# a crash, then WARN()) fire later, on a consequence, as the WARN at unlock of a lock that a
# second owner already released; what shows only once nothing can move (a final state, a
# lost wake-up, a deadlock) is furthest from the cause.  Within a rank, the fewest steps;
# among those, the first in the search's order.
PREFERENCE = (
    ("mutual-exclusion", "null-dereference", "private-access", "lock-byte-domain"),
    ("guest-bug", "guest-crash"),
    ("guest-warning",),
    ("final-state", "lost-wakeup", "deadlock"),
)
_RANK = {prop: rank for rank, props in enumerate(PREFERENCE) for prop in props}


def preference(prop: str, steps: int) -> tuple[int, int]:
    """The sort key of a counterexample: lower is preferred (an unlisted property ranks last)."""
    return _RANK.get(prop, len(PREFERENCE)), steps


def _continuing(moves: list[int], last: int) -> int:
    """``last`` if that CPU has a step of its own among ``moves``, else -1 (the next switch is free)."""
    if last >= 0:
        for m in moves:
            if m >> 3 == last and m & 7 in _OWN:
                return last
    return -1


def count(world: World, moves: list[int]) -> int:
    """Preemptions in ``moves``, replayed from the world's current state (which it changes)."""
    used = 0
    last = -1
    for move in moves:
        last = _continuing(world.enabled(), last)
        if move & 7 != FLUSH:
            used += last >= 0 and move >> 3 != last
            last = move >> 3
        try:
            world.execute(move)
        except Violation:
            break
    return used


def search(world: World, bound: int, *, max_states: int | None = None, progress=None) -> CheckResult:
    """The ``bounded`` strategy: every execution with at most ``bound`` preemptions.

    Iterative context bounding as in CHESS (Musuvathi & Qadeer, PLDI 2007) explores the
    executions in order of their preemptions; this is one round of it, at ``bound``.
    It finds a safety violation reachable within the bound, or reports that there is
    none *within the bound*, which verifies nothing about executions with more.
    A KeyboardInterrupt ends the search with an incomplete verdict.
    """
    result = CheckResult(BOUNDED, "bounded")
    started = time.perf_counter()
    try:
        _dfs(world, bound, max_states, result, progress, started)
    except KeyboardInterrupt as stop:
        result.verdict, result.note = INCOMPLETE, stopped(stop)
    result.seconds = time.perf_counter() - started
    if result.verdict == BOUNDED:
        result.note = (f"no violation in any execution with at most {bound} preemption(s); executions with "
                       "more were not explored, so this verifies nothing about them")
    return result


def bounded_search(world: World, bound: int, max_states: int, best: bool = False) -> tuple[list[int] | None, int]:
    """A safety counterexample with at most ``bound`` preemptions (None if none, or out of states), and the states visited.

    With ``best``, the preferred one (:data:`PREFERENCE`): the search goes on past the first
    violation to the end of the bound, and when the states run out the best found so far.
    """
    result = CheckResult(BOUNDED, "bounded")
    _dfs(world, bound, max_states, result, best=best)
    return (result.moves if result.verdict == VIOLATION else None), result.states


def _dfs(world: World, bound: int, max_states: int | None, result: CheckResult, progress=None,
         started: float = 0.0, best: bool = False) -> None:
    """Depth-first, caching per state the ``(last CPU, preemptions used)`` it was explored with.

    A visit is skipped when an earlier one *dominates* it: same state, and either
    fewer preemptions used, or as many with the same last CPU or with none that could
    continue (every switch free).  From the earlier visit every move cost at most what
    it costs now, so whatever this one reaches within the bound, that one did.  With
    ``best`` the search goes on after a violation and keeps the preferred one; once that
    is of the first rank, no path as long is followed.  The steps compared are those of
    the paths the search takes (a state is explored from its first undominated visit, not
    its shortest), so the fewest steps are the fewest met.  Stops at ``max_states``
    states (incomplete; with ``best``, a violation found by then is still reported).
    Fills in ``result``; the world is left in an arbitrary state.
    """
    moves = world.enabled()
    if not moves:
        v = world.terminal_violation()
        if v is not None:
            _found(result, v, [])
        result.states = result.executions = 1
        return
    visited = {hash(world.key()): ((-1, 0),)}  # state -> ((last CPU, preemptions used), ...)
    kept: tuple[int, int] | None = None  # with best: the preference of the counterexample in result
    longest = -1  # with best: paths this long or longer cannot give a better one (-1: no limit)
    # frame: [snapshot, moves (the running CPU's first), next index, preemptions used, last CPU]
    stack = [[world.snapshot(), moves, 0, 0, -1]]
    world_at = stack[0]
    transitions = leaves = 0
    next_report = started + 1.0
    try:
        while stack:
            frame = stack[-1]
            snap, moves, i, used, last = frame
            if i >= len(moves):
                stack.pop()
                continue
            frame[2] = i + 1
            move = moves[i]
            if longest >= 0 and len(stack) >= longest:
                continue
            if move & 7 != FLUSH:
                if last >= 0 and move >> 3 != last:
                    if used == bound:
                        continue
                    used += 1
                last = move >> 3
            if world_at is not frame:
                world.restore(snap)
            world_at = None
            transitions += 1
            violation = None
            try:
                world.execute(move)
            except Violation as v:
                violation = v
            child_moves = [] if violation is not None else world.enabled()
            if not child_moves:
                if violation is None:
                    leaves += 1
                    violation = world.terminal_violation()
                if violation is None:
                    continue
                if not best:
                    _found(result, violation, [f[1][f[2] - 1] for f in stack])
                    return
                key = preference(violation.prop, len(stack))
                if kept is None or key < kept:
                    kept = key
                    _found(result, violation, [f[1][f[2] - 1] for f in stack])
                    if key[0] == 0:  # nothing ranks higher: only a shorter one can be preferred
                        longest = key[1]
                continue
            last = _continuing(child_moves, last)
            h = hash(world.key())
            seen = visited.get(h)
            if seen is None:
                visited[h] = ((last, used),)
            elif _dominated(seen, last, used):
                continue
            else:  # keep only the visits this one does not dominate
                visited[h] = ((last, used),) + tuple(v for v in seen if not _dominated(((last, used),), *v))
            if max_states is not None and len(visited) >= max_states:
                if kept is None:
                    result.verdict = INCOMPLETE
                    result.note = f"stopped at the state limit ({max_states})"
                return
            if last >= 0:  # schedules that stay on the running CPU first
                child_moves = [m for m in child_moves if m >> 3 == last] + [m for m in child_moves if m >> 3 != last]
            child = [world.snapshot(), child_moves, 0, used, last]
            stack.append(child)
            world_at = child
            if progress is not None and transitions % 4096 == 0 and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + 1.0
                result.states, result.transitions, result.executions = len(visited), transitions, leaves
                result.seconds = time.perf_counter() - started
                progress(result)
    finally:
        result.states, result.transitions, result.executions = len(visited), transitions, leaves


def _dominated(visits: tuple, last: int, used: int) -> bool:
    """Whether one of ``visits`` explored at least what a visit with ``(last, used)`` can reach."""
    for seen_last, seen_used in visits:
        if seen_used < used or (seen_used == used and (seen_last == last or seen_last < 0)):
            return True
    return False


def _found(result: CheckResult, v: Violation, moves: list[int]) -> None:
    result.verdict, result.prop, result.detail, result.moves = VIOLATION, v.prop, v.detail, moves


def fewest_preemptions(make_world, moves: list[int], max_states: int = 500_000) -> list[int]:
    """The preferred counterexample with the fewest preemptions, starting from the one found (``moves``).

    Searches with bound 0, 1, ... up to the found schedule's count, ``make_world()`` building a
    fresh world of the configuration each time: the bounds below the lowest come up empty,
    and the lowest one's search is finished for the preferred counterexample
    (:data:`PREFERENCE`), so the answer does not depend on which one was found.  The extra
    work over stopping at the first violation is the rest of that bound's states and, when
    the schedule found already has the fewest preemptions, that bound's search at all (it
    was skipped before): at most the states of one bounded search.  ``max_states`` caps the
    states of all rounds together (a state count, not a time, so the answer does not depend
    on the machine); when it runs out, the better of the best met and the schedule found is
    returned, and on Ctrl-C the schedule found.
    """
    found = count(make_world(), moves)
    budget = max_states
    try:
        for bound in range(found + 1):
            better, states = bounded_search(make_world(), bound, budget, best=True)
            if better is not None:
                if bound == found and states >= budget:  # cut short: is it better than the one in hand?
                    return min((better, moves), key=lambda m: preference(outcome(make_world, m), len(m)))
                return better
            budget -= states
            if budget <= 0:
                break
    except KeyboardInterrupt:  # Ctrl-C: report the counterexample in hand
        pass
    return moves


def outcome(make_world, moves: list[int]) -> str:
    """The property ``moves`` violates (a property failing during a move, or at the end)."""
    world = make_world()
    try:
        for move in moves:
            world.execute(move)
    except Violation as v:
        return v.prop
    v = world.terminal_violation()
    return "" if v is None else v.prop
