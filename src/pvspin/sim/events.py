"""The event core: simulated time in integer cycles, a heap of pending events, the loop that fires them.

SimPy-sized.  An event is ``(time, seq, callback, target, arg)``; firing it calls
``callback(target, arg, time)``.  ``seq`` grows with every :meth:`EventLoop.at`, so events of
one cycle fire in the order they were scheduled and a run is a pure function of its inputs;
SimPy's priority field is not needed, because the one same-cycle order that matters — which
of several vCPUs completing an operation at one cycle goes first — is decided by the
:class:`~pvspin.machine.scheduler.Scheduler` (see :mod:`pvspin.sim.guestcpu`), not by the queue.

Nothing is ever cancelled.  A handler decides whether its event is still current, usually by
comparing ``arg`` with a generation counter of its target that every change of plan bumps;
a stale event fires, is counted, and does nothing.
"""

from __future__ import annotations

import random
from heapq import heappop, heappush


class EventLoop:
    """The clock and the queue: ``at()`` schedules, ``run()`` fires in (time, seq) order."""

    __slots__ = ("now", "until", "heap", "seq", "events")

    def __init__(self) -> None:
        self.now = 0  # the cycle being simulated (handlers may move it forward within their event)
        self.until = 0  # the horizon of the current run()
        self.heap: list[tuple] = []
        self.seq = 0
        self.events = 0  # events fired, stale ones included (the engine_events metric)

    def at(self, t: int, callback, target, arg) -> None:
        """Schedule ``callback(target, arg, t)`` at cycle ``t``."""
        self.seq += 1
        heappush(self.heap, (t, self.seq, callback, target, arg))

    def run(self, until: int) -> None:
        """Fire every event up to cycle ``until``; the clock then stands at ``until``."""
        heap = self.heap
        self.until = until
        while heap:
            ev = heap[0]
            t = ev[0]
            if t > self.until:  # until, unless a handler stopped the run (stop())
                break
            heappop(heap)
            self.now = t
            self.events += 1
            ev[2](ev[3], ev[4], t)
        self.now = self.until

    def stop(self) -> None:
        """End the current :meth:`run` at the cycle being fired: events later than now wait."""
        self.until = self.now


def poisson_arrival(now: int, rng: random.Random, rate_hz: float, freq_mhz: int) -> int:
    """The cycle of the next arrival of a Poisson process of ``rate_hz`` after ``now`` (at least one later)."""
    return now + 1 + int(rng.expovariate(rate_hz) * freq_mhz * 1_000_000)
