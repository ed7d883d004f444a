"""Exhaustive strategy: stateful depth-first search with visited-state caching.

Every reachable state is visited once -- under full symmetry, every orbit of states equal
up to renaming CPUs (:mod:`pvspin.check.symmetry`), whose sleep sets the table keeps in
the orbit's own numbering of the CPUs.  A state is hashed (Python's 64-bit hash of the
world key: memory bytes, store buffers, per-CPU generator keys and flags) into a set of
integers, as Spin's hash-compact mode does, so the table costs a few dozen bytes per
state; two distinct states sharing a 64-bit hash would make the search skip one of them
(probability about n²/2⁶⁵ for n states).

Sleep sets prune transitions whose effect was already covered: after exploring move
``a`` from a state, a sibling ``b`` independent of ``a`` need not try ``a`` again.  With
state caching a state may be reached again with a different sleep set, so the table keeps,
per state, the sleep set it was explored with, and a revisit explores what the earlier
visit slept on and this one does not (Godefroid's condition for combining the two).

Ample sets: where some moves are independent of every move any CPU can make from here on,
they alone are explored (:mod:`pvspin.check.ample`): accesses and TSO flushes to per-CPU
objects no other CPU can reach, such as a queue node being initialised before it is
published.  A state that closes a cycle on the stack explores all its moves after all
(Spin's cycle proviso), so that no move is postponed for good.

Moves are tried with the CPU that moved last first, so the first counterexample found
tends to have few preemptions.
"""

from __future__ import annotations

import time

from .result import INCOMPLETE, VERIFIED, VIOLATION, CheckResult
from .symmetry import rename_moves
from .world import FLUSH, IRQ, SPURIOUS, Violation, World


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
    visited: dict[int, int] = {}  # state hash -> sleep set (bitmask over moves) it was explored with
    deps = _Dependence(world)

    root = world.snapshot()
    root_hash, root_renaming = world.state_id()
    visited[root_hash] = 0
    root_enabled = world.enabled()
    moves = world.ample(root_enabled) or root_enabled
    if not moves:
        _terminal(world, result, [], on_terminal)
        result.executions = 1
        result.states = 1
        result.seconds = time.perf_counter() - started
        return result
    # frame: [snapshot, moves, next index, sleep bitmask, footprints of the moves, state hash, enabled,
    #         renaming to the canonical numbering (None: none)]
    stack = [[root, moves, 0, 0, deps.footprints(moves), root_hash, root_enabled, root_renaming]]
    on_stack = {root_hash: 0}  # for cycles: a starved CPU is a liveness finding
    world_at = stack[0]
    states = 1
    transitions = 0
    leaves = 0
    try:
        while stack:
            frame = stack[-1]
            snap, moves, i, sleep, fps = frame[:5]
            if i >= len(moves):
                stack.pop()
                on_stack.pop(frame[5], None)
                continue
            move = moves[i]
            frame[2] = i + 1
            bit = 1 << move
            if sleep & bit:
                continue
            # later siblings need not retry this move once its subtree is done
            frame[3] = sleep | bit
            if world_at is not frame:
                world.restore(snap)
            world_at = None
            transitions += 1
            try:
                world.execute(move)
            except Violation as v:
                _violation(result, v, [f[1][f[2] - 1] for f in stack])
                break
            child_sleep = deps.filter_sleep(sleep, move, fps[i], fps, moves) if sleep else 0
            h, renaming = world.state_id()
            # the table keeps sleep sets in the canonical numbering of the CPUs
            canon_sleep = rename_moves(child_sleep, renaming) if renaming and child_sleep else child_sleep
            seen = visited.get(h)
            if seen is None:
                visited[h] = canon_sleep
                states += 1
                enabled = world.enabled()
                child_moves = world.ample(enabled) or enabled
                if not child_moves:
                    leaves += 1
                    if _terminal(world, result, [f[1][f[2] - 1] for f in stack], on_terminal):
                        break
                    continue
            else:
                at = on_stack.get(h)
                if at is not None:
                    # a cycle: the frame on the stack explores this state's moves itself
                    if _starvation(world, result, stack, at, renaming):
                        break
                    leaves += 1
                    if len(frame[1]) < len(frame[6]):
                        # Spin's cycle proviso: a cycle must not postpone the moves an ample set
                        # left out for good, so the state that closes it explores them all
                        world.restore(frame[0])
                        world_at = frame
                        extra = [m for m in frame[6] if m not in frame[1] and not frame[3] >> m & 1]
                        frame[1] = frame[1] + extra
                        frame[4] = frame[4] + deps.footprints(extra)
                    continue
                # explored before: only what that visit slept on and this one does not is left
                missing = seen & ~canon_sleep
                if not missing:
                    leaves += 1
                    continue
                visited[h] = seen & canon_sleep
                enabled = world.enabled()
                explored = world.ample(enabled) or enabled  # what the first visit chose from
                if renaming:
                    child_moves = [m for m in explored if missing >> (renaming[m >> 3] * 8 + (m & 7)) & 1]
                else:
                    child_moves = [m for m in explored if missing >> m & 1]
            # frame[6] keeps every enabled move, not the ample set: for a cycle's fairness
            child_moves = _ordered(child_moves, move >> 3)
            child = [world.snapshot(), child_moves, 0, child_sleep, deps.footprints(child_moves), h, enabled, renaming]
            on_stack.setdefault(h, len(stack))
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
    except KeyboardInterrupt:
        result.verdict = INCOMPLETE
        result.note = "interrupted"
    result.states, result.transitions, result.executions = states, transitions, leaves
    result.seconds = time.perf_counter() - started
    return result


def _starvation(world: World, result: CheckResult, stack: list, at: int, renaming) -> bool:
    """The path closed a cycle back to ``stack[at]``, up to renaming CPUs: report a CPU it starves, if any.

    Under full symmetry the state reached may be the one before step ``at + 1`` with its
    CPUs renamed by sigma; repeating the steps, renamed by sigma each time, then closes a
    real cycle, and that is the cycle judged.
    """
    cycle = stack[at:]
    sigma = None
    before = cycle[0][7]
    if renaming is not None and before != renaming:
        inverse = [0] * len(renaming)
        for cpu, slot in enumerate(renaming):
            inverse[slot] = cpu
        sigma = [inverse[before[cpu]] for cpu in range(len(before))]
    starved = world.starving([f[1][f[2] - 1] for f in cycle], [f[6] for f in cycle], sigma)
    if not starved:
        return False
    cpus = ", ".join(f"cpu{c}" for c in starved)
    back = "the state before" if sigma is None else "a renaming (" + ", ".join(
        f"cpu{c}\u2192cpu{t}" for c, t in enumerate(sigma) if c != t) + ") of the state before"
    _violation(result, Violation("starvation", f"{cpus} can wait forever: steps {at + 1}-{len(stack)} lead back "
                                 f"to {back} step {at + 1}, a weakly fair cycle on which {cpus} never "
                                 "gets to proceed"), [f[1][f[2] - 1] for f in stack])
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


class _Dependence:
    """Footprints of moves and the independence relation sleep sets rely on.

    Two moves of different CPUs are independent when neither can change what the other
    does or whether it is enabled: they touch disjoint bytes, or both only read.  A move
    that can wake, interrupt or halt a CPU (hypercalls, interrupts, spurious wake-ups,
    halted vCPUs resuming) is treated as dependent on everything, as are the flushes
    and buffered accesses of TSO when their bytes overlap.
    """

    def __init__(self, world: World):
        self.world = world

    def footprints(self, moves: list[int]):
        world = self.world
        out = []
        for move in moves:
            cpu, kind = divmod(move, 8)
            if kind == FLUSH:
                addr, size, _ = world.buffers[cpu][0]
                out.append((addr, addr + size, True))
            elif kind in (IRQ, SPURIOUS) or world.halted[cpu]:
                out.append(None)
            else:
                op = world.ctxs[cpu][-1].op
                code = op[0]
                if code in _READS:
                    ref = op[1]
                    out.append((ref.addr, ref.addr + ref.size, False))
                elif code in _WRITES:
                    ref = op[1]
                    out.append((ref.addr, ref.addr + ref.size, True))
                elif code == _o.VCPU_IS_PREEMPTED:
                    out.append((0, 0, False))  # a local coin toss
                else:
                    out.append(None)
        return out

    @staticmethod
    def independent(a, b) -> bool:
        if a is None or b is None:
            return False
        if a[1] <= b[0] or b[1] <= a[0]:
            return True
        return not a[2] and not b[2]

    def filter_sleep(self, sleep: int, move: int, fp, fps, moves) -> int:
        """The part of ``sleep`` that stays asleep after ``move``: the moves independent of it."""
        out = 0
        cpu = move >> 3
        for m, f in zip(moves, fps, strict=True):
            if sleep >> m & 1 and m >> 3 != cpu and self.independent(fp, f):
                out |= 1 << m
        return out


from ..machine import ops as _o  # noqa: E402

_READS = frozenset({_o.LOAD, _o.COND_LOAD})
_WRITES = _o.RMW_OPS | {_o.STORE}
