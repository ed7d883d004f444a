"""PCT strategy: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each run gives the CPUs distinct random priorities and picks ``depth - 1`` random change
points among the first ``length`` steps; the highest-priority CPU with an enabled move
runs, and at a change point the running CPU drops below all others.  A bug of depth d is
found with probability at least 1/(n·k^(d-1)) per run.  ``length`` is learnt from the
first run.
"""

from __future__ import annotations

import random

from .randomwalk import sample
from .result import CheckResult
from .world import World


def pct(world: World, runs: int, seed: int, depth: int = 3, *, progress=None) -> CheckResult:
    n = world.n
    length = [200]

    def chooser_for_run(run: int):
        rng = random.Random(f"pct:{seed}:{run}")
        priority = list(range(depth, depth + n))
        rng.shuffle(priority)
        changes = {rng.randrange(length[0]): d for d in range(depth - 1, 0, -1)}

        def choose(moves: list[int], step: int) -> int:
            if step + 1 > length[0]:
                length[0] = step + 1
            best = max(moves, key=lambda m: (priority[m >> 3], -m))
            if step in changes:
                priority[best >> 3] = changes[step]  # below every initial priority
                best = max(moves, key=lambda m: (priority[m >> 3], -m))
            mine = [m for m in moves if m >> 3 == best >> 3]
            return mine[rng.randrange(len(mine))]

        return choose

    return sample(world, chooser_for_run, runs, "pct", progress=progress)
