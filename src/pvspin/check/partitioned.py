"""The exhaustive search on several workers: the visited table partitioned by the states' places.

Every state has one *owner*, the worker its place picks (:meth:`World.state_place`: a CRC-32
of the acquisitions completed, the counts of halted, kicked and lock-holding CPUs and which
bytes of the lock words are set, the same for every state of an orbit).  A worker explores
its own states depth-first, as :mod:`pvspin.check.exhaustive` does; a move into another
worker's state sends that state there, as plain values (:meth:`World.export_state`: memory,
flags and the results sent to each CPU's code, from which the owner rebuilds the generators)
with the moves that reach it from the initial state.  Each state is therefore stored, and
expanded, by one worker only, whatever the number of workers: the search visits exactly the
states the sequential search would with the same reduction.  Most moves keep their worker (at
2 workers, 14-21% cross: ``benchmarks/partition_balance.py``); and since places are spread by
hash, every worker owns part of every stage of the search, so none waits for another to
reach its stage (owning whole numbers of acquisitions completed, as an earlier version did,
left one worker idle for most of a pvqspinlock 3 x 2 run).

Liveness.  Each worker records the edges it explores (into other workers' states by the
hash it knows them by, which their owner maps to its own); when the search is complete the
driver joins them into the whole state graph, runs Tarjan's algorithm over it, and hands
every strongly connected component with an edge inside it to :func:`pvspin.check.cycles.find`,
as the sequential search does component by component.

Ample sets and the cycle proviso.  The proviso is the sequential search's
(:mod:`pvspin.check.ample`): whether a state keeps its ample set depends on that state and the
states its ample moves reach, not on a search stack or on the order states are reached in.
So the reduced state graph is one graph, whoever expands which part of it: the search counts
exactly the states and transitions of the sequential search, for any number of workers.

A safety violation stops every worker at once; its counterexample is replaced, as every
counterexample is, by one with the fewest preemptions (:func:`pvspin.check.runner.run`).

Workers run in local processes (``--jobs``) or as Ray actors (``--ray``), through the same
driver (:func:`explore`).  The driver keeps every batch it sent to each worker: a worker
that dies is started again and given them all again, so it rebuilds its part of the
search; what it had sent to others arrives again and is recognised as visited.  After
``RETRIES`` restarts in all the check gives up (:class:`~pvspin.parallel.WorkersLost`).
"""

from __future__ import annotations

import gc
import pickle
import time
import zlib
from array import array
from concurrent.futures import FIRST_COMPLETED, wait

from ..machine import watchdog
from ..machine.watchdog import stopped
from . import cycles
from .ample import expand
from .exhaustive import _ordered
from .result import INCOMPLETE, VERIFIED, VIOLATION, CheckResult
from .world import Violation

STEP_SECONDS = 0.25  # a worker returns what it has to send this often: the others should not wait long
LOCAL = -1  # an edge's target owner when it is the worker's own state


def owner_of(place: int, workers: int) -> int:
    """The worker a place belongs to."""
    return place % workers


def pack(records: list) -> bytes:
    return zlib.compress(pickle.dumps(records, pickle.HIGHEST_PROTOCOL), 1)


def unpack(data: bytes) -> list:
    return pickle.loads(zlib.decompress(data))


class Partition:
    """One worker's part of the search: the states whose place it owns."""

    def __init__(self, opts, index: int, workers: int):
        from .runner import build_world

        self.world = build_world(opts)
        self.index = index
        self.workers = workers
        self.origin: dict[int, tuple] = {}  # own state -> (parent, move) on this worker, or (None, its whole path)
        self.info: dict[int, tuple] = {}  # own expanded state -> (run, flush, unfinished, renaming index)
        self.sent: set[int] = set()  # other workers' states already sent, by this worker's hash
        self.aliases: dict[tuple, int] = {}  # (sender, sender's hash) -> own hash
        self.renamings: dict = {}  # renaming -> its index in the edge arrays
        self.edges = (array("q"), array("q"), array("q"), array("q"))  # source, target, owner, move|flags|renaming
        self.inbox: dict[int, tuple] = {}  # states received and not yet expanded: (snapshot, state_place())
        self.stack: list[list] = []
        self.world_at = None  # the frame whose state the world is in (no restore needed), if any
        self.states = self.transitions = self.leaves = 0

    def step(self, batches: list[bytes]) -> tuple:
        """Take what was sent here, search for about STEP_SECONDS; return (outgoing by worker, more to do, counts, violation)."""
        for data in batches:
            self._receive(unpack(data))
        out: dict[int, list] = {}
        deadline = time.perf_counter() + STEP_SECONDS
        violation = None
        with watchdog.guard():
            while violation is None and (self.stack or self.inbox) and time.perf_counter() < deadline:
                if not self.stack:
                    h, (snap, placed) = self.inbox.popitem()
                    self.world.restore(snap)
                    violation = self._push(h, placed)
                    if violation is not None:
                        violation = (*violation, self.path(h))
                    continue
                violation = self._advance(out)
        # What a worker keeps (its states' origins, their facts, the edges) only grows and holds no
        # cycles: out of the collector's sight, a full collection no longer rescans all of it
        # (qspinlock 3 x 3: 54 full collections had cost a fifth of a worker's time)
        gc.freeze()
        counts = (self.states, self.transitions, self.leaves)
        return {j: pack(recs) for j, recs in out.items()}, bool(self.stack or self.inbox), counts, violation

    def _receive(self, records: list) -> None:
        world = self.world
        self.world_at = None
        for path, state, sender, alias in records:
            world.import_state(state)
            placed = world.state_place()  # kept: a state's place is half the cost of taking it in
            h = placed[0]
            if sender is not None:
                self.aliases[(sender, alias)] = h
            if h not in self.origin:
                self.origin[h] = (None, tuple(path))
                self.states += 1
                self.inbox[h] = (world.snapshot(), placed)

    def _push(self, h: int, placed: tuple, edge: int | None = None) -> tuple | None:
        """Make the world's current state (own, new) the top of the stack; a terminal one is judged: (property, detail)."""
        world = self.world
        renaming = placed[1]
        enabled = world.enabled()
        moves = _ordered(world.ample(enabled) or enabled, -1 if edge is None else edge >> 3)
        run, flush = cycles.masks(enabled)
        unfinished = sum(1 << cpu for cpu, ctxs in enumerate(world.ctxs) if ctxs)
        self.info[h] = (run, flush, unfinished, self._renaming(renaming))
        if not moves:
            self.leaves += 1
            v = world.terminal_violation()
            return None if v is None else (v.prop, v.detail)
        # frame: [snapshot, moves, next index, hash, enabled]
        self.stack.append([world.snapshot(), moves, 0, h, enabled])
        self.world_at = self.stack[-1]
        return None

    def _renaming(self, renaming) -> int:
        index = self.renamings.get(renaming)
        if index is None:
            index = self.renamings[renaming] = len(self.renamings)
        return index

    def _advance(self, out: dict) -> tuple | None:
        """One move from the top of the stack; a violation as (property, detail, moves from the initial state)."""
        world = self.world
        frame = self.stack[-1]
        snap, moves, i, h, enabled = frame
        if i >= len(moves):
            self.stack.pop()
            return None
        frame[2] = i + 1
        move = moves[i]
        if self.world_at is not frame:
            world.restore(snap)
        self.world_at = None
        self.transitions += 1
        reduced = len(moves) < len(enabled)
        if reduced:
            before = world.progress(move >> 3)
        try:
            world.execute(move)
        except Violation as v:
            return v.prop, v.detail, self.path_on_stack()
        if reduced and not world.ample_kept(move >> 3, before):
            frame[1] = expand(moves, enabled)  # the cycle proviso, the sequential search's (pvspin.check.ample)
        flags = world.progressed | world.wrote << 1
        h2, renaming, place2 = placed = world.state_place()
        owner = owner_of(place2, self.workers)
        src, dst, owners, packed = self.edges
        src.append(h)
        dst.append(h2)
        owners.append(LOCAL if owner == self.index else owner)
        packed.append(move | flags << 16 | self._renaming(renaming) << 18)
        if owner != self.index:
            self.leaves += 1
            if h2 not in self.sent:
                self.sent.add(h2)
                out.setdefault(owner, []).append((self.path_on_stack(), world.export_state(), self.index, h2))
            return None
        if h2 in self.origin and self.inbox.pop(h2, None) is None:
            self.leaves += 1
            return None
        # new, or received and not yet expanded: expanded here, as a child, from this path
        if h2 not in self.origin:
            self.states += 1
        self.origin[h2] = (h, move)
        violation = self._push(h2, placed, move)
        return None if violation is None else (*violation, self.path_on_stack())

    def path_on_stack(self) -> list[int]:
        """The moves from the initial state to the one the last move reached (it is not on the stack)."""
        root = self.stack[0][3]
        return self.path(root) + [f[1][f[2] - 1] for f in self.stack]

    def path(self, h: int) -> list[int]:
        """The moves from the initial state to the own state ``h``."""
        tail = []
        parent, step = self.origin[h]
        while parent is not None:
            tail.append(step)
            parent, step = self.origin[parent]
        return list(step) + tail[::-1]

    def graph(self) -> tuple:
        """Own states (hash, run, flush, unfinished, renaming index), the edges, the aliases and the renamings."""
        states = [(h, *info) for h, info in self.info.items()]
        renamings = sorted(self.renamings, key=self.renamings.get)
        return states, self.edges, self.aliases, renamings

    def pid(self) -> int:
        """The worker's process (the tests kill one mid-run)."""
        import os

        return os.getpid()


# ------------------------------------------------------------------------------------ the driver
def explore(opts, workers: int, ray=None, *, max_states: int | None = None, progress=None,
            on_step=None) -> CheckResult:
    """The exhaustive search of ``opts``'s configuration on ``workers`` workers (local processes, or Ray actors
    through the :class:`~pvspin.parallel.RayPool` ``ray``).

    ``progress(result)`` about once a second; ``on_step(pool)`` after each batch a worker returns
    (the tests kill a worker from there).  A KeyboardInterrupt ends the search as incomplete.
    """
    from ..parallel import Workers
    from .runner import build_world

    result = CheckResult(VERIFIED, "exhaustive")
    started = time.perf_counter()
    world = build_world(opts)
    first = pack([([], world.export_state(), None, None)])
    pool = Workers(Partition, (opts,), workers, ray)
    search = _Driver(pool, workers, result, max_states, progress, on_step, started)
    try:
        search.pending[owner_of(world.state_place()[2], workers)].append(first)
        graphs = search.run()
        if graphs is not None:
            _liveness(pool, graphs, world.n, result)
    except KeyboardInterrupt as stop:
        result.verdict = INCOMPLETE
        result.note = stopped(stop)
    finally:
        pool.shutdown()
    result.seconds = time.perf_counter() - started
    return result


class _Driver:
    """Routes the batches between the workers until none has work left; starts a lost worker again."""

    def __init__(self, pool, n: int, result: CheckResult, max_states, progress, on_step, started: float):
        self.pool, self.n, self.result = pool, n, result
        self.max_states, self.progress, self.on_step = max_states, progress, on_step
        self.started = started
        self.pending: list[list[bytes]] = [[] for _ in range(n)]
        self.log: list[list[bytes]] = [[] for _ in range(n)]  # every batch each worker was given
        self.counts = [(0, 0, 0)] * n
        self.inflight: dict = {}
        self.restarts = 0  # workers started again, in all: bounded by parallel.RETRIES

    def run(self) -> list | None:
        """The workers' graphs once the search is complete; None when it stopped (a violation, the state limit)."""
        while True:
            if not self._quiesce():
                return None
            graphs = []
            for i in range(self.n):
                try:
                    graphs.append(self.pool.call(i, "graph").result())
                except BaseException as err:
                    self._lost(i, err)
                    break
            else:
                return graphs

    def _send(self, i: int) -> None:
        batches, self.pending[i] = self.pending[i], []
        self.log[i].extend(batches)
        try:
            self.inflight[self.pool.call(i, "step", batches)] = i
        except BaseException as err:  # a local pool whose process died while idle refuses the call
            self._lost(i, err)
            self._send(i)

    def _lost(self, i: int, err: BaseException) -> None:
        from ..parallel import RETRIES, WorkersLost, lost_worker

        if not lost_worker(err):
            raise err
        self.restarts += 1
        if self.restarts > RETRIES:
            raise WorkersLost(f"a worker process died {self.restarts} times: the check gave up")
        self.pool.restart(i)  # a fresh worker rebuilds the part from all it was ever given
        self.pending[i] = self.log[i] + self.pending[i]
        self.log[i] = []
        self.counts[i] = (0, 0, 0)

    def _quiesce(self) -> bool:
        """Run until no worker has work and nothing is in transit; False if the search stopped."""
        result = self.result
        next_report = time.perf_counter() + 1.0
        for i in range(self.n):
            if self.pending[i]:
                self._send(i)
        while self.inflight:
            done, _ = wait(self.inflight, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                i = self.inflight.pop(future)
                try:
                    out, more, self.counts[i], violation = future.result()
                except BaseException as err:
                    self._lost(i, err)
                    self._send(i)
                    continue
                self._tally()
                if violation is not None:
                    result.verdict = VIOLATION
                    result.prop, result.detail, result.moves = violation
                    return False
                for j, data in out.items():
                    self.pending[j].append(data)
                if more:
                    self._send(i)
                if self.on_step is not None:
                    self.on_step(self.pool)
            busy = set(self.inflight.values())
            for j in range(self.n):
                if j not in busy and self.pending[j]:
                    self._send(j)
            if self.max_states is not None and result.states >= self.max_states:
                result.verdict = INCOMPLETE
                result.note = f"stopped at the state limit ({self.max_states})"
                return False
            if self.progress is not None and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + 1.0
                result.seconds = time.perf_counter() - self.started
                self.progress(result)
        return True

    def _tally(self) -> None:
        self.result.states = sum(c[0] for c in self.counts)
        self.result.transitions = sum(c[1] for c in self.counts)
        self.result.executions = sum(c[2] for c in self.counts)


def _liveness(pool, graphs: list, ncpus: int, result: CheckResult) -> None:
    """Join the workers' graphs, and judge every strongly connected component with an edge inside it."""
    index: list[dict[int, int]] = [{} for _ in graphs]
    nodes: list[tuple] = []  # (worker, hash, run, flush, unfinished, renaming)
    for i, (states, _, _, renamings) in enumerate(graphs):
        own = index[i]
        for h, run, flush, unfinished, r in states:
            own[h] = len(nodes)
            nodes.append((i, h, run, flush, unfinished, renamings[r]))
    succ: list[list[tuple]] = [[] for _ in nodes]  # (target, move, reached renaming, flags)
    for i, (_, (src, dst, owners, packed), _, renamings) in enumerate(graphs):
        own = index[i]
        for s, d, o, p in zip(src, dst, owners, packed, strict=True):
            target = own[d] if o == LOCAL else index[o][graphs[o][2][(i, d)]]
            succ[own[s]].append((target, p & 0xFFFF, renamings[p >> 18], p >> 16 & 3))
    for component in _components(succ):
        members = []
        for u in component:
            _, _, run, flush, unfinished, renaming = nodes[u]
            node = cycles.Node(u, len(members), renaming, run, flush, unfinished)
            node.edges = [(move, target, reached, flags) for target, move, reached, flags in succ[u]]
            members.append(node)
        lasso = cycles.find(members, ncpus)
        if lasso is None:
            continue
        owner, h = nodes[component[0]][:2]
        stem = pool.call(owner, "path", h).result()
        first = len(stem) + len(lasso.prefix) + 1
        result.verdict, result.prop = VIOLATION, lasso.kind
        result.detail = cycles.describe(lasso.kind, lasso.starved, first, first + len(lasso.cycle) - 1)
        result.moves = stem + lasso.prefix + lasso.cycle
        result.cycle_start = first - 1
        return


def _components(succ: list[list[tuple]]):
    """Tarjan's algorithm, iteratively: each strongly connected component with an edge inside it."""
    n = len(succ)
    order = [0] * n  # 0: not visited; else visit index + 1
    low = [0] * n
    on = [False] * n
    stack: list[int] = []
    counter = 0
    for start in range(n):
        if order[start]:
            continue
        work = [(start, 0)]
        while work:
            u, i = work.pop()
            if i == 0:
                counter += 1
                order[u] = low[u] = counter
                stack.append(u)
                on[u] = True
            edges = succ[u]
            while i < len(edges):
                v = edges[i][0]
                i += 1
                if not order[v]:
                    work.append((u, i))
                    work.append((v, 0))
                    break
                if on[v] and order[v] < low[u]:
                    low[u] = order[v]
            else:
                if low[u] == order[u]:
                    component = []
                    while True:
                        w = stack.pop()
                        on[w] = False
                        component.append(w)
                        if w == u:
                            break
                    if len(component) > 1 or any(e[0] == u for e in edges):
                        component.reverse()  # the root first, as cycles.find expects
                        yield component
                if work:
                    parent = work[-1][0]
                    if low[u] < low[parent]:
                        low[parent] = low[u]

