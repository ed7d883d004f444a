"""The execution-graph search on several local processes: ``pvspin check --jobs N`` under armv8, lkmm or
``--strategy graph``.

The driver explores breadth first until a frontier of graphs waits (:meth:`Explorer.split`),
then forks ``N`` workers; worker ``i`` explores ``frontier[i::N]``, depth first and in that
order, from the states the driver explored.  Ten times a second each worker tells the others
which states it has explored and skips those they told it of (a state is explored whole by the
worker that first took it).  Which graphs a search reaches does not depend on the order it
takes them in, so together the workers reach every graph a single run reaches: the verdict and
the number of executions (joined by content, each counted once) are a single run's.  The number
of graphs explored is not: a state two workers reach within the same tenth of a second is explored by
both, so it adds up to somewhat more than one run's and varies from run to run, as a time does.
Without the exchange the shares overlap almost whole (qspinlock 3x1 under armv8: 168,820
graphs on two workers against 86,675 on one).

A violation stops every worker: which one is then reported, and the figures beside it, depend
on which worker got there first (as with GenMC's ``-nthreads``); the verdict does not.  A
worker that dies (killed, out of memory) is started again on its share, twice at most.  The
workers are forked, so guest code is never pickled: each has the driver's explorer, program
and frontier as they were at the fork.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing import get_context
from queue import Empty

from ...machine import watchdog
from ...parallel import _exit_with_parent
from .explorer import Explorer, Finding, GraphResult

FRONTIER_PER_JOB = 32  # waiting graphs per worker when the driver forks: small shares even out their sizes
RESTARTS = 2  # times a dead worker is started again on its share
STOP_GRACE = 10.0  # seconds a stopped worker has to send what it found
EXCHANGE_EVERY = 0.1  # seconds between a worker's reports of the states it explored


def explore(explorer: Explorer, jobs: int, max_seconds: float | None = None) -> GraphResult:
    """Every execution of ``explorer``'s program, on ``jobs`` processes (see the module's docstring)."""
    started = time.perf_counter()
    head, frontier, seen = explorer.split(FRONTIER_PER_JOB * jobs)
    if not frontier:  # the search ended (or stopped) before it was that wide
        return head
    budget = None if explorer.max_graphs is None else max(1, (explorer.max_graphs - head.graphs) // jobs)
    context = get_context("fork")
    results = context.Queue()
    inboxes = [context.Queue() for _ in range(jobs)]  # states other workers explored, for each worker
    workers = {}
    restarts = dict.fromkeys(range(jobs), 0)

    def start(i: int) -> None:
        seconds = None if max_seconds is None else max(0.1, max_seconds - (time.perf_counter() - started))
        worker = context.Process(target=_work, daemon=True, name=f"pvspin-graph-{i}",
                                 args=(explorer, frontier[i::jobs], seen, budget, seconds, results, inboxes, os.getpid(), i))
        worker.start()
        workers[i] = worker

    found: dict[int, tuple] = {}
    for i in range(jobs):
        start(i)
    try:
        while len(found) < jobs:
            try:
                i, summary = results.get(timeout=0.2)
            except Empty:
                for i, worker in workers.items():
                    if i not in found and worker.exitcode not in (None, 0):  # died without a word
                        if restarts[i] >= RESTARTS:
                            raise RuntimeError(f"graph search worker {i} died {RESTARTS + 1} times "
                                               f"(exit status {worker.exitcode})") from None
                        restarts[i] += 1
                        start(i)
                continue
            if isinstance(summary, BaseException):
                raise summary
            found[i] = summary
            if summary[0] == "violation":
                break
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or the deadline: each worker reports what it did
        for i, worker in workers.items():
            if i not in found and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        until = time.perf_counter() + STOP_GRACE
        while len(found) < jobs and time.perf_counter() < until:
            try:
                i, summary = results.get(timeout=0.2)
            except Empty:
                continue
            if not isinstance(summary, BaseException):
                found[i] = summary
        head.verdict, head.note = "incomplete", head.note or watchdog.stopped(stop)
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.kill()
            worker.join()
    return _joined(explorer, head, [found[i] for i in sorted(found)], jobs - len(found), started)


class _Seen(set):
    """The states a worker explored, with those added since it last told the others."""

    __slots__ = ("fresh",)

    def __init__(self, states):
        super().__init__(states)
        self.fresh: list[int] = []

    def add(self, h: int) -> None:
        set.add(self, h)
        self.fresh.append(h)


def _work(explorer: Explorer, share: list, seen: set, budget, seconds, results, inboxes, parent: int, i: int) -> None:
    """In a worker: explore its share of the frontier and send back what a driver needs to join.

    Every :data:`EXCHANGE_EVERY` seconds (the explorer's progress call) it tells the other workers which states
    it explored since, and skips those they told it of: each is, or was, explored whole by the
    worker that added it, as a single run explores each state once.
    """
    _exit_with_parent(parent)
    watchdog.sigterm_as_interrupt()
    for box in inboxes:
        box.cancel_join_thread()  # what is still in flight when a worker ends is only an economy lost
    seen = _Seen(seen)
    inbox = inboxes[i]

    def exchange(_result) -> None:
        if seen.fresh:
            batch, seen.fresh = seen.fresh, []
            for j, box in enumerate(inboxes):
                if j != i:
                    box.put(batch)
        while True:
            try:
                set.update(seen, inbox.get_nowait())
            except Empty:
                return

    explorer.max_graphs, explorer.progress, explorer.progress_every = budget, exchange, EXCHANGE_EVERY
    try:
        with watchdog.guard(seconds):
            r = explorer.run(share, seen)
    except BaseException as exc:  # noqa: BLE001 -- the driver re-raises it (an Unsupported operation, a bug)
        results.put((i, exc))
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped already: a late stop must not lose the report
    finding = None if r.finding is None else (r.finding.prop, r.finding.detail, r.finding.graph.path())
    results.put((i, (r.verdict, r.graphs, r.revisits, r.cut, r.blocked, r.note, explorer._executions, finding)))


def _joined(explorer: Explorer, head: GraphResult, parts: list[tuple], missing: int, started: float) -> GraphResult:
    """The workers' results as one: sums, executions joined by content, the violation if one was found."""
    total = GraphResult(verdict=head.verdict, graphs=head.graphs, revisits=head.revisits, cut=head.cut,
                        blocked=head.blocked, note=head.note)
    executions = set(explorer._executions)
    for verdict, graphs, revisits, cut, blocked, note, found, finding in parts:
        total.graphs += graphs
        total.revisits += revisits
        total.cut += cut
        total.blocked += blocked
        executions |= found
        if finding is not None and total.finding is None:
            prop, detail, path = finding
            total.verdict, total.finding = "violation", Finding(prop, detail, explorer.replay(path))
        elif verdict == "incomplete" and total.verdict != "violation":
            total.verdict, total.note = "incomplete", total.note or note
    if missing and total.verdict == "verified":  # a worker stopped before it could say what it found
        total.verdict, total.note = "incomplete", total.note or "stopped"
    total.executions = len(executions)
    return Explorer._finish(total, started)
