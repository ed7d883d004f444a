"""Sampling strategies (random, PCT) as a swarm: the runs shared out among workers.

Run ``r`` of a sampling strategy draws its schedule from its own seed (``seed:r``), so any
worker can do any run: the runs go out in chunks, in order, to local processes or Ray tasks.
The first violation stops what has not started; the chunks before it still finish, and the
violation reported is the one of the lowest run, so the verdict, the counterexample and its
replay token are those of the sequential strategy, whatever the number of workers.  A chunk
whose worker died is run again (Ray does that itself; a local pool is renewed, see
:class:`~pvspin.parallel.RenewablePool`): the same runs, the same result.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, wait

from ..machine.watchdog import stopped
from ..parallel import lost_worker
from .result import INCOMPLETE, VIOLATION, CheckResult

CHUNKS_PER_WORKER = 8  # fewer: a worker idles at the end; more: each chunk builds its world again
MAX_CHUNK = 100


def runs(opts, first: int, stop: int) -> CheckResult:
    """Runs ``first`` to ``stop - 1`` of ``opts``'s strategy (in a worker)."""
    from .pct import pct
    from .randomwalk import random_walks
    from .runner import build_world

    world = build_world(opts)
    if opts.strategy == "random":
        return random_walks(world, stop, opts.seed, first=first)
    return pct(world, stop, opts.seed, opts.depth(), first=first)


def sample(opts, workers: int, pool, *, progress=None) -> CheckResult:
    """``opts.runs`` runs on ``pool`` (``submit(fn, *args) -> Future``), ``workers`` at a time or so."""
    from .randomwalk import sampled

    result = CheckResult(INCOMPLETE, opts.strategy)
    started = time.perf_counter()
    chunk = max(1, min(MAX_CHUNK, opts.runs // (workers * CHUNKS_PER_WORKER)))
    starts = iter(range(0, opts.runs, chunk))
    inflight: dict = {}
    found: tuple[int, CheckResult] | None = None  # (the violating run, its chunk's result)
    next_report = started + 1.0
    try:
        while True:
            limit = found[0] if found is not None else opts.runs
            while len(inflight) < 2 * workers:
                start = next(starts, None)
                if start is None or start >= limit:
                    break
                inflight[pool.submit(runs, opts, start, min(start + chunk, opts.runs))] = start
            if not inflight:
                break
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                start = inflight.pop(future)
                try:
                    part = future.result()
                except BaseException as err:
                    if not (lost_worker(err) and hasattr(pool, "renew")):
                        raise
                    pool.renew(future)  # a local process died, breaking its pool: the chunk again, on a fresh one
                    inflight[pool.submit(runs, opts, start, min(start + chunk, opts.runs))] = start
                    continue
                result.executions += part.executions
                result.transitions += part.transitions
                result.truncated += part.truncated
                if part.verdict == VIOLATION:
                    run = start + part.executions - 1
                    if found is None or run < found[0]:
                        found = (run, part)
            if found is not None:  # chunks after the violation will not be needed
                for future, start in list(inflight.items()):
                    if start > found[0]:
                        future.cancel()
                        del inflight[future]
            if progress is not None and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + 1.0
                result.seconds = time.perf_counter() - started
                progress(result)
    except KeyboardInterrupt as stop:
        result.note = stopped(stop)
        found = None
    if found is not None:
        part = found[1]
        result.verdict, result.prop, result.detail, result.moves = VIOLATION, part.prop, part.detail, part.moves
    elif not result.note:
        result.note = sampled(result.executions, result.truncated)
    result.seconds = time.perf_counter() - started
    return result
