"""PCT strategy: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each run gives the CPUs distinct random priorities and picks ``depth - 1`` random change
points among the first ``length`` steps; the highest-priority CPU with an enabled move
runs, and at a change point the running CPU drops below all others.  A bug of depth d is
found with probability at least 1/(n·k^(d-1)) per run.  ``length`` is estimated
by one run that always takes the lowest move.  A CPU seen going round a spin loop (a
state repeats) is demoted like at a change point, so a spinner cannot starve the rest.
"""

from __future__ import annotations

import random

from .randomwalk import sample
from .result import CheckResult
from .world import Violation, World

MAX_DEPTH = 64  # change points beyond this many only dilute the ones a bug needs


def default_depth(cpus: int, interrupts: int) -> int:
    """One change point per context that can be preempted (each CPU's task, each interrupt), plus one.

    A bug that needs every context to lose the CPU once at the right step has that depth;
    more change points than a bug needs lower the chance of each (1/k per point).  With two
    CPUs and no interrupts it is 3, the depth of Burckhardt et al.'s examples.
    """
    return min(MAX_DEPTH, cpus + interrupts + 1)


def pct(world: World, runs: int, seed: int, depth: int, *, first: int = 0, progress=None) -> CheckResult:
    n = world.n
    length = _first_run_length(world)

    def chooser_for_run(run: int):
        rng = random.Random(f"pct:{seed}:{run}")
        priority = list(range(depth, depth + n))
        rng.shuffle(priority)
        changes = {rng.randrange(length): d for d in range(depth - 1, 0, -1)}

        def choose(moves: list[int], step: int, again: bool) -> int:
            best = max(moves, key=lambda m: (priority[m >> 3], -m))
            if step in changes or again:
                # a change point, or the running CPU spins in a loop: it drops below the others
                priority[best >> 3] = changes.get(step, 0) - step
                best = max(moves, key=lambda m: (priority[m >> 3], -m))
            mine = [m for m in moves if m >> 3 == best >> 3]
            return mine[rng.randrange(len(mine))]

        return choose

    return sample(world, chooser_for_run, runs, "pct", first=first, progress=progress)


def _first_run_length(world: World) -> int:
    """Steps of one run taking the lowest enabled move each time (a cheap estimate of k)."""
    snap = world.snapshot()
    steps = 0
    seen = set()
    try:
        while steps < 10_000:
            moves = world.enabled()
            h = hash(world.key())
            if not moves or h in seen:
                break
            seen.add(h)
            world.execute(moves[0])
            steps += 1
    except Violation:
        pass
    world.restore(snap)
    return max(steps, 1)
