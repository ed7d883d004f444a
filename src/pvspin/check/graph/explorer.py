"""The execution-graph explorer: every consistent execution of the guest code under a memory model.

A search over graphs (:mod:`.graph`), from the empty one.  Each step replays a thread's
guest code from the values its reads in the graph returned (the generator is rebuilt,
never copied, as in the interleaving checker), takes the next operation of the
lowest-numbered thread that can go on, compiles it into events with the model
(:mod:`.models`), and branches:

* a **read** over the writes to its location that coherence lets it read (the model's
  consistency check discards the rest); a spin-wait (``smp_cond_load_*``) likewise, and
  when the location's last write in coherence order fails its condition it may also
  *block*, reading that write;
* a **write** over every position in its location's coherence order, and over every
  **backward revisit**: an existing read of the location that now reads from the new
  write.  The revisit deletes what depended on that read -- later events of its thread
  that used its value (address, data and control dependencies, :mod:`pvspin.machine.deps`),
  and, through reads-from, whatever read those events' writes -- and keeps everything
  else, so that the write's own prefix stays and executions whose program order and
  reads-from form a cycle (load buffering, which ARMv8 allows) are reached, as in HMC
  (Kokologiannakis and Vafeiadis, ASPLOS 2020).  A read that the write depends on cannot
  be revisited by it.
* an RMW reads like a read and places its write right after the write it read.  A lowered
  RMW (a sub-word access run on the whole word, :mod:`.wholeword`) writes back the bits
  outside its field that it read, so its write has a data dependency on its read, as the
  word-wide form ``new = (old & ~mask) | field`` of such an access has: the bits a later
  read of the thread takes from that write came from whoever wrote them.  Without it the
  LKMM orders nothing after that read (an ``rfi``), where the kernel's own sub-word code
  reads the other fields from their writers directly.

Graphs are remembered by their content and the order of addition that revisits can
still tell apart (:meth:`Graph.state_hash`), so one reached twice (through different
revisits) is explored once; an execution reached in several orders is counted once.  A graph that is not consistent is not extended: the models
only grow their relations when events are added, so no extension of it is consistent.
A blocked spin-wait always reads the last write to its location in coherence order (the
rule of VSync's await model checking and GenMC's spin-assume): a new write to the
location makes it read that write instead, in place -- going on if its condition accepts
the value, blocked again if not -- and the graph in which it kept reading the older
write is dropped.  When no thread can go on, the graph is complete (every thread
finished: an execution, whose final state is checked) or *stuck*: a blocked spin-wait
reads the last write there will ever be to its location and it fails the condition -- a
liveness violation (deadlock, or lost wake-up when the wait is a halted vCPU's).

The thread extended next is always the lowest-numbered that can go on.  That order is part
of why the search is complete: with an order that depends on the graph (tried for symmetry
reduction, which would take threads in a canonical numbering) the search missed executions
(5 of 656 for qspinlock 2x2 under armv8), so graphs are not reduced by symmetry.
``tests/test_check_graph_completeness.py`` checks the search against a forward-only oracle.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import is_

from ...machine import deps as deps_mod
from ...machine import ops as o
from ...machine import watchdog
from ...machine.crash import NOTHING, guest_crash, operation_problem
from ...machine.deps import Dep, deps_of
from ...machine.memory import MASKS
from .graph import AMO, AWAIT, EXCL, INIT, MAX_SLOTS, STRIDE, Ev, F, Forced, Graph, PerList, R, Rec, Recs, W, eid, where


class Unsupported(Exception):
    """The guest code does something this engine or model does not handle; the message says what."""


def _endless(cpu: int, recs: list) -> str:
    """Why a thread ran past :data:`MAX_SLOTS`, naming the loop its last operations are in."""
    from collections import Counter

    recent = Counter(rec.where for rec in recs[-64:] if type(rec) is Rec and rec.where[0] != "-")
    places = ", ".join(f"{function} ({line})" for (function, line), _ in recent.most_common(3))
    return (f"cpu{cpu} performed more than {MAX_SLOTS} memory operations in one execution, looping in {places}: "
            "the graph checker explores executions, not states, so a loop that may run forever must wait in one "
            "smp_cond_load_*() (a loop of plain reads, or one whose iterations write, is unbounded here; the "
            "interleaving checker, --memory-model sc/tso, takes both)")


class DependencyMiss(Exception):
    """A kept operation came out different on replay: a dependency the values did not carry."""


@dataclass
class Program:
    """What the explorer runs: one generator per thread, the memory they start from, what is checked at the end."""

    nthreads: int
    thread: Callable  # thread number -> a fresh generator
    initial: Callable  # (addr, size) -> value before any write
    name_of: Callable  # (addr, size) -> symbolic name
    cpu_of: Callable = lambda t: t  # noqa: E731 - smp_processor_id() of a thread
    final_problems: Callable = lambda memory, returns: []  # noqa: E731
    warn_ok: bool = False
    outcome: Callable | None = None  # (final memory, returns) -> what GraphResult.outcomes counts (litmus tests)
    discard_stuck: bool = False  # a stuck graph is no execution, not a violation (herd: a lock never taken)


@dataclass
class Finding:
    prop: str
    detail: str
    graph: Graph


@dataclass
class GraphResult:
    verdict: str = "verified"  # verified | violation | incomplete
    executions: int = 0  # complete consistent graphs
    blocked: int = 0  # stuck graphs dropped because Program.discard_stuck (litmus tests' locks), else 0
    graphs: int = 0  # distinct graphs visited
    revisits: int = 0
    cut: int = 0  # graphs ended where a thread repeated a loop iteration past the loop bound
    seconds: float = 0.0
    finding: Finding | None = None
    note: str = ""
    outcomes: dict = field(default_factory=dict)  # (final memory, returns) -> executions


class _Branches:
    """Collects the control dependencies of the thread being replayed (the observer of machine.deps)."""

    __slots__ = ("ctrl",)

    def __init__(self):
        self.ctrl = 0

    def branch(self, mask: int) -> None:
        self.ctrl |= mask


# what a replay stops at
_DONE, _FRONTIER, _BLOCKED, _CRASH, _CUT = range(5)
LOOP_BOUND = 2  # identical loop iterations in a row a thread may perform (see Explorer._repeats)
LONGEST_ITERATION = 24  # memory operations, for that check

# operations with an outcome that is no read's value: its own slot bit carries it (see _taint)
_CHOICE_OPS = frozenset({o.STORE_EX, o.VCPU_IS_PREEMPTED})
_CHOICE = ("choice",)
_NEXT = object()  # a replay's next operation is still to be asked of the generator
REPLAY_CACHE = 1 << 16  # thread replays remembered (children share the threads they do not change)
FREEZE_EVERY = 20_000  # graphs visited between two gc.freeze() calls (see Explorer.run)


def op_sig(op: tuple) -> tuple:
    """An operation as recorded: opcode, location, plain operands and ordering (a predicate by its code)."""
    out = [op[0]]
    for v in op[1:]:
        if hasattr(v, "addr") and hasattr(v, "size"):
            out.append((v.addr, v.size))
        elif callable(v):
            out.append(getattr(v, "__code__", v))
        elif isinstance(v, int):
            out.append(int(v))
        else:
            out.append(v)
    return tuple(out)


class Explorer:
    def __init__(self, program: Program, model, *, max_graphs: int | None = None, progress=None, lower=None,
                 loop_bound: int | None = LOOP_BOUND):
        self.program = program
        self.loop_bound = loop_bound
        self.lower = lower  # op -> (the operation run instead, its result -> the guest's), e.g. wholeword.Words
        self.model = model
        self.max_graphs = max_graphs
        self.progress = progress
        self.progress_every = 1.0  # seconds between progress calls
        self._specs: dict = {}
        self._replays: dict[int, tuple] = {}  # id(a thread's record list) -> (the list, its replay): lists are never changed
        self._paused: dict[int, tuple] = {}  # id(a thread's record list) -> its generator where its replay stopped
        self._sizes: dict[int, int] = {}  # location -> access size (mixed sizes are refused)
        self._init: dict[int, int] = {}
        self._executions: set[int] = set()  # complete graphs seen, by content: each execution counted once

    # ----------------------------------------------------------------- the search
    def run(self, start: list[Graph] | None = None, seen: set[int] | None = None) -> GraphResult:
        """Explore depth first, each distinct graph once; an inconsistent one is not extended.

        From the empty graph, or from the graphs of ``start`` (the first explored first) with
        the states of ``seen`` already explored (a share of :meth:`split`'s frontier).
        """
        result = GraphResult()
        watchdog.watch(lambda: result.graphs)  # guest code that stops yielding stops the graphs
        started = time.perf_counter()
        next_report = started + self.progress_every
        seen = set() if seen is None else seen
        stack = [self.root()] if start is None else start[::-1]
        freeze_at = FREEZE_EVERY
        try:
            while stack:
                children = self._visit(stack.pop(), seen, result)
                if children is None:
                    break
                stack.extend(reversed(children))
                freeze_at -= 1
                if not freeze_at:
                    # The search's graphs are freed by their reference counts (it makes almost no
                    # cyclic garbage, and what it makes dies young): out of the collector's
                    # sight, the waiting graphs are not rescanned by every full collection
                    # (qspinlock 3 x 1 under armv8: 22.8 s of CPU against 31.6, the same 312 MB peak)
                    gc.freeze()
                    freeze_at = FREEZE_EVERY
                if self.max_graphs is not None and result.graphs >= self.max_graphs:
                    result.verdict, result.note = "incomplete", f"stopped at the graph limit ({self.max_graphs})"
                    break
                if self.progress is not None and time.perf_counter() >= next_report:
                    next_report = time.perf_counter() + self.progress_every
                    result.seconds = time.perf_counter() - started
                    self.progress(result)
        except KeyboardInterrupt as stop:
            result.verdict, result.note = "incomplete", watchdog.stopped(stop)
        return self._finish(result, started)

    def split(self, width: int) -> tuple[GraphResult, list[Graph], set[int]]:
        """Breadth first from the empty graph until ``width`` graphs wait to be explored: what was found
        so far, the waiting graphs (none if the search ended), and the states explored.

        :meth:`run` from every waiting graph, with those states explored, finds what a whole run
        does: which graphs a search reaches does not depend on the order it takes them in.
        """
        result = GraphResult()
        watchdog.watch(lambda: result.graphs)
        started = time.perf_counter()
        seen: set[int] = set()
        queue = deque([self.root()])
        try:
            while queue and len(queue) < width:
                children = self._visit(queue.popleft(), seen, result)
                if children is None:
                    queue.clear()
                    break
                queue.extend(children)
        except KeyboardInterrupt as stop:
            result.verdict, result.note = "incomplete", watchdog.stopped(stop)
            queue.clear()
        return self._finish(result, started), list(queue), seen

    def root(self) -> Graph:
        return Graph([Recs() for _ in range(self.program.nthreads)], {})

    def _visit(self, g: Graph, seen: set[int], result: GraphResult) -> list[Graph] | None:
        """One graph of the search: counted once, judged, extended; its children, or None at a violation."""
        h = self.state_hash(g)
        if h in seen:
            return []
        seen.add(h)
        result.graphs += 1
        if not self.model.consistent(g):
            return []
        try:
            step = self._next(g)
            if step[0] != _FRONTIER:
                return None if self._end(g, step, result) else []
            children, revisits = self.children(g, step)
        except (Exception, SystemExit) as exc:  # a guest's wait condition raising (else not ours)
            crash = guest_crash(exc)
            if crash is None:
                raise
            result.verdict, result.finding = "violation", Finding(crash.prop, str(crash), g)
            return None
        result.revisits += revisits
        return children

    @staticmethod
    def state_hash(g: Graph) -> int:
        """What the search deduplicates by: the graph and the order its records were added in (Graph.state_hash)."""
        return g.state_hash()

    def children(self, g: Graph, step: tuple) -> tuple[list[Graph], int]:
        """The graphs one step extends ``g`` into (``step`` is its :meth:`_next`), each knowing its parent."""
        _, t, slot, op, specs, ctrl, forced, post, where = step
        children, revisits = self._expand(g, t, slot, op, specs, ctrl, forced, post)
        for i, child in enumerate(children):
            child.parent, child.choice = g, i
            recs = child.threads[t]
            if slot < len(recs) and type(recs[slot]) is Rec and recs[slot].stamp == g.clock:
                recs[slot].where = where
        return children, revisits

    def replay(self, path: list[int]) -> Graph:
        """The graph a :meth:`Graph.path` leads to, rebuilt from the empty one; ValueError if it does not fit."""
        g = self.root()
        for i, choice in enumerate(path):
            step = self._next(g)
            if step[0] != _FRONTIER:
                raise ValueError(f"the token goes on past the end of an execution, at step {i + 1}")
            children, _ = self.children(g, step)
            if not 0 <= choice < len(children):
                raise ValueError(f"step {i + 1} of the token chooses {choice} of {len(children)}")
            g = children[choice]
        return g

    @staticmethod
    def _finish(result: GraphResult, started: float) -> GraphResult:
        result.seconds = time.perf_counter() - started
        if result.cut and result.verdict == "verified":
            result.verdict = "bounded"
            result.note = (f"{result.cut} graphs cut where a CPU repeated a loop iteration, identical, more than "
                           "the loop bound allows: no violation in the executions within it")
        return result

    def _end(self, g: Graph, step: tuple, result: GraphResult) -> bool:
        """A consistent graph no thread can extend: count it, or record the violation it is (True: stop)."""
        if step[0] == _CRASH:
            _, prop, detail = step
            result.verdict, result.finding = "violation", Finding(prop, detail, g)
            return True
        if step[0] == _CUT:  # a thread went round a loop once too often: neither an execution nor a finding
            result.cut += 1
            return False
        stuck = self._stuck(g, step[1])
        if stuck is not None and self.program.discard_stuck:
            result.blocked += 1
            return False
        if stuck is not None:
            result.verdict, result.finding = "violation", Finding(stuck[0], stuck[1], g)
            return True
        if step[1]:
            result.blocked += 1
            return False
        h = hash(g.key())
        if h in self._executions:  # the same execution, its records added in another order
            return False
        self._executions.add(h)
        result.executions += 1
        problem = self._complete(g, step[2], result)
        if problem is not None:
            result.verdict, result.finding = "violation", Finding("final-state", problem, g)
            return True
        return False

    # ----------------------------------------------------------------- replay
    def _next(self, g: Graph):
        """The first thread that can go on and its next operation; else a crash, or (DONE, blocked, returns).

        A thread that crashed (a BUG, a WARN) stops there, but the others go on first: a
        graph with holes left by a revisit is no execution yet, and the crash is reported
        only once the graph is complete (and consistent) around it.
        """
        blocked = []
        returns = []
        crash = None
        cut = False
        for t in range(self.program.nthreads):
            step = self._replay(g, t)
            if step[0] == _FRONTIER:
                return step
            if step[0] == _CRASH:
                crash = crash or step
                returns.append(None)
            elif step[0] == _BLOCKED:
                blocked.append(step[1])
                returns.append(None)
            elif step[0] == _CUT:
                cut = True
                returns.append(None)
            else:
                returns.append(step[1])
        return crash or ((_CUT,) if cut else (_DONE, blocked, returns))

    def _replay(self, g: Graph, t: int):
        recs = g.threads[t]
        known = self._replays.get(id(recs))
        if known is not None and known[0] is recs:
            return known[1]
        step = self._run_thread(g, recs, t)
        if len(self._replays) >= REPLAY_CACHE:
            self._replays.clear()
            self._paused.clear()
        self._replays[id(recs)] = (recs, step)
        return step

    def _resumable(self, g: Graph, recs: list, t: int):
        """The thread's generator where the replay of its list in ``g``'s parent stopped, if ``recs`` keeps
        every record before that point (a forward step, or a hole or blocked wait filled there): it then
        goes on from there instead of from the start.  A paused generator is used once (generators
        cannot be copied): the parent's other children replay from the start."""
        parent = g.parent
        if parent is None:
            return None
        before = parent.threads[t]
        paused = self._paused.pop(id(before), None)
        if paused is None or paused[0] is not before:
            return None
        slot = paused[1]
        if len(recs) <= slot or not all(map(is_, before[:slot], recs)):
            return None
        return paused

    def _run_thread(self, g: Graph, recs: list, t: int):
        program = self.program
        paused = self._resumable(g, recs, t)
        if paused is None:
            gen = program.thread(t)
            branches = _Branches()
            slot = 0
            op = _NEXT
        else:
            _, slot, gen, branches, op, post, specs = paused
        saved = deps_mod.observer
        deps_mod.observer = branches
        try:
            result = None
            while True:
                if op is _NEXT:
                    try:
                        op = gen.send(result)
                    except StopIteration as stop:
                        return (_DONE, stop.value)
                    except o.GuestBug as bug:
                        return (_CRASH, "guest-bug", f"cpu{program.cpu_of(t)}: BUG: {bug}")
                    code = op[0]
                    if code in o.LOCAL_OPS:
                        result = self._local(t, op)
                        op = _NEXT
                        if type(result) is tuple and result and result[0] == _CRASH:
                            return result
                        continue
                    if code == o.CPU_RELAX or code == o.WORK:
                        result, op = None, _NEXT
                        continue
                    if (slot >= len(recs) or type(recs[slot]) is not Rec) and operation_problem(op) is not None:
                        raise ValueError("malformed operation")  # a new event, unusable: named by guest_crash() below
                    post = None
                    if self.lower is not None:
                        op, post = self.lower(op)
                    specs = _CHOICE if op[0] in _CHOICE_OPS and op[0] != o.STORE_EX else self._compile(op)
                    if not specs:
                        result, op = None, _NEXT
                        continue
                    if slot >= MAX_SLOTS:
                        raise Unsupported(_endless(program.cpu_of(t), recs))
                rec = recs[slot] if slot < len(recs) else None
                if type(rec) is not Rec:
                    if rec is None and slot == len(recs) and self._repeats(recs):
                        return (_CUT, t)
                    self._paused[id(recs)] = (recs, slot, gen, branches, op, post, specs)
                    return (_FRONTIER, t, slot, op, specs, branches.ctrl, rec, post, _source(gen))
                if rec.op_sig != op_sig(op):
                    raise DependencyMiss(
                        f"cpu{program.cpu_of(t)} operation {slot + 1} was {o.describe(rec.op)} and is now "
                        f"{o.describe(op)} although nothing it depends on changed: a dependency the checker "
                        "could not follow (a value used as a Python index, or converted with int()?)")
                read = rec.events[0] if rec.events else None
                if read is not None and read.tags & AWAIT and not rec.op[2](read.val):
                    self._paused[id(recs)] = (recs, slot, gen, branches, op, post, specs)
                    return (_BLOCKED, (t, slot))
                result = _taint(rec, eid(t, slot))
                if op[0] == o.COND_LOAD:
                    # one operation for a loop whose every iteration branches on its read: what
                    # follows depends on the read that ended it (it exists only because it did)
                    branches.ctrl |= 1 << eid(t, slot)
                slot += 1
                op = _NEXT
        except (Unsupported, DependencyMiss):
            raise
        except (Exception, SystemExit) as exc:  # see pvspin.machine.crash
            crash = guest_crash(exc, NOTHING if op is _NEXT else op, gen)
            if crash is None:
                raise
            return (_CRASH, crash.prop, f"cpu{program.cpu_of(t)}: {crash}")
        finally:
            deps_mod.observer = saved

    def _repeats(self, recs: list) -> bool:
        """Whether the thread's last operations are ``loop_bound + 1`` identical iterations of a loop.

        Identical: the same operations from the same source lines with the same results.  A
        loop whose iterations write (pv_wait_head_or_lock() spinning while the lock is stolen)
        or re-read with plain loads has an execution graph for every number of iterations;
        the search cuts each thread there, and a run that cut any is BOUNDED, never VERIFIED.
        What it finds is still real: every graph it judges is a whole execution.
        """
        if self.loop_bound is None:  # code without loops (litmus tests: forward branches only)
            return False
        n = len(recs)
        reps = self.loop_bound + 1
        span = min(LONGEST_ITERATION, n // reps)
        # a hole (a record to be redone) is unlike everything, itself included
        keys = [(r.op_sig, r.result, r.where) if type(r) is Rec else object() for r in recs[n - span * reps:]]
        m = len(keys)
        for length in range(1, span + 1):
            if keys[-1] != keys[-1 - length]:  # the cheap test first: most lengths fail it
                continue
            block = keys[m - length:]
            if all(keys[m - (k + 1) * length:m - k * length] == block for k in range(1, reps)):
                return True
        return False

    def _local(self, t: int, op: tuple):
        code = op[0]
        if code == o.SMP_PROCESSOR_ID:
            return self.program.cpu_of(t)
        if code == o.IN_NMI:
            return False
        if code == o.IRQS:
            return True
        if code == o.WARNING and not self.program.warn_ok:
            return (_CRASH, "guest-warning", f"cpu{self.program.cpu_of(t)}: WARN: {op[1]}")
        return None

    def _compile(self, op: tuple):
        code = op[0]
        key = (code, op[1]) if code == o.FENCE else (code, op[-1]) if code in o.RMW_OPS or code in (
            o.LOAD, o.STORE, o.LOAD_EX, o.STORE_EX) else (code, op[3]) if code == o.COND_LOAD else (code,)
        specs = self._specs.get(key, False)
        if specs is False:
            specs = self.model.compile(op)
            if specs is None:
                raise Unsupported(f"{o.describe(op)} has no {getattr(self.model, 'NAME', '?')} compilation")
            self._specs[key] = specs
        return specs

    # ----------------------------------------------------------------- branching
    def _location(self, ref) -> tuple[int, int]:
        addr, size = ref.addr, ref.size
        known = self._sizes.get(addr)
        if known is None:
            for other, osize in self._sizes.items():
                if other < addr + size and addr < other + osize:
                    raise Unsupported(f"mixed-size access: {self.program.name_of(addr, size)} ({size} bytes) "
                                      f"overlaps {self.program.name_of(other, osize)} ({osize} bytes)")
            self._sizes[addr] = size
            self._init[addr] = self.program.initial(addr, size)
        elif known != size:
            raise Unsupported(f"mixed-size access: {self.program.name_of(addr, size)} as {size} and {known} bytes")
        return addr, size

    def value_of(self, g: Graph, loc: int, w: int) -> int:
        return self._init[loc] if w == INIT else g.event(w).val

    def _expand(self, g: Graph, t: int, slot: int, op: tuple, specs: tuple, ctrl: int, forced: Forced | None,
                post=None):
        code = op[0]
        if specs is _CHOICE:  # vcpu_is_preempted(): the hypervisor's answer, either way
            sig = op_sig(op)
            answers = (False, True) if forced is None or forced.status is None else (forced.status,)
            return [_with(g, t, slot, Rec(sig, (), answer, op, deps_of(op[1]) | ctrl)) for answer in answers], 0
        kinds = tuple(s[0] for s in specs)
        if kinds == (F,):
            return [_with(g, t, slot, Rec(op_sig(op), (Ev(eid(t, slot), F, fence=specs[0][2], tags=specs[0][1],
                                                             ctrl_deps=ctrl),), None, op))], 0
        ref = op[1]
        loc, size = self._location(ref)
        mask = MASKS[size]
        sig = op_sig(op)
        adeps = ref.deps
        if kinds == (R,):
            return self._reads(g, t, slot, op, specs[0], loc, size, adeps, ctrl, forced, sig, post), 0
        if kinds[0] == W:  # a store, a store-exclusive, or a store with a fence after it
            value = op[2]
            write = Ev(eid(t, slot), W, loc, size, int(value) & mask, tags=specs[0][1], addr_deps=adeps,
                       data_deps=deps_of(value), ctrl_deps=ctrl)
            extra = ()
            if len(specs) == 2:
                extra = (Ev(eid(t, slot, 1), F, fence=specs[1][2], tags=specs[1][1], ctrl_deps=ctrl),)
            children = []
            lo, _, hi = _coherence_bounds(g, t, slot, loc)
            placements = range(len(g.writes_to(loc)) + 1)
            result = None
            if code == o.STORE_EX:
                pair = _exclusive_partner(g, t, slot, loc)
                status = forced.status if forced is not None else None
                if status != 0 and op[3] != o.LOCK:  # LKMM's lock write (LKW) never fails: it waited for 0
                    children.append(_with(g, t, slot, Rec(sig, (), 1, op, adeps | deps_of(value) | ctrl)))
                if pair is None or status == 1:
                    return children, 0
                write.pair = pair.id
                start = 0 if pair.rf == INIT else g.writes_to(loc).index(pair.rf) + 1
                placements = range(start, len(g.writes_to(loc)) + 1)
                result = 0
            revisits = 0
            prefix = []  # the write's prefix, the same in every placement (coherence is no dependency)
            for at in placements:
                child = _with(g, t, slot, Rec(sig, (write, *extra), result, op), loc, at)
                released, stays = self._unblock(child, write)
                if lo < at <= hi:  # elsewhere the write is incoherent here, but a revisit may delete why
                    children.extend(released)
                    if stays:
                        children.append(child)
                more = self._revisits(child, write, prefix)
                revisits += len(more)
                children.extend(more)
            return children, revisits
        # an RMW: a read, and a write placed right after the write it read
        return self._rmw(g, t, slot, op, specs, loc, size, mask, adeps, ctrl, forced, sig, post)

    def _candidates(self, g: Graph, t: int, slot: int, loc: int, forced: Forced | None,
                    everything: bool = False) -> list[int]:
        """The writes a read at ``(t, slot)`` may read: those coherence allows given its thread's other
        accesses (or, with ``everything``, every write to the location)."""
        if forced is not None and forced.rf is not None:
            if forced.rf != INIT and g.event(forced.rf).loc != loc:
                raise DependencyMiss(f"a revisited read came back as an access to {self.program.name_of(loc, 1)}, "
                                     f"not to {self.program.name_of(g.event(forced.rf).loc, 1)}")
            return [forced.rf]
        order = g.writes_to(loc)
        if everything:
            return [INIT, *order]
        lo, hi_read, _ = _coherence_bounds(g, t, slot, loc)
        return [INIT if i < 0 else order[i] for i in range(max(lo, -1), min(hi_read, len(order) - 1) + 1)]

    def _reads(self, g, t, slot, op, spec, loc, size, adeps, ctrl, forced, sig, post):
        code = op[0]
        tags = spec[1]
        cond = op[2] if code == o.COND_LOAD else None
        bounded = code == o.COND_LOAD and op[4] is not None
        if code == o.LOAD_EX:
            tags |= EXCL
        if cond is not None and not bounded:
            tags |= AWAIT
        children = []
        order = g.writes_to(loc)
        latest = order[-1] if order else INIT
        for w in self._candidates(g, t, slot, loc, forced):
            val = self.value_of(g, loc, w)
            if tags & AWAIT and not cond(val) and w != latest:
                continue  # a wait blocks only on the last write (see the module's docstring)
            ev = Ev(eid(t, slot), R, loc, size, val, w, tags, addr_deps=adeps, ctrl_deps=ctrl)
            children.append(_with(g, t, slot, Rec(sig, (ev,), val if post is None else post(val), op, post=post)))
        return children

    def _rmw(self, g, t, slot, op, specs, loc, size, mask, adeps, ctrl, forced, sig, post):
        code = op[0]
        data = 0
        for v in op[2:-1]:
            data |= deps_of(v)
        children = []
        revisits = 0
        order = g.writes_to(loc)
        lo, hi_read, hi_write = _coherence_bounds(g, t, slot, loc)
        coherent = set(self._candidates(g, t, slot, loc, forced))
        taken = _consumed(g, loc)
        for w in self._candidates(g, t, slot, loc, forced, everything=True):
            old = self.value_of(g, loc, w)
            new, result = o.rmw_result(code, old, op, mask)
            if post is not None:
                result = post(result)
            read = Ev(eid(t, slot), R, loc, size, old, w, specs[0][1], addr_deps=adeps, ctrl_deps=ctrl)
            carried = 0 if post is None else 1 << read.id  # lowered: the word's other bits come from the read
            if new is None:  # a failed cmpxchg: only the read, but its operands are still its own (a redone
                if w in coherent:  # read they came from redoes it: HMC's prefix must see them)
                    children.append(_with(g, t, slot, Rec(sig, (read,), result, op, data)))
                continue
            at = 0 if w == INIT else order.index(w) + 1
            write = Ev(eid(t, slot, 1), W, loc, size, int(new), tags=specs[1][1], addr_deps=adeps,
                       data_deps=data | carried, ctrl_deps=ctrl, pair=read.id)
            child = _with(g, t, slot, Rec(sig, (read, write), result, op), loc, at)
            # else incoherent here, or breaking the atomicity of the RMW that read w already, but a
            # revisit from this write may delete what makes it so
            if w in coherent and at <= hi_write and w not in taken:
                released, stays = self._unblock(child, write)
                children.extend(released)
                if stays:
                    children.append(child)
            more = self._revisits(child, write)
            revisits += len(more)
            children.extend(more)
        return children, revisits

    def _revisits(self, g: Graph, write: Ev, shared: list | None = None) -> list[Graph]:
        """Graphs in which an existing read of the location reads from ``write`` instead.

        As in TruSt (Kokologiannakis et al., POPL 2022), the revisit keeps what was added
        before the read and the write's own prefix, and deletes the rest, which the search
        then adds again; the prefix is the write's dependencies and reads-from sources,
        transitively (HMC's dependency prefix, so that the read may be po-before the write's
        program-order predecessors: load buffering).  A read in the prefix cannot be revisited.
        The prefix is computed only when there is a read to revisit, and kept in ``shared``
        (empty at first) for the write's other placements.
        """
        loc, wid = write.loc, write.id
        reads = []
        for t, recs in enumerate(g.threads):
            for slot, rec in _reads_by_loc(recs).get(loc, ()):
                read = rec.events[0]
                if read.rf == wid:
                    continue
                if read.tags & AWAIT and not rec.op[2](read.val):
                    continue  # a blocked wait: moved to the new write in place (_unblock)
                reads.append((t, slot, rec))
        if not reads:
            return []
        if shared:
            prefix = shared[0]
        else:
            wt, wslot, _ = where(wid)
            prefix = _prefix(g, wt, wslot)
            if shared is not None:
                shared.append(prefix)
        out = []
        for t, slot, rec in reads:
            if not prefix >> eid(t, slot) & 1:
                revisited = _revisited(g, prefix, t, slot, rec.stamp, wid)
                lo, hi_read, _ = _coherence_bounds(revisited, t, slot, loc)
                at = revisited.co[loc].index(wid)
                if lo <= at <= hi_read:  # else incoherent with what its thread keeps: no need to look
                    out.append(revisited)
        return out

    def _unblock(self, g: Graph, write: Ev) -> tuple[list[Graph], bool]:
        """The blocked spin-waits of the location, after ``write`` was placed in ``g``.

        Returns the graphs in which some of them read ``write`` (going on if their condition
        accepts it, blocked on it if it is the last write and does not), and whether ``g``
        itself stays: not when ``write`` is the last write and a wait still reads an older one.
        """
        order = g.co[write.loc]
        latest = order[-1] == write.id
        waits = []
        for t, recs in enumerate(g.threads):
            for slot, rec in _reads_by_loc(recs).get(write.loc, ()):
                if rec.events[0].tags & AWAIT and not rec.op[2](rec.events[0].val):
                    waits.append((t, slot, rec))
        if not waits:
            return [], True
        accepts = [w for w in waits if w[2].op[2](write.val)]
        if latest:  # every wait must read it: one graph
            return [_reading(g, waits, write)], False
        # not the last write: any non-empty set of the waits it releases may have seen it
        out = []
        for n in range(1, 1 << len(accepts)):
            out.append(_reading(g, [w for i, w in enumerate(accepts) if n >> i & 1], write))
        return out, True

    # ----------------------------------------------------------------- the end of an execution
    def final_memory(self, g: Graph) -> dict[int, int]:
        memory = dict(self._init)
        for loc, order in g.co.items():
            if order:
                memory[loc] = g.event(order[-1]).val
        return memory

    def _stuck(self, g: Graph, blocked: list[tuple[int, int]]):
        """(prop, detail) of a graph no thread can extend in which spin-waits are blocked, else None.

        A blocked wait reads its location's last write, which fails its condition: no write
        will ever come to release it.  A halted vCPU's wait (on ``pv_unhalted``) is a lost
        wake-up.
        """
        if not blocked:
            return None
        waits = []
        lost = False
        for t, slot in blocked:
            rec = g.threads[t][slot]
            read = rec.events[0]
            name = self.program.name_of(read.loc, read.size)
            lost = lost or name.startswith("pv_unhalted")
            what = "halted in pv_wait with no kick to come" if name.startswith("pv_unhalted") else \
                f"waits forever in {o.describe(rec.op, _namer(self.program))}"
            waits.append(f"cpu{self.program.cpu_of(t)} {what}, {name} staying {read.val:#x}")
        return ("lost-wakeup" if lost else "deadlock"), "; ".join(waits)

    def _complete(self, g: Graph, returns: list, result: GraphResult) -> str | None:
        memory = self.final_memory(g)
        if self.program.outcome is not None:
            key = self.program.outcome(memory, returns)
            result.outcomes[key] = result.outcomes.get(key, 0) + 1
        problems = self.program.final_problems(memory, returns)
        return "; ".join(problems) if problems else None


# --------------------------------------------------------------------------- graph surgery
def _by_location(recs: list) -> dict[int, tuple]:
    """A thread's reads (and RMWs, spin-waits), as (slot, record) per location, in program order."""
    out: dict[int, list] = {}
    for slot, rec in enumerate(recs):
        if type(rec) is Rec and rec.events and rec.events[0].kind == R:
            out.setdefault(rec.events[0].loc, []).append((slot, rec))
    return out


def _by_location_extended(known: dict[int, list], recs: list, start: int) -> dict[int, list]:
    """:func:`_by_location` of ``recs``, given that of its first ``start`` records (left unchanged)."""
    out = known
    for slot in range(start, len(recs)):
        rec = recs[slot]
        if type(rec) is Rec and rec.events and rec.events[0].kind == R:
            if out is known:
                out = dict(known)
            loc = rec.events[0].loc
            out[loc] = [*out.get(loc, ()), (slot, rec)]
    return out


_reads_by_loc = PerList(_by_location, extend=_by_location_extended)


def _with(g: Graph, t: int, slot: int, rec, loc: int | None = None, at: int | None = None) -> Graph:
    """``g`` with ``rec`` at the thread's slot (appended or filling a hole), its write placed at ``at`` in ``loc``'s order."""
    child = Graph(list(g.threads), g.co if loc is None else dict(g.co), g.clock + 1)
    rec.stamp = g.clock
    base = g.threads[t]
    if slot == len(base):
        recs = Recs(base, base)
        recs.append(rec)
    else:
        recs = Recs(base)
        recs[slot] = rec
    child.threads[t] = recs
    if loc is not None:
        order = child.co.get(loc, ())
        child.co[loc] = order[:at] + (rec.events[-1].id if rec.events[-1].kind == W else rec.events[0].id,) + order[at:]
    return child


def _consumed(g: Graph, loc: int) -> set:
    """Writes to ``loc`` (the initial one too) that an RMW's write immediately follows, having read them."""
    order = g.co.get(loc, ())
    out = set()
    for i, w in enumerate(order):
        ev = g.event(w)
        if ev.pair is not None and ev.tags & AMO:
            read = g.event(ev.pair) if g.rec_of(ev.pair) is not None and type(g.rec_of(ev.pair)) is Rec else None
            before = order[i - 1] if i else INIT
            if read is not None and read.rf == before:
                out.add(before)
    return out


def _reading(g: Graph, waits: list, write: Ev) -> Graph:
    """``g`` with each blocked wait of ``waits`` reading ``write`` instead, in place (nothing depends on a blocked wait)."""
    threads = list(g.threads)
    copied = set()
    for t, slot, rec in waits:
        if t not in copied:
            threads[t] = Recs(threads[t])
            copied.add(t)
        read = rec.events[0].with_rf(write.id, write.val)
        new = Rec(rec.op_sig, (read,), write.val if rec.post is None else rec.post(write.val), rec.op, 0, rec.post)
        new.deps, new.stamp = rec.deps, g.clock
        threads[t][slot] = new
    return Graph(threads, g.co, g.clock + 1)


def _coherence_bounds(g: Graph, t: int, slot: int, loc: int) -> tuple[int, int, int]:
    """What coherence per location (every model's ``internal`` axiom) allows an access at ``(t, slot)`` to ``loc``.

    Positions in the location's coherence order, the initial write being -1: ``lo`` is the
    newest write the thread's earlier accesses wrote or read; a read there may read from
    ``lo`` up to ``hi_read``, and a write may take any position from ``lo + 1`` up to
    ``hi_write``, so as to stay before what the thread's later accesses (kept across a
    hole) wrote or read.
    """
    order = g.co.get(loc, ())
    index = {w: i for i, w in enumerate(order)}
    lo = -1
    hi_read = hi_write = len(order)
    for s, rec in enumerate(g.threads[t]):
        if type(rec) is not Rec or s == slot:
            continue
        for ev in rec.events:
            if ev.loc != loc or ev.kind == F:
                continue
            if ev.kind == W:
                at = index.get(ev.id, -1)
            else:
                at = -1 if ev.rf == INIT else index.get(ev.rf, -1)
            if s < slot:
                lo = max(lo, at)
            elif ev.kind == W:
                hi_read = min(hi_read, at - 1)
                hi_write = min(hi_write, at)
            else:
                hi_read = min(hi_read, at)
                hi_write = min(hi_write, at)
    return lo, hi_read, hi_write


def _exclusive_partner(g: Graph, t: int, slot: int, loc: int) -> Ev | None:
    """The read of the latest load-exclusive before ``slot`` in the thread, if it is to the same location."""
    for rec in reversed(g.threads[t][:slot]):
        if type(rec) is Rec and rec.events and rec.events[0].tags & EXCL and rec.events[0].kind == R:
            return rec.events[0] if rec.events[0].loc == loc else None
    return None


def _prefix(g: Graph, t0: int, slot0: int) -> int:
    """The records the record at ``(t0, slot0)`` depends on, itself included: its dependencies' and
    reads-from sources' records, transitively; as a mask, bit ``eid(t, slot)`` for each.

    An exclusive store's load is not in it: the store's being there does not depend on
    what the load read, and the pairing (by event number) survives the load being redone;
    whether the pair is still atomic is the model's ``atomic`` axiom to say.  Depending on a
    store-exclusive's status alone does not bring the store in: it may be redone (its value
    may change) as long as it comes out the same, success or failure (see :func:`_revisited`).
    """
    threads = g.threads
    keep = 1 << eid(t0, slot0)
    looked = 0  # event numbers (and statuses) already followed
    work = [threads[t0][slot0]]
    while work:
        rec = work.pop()
        sources = rec.deps
        for ev in rec.events:
            if ev.kind == R and ev.rf is not None and ev.rf != INIT:
                sources |= 1 << ev.rf
        sources &= ~looked
        looked |= sources
        while sources:
            low = sources & -sources
            sources ^= low
            e = low.bit_length() - 1
            slot_bit = 1 << (e & ~1)
            if keep & slot_bit:
                continue
            t, rest = divmod(e, STRIDE)
            rec = threads[t][rest >> 1]
            if type(rec) is not Rec:
                continue  # a store-exclusive already to be redone with its outcome fixed
            if rest & 1 and rec.op[0] in _CHOICE_OPS:
                continue
            keep |= slot_bit
            work.append(rec)
    return keep


def _revisited(g: Graph, prefix: int, t0: int, slot0: int, stamp: int, write: int) -> Graph:
    """``g`` with the read at ``(t0, slot0)`` to be redone from ``write``: what was added after it and is not
    in the write's ``prefix`` deleted, and then whatever depends on something deleted.

    The second step matters where a slot was redone after operations that depend on it
    (a store-exclusive redone with its outcome fixed): it is newer than they are.  A
    store-exclusive that is deleted while something kept branches on its status is redone
    with that status fixed, not forgotten.
    """
    old = g.threads
    pending = old[t0][slot0]
    dead_slots = set()
    live = []  # (t, slot, record, what it depends on: its dependencies and reads-from sources)
    for t, recs in enumerate(old):
        for slot, rec in enumerate(recs):
            if rec is None:
                continue
            if (rec.stamp > stamp or (t == t0 and slot == slot0)) and not prefix >> eid(t, slot) & 1:
                dead_slots.add((t, slot))
                continue
            sources = rec.deps
            if type(rec) is Forced:
                if rec.rf is not None and rec.rf != INIT:
                    sources |= 1 << rec.rf
            else:
                for ev in rec.events:
                    if ev.kind == R and ev.rf is not None and ev.rf != INIT:
                        sources |= 1 << ev.rf
            live.append((t, slot, rec, sources))
    dead = 0  # events deleted (and slots being redone), for reads-from and value dependencies
    status = 0  # statuses of deleted store-exclusives and hypervisor answers
    for t, slot in dead_slots:
        dead, status = _kill(old[t][slot], t, slot, dead, status)
    changed = True
    while changed:
        changed = False
        still = []
        for entry in live:
            t, slot, rec, sources = entry
            if sources & dead:
                dead_slots.add((t, slot))
                dead, status = _kill(rec, t, slot, dead, status)
                changed = True
            else:
                still.append(entry)
        live = still
    branched = 0  # statuses something kept depends on
    for _, _, rec, _ in live:
        branched |= rec.deps & status
    # only the threads that change are copied: the others stay shared with g (and their replays, keys
    # and model caches with them)
    threads = list(old)
    for t in {t for t, _ in dead_slots} | {t0}:
        threads[t] = Recs(old[t])
    for t, slot in dead_slots:
        rec = threads[t][slot]
        if branched >> eid(t, slot, 1) & 1:  # something kept branched on its outcome: redo it with the same
            outcome = rec.result if type(rec) is Rec else rec.status
            threads[t][slot] = Forced(status=outcome, deps=rec.deps, stamp=rec.stamp)
        else:
            threads[t][slot] = None
    threads[t0][slot0] = Forced(write, deps=pending.deps, stamp=pending.stamp)
    # One graph, one form: a hole at the end of a thread is no hole (the thread appends there, or
    # ends before it), and a location whose writes all went has no order (as if never written).
    # Left in, they made the same execution two graphs, explored and counted twice.
    for t in {t for t, _ in dead_slots}:
        recs = threads[t]
        while recs and recs[-1] is None:
            recs.pop()
    co = {}
    for loc, order in g.co.items():
        kept = tuple(w for w in order if not dead >> w & 1)
        if kept:
            co[loc] = kept
    return Graph(threads, co, g.clock)


def _kill(rec, t: int, slot: int, dead: int, status: int) -> tuple[int, int]:
    """Add a deleted slot's events (or, for an outcome that is no read, its write alone) to ``dead``, its status to ``status``."""
    if (type(rec) is Rec and rec.op[0] in _CHOICE_OPS) or (type(rec) is Forced and rec.status is not None):
        return dead | 1 << eid(t, slot), status | 1 << eid(t, slot, 1)
    return dead | 3 << eid(t, slot), status


def _taint(rec: Rec, slot_bit: int):
    """The result a replayed guest gets back, carrying the read it came from.

    A store-exclusive's status and the hypervisor's answer to vcpu_is_preempted() carry
    their slot's second number (they are no read, so no model relation comes of them), so
    that what branches on them is redone, or kept with the outcome fixed, with them.
    """
    result = rec.result
    if rec.op[0] in _CHOICE_OPS:
        return Dep(result, 1 << (slot_bit + 1))
    read = rec.events[0] if rec.events else None
    if read is None or read.kind != R or result is None:
        return result
    bit = 1 << read.id
    if type(result) is tuple:  # try_cmpxchg: (succeeded, old); success is the compare with its operands
        return (Dep(int(result[0]), bit | rec.deps), Dep(result[1], bit))
    return Dep(result, bit)


def _source(gen) -> tuple[str, str]:
    """(function, file:line) of the innermost frame of a thread's generators, through run_hypercalls's ``gen``."""
    frame = None
    while gen is not None and gen.gi_frame is not None:
        frame = gen.gi_frame
        inner = gen.gi_yieldfrom
        if inner is None:
            inner = frame.f_locals.get("gen")
            if not hasattr(inner, "gi_frame"):
                inner = None
        gen = inner
    if frame is None:
        return "-", ""
    return frame.f_code.co_name, f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"


def _namer(program: Program):
    return lambda ref: program.name_of(ref.addr, ref.size)
