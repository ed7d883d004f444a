"""Exhaustive strategy: stateful depth-first search with visited-state caching.

Every reachable state is visited once -- under full symmetry, every orbit of states equal
up to renaming CPUs (:mod:`pvspin.check.symmetry`).  A state is hashed (Python's 64-bit
hash of the world key: memory bytes, store buffers, per-CPU generator keys and flags)
into a set of integers, as Spin's hash-compact mode does, so the table costs a few dozen
bytes per state; two distinct states sharing a 64-bit hash would make the search skip one
of them (probability about n²/2⁶⁵ for n states).

Liveness rides on the same search: Tarjan's algorithm runs along with it, and every
strongly connected component of the state graph that completes with an edge inside it is
checked for a weakly fair cycle on which some CPU never makes progress
(:mod:`pvspin.check.cycles`).  For that the search explores every edge of every state it
expands: sleep sets, which skip edges whose end state is reached another way, are not
used -- they keep every state but not every cycle, and on these locks they saved about a
tenth of the transitions and no time.

Ample sets: where some moves are independent of every move any CPU can make from here on,
they alone are explored (:mod:`pvspin.check.ample`): accesses and TSO flushes to per-CPU
objects no other CPU can reach, such as a queue node being initialised before it is
published.  A state whose ample move does not take its CPU further, where the CPU may
move alone again, explores all its moves after all (the cycle proviso of
:mod:`pvspin.check.ample`), so that no move is postponed for good.  It does not depend on
the search stack, so the partitioned search (:mod:`pvspin.check.partitioned`) reduces
exactly the same states.

Moves are tried with the CPU that moved last first, so the first counterexample found
tends to have few preemptions.
"""

from __future__ import annotations

import time

from ..machine.watchdog import stopped
from . import cycles
from .ample import expand
from .result import INCOMPLETE, VERIFIED, VIOLATION, CheckResult
from .world import Violation, World


def _ordered(moves: list[int], last_cpu: int) -> list[int]:
    if last_cpu < 0:
        return moves
    mine = [m for m in moves if m >> 3 == last_cpu]
    return mine + [m for m in moves if m >> 3 != last_cpu] if mine else moves


def explore(world: World, *, max_states: int | None = None, progress=None, on_terminal=None) -> CheckResult:
    """Visit every state reachable from the world's current state.

    ``progress(result)`` is called about once a second; ``on_terminal(world)`` at every
    state without enabled moves (the litmus tests collect final outcomes with it).
    A KeyboardInterrupt ends the search with an incomplete verdict.
    """
    result = CheckResult(VERIFIED, "exhaustive")
    started = time.perf_counter()
    next_report = started + 1.0
    root_hash, root_renaming = world.state_id()
    visited = {root_hash}
    root_enabled = world.enabled()
    moves = world.ample(root_enabled) or root_enabled
    if not moves:
        _terminal(world, result, [], on_terminal)
        result.executions = 1
        result.states = 1
        result.seconds = time.perf_counter() - started
        return result
    counter = 0
    root = _node(world, root_hash, counter, root_renaming, root_enabled)
    active = {root_hash: root}  # states whose component is not complete: Tarjan's stack, by hash
    tarjan = [root]
    # frame: [snapshot, moves, next index, node, enabled moves, the edge that led here (None at the root)]
    stack = [[world.snapshot(), _ordered(moves, -1), 0, root, root_enabled, None]]
    on_stack = {root_hash: 0}  # for the cycles closed on the stack (_stack_cycle)
    world_at = stack[0]
    states = 1
    transitions = 0
    leaves = 0
    try:
        while stack:
            frame = stack[-1]
            snap, moves, i, node = frame[:4]
            if i >= len(moves):
                if node.low == node.index and _component_done(world, result, stack, tarjan, active, node):
                    break
                stack.pop()
                on_stack.pop(node.h, None)
                if stack:
                    parent = stack[-1][3]
                    if node.low < parent.low:
                        parent.low = node.low
                    if node.h in active:  # the child is in the parent's component: keep the edge
                        parent.edges.append(frame[5])
                continue
            move = moves[i]
            frame[2] = i + 1
            if world_at is not frame:
                world.restore(snap)
            world_at = None
            transitions += 1
            reduced = len(moves) < len(frame[4])
            if reduced:
                before = world.progress(move >> 3)
            try:
                world.execute(move)
            except Violation as v:
                _violation(result, v, [f[1][f[2] - 1] for f in stack])
                break
            if reduced and not world.ample_kept(move >> 3, before):
                frame[1] = expand(moves, frame[4])  # the cycle proviso (pvspin.check.ample)
            flags = world.progressed | world.wrote << 1
            h, renaming = world.state_id()
            if h not in visited:
                visited.add(h)
                states += 1
                enabled = world.enabled()
                child_moves = world.ample(enabled) or enabled
                if not child_moves:
                    leaves += 1
                    if _terminal(world, result, [f[1][f[2] - 1] for f in stack], on_terminal):
                        break
                    continue
                counter += 1
                child_node = _node(world, h, counter, renaming, enabled)
                active[h] = child_node
                tarjan.append(child_node)
                child = [world.snapshot(), _ordered(child_moves, move >> 3), 0, child_node, enabled,
                         (move, h, renaming, flags)]
                on_stack[h] = len(stack)
                stack.append(child)
                world_at = child
                if max_states is not None and states >= max_states:
                    result.verdict = INCOMPLETE
                    result.note = f"stopped at the state limit ({max_states})"
                    break
                if progress is not None and transitions % 4096 == 0 and time.perf_counter() >= next_report:
                    next_report = time.perf_counter() + 1.0
                    result.states, result.transitions, result.executions = states, transitions, leaves
                    result.seconds = time.perf_counter() - started
                    progress(result)
                continue
            leaves += 1
            target = active.get(h)
            if target is None:
                continue  # into a completed component: no cycle through here
            node.edges.append((move, h, renaming, flags))
            if target.index < node.low:
                node.low = target.index
            at = on_stack.get(h)
            if at is not None and _stack_cycle(world, result, stack, at, renaming, flags):
                break
    except KeyboardInterrupt as stop:
        result.verdict = INCOMPLETE
        result.note = stopped(stop)
    result.states, result.transitions, result.executions = states, transitions, leaves
    result.seconds = time.perf_counter() - started
    return result


def _node(world: World, h: int, index: int, renaming, enabled: list[int]) -> cycles.Node:
    run, flush = cycles.masks(enabled)
    unfinished = 0
    for cpu, ctxs in enumerate(world.ctxs):
        if ctxs:
            unfinished |= 1 << cpu
    return cycles.Node(h, index, renaming, run, flush, unfinished)


def _stack_cycle(world: World, result: CheckResult, stack: list, at: int, renaming, flags: int) -> bool:
    """The move just made closed a cycle back to ``stack[at]``: report it if it is a fair non-progress cycle.

    A shortcut, not the proof (that is the component check): the cycles the search closes
    on its own stack are often the first ones a liveness bug shows, long before the
    component they lie in completes.  Under full symmetry the state reached may be
    ``stack[at]`` with its CPUs renamed by sigma; the path repeated under sigma, sigma², ...
    until the renaming comes back to the identity is then the concrete cycle judged.
    """
    frames = stack[at:]
    moves = [f[1][f[2] - 1] for f in frames]
    edge_flags = [f[5][3] for f in frames[1:]] + [flags]
    runs = [f[3].run for f in frames]
    flushes = [f[3].flush for f in frames]
    n = world.n
    before = frames[0][3].renaming
    if renaming is not None and before != renaming:
        inverse = [0] * n
        for cpu, slot in enumerate(renaming):
            inverse[slot] = cpu
        sigma = tuple(inverse[before[c]] for c in range(n))
        power = sigma
        rounds = (moves, runs, flushes)
        while power != tuple(range(n)):
            moves = moves + [power[m >> 3] * 8 + (m & 7) for m in rounds[0]]
            runs = runs + [cycles.rename(r, power) for r in rounds[1]]
            flushes = flushes + [cycles.rename(f, power) for f in rounds[2]]
            edge_flags = edge_flags + edge_flags[:len(rounds[0])]
            power = tuple(sigma[power[c]] for c in range(n))
    verdict = cycles.judge(n, moves, runs, flushes, edge_flags, frames[0][3].unfinished)
    if verdict is None:
        return False
    kind, starved = verdict
    stem = [f[1][f[2] - 1] for f in stack[:at]]
    result.verdict, result.prop = VIOLATION, kind
    result.detail = cycles.describe(kind, starved, len(stem) + 1, len(stem) + len(moves))
    result.moves = stem + moves
    result.cycle_start = len(stem)
    return True


def _component_done(world: World, result: CheckResult, stack: list, tarjan: list, active: dict,
                    root: cycles.Node) -> bool:
    """The component rooted at ``root`` (the top frame) is complete: take it off Tarjan's stack, judge it."""
    at = len(tarjan) - 1
    while tarjan[at] is not root:
        at -= 1
    members = tarjan[at:]
    del tarjan[at:]
    for m in members:
        del active[m.h]
    if len(members) == 1 and not root.edges:
        return False  # a single state without a self-loop: no cycle
    lasso = cycles.find(members, world.n)
    if lasso is None:
        return False
    stem = [f[1][f[2] - 1] for f in stack[:-1]]
    first = len(stem) + len(lasso.prefix) + 1
    result.verdict = VIOLATION
    result.prop = lasso.kind
    result.detail = cycles.describe(lasso.kind, lasso.starved, first, first + len(lasso.cycle) - 1)
    result.moves = stem + lasso.prefix + lasso.cycle
    result.cycle_start = first - 1
    return True


def _terminal(world: World, result: CheckResult, path: list[int], on_terminal) -> bool:
    if on_terminal is not None:
        on_terminal(world)
    v = world.terminal_violation()
    if v is None:
        return False
    _violation(result, v, path)
    return True


def _violation(result: CheckResult, v: Violation, path: list[int]) -> None:
    result.verdict = VIOLATION
    result.prop = v.prop
    result.detail = v.detail
    result.moves = path
