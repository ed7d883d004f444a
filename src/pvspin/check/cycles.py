"""Liveness: weakly fair cycles on which a CPU never makes progress.

What is checked, precisely (Spin's non-progress cycles under weak fairness are the anchor,
with progress counted per CPU):

* A CPU makes **progress** when it enters a critical section (it acquired the lock) or
  completes a run of its program (an acquisition's lock, critical section and unlock, or
  an interrupt handler).
* A cycle of states is **weakly fair** when every CPU that can execute (a ``STEP`` or
  ``ALT`` move) in every state of the cycle executes on it, and every CPU whose store
  buffer is non-empty in every state of it flushes on it.  Interrupts and spurious
  wake-ups are never owed.
* A **violation** is a reachable weakly fair cycle on which some CPU that has not finished
  never makes progress.  Named by what the cycle does: **deadlock** when no CPU makes
  progress on it and memory never changes (a spin loop, written out or not, waiting for a
  value nobody will write), **livelock** when no CPU makes progress although memory keeps
  changing, **starvation** when others make progress and these CPUs never do.

A spin loop written out by hand (``while (yield READ_ONCE(x)): ...``) and the same wait as
one ``smp_cond_load_*`` get the same verdict: the first goes round a cycle of states, the
second is disabled while its condition is false; both are a wait the fair cycle never
satisfies.

How it is found.  The exhaustive search runs Tarjan's algorithm as it goes
(:mod:`pvspin.check.exhaustive`); each time a strongly connected component of the state
graph completes with at least one edge inside it, :func:`find` decides it.  Under full
symmetry the graph's states are orbits, so the component is first *lifted* to concrete
states: the pairs (state, renaming) that its edges reach from its root, each edge carrying
the renaming from the state it reached to the stored representative of that state.
Then, for each unfinished CPU ``c``, the component without ``c``'s progress edges is cut
into its own strongly connected components (as in Emerson and Lei's fair-cycle checks);
one with an edge is weakly fair exactly when every CPU moves on one of its edges or is
disabled in one of its states, because a walk through all of its edges is then a fair
cycle.  The counterexample is such a walk through what fairness needs, after a path from
the initial state: a lasso of concrete moves that :func:`judge` confirms on replay.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FLUSH_KIND = 2  # world.FLUSH; kept here as a number so that this module imports nothing
_RUN_KINDS = (0, 1)  # STEP, ALT
PROGRESS = 1  # edge flags: the moving CPU made progress ...
WROTE = 2  # ... memory changed during the move


class Node:
    """A state whose strongly connected component is not complete yet (on Tarjan's stack)."""

    __slots__ = ("h", "index", "low", "renaming", "run", "flush", "unfinished", "edges")

    def __init__(self, h: int, index: int, renaming, run: int, flush: int, unfinished: int):
        self.h = h
        self.index = index
        self.low = index
        self.renaming = renaming  # this representative's CPUs -> the canonical numbering (None: no symmetry)
        self.run = run  # CPUs that can execute here (bit mask)
        self.flush = flush  # CPUs whose store buffer can flush here
        self.unfinished = unfinished
        self.edges: list[tuple] = []  # (move, target hash, target's renaming as reached, flags)


def masks(enabled: list[int]) -> tuple[int, int]:
    """CPUs that can execute, and CPUs that can flush, among ``enabled`` moves."""
    run = flush = 0
    for m in enabled:
        kind = m & 7
        if kind in _RUN_KINDS:
            run |= 1 << (m >> 3)
        elif kind == FLUSH_KIND:
            flush |= 1 << (m >> 3)
    return run, flush


@dataclass
class Lasso:
    """A liveness counterexample: ``prefix`` leads from the component's root to the cycle's start."""

    prefix: list[int]
    cycle: list[int]
    kind: str  # deadlock, livelock or starvation
    starved: list[int]


def find(members: list[Node], ncpus: int) -> Lasso | None:
    """A fair non-progress cycle in a completed component (``members[0]`` is its root), or None."""
    graph = _Lift(members, ncpus)
    for comp in _components(len(graph.nodes), graph.succ, lambda e: True):
        if not graph.has_edge(comp):
            continue
        unfinished = graph.unfinished[comp[0]]
        progressing = graph.progress_cpus(comp)
        # CPUs that make progress somewhere in it: look for a part that avoids their progress;
        # the others starve on the whole component as soon as it is fair
        for c in [None] + [c for c in range(ncpus) if unfinished >> c & 1 and progressing >> c & 1]:
            if c is None:
                parts = [comp]
            else:
                inside = set(comp)
                keep = lambda e, c=c, inside=inside: e[0] in inside and not (e[2] & PROGRESS and e[1] >> 3 == c)  # noqa: E731
                parts = [p for p in _components(len(graph.nodes), graph.succ, keep, comp) if graph.has_edge(p, keep)]
            for part in parts:
                lasso = graph.fair_cycle(part, c, unfinished)
                if lasso is not None:
                    return lasso
    return None


def judge(ncpus: int, moves: list[int], run_masks: list[int], flush_masks: list[int], flags: list[int],
          unfinished: int) -> tuple[str, list[int]] | None:
    """(kind, starved CPUs) of a cycle given move by move, or None when it is unfair or every CPU progresses."""
    moved, flushed, progressed, wrote = _tally(moves, flags)
    if not _fair(moved, flushed, run_masks, flush_masks):
        return None  # unfair: some CPU could always go on and never does
    starved = unfinished & ~progressed
    if not starved:
        return None
    kind = "starvation" if progressed else "livelock" if wrote else "deadlock"
    return kind, [c for c in range(ncpus) if starved >> c & 1]


def describe(kind: str, starved: list[int], first: int, last: int) -> str:
    """The violation's one-line detail: which CPUs, which steps repeat, what the cycle does."""
    cpus = ", ".join(f"cpu{c}" for c in starved)
    steps = f"{cycle_steps(first, last)} forever"
    if kind == "deadlock":
        what = ("no CPU makes progress on it and memory does not change: a spin waiting for a value "
                "no CPU will write")
    elif kind == "livelock":
        what = "no CPU makes progress on it although memory keeps changing"
    else:
        what = f"other CPUs make progress on it, {cpus} never {'does' if len(starved) == 1 else 'do'}"
    return f"{cpus} can wait forever: {steps}, a weakly fair cycle; {what}"


def cycle_steps(first: int, last: int) -> str:
    return f"steps {first}-{last} repeat" if last > first else f"step {first} repeats"


class _Lift:
    """A component's states made concrete: (stored state, renaming) pairs, with edges as concrete moves."""

    def __init__(self, members: list[Node], ncpus: int):
        by_hash = {m.h: m for m in members}
        identity = tuple(range(ncpus))
        root = members[0]
        self.nodes = [(root.h, identity)]
        index = {self.nodes[0]: 0}
        self.succ: list[list[tuple]] = []  # per node: (target, concrete move, flags)
        self.run, self.flush, self.unfinished = [], [], []
        i = 0
        while i < len(self.nodes):
            h, g = self.nodes[i]
            u = by_hash[h]
            self.run.append(rename(u.run, g))
            self.flush.append(rename(u.flush, g))
            self.unfinished.append(rename(u.unfinished, g))
            out = []
            for move, target, reached, flags in u.edges:
                v = by_hash.get(target)
                if v is None:
                    continue  # into a component completed earlier
                if reached is None:
                    g2 = g
                else:  # the state reached is the representative renamed by rho = reached^-1 . v.renaming
                    inverse = [0] * ncpus
                    for cpu, slot in enumerate(reached):
                        inverse[slot] = cpu
                    g2 = tuple(g[inverse[v.renaming[c]]] for c in range(ncpus))
                key = (target, g2)
                j = index.get(key)
                if j is None:
                    j = index[key] = len(self.nodes)
                    self.nodes.append(key)
                out.append((j, g[move >> 3] * 8 + (move & 7), flags))
            self.succ.append(out)
            i += 1

    def has_edge(self, comp: list[int], keep=None) -> bool:
        inside = set(comp)
        return any(e[0] in inside and (keep is None or keep(e)) for u in comp for e in self.succ[u])

    def progress_cpus(self, comp: list[int]) -> int:
        inside = set(comp)
        mask = 0
        for u in comp:
            for j, move, flags in self.succ[u]:
                if flags & PROGRESS and j in inside:
                    mask |= 1 << (move >> 3)
        return mask

    def fair_cycle(self, part: list[int], c: int | None, unfinished: int) -> Lasso | None:
        """A fair cycle within ``part`` avoiding ``c``'s progress edges, through what fairness needs; or None."""
        inside = set(part)
        edges = [(u, j, move, flags) for u in part for j, move, flags in self.succ[u]
                 if j in inside and not (c is not None and flags & PROGRESS and move >> 3 == c)]
        moved, flushed, progressed, _ = _tally([e[2] for e in edges], [e[3] for e in edges])
        if not _fair(moved, flushed, [self.run[u] for u in part], [self.flush[u] for u in part]):
            return None
        if not unfinished & ~progressed:
            return None
        # what the walk must pass through: for each CPU, one of its moves, or a state where it cannot move
        needs: list[tuple] = []
        ncpus = len(self.nodes[0][1])
        for cpu in range(ncpus):
            bit = 1 << cpu
            for kind_is_flush, mask, owed in ((False, moved, self.run), (True, flushed, self.flush)):
                if mask & bit:
                    edge = next(e for e in edges if e[2] >> 3 == cpu and (e[2] & 7 == FLUSH_KIND) == kind_is_flush)
                    needs.append(("edge", edge))
                elif any(owed[u] & bit for u in part):
                    needs.append(("node", next(u for u in part if not owed[u] & bit)))
        adjacency: dict[int, list[tuple]] = {}
        for e in edges:
            adjacency.setdefault(e[0], []).append(e)
        start = needs[0][1][0] if needs and needs[0][0] == "edge" else needs[0][1] if needs else edges[0][0]
        walk: list[tuple] = []
        here = start
        for what, item in needs:
            target = item[0] if what == "edge" else item
            walk += _path(adjacency, here, target)
            if what == "edge":
                walk.append(item)
                here = item[1]
            else:
                here = item
        walk += _path(adjacency, here, start)
        if not walk:  # nothing owed: any edge of the part and the way back
            first = adjacency[start][0]
            walk = [first] + _path(adjacency, first[1], start)
        all_edges = {u: [(u, j, move, flags) for j, move, flags in self.succ[u]] for u in range(len(self.nodes))}
        prefix = [e[2] for e in _path(all_edges, 0, start)]
        cycle_moves = [e[2] for e in walk]
        verdict = judge(ncpus, cycle_moves, [self.run[e[0]] for e in walk], [self.flush[e[0]] for e in walk],
                        [e[3] for e in walk], unfinished)
        if verdict is None:  # cannot happen if the walk is built right: it passes through everything owed
            raise AssertionError("a fair component gave an unfair walk")
        return Lasso(prefix, cycle_moves, *verdict)


def _tally(moves: list[int], flags: list[int]) -> tuple[int, int, int, bool]:
    """CPUs that moved (not flushes), CPUs that flushed, CPUs that made progress, whether memory changed."""
    moved = flushed = progressed = 0
    wrote = False
    for m, f in zip(moves, flags, strict=True):
        bit = 1 << (m >> 3)
        if m & 7 == FLUSH_KIND:
            flushed |= bit
        else:
            moved |= bit
        if f & PROGRESS:
            progressed |= bit
        wrote = wrote or bool(f & WROTE)
    return moved, flushed, progressed, wrote


def _fair(moved: int, flushed: int, run_masks: list[int], flush_masks: list[int]) -> bool:
    """Weak fairness: no CPU can execute (or flush) in every state and never does."""
    always_run = always_flush = ~0
    for r, fl in zip(run_masks, flush_masks, strict=True):
        always_run &= r
        always_flush &= fl
    return not (always_run & ~moved or always_flush & ~flushed)


def rename(mask: int, g: tuple) -> int:
    """A bit mask over CPUs with CPU ``c`` renamed ``g[c]``."""
    out = 0
    for cpu, target in enumerate(g):
        if mask >> cpu & 1:
            out |= 1 << target
    return out


def _path(adjacency: dict, source: int, target: int) -> list[tuple]:
    """Fewest edges from ``source`` to ``target`` (breadth first, edges in their stored order)."""
    if source == target:
        return []
    back = {source: None}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for e in adjacency.get(u, ()):
            v = e[1]
            if v not in back:
                back[v] = e
                if v == target:
                    path = []
                    while e is not None:
                        path.append(e)
                        e = back[e[0]]
                    return path[::-1]
                queue.append(v)
    raise AssertionError("target not reachable within its component")


def _components(n: int, succ: list[list[tuple]], keep, nodes: list[int] | None = None) -> list[list[int]]:
    """Strongly connected components (Tarjan, iterative) among ``nodes``, over the edges ``keep`` accepts.

    An edge is ``(target, move, flags)`` in ``succ``; ``keep`` sees ``(target, move, flags)``.
    Components come in the order they complete, each with its first-visited node first.
    """
    order = range(n) if nodes is None else nodes
    allowed = None if nodes is None else set(nodes)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on = set()
    stack: list[int] = []
    out = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            u, it = work[-1]
            advanced = False
            for e in it:
                v = e[0]
                if (allowed is not None and v not in allowed) or not keep(e):
                    continue
                if v not in index:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on.add(v)
                    work.append((v, iter(succ[v])))
                    advanced = True
                    break
                if v in on:
                    low[u] = min(low[u], index[v])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[u])
            if low[u] == index[u]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == u:
                        break
                comp.reverse()
                out.append(comp)
    return out
